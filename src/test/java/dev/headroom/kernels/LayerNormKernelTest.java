package dev.headroom.kernels;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The vector LayerNorm against its scalar twin and both against a double-precision LayerNorm,
 * over lengths that are not multiples of the lane count, non-zero offsets, rows far from zero
 * (where E[x²] − μ² would cancel), a constant row (σ = 0: eps decides), and in-place use.
 * Sentinels around each row must survive. Runs at whatever width {@code headroom.vector.bits}
 * selects (the build runs the kernel tests at 128, 256 and 512 bits).
 */
class LayerNormKernelTest {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final int SENTINEL = 0x7f7f7f7f;

    /** LN in double of (x + r), r may be null. */
    private static double[] reference(float[] x, float[] r, float[] gamma, float[] beta, float eps) {
        int n = x.length;
        double[] s = new double[n];
        for (int j = 0; j < n; j++) s[j] = r == null ? x[j] : (double) (x[j] + r[j]); // the kernels round the sum to float
        double mean = 0;
        for (double v : s) mean += v;
        mean /= n;
        double var = 0;
        for (double v : s) var += (v - mean) * (v - mean);
        var /= n;
        double inv = 1 / Math.sqrt(var + eps);
        double[] y = new double[n];
        for (int j = 0; j < n; j++) y[j] = (s[j] - mean) * inv * gamma[j] + beta[j];
        return y;
    }

    /**
     * Error allowed against the double reference: float rounding in sums of n terms grows about
     * like √n, and the normalised values are O(1)·γ; 8·ε·√n·(1 + |y|) leaves a safe margin.
     */
    private static double tolerance(int n, double y) {
        return 8 * 0x1p-24 * Math.sqrt(n) * (1 + Math.abs(y));
    }

    private static MemorySegment row(Arena arena, float[] values, int offset) {
        MemorySegment s = arena.allocate((long) (values.length + offset + 3) * Float.BYTES);
        s.fill((byte) 0x7f);
        MemorySegment.copy(values, 0, s, F, (long) offset * Float.BYTES, values.length);
        return s;
    }

    private static void checkSentinels(MemorySegment s, int offset, int length, String what) {
        for (int j = 0; j < offset; j++) assertEquals(SENTINEL, s.getAtIndex(ValueLayout.JAVA_INT_UNALIGNED, j), what + " wrote before the row at " + j);
        for (int j = offset + length; j < offset + length + 3; j++) {
            assertEquals(SENTINEL, s.getAtIndex(ValueLayout.JAVA_INT_UNALIGNED, j), what + " wrote past the row at " + j);
        }
    }

    private static void check(float[] x, float[] r, float[] gamma, float[] beta, float eps, int offset) {
        int n = x.length;
        double[] ref = reference(x, r, gamma, beta, eps);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment g = arena.allocate((long) Math.max(1, n) * Float.BYTES), b = arena.allocate((long) Math.max(1, n) * Float.BYTES);
            MemorySegment.copy(gamma, 0, g, F, 0, n);
            MemorySegment.copy(beta, 0, b, F, 0, n);
            for (LayerNorm ln : new LayerNorm[]{LayerNorm.SCALAR, LayerNorm.VECTOR}) {
                // out of place, at a different offset from the input
                MemorySegment in = row(arena, x, offset), out = row(arena, new float[n], offset + 1);
                MemorySegment res = r == null ? null : row(arena, r, offset + 2);
                if (r == null) ln.normalize(in, offset, g, b, eps, out, offset + 1, n);
                else ln.addAndNormalize(in, offset, res, offset + 2, g, b, eps, out, offset + 1, n);
                checkSentinels(out, offset + 1, n, ln.name());
                // in place: y is x
                MemorySegment inPlace = row(arena, x, offset);
                if (r == null) ln.normalize(inPlace, offset, g, b, eps, inPlace, offset, n);
                else ln.addAndNormalize(inPlace, offset, res, offset + 2, g, b, eps, inPlace, offset, n);
                checkSentinels(inPlace, offset, n, ln.name() + " in place");
                for (int j = 0; j < n; j++) {
                    float y = out.getAtIndex(F, offset + 1 + j);
                    assertTrue(Math.abs(y - ref[j]) <= tolerance(n, ref[j]), ln.name() + " y[" + j + "] = " + y
                            + ", double reference " + ref[j] + " (length " + n + ", offset " + offset + ")");
                    assertEquals(y, inPlace.getAtIndex(F, offset + j), ln.name() + " in place differs at " + j);
                }
            }
        }
    }

    private static float[] random(SplittableRandom rnd, int n, double lo, double hi) {
        float[] v = new float[n];
        for (int j = 0; j < n; j++) v[j] = (float) rnd.nextDouble(lo, hi);
        return v;
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 100, 383, 384, 385, 1000, 1536})
    void randomRowsAtSeveralOffsets(int n) {
        SplittableRandom rnd = new SplittableRandom(n);
        for (int offset : new int[]{0, 1, 5}) {
            float[] x = random(rnd, n, -4, 4), gamma = random(rnd, n, 0.5, 1.5), beta = random(rnd, n, -0.2, 0.2);
            check(x, null, gamma, beta, 1e-12f, offset);
            check(x, random(rnd, n, -2, 2), gamma, beta, 1e-5f, offset + 2);
        }
    }

    @Test
    void rowsFarFromZeroDoNotCancel() {
        SplittableRandom rnd = new SplittableRandom(7);
        for (int n : new int[]{37, 384}) {
            float[] x = random(rnd, n, 1000 - 1, 1000 + 1), gamma = random(rnd, n, 0.5, 1.5), beta = new float[n];
            check(x, null, gamma, beta, 1e-12f, 3);
        }
    }

    @Test
    void constantRowGivesBetaAndNoNaN() {
        for (int n : new int[]{1, 19, 64}) {
            float[] x = new float[n], gamma = new float[n], beta = new float[n];
            java.util.Arrays.fill(x, 2.5f);
            java.util.Arrays.fill(gamma, 3f);
            for (int j = 0; j < n; j++) beta[j] = j * 0.25f;
            check(x, null, gamma, beta, 1e-12f, 1);
        }
    }

    @Test
    void vectorMatchesScalarClosely() {
        // The twins differ only in summation order and an fma: a few ulp of the output.
        SplittableRandom rnd = new SplittableRandom(11);
        int n = 384;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment g = row(arena, random(rnd, n, 0.5, 1.5), 0), b = row(arena, random(rnd, n, -1, 1), 0);
            float[] x = random(rnd, n, -10, 10);
            MemorySegment s = row(arena, x, 0), v = row(arena, x, 0);
            LayerNorm.SCALAR.normalize(s, 0, g, b, 1e-12f, s, 0, n);
            LayerNorm.VECTOR.normalize(v, 0, g, b, 1e-12f, v, 0, n);
            for (int j = 0; j < n; j++) {
                float a = s.getAtIndex(F, j), c = v.getAtIndex(F, j);
                assertTrue(Math.abs(a - c) <= 8 * Math.ulp(Math.max(Math.abs(a), 1f)), "y[" + j + "]: scalar " + a + ", vector " + c);
            }
        }
    }

    @Test
    void lengthZeroTouchesNothing() {
        check(new float[0], null, new float[0], new float[0], 1e-12f, 2);
        check(new float[0], new float[0], new float[0], new float[0], 1e-12f, 2);
    }
}
