package dev.headroom.blas;

import dev.headroom.tensor.Matrix;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class BlasTest {
    private static Matrix random(Arena arena, int rows, int cols, int ld, long offset, long seed) {
        MemorySegment s = arena.allocate((offset + (long) rows * ld) * Float.BYTES, 64);
        SplittableRandom r = new SplittableRandom(seed);
        for (long i = 0; i < s.byteSize() / 4; i++) s.setAtIndex(Matrix.FLOAT, i, (float) r.nextDouble(-1, 1));
        return new Matrix(s, offset, rows, cols, ld);
    }

    @Test
    void stridedTransposedProductsMatchADoubleReference() {
        try (Arena arena = Arena.ofConfined()) {
            int m = 7, n = 13, k = 5;
            for (boolean ta : new boolean[]{false, true}) {
                for (boolean tb : new boolean[]{false, true}) {
                    Matrix a = ta ? random(arena, k, m, m + 3, 1, 1) : random(arena, m, k, k + 2, 3, 1);
                    Matrix b = tb ? random(arena, n, k, k + 1, 2, 2) : random(arena, k, n, n + 5, 0, 2);
                    Matrix c = random(arena, m, n, n + 4, 5, 3);
                    double[][] expect = new double[m][n];
                    for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) {
                        double acc = 0;
                        for (int p = 0; p < k; p++) acc += (ta ? a.get(p, i) : a.get(i, p)) * (double) (tb ? b.get(j, p) : b.get(p, j));
                        expect[i][j] = 2 * acc + 0.5 * c.get(i, j);
                    }
                    Blas.sgemm(2f, a, ta, b, tb, 0.5f, c);
                    for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) {
                        assertTrue(Math.abs(c.get(i, j) - expect[i][j]) < 1e-5, "C(" + i + "," + j + ") transA=" + ta + " transB=" + tb);
                    }
                }
            }
        }
    }

    @Test
    void refusesMismatchedShapesBeforeCallingNative() {
        try (Arena arena = Arena.ofConfined()) {
            Matrix a = random(arena, 4, 3, 3, 0, 1), b = random(arena, 5, 6, 6, 0, 2), c = random(arena, 4, 6, 6, 0, 3);
            String msg = assertThrows(IllegalArgumentException.class, () -> Blas.sgemm(1f, a, false, b, false, 0f, c)).getMessage();
            assertTrue(msg.contains("op(A) is 4×3") && msg.contains("op(B) is 5×6"), msg);
        }
    }

    @Test
    void refusesLeadingDimensionsAndExtentsThatDoNotFit() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate(100 * Float.BYTES);
            String ld = assertThrows(IllegalArgumentException.class,
                    () -> Blas.sgemm(false, false, 4, 4, 4, 1f, s, 0, 3, s, 0, 4, 0f, s, 0, 4)).getMessage();
            assertTrue(ld.contains("ld=3") && ld.contains("cols=4"), ld);
            String extent = assertThrows(IllegalArgumentException.class,
                    () -> Blas.sgemm(false, false, 10, 11, 10, 1f, s, 0, 10, s, 0, 11, 0f, s, 0, 11)).getMessage();
            assertTrue(extent.contains("needs 110 floats, but the segment holds 100"), extent);
            String offset = assertThrows(IllegalArgumentException.class,
                    () -> Blas.sgemm(false, false, 2, 2, 2, 1f, s, 97, 2, s, 0, 2, 0f, s, 0, 2)).getMessage();
            assertTrue(offset.contains("at offset 97"), offset);
        }
    }

    @Test
    void refusesHeapAndClosedSegments() {
        Matrix heap = Matrix.of(MemorySegment.ofArray(new float[4]), 0, 2, 2);
        Matrix closed;
        try (Arena arena = Arena.ofConfined()) {
            Matrix ok = random(arena, 2, 2, 2, 0, 1);
            String msg = assertThrows(IllegalArgumentException.class, () -> Blas.sgemm(1f, heap, false, ok, false, 0f, ok)).getMessage();
            assertTrue(msg.contains("heap segment"), msg);
            closed = ok;
        }
        Matrix c = closed;
        String msg = assertThrows(IllegalStateException.class, () -> Blas.sgemm(1f, c, false, c, false, 0f, c)).getMessage();
        assertTrue(msg.contains("already closed"), msg);
    }
}
