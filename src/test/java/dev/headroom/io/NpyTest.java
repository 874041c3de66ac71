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
}
