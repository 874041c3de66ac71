package dev.headroom.model.onnx;

/**
 * One attribute of an ONNX node (AttributeProto), reduced to what Headroom reads: a float, an
 * integer, a string, a tensor (for {@code Constant} nodes), or lists of floats or integers.
 * Fields that the attribute does not hold are 0, null or empty.
 *
 * @param name    the attribute's name, e.g. {@code "epsilon"}, {@code "perm"}, {@code "value"}
 * @param f       AttributeProto.f (field 2)
 * @param i       AttributeProto.i (field 3)
 * @param s       AttributeProto.s (field 4), decoded as UTF-8
 * @param tensor  AttributeProto.t (field 5), or null
 * @param floats  AttributeProto.floats (field 7)
 * @param ints    AttributeProto.ints (field 8)
 */
public record OnnxAttribute(String name, float f, long i, String s, OnnxInitializer tensor, float[] floats, long[] ints) {
}
