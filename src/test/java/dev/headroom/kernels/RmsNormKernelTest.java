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
 * The vector RMSNorm against its scalar twin and both against RMSNorm in double, over lengths
 * that are not multiples of the lane count, non-zero offsets, in place and out of place, with
 * the residual add; a zero row gives zeros. Sentinels around each row must survive. Runs at the
 * width {@code headroom.vector.bits} selects (the build runs kernel tests at 128, 256 and 512 bits).
 */
class RmsNormKernelTest {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final int SENTINEL = 0x7f7f7f7f;

    /** RMSNorm in double of (x + r) (the sum rounded to float, as the kernels store it); r may be null. */
    private static double[] reference(float[] x, float[] r, float[] w, float eps) {
        int n = x.length;
        double[] s = new double[n];
        double squares = 0;
        for (int j = 0; j < n; j++) {
            s[j] = r == null ? x[j] : (double) (x[j] + r[j]);
            squares += s[j] * s[j];
        }
        double inv = 1 / Math.sqrt(squares / n + eps);
        double[] y = new double[n];
        for (int j = 0; j < n; j++) y[j] = s[j] * inv * w[j];
        return y;
    }

    /** Float sums of n squares err by about √n ulp; the outputs are O(1)·w: 8·ε·√n·(1 + |y|) leaves a margin. */
    private static double tolerance(int n, double y) {
        return 8 * 0x1p-24 * Math.sqrt(Math.max(1, n)) * (1 + Math.abs(y));
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

    private static void check(float[] x, float[] r, float[] w, float eps, int offset) {
        int n = x.length;
        double[] ref = reference(x, r, w, eps);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment weight = arena.allocate((long) Math.max(1, n) * Float.BYTES);
            MemorySegment.copy(w, 0, weight, F, 0, n);
            for (RmsNorm norm : new RmsNorm[]{RmsNorm.SCALAR, RmsNorm.VECTOR}) {
                // out of place, at a different offset from the input
                MemorySegment in = row(arena, x, offset), out = row(arena, new float[n], offset + 1);
                MemorySegment res = r == null ? null : row(arena, r, offset + 2);
                if (r == null) norm.normalize(in, offset, weight, eps, out, offset + 1, n);
                else norm.addAndNormalize(in, offset, res, offset + 2, weight, eps, out, offset + 1, n);
                checkSentinels(out, offset + 1, n, norm.name());
                checkSentinels(in, offset, n, norm.name() + " (the residual sum)");
                // in place: y is x
                MemorySegment inPlace = row(arena, x, offset);
                if (r == null) norm.normalize(inPlace, offset, weight, eps, inPlace, offset, n);
                else norm.addAndNormalize(inPlace, offset, res, offset + 2, weight, eps, inPlace, offset, n);
                checkSentinels(inPlace, offset, n, norm.name() + " in place");
                for (int j = 0; j < n; j++) {
                    float y = out.getAtIndex(F, offset + 1 + j);
                    assertTrue(Math.abs(y - ref[j]) <= tolerance(n, ref[j]), norm.name() + " y[" + j + "] = " + y
                            + ", double reference " + ref[j] + " (length " + n + ", offset " + offset + ")");
                    assertEquals(y, inPlace.getAtIndex(F, offset + j), norm.name() + " in place differs at " + j);
                    if (r != null) {
                        assertEquals(x[j] + r[j], in.getAtIndex(F, offset + j), norm.name() + " x + r at " + j);
                    } else {
                        assertEquals(x[j], in.getAtIndex(F, offset + j), norm.name() + " changed its input at " + j);
                    }
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
    @ValueSource(ints = {1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 100, 255, 256, 257, 640, 1000, 4096})
    void randomRowsAtSeveralOffsets(int n) {
        SplittableRandom rnd = new SplittableRandom(n);
        for (int offset : new int[]{0, 1, 5}) {
            float[] x = random(rnd, n, -4, 4), w = random(rnd, n, -1.5, 1.5);
            check(x, null, w, 1e-5f, offset);
            check(x, random(rnd, n, -2, 2), w, 1e-6f, offset + 2);
        }
    }

    @Test
    void largeAndTinyRowsKeepTheirScale() {
        SplittableRandom rnd = new SplittableRandom(3);
        for (double magnitude : new double[]{1e-3, 1e3, 1e15}) {
            float[] x = random(rnd, 77, -magnitude, magnitude), w = random(rnd, 77, 0.5, 1.5);
            check(x, null, w, 1e-5f, 1);
        }
    }

    @Test
    void zeroRowGivesZerosNotNaN() {
        for (int n : new int[]{1, 19, 64}) {
            float[] x = new float[n], w = new float[n];
            java.util.Arrays.fill(w, 2f);
            check(x, null, w, 1e-5f, 1);
            check(x, new float[n], w, 1e-5f, 1);
        }
    }

    @Test
    void vectorMatchesScalarClosely() {
        // The twins differ in the precision of the sum of squares and its order: a few ulp of the output.
        SplittableRandom rnd = new SplittableRandom(11);
        int n = 256;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment w = row(arena, random(rnd, n, 0.5, 1.5), 0);
            float[] x = random(rnd, n, -10, 10);
            MemorySegment s = row(arena, x, 0), v = row(arena, x, 0);
            RmsNorm.SCALAR.normalize(s, 0, w, 1e-5f, s, 0, n);
            RmsNorm.VECTOR.normalize(v, 0, w, 1e-5f, v, 0, n);
            for (int j = 0; j < n; j++) {
                float a = s.getAtIndex(F, j), c = v.getAtIndex(F, j);
                assertTrue(Math.abs(a - c) <= 8 * Math.ulp(Math.max(Math.abs(a), 1f)), "y[" + j + "]: scalar " + a + ", vector " + c);
            }
        }
    }

    @Test
    void lengthZeroTouchesNothing() {
        check(new float[0], null, new float[0], 1e-5f, 2);
        check(new float[0], new float[0], new float[0], 1e-5f, 2);
    }
}
