package dev.headroom.model.onnx;

import dev.headroom.model.minilm.MiniLmWeights;
import dev.headroom.model.Models;

import com.google.protobuf.CodedOutputStream;
import dev.headroom.io.TensorFormatException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The ONNX reader on small models written here field by field with protobuf's
 * CodedOutputStream (so every byte is known), and on broken input: truncated files (small and
 * the real MiniLM file cut short), files that are not ONNX, wrong wire types, unexpected data
 * types, tensor data that does not fit its dims, external data. Every failure must be a
 * {@link TensorFormatException} whose message says what was expected.
 */
class OnnxModelReaderTest {
    @FunctionalInterface
    interface Body {
        void write(CodedOutputStream out) throws IOException;
    }

    static byte[] message(Body body) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        CodedOutputStream out = CodedOutputStream.newInstance(bytes);
        body.write(out);
        out.flush();
        return bytes.toByteArray();
    }

    static byte[] littleEndianFloats(float... values) {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(values.length * 4).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (float v : values) b.putFloat(v);
        return b.array();
    }

    /** TensorProto: dims (1, packed), data_type (2), name (8), raw_data (9). */
    static byte[] rawTensor(String name, int dataType, long[] dims, byte[] raw) throws IOException {
        return message(out -> {
            for (long d : dims) out.writeInt64(1, d);
            out.writeInt32(2, dataType);
            out.writeString(8, name);
            out.writeByteArray(9, raw);
        });
    }

    /** A model: ir_version 8, producer, a graph with the given initializers and one Add node. */
    static byte[] model(byte[]... initializers) throws IOException {
        byte[] weightAsFloatData = message(out -> {
            out.writeInt64(1, 3);
            out.writeInt32(2, 1);
            // float_data (field 4), packed
            out.writeTag(4, 2);
            out.writeUInt32NoTag(12);
            out.writeFloatNoTag(0.5f);
            out.writeFloatNoTag(-1.5f);
            out.writeFloatNoTag(2.25f);
            out.writeString(8, "bias");
        });
        byte[] axes = rawTensor("axes", 7, new long[]{2}, java.nio.ByteBuffer.allocate(16)
                .order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(-1).putLong(3).array());
        byte[] node = message(out -> {
            out.writeString(1, "x");
            out.writeString(1, "bias");
            out.writeString(2, "y");
            out.writeString(3, "the_add");
            out.writeString(4, "Add");
            out.writeByteArray(5, message(a -> {      // attribute: a float
                a.writeString(1, "alpha");
                a.writeFloat(2, 0.25f);
            }));
            out.writeByteArray(5, message(a -> {      // attribute: ints, not packed
                a.writeString(1, "perm");
                a.writeInt64(8, 0);
                a.writeInt64(8, 2);
                a.writeInt64(8, 1);
            }));
        });
        byte[] input = message(out -> out.writeString(1, "x"));
        byte[] output = message(out -> out.writeString(1, "y"));
        byte[] graph = message(out -> {
            out.writeByteArray(1, node);
            out.writeString(2, "tiny");
            for (byte[] init : initializers) out.writeByteArray(5, init);
            out.writeByteArray(5, weightAsFloatData);
            out.writeByteArray(5, axes);
            out.writeByteArray(11, input);
            out.writeByteArray(12, output);
        });
        return message(out -> {
            out.writeInt64(1, 8);
            out.writeString(2, "headroom-test");
            out.writeByteArray(7, graph);
        });
    }

    static byte[] tinyModel() throws IOException {
        return model(rawTensor("w", 1, new long[]{2, 3}, littleEndianFloats(1, 2, 3, 4, 5, 6)));
    }

    static TensorFormatException refused(byte[] bytes, String... expectedInMessage) {
        try (Arena arena = Arena.ofConfined()) {
            TensorFormatException e = assertThrows(TensorFormatException.class, () -> OnnxModelReader.read(bytes, "test.onnx", arena));
            assertTrue(e.getMessage().startsWith("test.onnx: "), e.getMessage());
            for (String s : expectedInMessage) assertTrue(e.getMessage().contains(s), "'" + s + "' missing from: " + e.getMessage());
            return e;
        }
    }

    @Test
    void readsInitializersNodesAndAttributes() throws Exception {
        try (Arena arena = Arena.ofConfined()) {
            OnnxGraph g = OnnxModelReader.read(tinyModel(), "tiny.onnx", arena);
            assertEquals(8, g.irVersion());
            assertEquals("headroom-test", g.producer());
            assertEquals(List.of("x"), g.inputs());
            assertEquals(List.of("y"), g.outputs());
            assertArrayEquals(new float[]{1, 2, 3, 4, 5, 6}, g.requireFloat("w", "test", 2, 3).toArray());
            assertArrayEquals(new float[]{0.5f, -1.5f, 2.25f}, g.requireFloat("bias", "test", 3).toArray());
            OnnxInitializer axes = g.constants().get("axes");
            assertEquals(OnnxInitializer.INT64, axes.dataType());
            assertArrayEquals(new long[]{-1, 3}, axes.integers());
            assertNull(axes.floats());
            OnnxNode add = g.nodes().getFirst();
            assertEquals("Add", add.opType());
            assertEquals("the_add", add.name());
            assertEquals(List.of("x", "bias"), add.inputs());
            assertEquals(0.25f, add.attributes().get("alpha").f());
            assertArrayEquals(new long[]{0, 2, 1}, add.attributes().get("perm").ints());
            assertEquals(add, g.producer("y"));
            assertEquals(List.of(add), g.consumers("bias"));
        }
    }

    @Test
    void readsAFileOnDiskTheSameWay(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("tiny.onnx");
        Files.write(file, tinyModel());
        try (Arena arena = Arena.ofConfined()) {
            OnnxGraph g = OnnxModelReader.read(file, arena);
            assertArrayEquals(new float[]{1, 2, 3, 4, 5, 6}, g.requireFloat("w", "test", 2, 3).toArray());
            TensorFormatException e = assertThrows(TensorFormatException.class,
                    () -> OnnxModelReader.read(dir.resolve("missing.onnx"), arena));
            assertTrue(e.getMessage().contains("no such ONNX file"), e.getMessage());
        }
    }

    @Test
    void everyTruncationIsRefused() throws Exception {
        byte[] whole = tinyModel();
        // Any cut inside the graph (which starts after ir_version and producer_name) loses part of it.
        int graphStart = 2 + 2 + "headroom-test".length();
        for (int cut = graphStart + 1; cut < whole.length; cut++) {
            TensorFormatException e = refused(Arrays.copyOf(whole, cut));
            assertTrue(e.getMessage().contains("truncated") || e.getMessage().contains("ended unexpectedly"),
                    "cut at " + cut + " of " + whole.length + ": " + e.getMessage());
        }
    }

    @Test
    void theRealModelCutShortIsRefused() throws Exception {
        byte[] prefix;
        try (InputStream in = Models.resource(Models.MINILM_ONNX)) {
            prefix = in.readNBytes(1 << 20);
        }
        // The graph field declares the whole 90 MB: the cut is seen before any tensor is read.
        refused(prefix, "ModelProto.graph (field 7)", "declares 90387579 bytes", "the file is truncated: 1048576 bytes");
    }

    @Test
    void filesThatAreNotOnnxAreRefused() throws Exception {
        refused(new byte[0], "empty file");
        refused("hello world".getBytes(StandardCharsets.US_ASCII), "not an ONNX file");
        refused(new byte[]{(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0x76, 0}, "test.onnx");
        refused(new byte[]{0, 0, 0, 0}, "invalid protobuf tag", "not an ONNX file");
        // Well-formed protobuf, but not a model: no ir_version, no graph.
        refused(message(out -> out.writeString(2, "just a producer")), "no ir_version (field 1)");
        refused(message(out -> out.writeInt64(1, 8)), "no graph (ModelProto field 7)");
    }

    @Test
    void aKnownFieldWithTheWrongWireTypeIsRefused() throws Exception {
        byte[] graphAsVarint = message(out -> {
            out.writeInt64(1, 8);
            out.writeInt64(7, 12345);
        });
        refused(graphAsVarint, "ModelProto.graph (field 7) must have wire type 2 (length-delimited), found wire type 0");
    }

    @Test
    void tensorDataMustMatchItsDims() throws Exception {
        refused(model(rawTensor("w", 1, new long[]{2, 3}, littleEndianFloats(1, 2, 3, 4, 5))),
                "'w'", "needs 24 bytes of raw_data for 6 floats, but raw_data holds 20");
        byte[] external = message(out -> {
            out.writeInt64(1, 4);
            out.writeInt32(2, 1);
            out.writeString(8, "far");
            out.writeInt32(14, 1);
        });
        refused(model(external), "'far'", "external file");
    }

    @Test
    void unexpectedDataTypesAndMissingInitializersAreNamed() throws Exception {
        byte[] doubles = rawTensor("w", 11, new long[]{2}, new byte[16]);
        try (Arena arena = Arena.ofConfined()) {
            OnnxGraph g = OnnxModelReader.read(model(doubles), "typed.onnx", arena);
            assertNull(g.constants().get("w").floats(), "DOUBLE data is described, not copied");
            TensorFormatException e = assertThrows(TensorFormatException.class, () -> g.requireFloat("w", "the weight", 2));
            assertTrue(e.getMessage().contains("must be FLOAT (data_type 1), got DOUBLE (data_type 11)"), e.getMessage());
            e = assertThrows(TensorFormatException.class, () -> g.requireFloat("bias", "the bias", 4));
            assertTrue(e.getMessage().contains("must have shape [4], got [3]"), e.getMessage());
            e = assertThrows(TensorFormatException.class, () -> g.requireFloat("q_proj", "the query weight", 384, 384));
            assertTrue(e.getMessage().contains("expects a constant named 'q_proj' of shape [384, 384], but the graph has none"),
                    e.getMessage());
            e = assertThrows(TensorFormatException.class, () -> MiniLmWeights.fromOnnx(g, arena));
            assertTrue(e.getMessage().contains("no input 'input_ids'"), e.getMessage());
        }
    }

    /** A model whose one initializer declares {@code dims} but holds {@code raw}; read in a tracked arena. */
    private static String refusedWithoutAllocating(long[] dims, int dataType, byte[] raw, String... expected) throws IOException {
        byte[] bytes = model(rawTensor("w", dataType, dims, raw));
        try (dev.headroom.memory.TrackedArena arena = dev.headroom.memory.TrackedArena.ofConfined()) {
            TensorFormatException e = assertThrows(TensorFormatException.class, () -> OnnxModelReader.read(bytes, "test.onnx", arena));
            for (String s : expected) assertTrue(e.getMessage().contains(s), "'" + s + "' missing from: " + e.getMessage());
            assertEquals(0, arena.allocatedBytes(), "nothing is allocated before the sizes are checked");
            return e.getMessage();
        }
    }

    @Test
    void declaredSizesAreCheckedBeforeAnythingIsAllocated() throws Exception {
        // The cases: one changed byte in a dimension declared 3.2 GB, two bytes 136 GB; 24 bytes are present.
        refusedWithoutAllocating(new long[]{200_000, 4_000}, 1, littleEndianFloats(1, 2, 3, 4, 5, 6),
                "'w'", "needs 3200000000 bytes of raw_data for 800000000 floats, but raw_data holds 24");
        refusedWithoutAllocating(new long[]{Integer.MAX_VALUE, 16}, 1, littleEndianFloats(1, 2, 3, 4, 5, 6),
                "needs 137438953408 bytes of raw_data");
        refusedWithoutAllocating(new long[]{Integer.MAX_VALUE, Integer.MAX_VALUE, Integer.MAX_VALUE}, 7, new byte[8],
                "has more elements than any file can hold");
        byte[] floatData = message(out -> {
            out.writeInt64(1, 1000);
            out.writeInt64(1, 1000);
            out.writeInt32(2, 1);
            out.writeFloat(4, 1.5f);
            out.writeString(8, "fd");
        });
        // A good tensor before the broken one: nothing of it is kept either.
        try (dev.headroom.memory.TrackedArena arena = dev.headroom.memory.TrackedArena.ofConfined()) {
            byte[] bytes = model(rawTensor("good", 1, new long[]{2}, littleEndianFloats(1, 2)), floatData);
            TensorFormatException e = assertThrows(TensorFormatException.class, () -> OnnxModelReader.read(bytes, "test.onnx", arena));
            assertTrue(e.getMessage().contains("needs 1000000 floats, but float_data holds 1"), e.getMessage());
            assertEquals(0, arena.allocatedBytes());
        }
    }

    @Test
    void aDirectoryOrAFifoIsReadAsWhatItIs(@TempDir Path dir) throws Exception {
        try (Arena arena = Arena.ofConfined()) {
            TensorFormatException e = assertThrows(TensorFormatException.class, () -> OnnxModelReader.read(dir, arena));
            assertEquals(dir + ": is a directory, not an ONNX file", e.getMessage());
            Path fifo = dir.resolve("tiny.onnx");
            assertEquals(0, new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor());
            byte[] tiny = tinyModel();
            Thread writer = Thread.ofPlatform().start(() -> {
                try {
                    Files.write(fifo, tiny);
                } catch (IOException x) {
                    throw new java.io.UncheckedIOException(x);
                }
            });
            OnnxGraph g = OnnxModelReader.read(fifo, arena);
            writer.join();
            assertArrayEquals(new float[]{1, 2, 3, 4, 5, 6}, g.requireFloat("w", "test", 2, 3).toArray());
        }
    }
}
