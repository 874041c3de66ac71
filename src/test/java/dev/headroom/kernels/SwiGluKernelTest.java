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
 * The vector SwiGLU product against its scalar twin and both against silu(g)·u written the
 * textbook way in double (g / (1 + e^(−g))), over lengths that are not multiples of the lane
 * count, non-zero offsets, in place over the gate and over the up projection, the tails (g down
 * to −100 and up to 100) and ±∞, NaN. Sentinels around each row must survive.
 */
class SwiGluKernelTest {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final int SENTINEL = 0x7f7f7f7f;

    /** silu(g)·u in double, the direct formula (independent of the kernels' sign split). */
    private static double reference(float g, float u) {
        return g / (1 + Math.exp(-(double) g)) * u;
    }

    /**
     * e^x within 1.5 ulp, one division and three products in float: 8 float ulp relative, plus
     * an absolute floor for the region where the vector kernel flushes e^x below −87.3 to 0
     * (|silu(g)·u| &lt; 1e−35 there).
     */
    private static double tolerance(double y) {
        return 8 * 0x1p-24 * Math.abs(y) + 1e-35;
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

    private static void check(float[] g, float[] u, int offset) {
        int n = g.length;
        try (Arena arena = Arena.ofConfined()) {
            for (SwiGlu kernel : new SwiGlu[]{SwiGlu.SCALAR, SwiGlu.VECTOR}) {
                MemorySegment gs = row(arena, g, offset), us = row(arena, u, offset + 1), out = row(arena, new float[n], offset + 2);
                kernel.apply(gs, offset, us, offset + 1, out, offset + 2, n);
                checkSentinels(out, offset + 2, n, kernel.name());
                MemorySegment overGate = row(arena, g, offset), overUp = row(arena, u, offset + 1);
                kernel.apply(overGate, offset, us, offset + 1, overGate, offset, n);
                kernel.apply(gs, offset, overUp, offset + 1, overUp, offset + 1, n);
                checkSentinels(overGate, offset, n, kernel.name() + " over the gate");
                checkSentinels(overUp, offset + 1, n, kernel.name() + " over the up projection");
                for (int j = 0; j < n; j++) {
                    float y = out.getAtIndex(F, offset + 2 + j);
                    String what = kernel.name() + " silu(" + g[j] + ")·" + u[j] + " = " + y;
                    if (Float.isNaN(g[j]) || Float.isNaN(u[j])) {
                        assertTrue(Float.isNaN(y), what + ", expected NaN");
                    } else if (g[j] == Float.NEGATIVE_INFINITY) {
                        assertEquals(0f, y, what);
                    } else if (Float.isInfinite(g[j])) {
                        assertEquals(g[j] * u[j], y, what);
                    } else {
                        double ref = reference(g[j], u[j]);
                        assertTrue(Math.abs(y - ref) <= tolerance(ref), what + ", double reference " + ref);
                    }
                    assertEquals(Float.floatToIntBits(y), Float.floatToIntBits(overGate.getAtIndex(F, offset + j)), what + " (over the gate)");
                    assertEquals(Float.floatToIntBits(y), Float.floatToIntBits(overUp.getAtIndex(F, offset + 1 + j)), what + " (over up)");
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
    @ValueSource(ints = {0, 1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 100, 255, 256, 257, 640, 1000})
    void randomRowsAtSeveralOffsets(int n) {
        SplittableRandom rnd = new SplittableRandom(n);
        for (int offset : new int[]{0, 1, 5}) check(random(rnd, n, -8, 8), random(rnd, n, -3, 3), offset);
    }

    @Test
    void tailsAndSpecialValues() {
        float[] g = {-100f, -88f, -87f, -80f, -30f, -1e-30f, 0f, -0f, 1e-30f, 30f, 80f, 100f, 1e30f,
                Float.NEGATIVE_INFINITY, Float.POSITIVE_INFINITY, Float.NaN, 1f, -1f, 2f};
        float[] u = new float[g.length];
        java.util.Arrays.fill(u, 1.5f);
        u[u.length - 1] = Float.NaN;
        check(g, u, 3);
        // the same values in the vector body (a whole multiple of every lane count)
        float[] g64 = new float[64], u64 = new float[64];
        for (int j = 0; j < 64; j++) {
            g64[j] = g[j % g.length];
            u64[j] = u[j % u.length];
        }
        check(g64, u64, 0);
    }
}
