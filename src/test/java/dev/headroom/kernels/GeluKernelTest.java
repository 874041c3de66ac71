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
 * The vector GELU against its scalar twin and both against GELU in double with Φ computed by
 * numerical integration (Simpson's rule), an erf written independently of the kernels' formula;
 * over lengths that are not multiples of the lane count, non-zero offsets, with and without
 * bias, the tails (u down to −20 and up to 20) and ±∞, NaN.
 */
class GeluKernelTest {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final int SENTINEL = 0x7f7f7f7f;

    /** erfc(z) for z ≥ 0 as (2/√π)∫_z^{z+10} e^{−t²} dt by composite Simpson (the rest is below 1e−43). */
    static double erfc(double z) {
        int steps = 20_000;
        double h = 10.0 / steps, sum = Math.exp(-z * z) + Math.exp(-(z + 10) * (z + 10));
        for (int i = 1; i < steps; i++) {
            double t = z + i * h;
            sum += (i % 2 == 1 ? 4 : 2) * Math.exp(-t * t);
        }
        return 2 / Math.sqrt(Math.PI) * sum * h / 3;
    }

    /** u·Φ(u) in double. */
    static double reference(double u) {
        double e = erfc(Math.abs(u) / Math.sqrt(2));
        return u * (u >= 0 ? 1 - 0.5 * e : 0.5 * e);
    }

    /**
     * The erfc formula's fractional error is below 1.2e−7. For negative u the vector kernel's
     * exponent −z² + P(t), z² = u²/2, is a float sum whose absolute error (a few ulp of z² and of
     * P, plus VectorMath.exp's 1.5 ulp) becomes a relative error of GELU(u): allowed 1e−6 + 2.4e−7·z²
     * relative, e.g. 4e−6 at u = −5, where GELU(u) is −1.1e−6, so absolutely negligible.
     */
    private static double tolerance(double u, double y) {
        // Below Gelu.ZERO_BELOW both kernels return 0, where |GELU| < 5e−35: that is the absolute floor.
        return (1e-6 + 2.4e-7 * u * u / 2) * Math.abs(y) + 5e-35;
    }

    private static void check(float[] x, float[] bias, int offset) {
        int n = x.length;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment b = null;
            if (bias != null) {
                b = arena.allocate((long) Math.max(1, n) * Float.BYTES);
                MemorySegment.copy(bias, 0, b, F, 0, n);
            }
            float[][] results = new float[2][];
            Gelu[] kernels = {Gelu.SCALAR, Gelu.VECTOR};
            for (int k = 0; k < 2; k++) {
                MemorySegment s = arena.allocate((long) (n + offset + 3) * Float.BYTES);
                s.fill((byte) 0x7f);
                MemorySegment.copy(x, 0, s, F, (long) offset * Float.BYTES, n);
                kernels[k].apply(s, offset, n, b);
                for (int j = 0; j < offset; j++) assertEquals(SENTINEL, s.getAtIndex(ValueLayout.JAVA_INT_UNALIGNED, j));
                for (int j = offset + n; j < offset + n + 3; j++) {
                    assertEquals(SENTINEL, s.getAtIndex(ValueLayout.JAVA_INT_UNALIGNED, j), kernels[k].name() + " wrote past the row");
                }
                results[k] = new float[n];
                MemorySegment.copy(s, F, (long) offset * Float.BYTES, results[k], 0, n);
            }
            for (int j = 0; j < n; j++) {
                float u = x[j] + (bias == null ? 0f : bias[j]);
                double ref = reference(u);
                for (int k = 0; k < 2; k++) {
                    float y = results[k][j];
                    assertTrue(Math.abs(y - ref) <= tolerance(u, ref), kernels[k].name() + " GELU(" + u + ") = " + y
                            + ", reference " + ref + " (length " + n + ", offset " + offset + ")");
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
    @ValueSource(ints = {1, 2, 3, 15, 16, 17, 31, 33, 63, 65, 100, 383, 1536})
    void randomRowsAtSeveralOffsets(int n) {
        SplittableRandom rnd = new SplittableRandom(n);
        for (int offset : new int[]{0, 1, 6}) {
            check(random(rnd, n, -6, 6), null, offset);
            check(random(rnd, n, -6, 6), random(rnd, n, -1, 1), offset + 1);
        }
    }

    @Test
    void tailsAndSpecialPoints() {
        float[] x = new float[401];
        for (int j = 0; j < x.length; j++) x[j] = -20f + j * 0.1f;
        check(x, null, 3);
        check(new float[]{0f, -0f, 1e-30f, -1e-30f, 1f, -1f, 0.5f, -0.5f, 3f, -3f, 12f, -12f, 13.5f, -13.5f}, null, 1);
    }

    @Test
    void infinitiesAndNaN() {
        try (Arena arena = Arena.ofConfined()) {
            for (Gelu g : new Gelu[]{Gelu.SCALAR, Gelu.VECTOR}) {
                int n = 3 * Vectors.lanes() + 1; // the special values in vector lanes and in the tail
                MemorySegment s = arena.allocate((long) n * Float.BYTES);
                for (int j = 0; j < n; j++) {
                    s.setAtIndex(F, j, switch (j % 3) {
                        case 0 -> Float.POSITIVE_INFINITY;
                        case 1 -> Float.NEGATIVE_INFINITY;
                        default -> Float.NaN;
                    });
                }
                g.apply(s, 0, n, null);
                for (int j = 0; j < n; j++) {
                    float y = s.getAtIndex(F, j);
                    switch (j % 3) {
                        case 0 -> assertEquals(Float.POSITIVE_INFINITY, y, g.name() + " GELU(+inf)");
                        case 1 -> assertEquals(0f, y, g.name() + " GELU(-inf)");
                        default -> assertTrue(Float.isNaN(y), g.name() + " GELU(NaN) = " + y);
                    }
                }
            }
        }
    }

    @Test
    void vectorMatchesScalarClosely() {
        SplittableRandom rnd = new SplittableRandom(5);
        float[] x = random(rnd, 4099, -8, 8);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate((long) x.length * Float.BYTES), v = arena.allocate((long) x.length * Float.BYTES);
            MemorySegment.copy(x, 0, s, F, 0, x.length);
            MemorySegment.copy(x, 0, v, F, 0, x.length);
            Gelu.SCALAR.apply(s, 0, x.length, null);
            Gelu.VECTOR.apply(v, 0, x.length, null);
            for (int j = 0; j < x.length; j++) {
                float a = s.getAtIndex(F, j), c = v.getAtIndex(F, j);
                assertTrue(Math.abs(a - c) <= tolerance(x[j], a), "GELU(" + x[j] + "): scalar " + a + ", vector " + c);
            }
        }
    }
}
