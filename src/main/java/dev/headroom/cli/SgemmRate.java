package dev.headroom.cli;

import dev.headroom.blas.Blas;
import dev.headroom.blas.OpenBlas;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Matrix;

import java.lang.foreign.MemorySegment;

/**
 * OpenBLAS's own sgemm rate on this machine, measured now: the physical limit every Headroom
 * figure is set against. OpenBLAS runs with its own threads here (the number asked), on square
 * row-major matrices.
 */
final class SgemmRate {
    private SgemmRate() {}

    /** Median GFLOP/s of {@code reps} square sgemm calls of {@code size}, after one warm-up. */
    static double measure(int threads, int size, int reps) {
        int before = OpenBlas.threads();
        OpenBlas.setThreads(threads);
        try (TrackedArena arena = TrackedArena.ofShared()) {
            long n = (long) size * size;
            MemorySegment a = arena.allocate(n * Float.BYTES), b = arena.allocate(n * Float.BYTES),
                    c = arena.allocate(n * Float.BYTES);
            for (long i = 0; i < n; i++) {
                a.setAtIndex(Matrix.FLOAT, i, (i % 7) * 0.1f);
                b.setAtIndex(Matrix.FLOAT, i, (i % 5) * 0.1f);
            }
            Matrix A = Matrix.of(a, 0, size, size), B = Matrix.of(b, 0, size, size), C = Matrix.of(c, 0, size, size);
            Blas.sgemm(1f, A, false, B, false, 0f, C);
            double[] rates = new double[reps];
            for (int r = 0; r < reps; r++) {
                long t0 = System.nanoTime();
                Blas.sgemm(1f, A, false, B, false, 0f, C);
                rates[r] = 2.0 * size * size * (double) size / (System.nanoTime() - t0);
            }
            java.util.Arrays.sort(rates);
            return rates[reps / 2];
        } finally {
            OpenBlas.setThreads(before);
        }
    }
}
