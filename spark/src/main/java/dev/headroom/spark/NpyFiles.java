package dev.headroom.spark;

import dev.headroom.io.Npy;
import dev.headroom.tensor.Matrix;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;

/**
 * Parts of float32 .npy matrices: a range of columns read without reading the rest (what a task
 * needs of the projected queries, keys and values, stored features × tokens), and a file written
 * header first and then in row blocks at their offsets (the attention job's output, as blocks
 * arrive from tasks in any order).
 */
final class NpyFiles {
    private NpyFiles() {}

    /** Columns [c0, c1) of the 2-D float32 .npy matrix in {@code file}, as a new (rows, c1 − c0) matrix in {@code arena}. */
    static Matrix readColumns(Path file, int c0, int c1, Arena arena) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            Npy.Header h = Npy.header(ch, file);
            if (h.shape().length != 2 || h.itemSize() != Float.BYTES) {
                throw new IOException(file + " holds " + h.descr() + " " + Arrays.toString(h.shape()) + ", not a float32 matrix");
            }
            int rows = h.shape()[0], cols = h.shape()[1];
            if (c0 < 0 || c1 > cols || c0 > c1) {
                throw new IllegalArgumentException("columns [" + c0 + ", " + c1 + ") of " + file + ", which has " + cols);
            }
            int width = c1 - c0;
            /* (rows, width) row-major: row r is columns [c0, c1) of the file's row r. */
            MemorySegment m = arena.allocate(Math.max(1, (long) rows * width * Float.BYTES), 64);
            for (int r = 0; r < rows; r++) {
                ByteBuffer dst = m.asSlice((long) r * width * Float.BYTES, (long) width * Float.BYTES).asByteBuffer();
                long at = h.dataOffset() + ((long) r * cols + c0) * Float.BYTES;
                while (dst.hasRemaining()) {
                    int read = ch.read(dst, at + dst.position());
                    if (read < 0) throw new IOException(file + " ended while reading row " + r);
                }
            }
            return Matrix.of(m, 0, rows, width);
        }
    }

    /**
     * Creates {@code file} as a float32 C-order .npy of {@code shape} (version 1.0, header padded
     * to 64 bytes as NumPy writes it), its data not yet written; returns where the data starts.
     */
    static long create(Path file, int... shape) throws IOException {
        ByteBuffer pre = Npy.header("<f4", shape);
        long elements = 1;
        for (int d : shape) elements *= d;
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE)) {
            while (pre.hasRemaining()) ch.write(pre);
            ch.write(ByteBuffer.allocate(1), pre.limit() + elements * Float.BYTES - 1); // the file's full size, data zero
        }
        return pre.limit();
    }

    /** Writes {@code rows} (row-major floats) at float index {@code at} of the data that starts at byte {@code dataOffset}. */
    static void write(FileChannel ch, long dataOffset, long at, float[] rows) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(rows.length * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(rows);
        long position = dataOffset + at * Float.BYTES;
        while (b.hasRemaining()) position += ch.write(b, position);
    }
}
