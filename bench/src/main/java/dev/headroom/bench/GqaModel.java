package dev.headroom.bench;

import com.google.protobuf.CodedOutputStream;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;

/**
 * An ONNX model of one decode step of ONNX Runtime's {@code com.microsoft.GroupQueryAttention}
 * contrib operator, written at set-up (no model file in the repository) with protobuf's
 * {@link CodedOutputStream} by field number, as {@code dev.headroom.model.onnx.OnnxModelReader}
 * reads ONNX: generated classes for onnx.proto would be thousands of lines for a dozen fields.
 *
 * <p>The graph has one GroupQueryAttention node per batch part (attributes {@code num_heads},
 * {@code kv_num_heads}; scale left at its default 1/√d), all inputs and outputs float32 with fixed
 * shapes, B the part's sequences, P the cache buffer's length in tokens:
 * <pre>
 *   query_p          (B, 1, H·d)     the new token's query, heads side by side
 *   key_p, value_p   (B, 1, G·d)     the new token's key and value
 *   past_key_p       (B, G, P, d)    the cache, BNSH; past_value_p likewise
 *   seqlens_k_p      (B) int32       each sequence's total length − 1 (after the step)
 *   total_sequence_length () int32   the longest total length in the batch (shared by all parts)
 *   → output_p (B, 1, H·d), present_key_p, present_value_p (B, G, P, d)
 * </pre>
 * More than one part only because ONNX Runtime for Java takes a tensor's data from a
 * {@link java.nio.Buffer}, which holds at most 2³¹ − 1 bytes: a larger cache is split by
 * sequences into parts that each fit ({@link OrtGqaDecode}).
 *
 * <p>Field numbers, as in onnx.proto (IR version 10, opset 21 for the default domain):
 * <pre>
 *   ModelProto        1 ir_version   2 producer_name   7 graph   8 opset_import
 *   OperatorSetIdProto 1 domain   2 version
 *   GraphProto        1 node   2 name   11 input   12 output
 *   NodeProto         1 input   2 output   3 name   4 op_type   5 attribute   7 domain
 *   AttributeProto    1 name   3 i   20 type (2 = INT)
 *   ValueInfoProto    1 name   2 type
 *   TypeProto         1 tensor_type: 1 elem_type (1 = FLOAT, 6 = INT32)   2 shape: 1 dim: 1 dim_value
 * </pre>
 */
public final class GqaModel {
    static final long IR_VERSION = 10;
    static final long DEFAULT_OPSET = 21;
    static final String MS_DOMAIN = "com.microsoft";
    static final int FLOAT = 1, INT32 = 6;
    private static final int ATTRIBUTE_INT = 2;

    private GqaModel() {}

    /** The names of part p's inputs and outputs, in the order the operator takes them. */
    static String query(int p) { return "query_" + p; }
    static String key(int p) { return "key_" + p; }
    static String value(int p) { return "value_" + p; }
    static String pastKey(int p) { return "past_key_" + p; }
    static String pastValue(int p) { return "past_value_" + p; }
    static String seqlensK(int p) { return "seqlens_k_" + p; }
    static final String TOTAL_SEQUENCE_LENGTH = "total_sequence_length";
    static String output(int p) { return "output_" + p; }
    static String presentKey(int p) { return "present_key_" + p; }
    static String presentValue(int p) { return "present_value_" + p; }

