package dev.headroom.model.onnx;

import com.google.protobuf.CodedInputStream;
import com.google.protobuf.InvalidProtocolBufferException;
import dev.headroom.io.TensorFiles;
import dev.headroom.io.TensorFormatException;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * Reads an ONNX model (a serialized {@code onnx.ModelProto}) with protobuf's
 * {@link CodedInputStream}, by field number, without generated classes: Headroom needs a dozen
 * fields, and generated code for onnx.proto would be a few thousand lines to keep in step.
 *
 * <p>The fields read, numbered as in onnx.proto (IR version 3 and later); every other field is
 * skipped by its wire type:
 * <pre>
 *   ModelProto       1 ir_version (varint)   2 producer_name (string)   7 graph (GraphProto)
 *   GraphProto       1 node (NodeProto)      5 initializer (TensorProto)
 *                   11 input (ValueInfoProto)   12 output (ValueInfoProto)
 *   NodeProto        1 input (string)   2 output (string)   3 name   4 op_type   5 attribute   7 domain
 *   AttributeProto   1 name   2 f (fixed32)   3 i (varint)   4 s (bytes)   5 t (TensorProto)
 *                    7 floats (fixed32, packed or not)   8 ints (varint, packed or not)
 *   TensorProto      1 dims (varint, packed or not)   2 data_type (varint)   4 float_data (fixed32)
 *                    5 int32_data (varint)   7 int64_data (varint)   8 name   9 raw_data (bytes, little-endian)
 *                   14 data_location (varint; 1 = EXTERNAL, refused)
 *   ValueInfoProto   1 name
 * </pre>
 * Float tensors are copied into off-heap {@link Tensor}s allocated in the caller's arena (the
 * source bytes are only borrowed while reading). Integer tensors of up to
 * {@value #MAX_KEPT_INTEGERS} elements are kept on the heap; larger ones and other types are
 * described (name, type, dims) but their data is not kept.
 *
 * <p>A file that is not a well-formed ONNX model throws {@link TensorFormatException} naming the
 * byte offset, the message and field being read, and what was expected: an invalid tag or a wire
 * type the field cannot have, a length running past the end (a truncated file), a model without
 * ir_version or graph, or tensor data that does not match its dims. The whole model is checked
 * before anything is allocated in the caller's arena (a first pass allocates nothing), so a
 * declared size can never cost more memory than the bytes actually present.
 */
public final class OnnxModelReader {
    /** Integer constants up to this many elements (shapes, axes, small index tables) are kept. */
    static final int MAX_KEPT_INTEGERS = 1 << 16;

    private static final int VARINT = 0, FIXED64 = 1, LENGTH_DELIMITED = 2, START_GROUP = 3, END_GROUP = 4, FIXED32 = 5;
    private static final ValueLayout.OfFloat LITTLE_ENDIAN_FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final String source;
    /** The whole serialized model; {@code in} reads it, raw tensor data is copied straight from it. */
    private final MemorySegment bytes;
    private final CodedInputStream in;
    /** Where float constants are copied; null in the checking pass, which allocates nothing. */
    private final Arena arena;

    private OnnxModelReader(String source, MemorySegment bytes, CodedInputStream in, Arena arena) {
        this.source = source;
        this.bytes = bytes;
        this.in = in;
        this.arena = arena;
    }

    /**
     * Reads the model in {@code file}; float constants are copied into {@code arena}. The file is
     * read into memory this call owns (not mapped), so it may change while it is parsed or
     * afterwards without effect; a FIFO or device is read as a stream.
     */
    public static OnnxGraph read(Path file, Arena arena) throws IOException {
        if (TensorFiles.kind(file, "an ONNX file") == TensorFiles.Kind.STREAM) {
            try (InputStream in = Files.newInputStream(file)) {
                return read(in, file.toString(), arena);
            }
        }
        // The file's bytes are needed only while parsing: an arena of this call owns them, and
        // everything kept is copied into the caller's arena before it closes.
        try (TrackedArena whole = TrackedArena.ofConfined()) {
            MemorySegment bytes = TensorFiles.readAll(file, whole, Integer.MAX_VALUE,
                    "more than a protobuf message can hold (2 GiB); models with external data are not supported");
            return parse(file.toString(), bytes, () -> CodedInputStream.newInstance(bytes.asByteBuffer()), arena);
        }
    }

    /**
     * Reads a model from a stream (e.g. a classpath resource) to its end; {@code source} names it
     * in messages. More than 2 GiB (the most a protobuf message holds) is refused.
     */
    public static OnnxGraph read(InputStream stream, String source, Arena arena) throws IOException {
        byte[] data = stream.readNBytes(Integer.MAX_VALUE - 8);
        if (stream.read() >= 0) {
            throw new TensorFormatException(source + ": more than 2 GiB, more than a protobuf message can hold; "
                    + "models with external data are not supported");
        }
        return read(data, source, arena);
    }

    /** Reads a model held in {@code data}; float constants are copied into {@code arena}. */
    public static OnnxGraph read(byte[] data, String source, Arena arena) throws TensorFormatException {
        return parse(source, MemorySegment.ofArray(data), () -> CodedInputStream.newInstance(data), arena);
    }

    /**
     * Parses twice: first without allocating anything (every size and field checked, float data
     * not copied), then for real. A model refused for its content leaves the caller's arena as it
     * was, instead of holding the tensors read before the broken one; the second pass cannot be
     * refused, as it reads the same bytes.
     */
    private static OnnxGraph parse(String source, MemorySegment bytes, Supplier<CodedInputStream> input, Arena arena)
            throws TensorFormatException {
        parse(source, bytes, input.get(), null);
        return parse(source, bytes, input.get(), arena);
    }

    /** One pass over the model; {@code arena} null checks everything and allocates nothing. */
    private static OnnxGraph parse(String source, MemorySegment bytes, CodedInputStream in, Arena arena)
            throws TensorFormatException {
        // Raw tensor data runs to tens of MB; CodedInputStream's default limit is 100 MB per message.
        in.setSizeLimit(Integer.MAX_VALUE);
        OnnxModelReader reader = new OnnxModelReader(source, bytes, in, arena);
        try {
            return reader.model();
        } catch (TensorFormatException e) {
            throw e;
        } catch (InvalidProtocolBufferException e) {
            throw reader.malformed("ModelProto", e.getMessage(), e);
        } catch (IOException e) {
            throw reader.malformed("ModelProto", e.toString(), e);
        }
    }

    // ---- ModelProto ----

    private OnnxGraph model() throws IOException {
        if (bytes.byteSize() == 0) throw new TensorFormatException(source + ": empty file, not an ONNX model");
        long irVersion = -1;
        String producer = "";
        GraphParts graph = null;
        for (int tag; (tag = tag("ModelProto")) != 0; ) {
            switch (field(tag)) {
                case 1 -> irVersion = varint(tag, "ModelProto.ir_version (field 1)");
                case 2 -> producer = string(tag, "ModelProto.producer_name (field 2)");
                case 7 -> {
                    int limit = enter(tag, "ModelProto.graph (field 7)");
                    graph = graph();
                    in.popLimit(limit);
                }
                default -> skip(tag, "ModelProto");
            }
        }
        if (irVersion < 0) {
            throw new TensorFormatException(source + ": not an ONNX model: ModelProto has no ir_version (field 1)");
        }
        if (graph == null) throw new TensorFormatException(source + ": ONNX model has no graph (ModelProto field 7)");
        List<String> inputs = new ArrayList<>();
        for (String name : graph.inputs) if (!graph.constants.containsKey(name)) inputs.add(name);
        return new OnnxGraph(source, irVersion, producer, graph.nodes, graph.constants, inputs, graph.outputs);
    }

    private record GraphParts(List<OnnxNode> nodes, Map<String, OnnxInitializer> constants, List<String> inputs,
                              List<String> outputs) {}

    // ---- GraphProto ----

    private GraphParts graph() throws IOException {
        List<OnnxNode> nodes = new ArrayList<>();
        Map<String, OnnxInitializer> constants = new LinkedHashMap<>();
        List<String> inputs = new ArrayList<>(), outputs = new ArrayList<>();
        for (int tag; (tag = tag("GraphProto")) != 0; ) {
            switch (field(tag)) {
                case 1 -> {
                    int limit = enter(tag, "GraphProto.node[" + nodes.size() + "] (field 1)");
                    nodes.add(node(nodes.size()));
                    in.popLimit(limit);
                }
                case 5 -> {
                    String where = "GraphProto.initializer[" + constants.size() + "] (field 5)";
                    int limit = enter(tag, where);
                    OnnxInitializer t = tensor(where);
                    in.popLimit(limit);
                    constants.put(t.name(), t);
                }
                case 11, 12 -> {
                    String where = field(tag) == 11 ? "GraphProto.input (field 11)" : "GraphProto.output (field 12)";
                    int limit = enter(tag, where);
                    String name = valueInfoName(where);
                    in.popLimit(limit);
                    (field(tag) == 11 ? inputs : outputs).add(name);
                }
                default -> skip(tag, "GraphProto");
            }
        }
        // Constant nodes are constants too: their value is the node's 'value' tensor attribute.
        for (OnnxNode n : nodes) {
            OnnxAttribute value = n.attributes().get("value");
            if (n.opType().equals("Constant") && value != null && value.tensor() != null && !n.outputs().isEmpty()) {
                OnnxInitializer t = value.tensor();
                String name = n.output(0);
                constants.put(name, new OnnxInitializer(name, t.dataType(), t.dims(), t.floats(), t.integers()));
            }
        }
        return new GraphParts(nodes, constants, inputs, outputs);
    }

    private String valueInfoName(String where) throws IOException {
        String name = "";
        for (int tag; (tag = tag(where)) != 0; ) {
            if (field(tag) == 1) name = string(tag, where + ".name (field 1)");
            else skip(tag, where);
        }
        return name;
    }

    // ---- NodeProto, AttributeProto ----

    private OnnxNode node(int index) throws IOException {
        String where = "GraphProto.node[" + index + "]";
        String name = "", opType = "", domain = "";
        List<String> inputs = new ArrayList<>(), outputs = new ArrayList<>();
        Map<String, OnnxAttribute> attributes = new HashMap<>();
        for (int tag; (tag = tag(where)) != 0; ) {
            switch (field(tag)) {
                case 1 -> inputs.add(string(tag, where + ".input (field 1)"));
                case 2 -> outputs.add(string(tag, where + ".output (field 2)"));
                case 3 -> name = string(tag, where + ".name (field 3)");
                case 4 -> opType = string(tag, where + ".op_type (field 4)");
                case 7 -> domain = string(tag, where + ".domain (field 7)");
                case 5 -> {
                    int limit = enter(tag, where + ".attribute (field 5)");
                    OnnxAttribute a = attribute(where + ".attribute");
                    in.popLimit(limit);
                    attributes.put(a.name(), a);
                }
                default -> skip(tag, where);
            }
        }
        if (opType.isEmpty()) {
            throw new TensorFormatException(source + ": " + where + " '" + name + "' has no op_type (field 4)");
        }
        return new OnnxNode(name, opType, domain, inputs, outputs, attributes);
    }

    private OnnxAttribute attribute(String where) throws IOException {
        String name = "", s = "";
        float f = 0;
        long i = 0;
        OnnxInitializer t = null;
        FloatList floats = new FloatList();
        LongList ints = new LongList();
        for (int tag; (tag = tag(where)) != 0; ) {
            switch (field(tag)) {
                case 1 -> name = string(tag, where + ".name (field 1)");
                case 2 -> {
                    expect(tag, FIXED32, where + ".f (field 2)");
                    f = in.readFloat();
                }
                case 3 -> i = varint(tag, where + ".i (field 3)");
                case 4 -> s = string(tag, where + ".s (field 4)");
                case 5 -> {
                    int limit = enter(tag, where + ".t (field 5)");
                    t = tensor(where + " '" + name + "'.t");
                    in.popLimit(limit);
                }
                case 7 -> floats(tag, floats, where + ".floats (field 7)");
                case 8 -> varints(tag, ints, where + ".ints (field 8)");
                default -> skip(tag, where);
            }
        }
        return new OnnxAttribute(name, f, i, s, t, floats.toArray(), ints.toArray());
    }

    // ---- TensorProto ----

    private OnnxInitializer tensor(String where) throws IOException {
        LongList dims = new LongList();
        int dataType = 0;
        String name = "";
        long rawOffset = -1;
        int rawLength = 0;
        FloatList floatData = new FloatList();
        LongList intData = new LongList();
        long location = 0;
        for (int tag; (tag = tag(where)) != 0; ) {
            switch (field(tag)) {
                case 1 -> varints(tag, dims, where + ".dims (field 1)");
                case 2 -> dataType = (int) varint(tag, where + ".data_type (field 2)");
                case 4 -> floats(tag, floatData, where + ".float_data (field 4)");
                case 5, 7 -> varints(tag, intData, where + (field(tag) == 5 ? ".int32_data (field 5)" : ".int64_data (field 7)"));
                case 8 -> name = string(tag, where + ".name (field 8)");
                case 9 -> {
                    // raw_data is copied straight from the source bytes, without a heap copy.
                    rawLength = length(tag, where + " '" + name + "'.raw_data (field 9)");
                    rawOffset = in.getTotalBytesRead();
                    in.skipRawBytes(rawLength);
                }
                case 14 -> location = varint(tag, where + ".data_location (field 14)");
                default -> skip(tag, where);
            }
        }
        String described = where + " '" + name + "' (" + OnnxInitializer.typeName(dataType) + ", dims " + dims + ")";
        if (location == 1) {
            throw new TensorFormatException(source + ": " + described + " keeps its data in an external file "
                    + "(data_location EXTERNAL); Headroom reads self-contained ONNX files only");
        }
        long[] shape = dims.toArray();
        long count = 1;
        for (long d : shape) {
            if (d < 0 || d > Integer.MAX_VALUE) throw new TensorFormatException(source + ": " + described + " has dimension " + d);
            if (count > Long.MAX_VALUE / Long.BYTES / Math.max(1, d)) {
                throw new TensorFormatException(source + ": " + described + " has more elements than any file can hold "
                        + "(their byte size overflows 2^63)");
            }
            count *= d;
        }
        // Every declared size is checked against the bytes actually present before anything is
        // allocated: one changed byte in a dimension must not cost gigabytes.
        Tensor floats = null;
        long[] integers = null;
        if (dataType == OnnxInitializer.FLOAT) {
            if (rawOffset >= 0) {
                if (rawLength != count * Float.BYTES) {
                    throw new TensorFormatException(source + ": " + described + " needs " + count * Float.BYTES
                            + " bytes of raw_data for " + count + " floats, but raw_data holds " + rawLength);
                }
            } else if (floatData.size != count) {
                throw new TensorFormatException(source + ": " + described + " needs " + count
                        + " floats, but float_data holds " + floatData.size + " and there is no raw_data");
            }
            int[] tensorShape = shape.length == 0 ? new int[]{1} : Arrays.stream(shape).mapToInt(d -> (int) d).toArray();
            if (arena == null) return new OnnxInitializer(name, dataType, shape, null, null); // the checking pass
            floats = Tensor.allocate(arena, tensorShape);
            if (rawOffset >= 0) {
                MemorySegment.copy(bytes, LITTLE_ENDIAN_FLOAT, rawOffset, floats.segment(), ValueLayout.JAVA_FLOAT_UNALIGNED, 0, count);
            } else {
                MemorySegment.copy(floatData.values, 0, floats.segment(), ValueLayout.JAVA_FLOAT_UNALIGNED, 0, (int) count);
            }
        } else if ((dataType == OnnxInitializer.INT64 || dataType == OnnxInitializer.INT32) && count <= MAX_KEPT_INTEGERS) {
            if (rawOffset >= 0) {
                int width = dataType == OnnxInitializer.INT64 ? Long.BYTES : Integer.BYTES;
                if (rawLength != count * width) {
                    throw new TensorFormatException(source + ": " + described + " needs " + count * width
                            + " bytes of raw_data, but raw_data holds " + rawLength);
                }
                integers = new long[(int) count];
                for (int k = 0; k < count; k++) {
                    integers[k] = width == Long.BYTES
                            ? bytes.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), rawOffset + (long) k * width)
                            : bytes.get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), rawOffset + (long) k * width);
                }
            } else if (intData.size == count) {
                integers = intData.toArray();
            }
        }
        return new OnnxInitializer(name, dataType, shape, floats, integers);
    }

    // ---- wire format ----

    private static int field(int tag) {
        return tag >>> 3;
    }

    /** The next tag of {@code message}, or 0 at its end; refuses wire types ONNX never uses. */
    private int tag(String message) throws IOException {
        long at = in.getTotalBytesRead();
        int tag;
        try {
            tag = in.readTag();
        } catch (InvalidProtocolBufferException e) {
            throw new TensorFormatException(source + ": invalid protobuf tag at byte " + at + " in " + message
                    + " (" + e.getMessage() + "); expected a field of " + message + " — not an ONNX file, or a corrupted one", e);
        }
        if (tag == 0) return 0;
        int wireType = tag & 7;
        if (wireType == START_GROUP || wireType == END_GROUP || wireType > FIXED32) {
            throw new TensorFormatException(source + ": invalid protobuf tag 0x" + Integer.toHexString(tag) + " at byte " + at
                    + " in " + message + ": field " + field(tag) + " with wire type " + wireType
                    + ", which ONNX never uses (expected 0 varint, 1 fixed64, 2 length-delimited or 5 fixed32); "
                    + "not an ONNX file, or a corrupted one");
        }
        return tag;
    }

    private void expect(int tag, int wireType, String what) throws TensorFormatException {
        if ((tag & 7) != wireType) {
            throw new TensorFormatException(source + ": " + what + " must have wire type " + wireType + " ("
                    + wireName(wireType) + "), found wire type " + (tag & 7) + " (" + wireName(tag & 7) + ") at byte "
                    + (in.getTotalBytesRead() - 1) + "; not an ONNX file, or a corrupted one");
        }
    }

    private static String wireName(int wireType) {
        return switch (wireType) {
            case VARINT -> "varint";
            case FIXED64 -> "fixed64";
            case LENGTH_DELIMITED -> "length-delimited";
            case START_GROUP -> "start group";
            case END_GROUP -> "end group";
            case FIXED32 -> "fixed32";
            default -> "invalid";
        };
    }

    private long varint(int tag, String what) throws IOException {
        expect(tag, VARINT, what);
        return in.readInt64();
    }

    /** The length of a length-delimited field, checked against the bytes that remain. */
    private int length(int tag, String what) throws IOException {
        expect(tag, LENGTH_DELIMITED, what);
        long at = in.getTotalBytesRead();
        int length = in.readRawVarint32();
        long remaining = in.getBytesUntilLimit() >= 0 ? in.getBytesUntilLimit() : bytes.byteSize() - in.getTotalBytesRead();
        remaining = Math.min(remaining, bytes.byteSize() - in.getTotalBytesRead());
        if (length < 0 || length > remaining) {
            throw new TensorFormatException(source + ": " + what + " at byte " + at + " declares " + length
                    + " bytes, but only " + remaining + " remain in the enclosing message"
                    + (length >= 0 && in.getTotalBytesRead() + length > bytes.byteSize()
                    ? " (the file is truncated: " + bytes.byteSize() + " bytes)" : ""));
        }
        return length;
    }

    /** Enters an embedded message: returns the old limit for {@code popLimit}. */
    private int enter(int tag, String what) throws IOException {
        return in.pushLimit(length(tag, what));
    }

    private String string(int tag, String what) throws IOException {
        int length = length(tag, what);
        return new String(in.readRawBytes(length), StandardCharsets.UTF_8);
    }

    /** A repeated varint field, packed (one length-delimited run) or not (one varint per tag). */
    private void varints(int tag, LongList out, String what) throws IOException {
        if ((tag & 7) == LENGTH_DELIMITED) {
            int limit = in.pushLimit(length(tag, what));
            while (in.getBytesUntilLimit() > 0) out.add(in.readInt64());
            in.popLimit(limit);
        } else {
            out.add(varint(tag, what));
        }
    }

    /** A repeated float field, packed or not. */
    private void floats(int tag, FloatList out, String what) throws IOException {
        if ((tag & 7) == LENGTH_DELIMITED) {
            int length = length(tag, what);
            if (length % Float.BYTES != 0) {
                throw new TensorFormatException(source + ": " + what + " holds " + length + " bytes, not a whole number of floats");
            }
            int limit = in.pushLimit(length);
            while (in.getBytesUntilLimit() > 0) out.add(in.readFloat());
            in.popLimit(limit);
        } else {
            expect(tag, FIXED32, what);
            out.add(in.readFloat());
        }
    }

    private void skip(int tag, String message) throws IOException {
        if ((tag & 7) == LENGTH_DELIMITED) {
            in.skipRawBytes(length(tag, message + " field " + field(tag)));
        } else if (!in.skipField(tag)) {
            throw new TensorFormatException(source + ": unexpected end-group tag in " + message);
        }
    }

    private TensorFormatException malformed(String message, String detail, Exception cause) {
        return new TensorFormatException(source + ": malformed ONNX " + message + " at byte " + in.getTotalBytesRead()
                + " of " + bytes.byteSize() + ": " + detail, cause);
    }

    /** A growable float[] (float_data can be large; boxing each would be wasteful). */
    private static final class FloatList {
        float[] values = new float[16];
        int size;

        void add(float v) {
            if (size == values.length) values = Arrays.copyOf(values, size * 2);
            values[size++] = v;
        }

        float[] toArray() {
            return Arrays.copyOf(values, size);
        }
    }

    private static final class LongList {
        long[] values = new long[8];
        int size;

        void add(long v) {
            if (size == values.length) values = Arrays.copyOf(values, size * 2);
            values[size++] = v;
        }

        long[] toArray() {
            return Arrays.copyOf(values, size);
        }

        @Override
        public String toString() {
            return Arrays.toString(toArray());
        }
    }
}
