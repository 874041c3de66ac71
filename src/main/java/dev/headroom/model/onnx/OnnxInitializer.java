package dev.headroom.model.onnx;

import dev.headroom.tensor.Tensor;

import java.util.Arrays;

/**
 * A constant tensor of an ONNX graph (a TensorProto: a graph initializer or the value of a
 * {@code Constant} node). Float tensors are copied off-heap into the reader's arena; small
 * integer tensors (shapes, axes, indices) are kept as {@code long[]}; other data is not kept.
 *
 * @param name     the value's name in the graph
 * @param dataType TensorProto.DataType: 1 FLOAT, 6 INT32, 7 INT64, 10 FLOAT16, 11 DOUBLE, …
 * @param dims     the shape; empty for a scalar
 * @param floats   the data when {@code dataType} is FLOAT, else null; a scalar is a (1) tensor
 * @param integers the data when {@code dataType} is INT32 or INT64 and the tensor is small, else null
 */
public record OnnxInitializer(String name, int dataType, long[] dims, Tensor floats, long[] integers) {
    public static final int FLOAT = 1, INT32 = 6, INT64 = 7;

    /** The number of elements: the product of the dims, 1 for a scalar. */
    public long elementCount() {
        long n = 1;
        for (long d : dims) n *= d;
        return n;
    }

    /** The ONNX name of a TensorProto.DataType value, for messages. */
    public static String typeName(int dataType) {
        return switch (dataType) {
            case 0 -> "UNDEFINED";
            case 1 -> "FLOAT";
            case 2 -> "UINT8";
            case 3 -> "INT8";
            case 4 -> "UINT16";
            case 5 -> "INT16";
            case 6 -> "INT32";
            case 7 -> "INT64";
            case 8 -> "STRING";
            case 9 -> "BOOL";
            case 10 -> "FLOAT16";
            case 11 -> "DOUBLE";
            case 12 -> "UINT32";
            case 13 -> "UINT64";
            case 16 -> "BFLOAT16";
            default -> "data type " + dataType;
        };
    }

    public String describe() {
        return "'" + name + "' (" + typeName(dataType) + ", dims " + Arrays.toString(dims) + ")";
    }
}
