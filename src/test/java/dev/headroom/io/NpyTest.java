package dev.headroom.io;

import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class NpyTest {
    @TempDir
    Path dir;

    /** An .npy file byte for byte as numpy.save writes it (format 1.0, header padded to 64). */
    static byte[] numpyFile(String descr, boolean fortran, String shape, byte[] data) {
        String dict = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': " + shape + ", }";
        int pad = 64 - (10 + dict.length() + 1) % 64;
        String header = dict + " ".repeat(pad % 64) + "\n";
        ByteBuffer b = ByteBuffer.allocate(10 + header.length() + data.length).order(ByteOrder.LITTLE_ENDIAN);
        b.put(new byte[]{(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0}).putShort((short) header.length());
        b.put(header.getBytes(StandardCharsets.ISO_8859_1)).put(data);
        return b.array();
    }

    static byte[] floats(float... v) {
        ByteBuffer b = ByteBuffer.allocate(v.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) b.putFloat(f);
        return b.array();
    }

    @Test
    void readsWhatNumpyWrites() throws IOException {
        Path f = dir.resolve("a.npy");
        Files.write(f, numpyFile("<f4", false, "(2, 3)", floats(1, 2, 3, 4, 5, -6.5f)));
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Npy.read(f, arena);
            assertArrayEquals(new int[]{2, 3}, t.shape());
            assertEquals(-6.5f, t.at(1, 2));
            assertEquals(0, t.segment().address() % 64, "tensors are 64-byte aligned");
        }
    }

    @Test
    void roundTripsOneTwoAndThreeDimensions() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            for (int[] shape : new int[][]{{5}, {3, 4}, {2, 3, 5}, {1, 1, 1}}) {
                Tensor t = Tensor.allocate(arena, shape);
                for (long i = 0; i < t.size(); i++) t.set(i, i * 0.25f - 1);
                Path f = dir.resolve("t" + shape.length + ".npy");
                Npy.write(f, t);
                Tensor back = Npy.read(f, arena);
                assertArrayEquals(shape, back.shape());
                assertArrayEquals(t.toArray(), back.toArray());
                assertEquals(0, (Files.size(f) - t.byteSize()) % 64, "header padded to 64 bytes");
            }
        }
    }

    @Test
    void booleanMasksRoundTrip() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment m = arena.allocate(6);
            for (int i = 0; i < 6; i++) m.set(ValueLayout.JAVA_BYTE, i, (byte) (i % 2));
            Path f = dir.resolve("m.npy");
            Npy.writeBooleans(f, m, 2, 3);
            int[][] shape = new int[1][];
            MemorySegment back = Npy.readBooleans(f, arena, shape);
            assertArrayEquals(new int[]{2, 3}, shape[0]);
            assertArrayEquals(m.toArray(ValueLayout.JAVA_BYTE), back.toArray(ValueLayout.JAVA_BYTE));
        }
    }

    private String failure(byte[] content) throws IOException {
        Path f = dir.resolve("bad.npy");
        Files.write(f, content);
        try (Arena arena = Arena.ofConfined()) {
            return assertThrows(TensorFormatException.class, () -> Npy.read(f, arena)).getMessage();
        }
    }

    @Test
    void refusesBadInputWithMessagesThatSayWhat() throws IOException {
        byte[] good = numpyFile("<f4", false, "(2, 3)", floats(1, 2, 3, 4, 5, 6));
        byte[] badMagic = good.clone();
        badMagic[1] = 'X';
        assertTrue(failure(badMagic).contains("bad magic"));
        assertTrue(failure(numpyFile("<f8", false, "(3,)", new byte[24])).contains("dtype '<f8'"));
        assertTrue(failure(numpyFile(">f4", false, "(3,)", new byte[12])).contains("astype(np.float32)"));
        assertTrue(failure(numpyFile("<f4", true, "(2, 3)", new byte[24])).contains("Fortran order"));
        String truncated = failure(Arrays.copyOf(good, good.length - 5));
        assertTrue(truncated.contains("truncated") && truncated.contains("needs 152 bytes"), truncated);
        assertTrue(failure(Arrays.copyOf(good, 9)).contains("truncated"));
        byte[] garbled = numpyFile("<f4", false, "(2, x)", new byte[24]);
        assertTrue(failure(garbled).contains("malformed"));
        byte[] noDict = good.clone();
        noDict[10] = '[';
        assertTrue(failure(noDict).contains("malformed .npy header"));
        try (Arena arena = Arena.ofConfined()) {
            String missing = assertThrows(TensorFormatException.class, () -> Npy.read(dir.resolve("nope.npy"), arena)).getMessage();
            assertTrue(missing.contains("no such"), missing);
        }
    }

    /** An .npy file whose header is {@code dict} exactly (padded as numpy pads). */
    static byte[] withHeader(String dict, byte[] data) {
        int pad = (64 - (10 + dict.length() + 1) % 64) % 64;
        String header = dict + " ".repeat(pad) + "\n";
        ByteBuffer b = ByteBuffer.allocate(10 + header.length() + data.length).order(ByteOrder.LITTLE_ENDIAN);
        b.put(new byte[]{(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0}).putShort((short) header.length());
        b.put(header.getBytes(StandardCharsets.ISO_8859_1)).put(data);
        return b.array();
    }

    @Test
    void theHeaderIsParsedAsThePythonDictLiteralNumpyWrites() throws IOException {
        byte[] six = floats(1, 2, 3, 4, 5, 6);
        try (Arena arena = Arena.ofConfined()) {
            // What repr() and older NumPy versions write is read: any key order, spacing, trailing comma, "" quotes, 3L.
            for (String ok : new String[]{"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                    "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}", "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2,3,)}",
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }"}) {
                Path f = dir.resolve("ok.npy");
                Files.write(f, withHeader(ok, six));
                Tensor t = Npy.read(f, arena);
                assertArrayEquals(new int[]{2, 3}, t.shape(), ok);
                assertEquals(6, t.at(1, 2), ok);
            }
        }
        String[][] refused = {
                {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } x", "text after the closing brace"},
                {"{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3), }", "expected ',' or '}'"},
                {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}", "has key 'extra'; it must have exactly the keys"},
                {"{'descr': '<f4', 'shape': (2, 3), }", "has no 'fortran_order'"},
                {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'shape': (6,)}", "key 'shape' appears twice"},
                {"{'descr': '<f4', 'fortran_order': False, 'shape': (6)}", "(6) is an integer, not a tuple: write (6,)"},
                {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3.0)}", "not an integer"},
                {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}", "'fortran_order' must be True or False"},
                {"{'descr': ['<f4'], 'fortran_order': False, 'shape': (2, 3)}", "expected a string, True, False"},
                {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2, -3)}", "has dimension -2 (negative)"},
                {"{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}", "expected a string, True, False"},
                {"['descr', '<f4']", "expected '{'"},
        };
        for (String[] r : refused) {
            String m = failure(withHeader(r[0], six));
            assertTrue(m.contains("bad.npy: ") && m.contains(r[1]), r[0] + " -> " + m);
        }
        String huge = failure(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4)}", six));
        assertTrue(huge.contains("holds the integer 4611686018427387904, too large for a dimension"), huge);
        String big = failure(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2147483648, 4)}", six));
        assertTrue(big.contains("has dimension 2147483648 (Headroom's dimensions are at most 2^31 - 1)"), big);
        String overflow = failure(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2147483647, 2147483647, 2147483647)}", six));
        assertTrue(overflow.contains("its byte size overflows"), overflow);
        byte[] minor = withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", six);
        minor[7] = 1;
        assertTrue(failure(minor).contains("unsupported .npy format version 1.1"));
    }

    @Test
    void dataLongerThanTheShapeNeedsIsRefused() throws IOException {
        byte[] good = numpyFile("<f4", false, "(2, 3)", floats(1, 2, 3, 4, 5, 6));
        String one = failure(Arrays.copyOf(good, good.length + 1));
        assertTrue(one.contains("1 bytes after the data that shape [2, 3] of <f4 needs (152 bytes in all, the file has 153); "
                + "an .npy file ends with its data"), one);
        String scalar = failure(numpyFile("<f4", false, "()", floats(1, 2, 3, 4, 5, 6)));
        assertTrue(scalar.contains("20 bytes after the data that shape [] of <f4 needs"), scalar);
    }

    @Test
    void streamsAreReadToTheirEnd() throws Exception {
        byte[] good = numpyFile("<f4", false, "(2, 3)", floats(1, 2, 3, 4, 5, -6.5f));
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Npy.read(new java.io.ByteArrayInputStream(good), "standard input", arena);
            assertArrayEquals(new int[]{2, 3}, t.shape());
            assertEquals(-6.5f, t.at(1, 2));
            String trailing = assertThrows(TensorFormatException.class, () -> Npy.read(
                    new java.io.ByteArrayInputStream(Arrays.copyOf(good, good.length + 4)), "standard input", arena)).getMessage();
            assertTrue(trailing.startsWith("standard input: more bytes after the 24 data bytes"), trailing);
            String shortData = assertThrows(TensorFormatException.class, () -> Npy.read(
                    new java.io.ByteArrayInputStream(Arrays.copyOf(good, good.length - 4)), "standard input", arena)).getMessage();
            assertTrue(shortData.startsWith("standard input: the stream ended after 20 of the 24 data bytes"), shortData);
            String empty = assertThrows(TensorFormatException.class, () -> Npy.read(
                    new java.io.ByteArrayInputStream(new byte[0]), "standard input", arena)).getMessage();
            assertTrue(empty.contains("empty stream, not an .npy file"), empty);
            String text = assertThrows(TensorFormatException.class, () -> Npy.read(
                    new java.io.ByteArrayInputStream("hello".getBytes(StandardCharsets.US_ASCII)), "standard input", arena)).getMessage();
            assertTrue(text.contains("not an .npy file (bad magic 68656c6c6f"), text);

            // A FIFO is read as a stream once a writer opens it (opening it blocks until then, as for any Unix program).
            Path fifo = dir.resolve("x.npy");
            assertEquals(0, new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor());
            Thread writer = Thread.ofPlatform().start(() -> {
                try {
                    Files.write(fifo, good);
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
            Tensor fromFifo = Npy.read(fifo, arena);
            writer.join();
            assertArrayEquals(t.toArray(), fromFifo.toArray());
        }
    }

    @Test
    void aStreamDeclaringMoreThanItHoldsAllocatesOnlyWhatArrived() throws Exception {
        // 2^31 - 1 x 256 floats declared (2 TiB), 24 bytes sent: refused, and the caller's arena holds nothing.
        byte[] liar = withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2147483647, 256)}", floats(1, 2, 3, 4, 5, 6));
        long before = dev.headroom.memory.OffHeap.peakBytes();
        dev.headroom.memory.OffHeap.resetPeak();
        try (dev.headroom.memory.TrackedArena arena = dev.headroom.memory.TrackedArena.ofConfined()) {
            long base = dev.headroom.memory.OffHeap.currentBytes();
            String m = assertThrows(TensorFormatException.class, () -> Npy.read(new java.io.ByteArrayInputStream(liar), "pipe", arena))
                    .getMessage();
            assertTrue(m.startsWith("pipe: the stream ended after 24 of the 2199023254528 data bytes"), m);
            assertEquals(0, arena.allocatedBytes());
            assertTrue(dev.headroom.memory.OffHeap.peakBytes() - base <= 1 << 20, "at most the first 1 MiB chunk was gathered");
        }
        assertTrue(before >= 0);
    }

    @Test
    void aDirectoryIsNamedAsSuch() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            String m = assertThrows(TensorFormatException.class, () -> Npy.read(dir, arena)).getMessage();
            assertEquals(dir + ": is a directory, not an .npy file", m);
        }
    }
}