    /**
     * The serialized model: {@code partSequences[p]} sequences in part p, H heads over G key/value
     * heads of width d, cache buffers of {@code bufferTokens} tokens.
     */
    public static byte[] build(int heads, int kvHeads, int headDim, int[] partSequences, int bufferTokens) {
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || headDim <= 0 || bufferTokens <= 0 || partSequences.length == 0) {
            throw new IllegalArgumentException("need H a positive multiple of G, d and the buffer positive, at least one part; got H "
                    + heads + ", G " + kvHeads + ", d " + headDim + ", buffer " + bufferTokens + ", " + partSequences.length + " parts");
        }
        long q = (long) heads * headDim, kv = (long) kvHeads * headDim;
        byte[] graph = message(out -> {
            for (int p = 0; p < partSequences.length; p++) {
                long B = partSequences[p];
                if (B <= 0) throw new IllegalArgumentException("part " + p + " has " + B + " sequences");
                int part = p;
                out.writeByteArray(1, message(node -> {
                    for (String input : new String[]{query(part), key(part), value(part), pastKey(part), pastValue(part),
                            seqlensK(part), TOTAL_SEQUENCE_LENGTH}) {
                        node.writeString(1, input);
                    }
                    for (String output : new String[]{output(part), presentKey(part), presentValue(part)}) node.writeString(2, output);
                    node.writeString(3, "gqa_" + part);
                    node.writeString(4, "GroupQueryAttention");
                    node.writeByteArray(5, intAttribute("num_heads", heads));
                    node.writeByteArray(5, intAttribute("kv_num_heads", kvHeads));
                    node.writeString(7, MS_DOMAIN);
                }));
            }
            out.writeString(2, "headroom_gqa_decode");
            for (int p = 0; p < partSequences.length; p++) {
                long B = partSequences[p];
                out.writeByteArray(11, valueInfo(query(p), FLOAT, B, 1, q));
                out.writeByteArray(11, valueInfo(key(p), FLOAT, B, 1, kv));
                out.writeByteArray(11, valueInfo(value(p), FLOAT, B, 1, kv));
                out.writeByteArray(11, valueInfo(pastKey(p), FLOAT, B, kvHeads, bufferTokens, headDim));
                out.writeByteArray(11, valueInfo(pastValue(p), FLOAT, B, kvHeads, bufferTokens, headDim));
                out.writeByteArray(11, valueInfo(seqlensK(p), INT32, B));
            }
            out.writeByteArray(11, valueInfo(TOTAL_SEQUENCE_LENGTH, INT32));
            for (int p = 0; p < partSequences.length; p++) {
                long B = partSequences[p];
                out.writeByteArray(12, valueInfo(output(p), FLOAT, B, 1, q));
                out.writeByteArray(12, valueInfo(presentKey(p), FLOAT, B, kvHeads, bufferTokens, headDim));
                out.writeByteArray(12, valueInfo(presentValue(p), FLOAT, B, kvHeads, bufferTokens, headDim));
            }
        });
        return message(out -> {
            out.writeInt64(1, IR_VERSION);
            out.writeString(2, "headroom-bench");
            out.writeByteArray(7, graph);
            out.writeByteArray(8, opset("", DEFAULT_OPSET));
            out.writeByteArray(8, opset(MS_DOMAIN, 1));
        });
    }

    private static byte[] opset(String domain, long version) {
        return message(out -> {
            out.writeString(1, domain);
            out.writeInt64(2, version);
        });
    }

    private static byte[] intAttribute(String name, long value) {
        return message(out -> {
            out.writeString(1, name);
            out.writeInt64(3, value);
            out.writeInt32(20, ATTRIBUTE_INT);
        });
    }

    /** A tensor's ValueInfoProto: name, element type, fixed dims (none: a scalar). */
    private static byte[] valueInfo(String name, int elementType, long... dims) {
        byte[] shape = message(out -> {
            for (long d : dims) out.writeByteArray(1, message(dim -> dim.writeInt64(1, d)));
        });
        byte[] tensorType = message(out -> {
            out.writeInt32(1, elementType);
            out.writeByteArray(2, shape);
        });
        return message(out -> {
            out.writeString(1, name);
            out.writeByteArray(2, message(type -> type.writeByteArray(1, tensorType)));
        });
    }

    @FunctionalInterface
    private interface Body {
        void write(CodedOutputStream out) throws IOException;
    }

    private static byte[] message(Body body) {
        try {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            CodedOutputStream out = CodedOutputStream.newInstance(bytes);
            body.write(out);
            out.flush();
            return bytes.toByteArray();
        } catch (IOException e) {
            throw new UncheckedIOException("writing to a byte array failed", e);
        }
    }
}
