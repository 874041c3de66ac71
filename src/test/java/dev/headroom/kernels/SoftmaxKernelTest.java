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
 * The vector softmax against its scalar twin and against a double-precision softmax, over
 * lengths that are not multiples of the lane count, non-zero offsets, and the edge cases:
 * logits of ±1e4, −∞ entries, fully masked rows, length 1 and 0. Runs at whatever width
 * {@code headroom.vector.bits} selects (the build runs this class at 128, 256 and 512 bits).
 */
class SoftmaxKernelTest {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    /** Both results within 4 ulp-of-1 of each other and of the double softmax, per element. */
    private static final double TOL = 4 * 0x1p-24;

    private static double[] reference(float[] x) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : x) max = Math.max(max, v);
        double[] p = new double[x.length];
        if (max == Double.NEGATIVE_INFINITY) return p;
        double sum = 0;
        for (int j = 0; j < x.length; j++) sum += p[j] = Math.exp(x[j] - max);
        for (int j = 0; j < x.length; j++) p[j] /= sum;
        return p;
    }

    private static void check(float[] x, int offset) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = arena.allocate((long) (x.length + offset + 3) * Float.BYTES);
            MemorySegment b = arena.allocate((long) (x.length + offset + 3) * Float.BYTES);
            a.fill((byte) 0x7f); // sentinels around the row must survive
            b.fill((byte) 0x7f);
            MemorySegment.copy(x, 0, a, F, (long) offset * Float.BYTES, x.length);
            MemorySegment.copy(x, 0, b, F, (long) offset * Float.BYTES, x.length);
            Softmax.SCALAR.softmax(a, offset, x.length);
            Softmax.VECTOR.softmax(b, offset, x.length);
            double[] ref = reference(x);
            for (int j = 0; j < x.length; j++) {
                float s = a.getAtIndex(F, offset + j), v = b.getAtIndex(F, offset + j);
                assertTrue(Math.abs(s - ref[j]) <= TOL, "scalar p[" + j + "] = " + s + ", reference " + ref[j]);
                assertTrue(Math.abs(v - s) <= TOL, "vector p[" + j + "] = " + v + ", scalar " + s + " (length "
                        + x.length + ", offset " + offset + ", " + Softmax.VECTOR.name() + ")");
            }
            // the array forms, in three steps as the decode path calls them
            float[] c = new float[x.length + offset + 3];
            java.util.Arrays.fill(c, Float.intBitsToFloat(0x7f7f7f7f));
            System.arraycopy(x, 0, c, offset, x.length);
            float max = Softmax.VECTOR.max(c, offset, x.length);
            assertEquals(Softmax.SCALAR.max(x, 0, x.length), max, "array max");
            float sum = Softmax.VECTOR.expInPlace(c, offset, x.length, max);
            Softmax.VECTOR.scale(c, offset, x.length, sum > 0 ? 1f / sum : 0f);
            for (int j = 0; j < x.length; j++) {
                float s = a.getAtIndex(F, offset + j);
                assertTrue(Math.abs(c[offset + j] - s) <= TOL, "vector array p[" + j + "] = " + c[offset + j] + ", scalar " + s);
            }
            for (int j = 0; j < c.length; j++) {
                if (j < offset || j >= offset + x.length) assertEquals(0x7f7f7f7f, Float.floatToRawIntBits(c[j]), "array form wrote at " + j);
            }
            for (int j = 0; j < offset; j++) assertEquals(0x7f7f7f7f, a.getAtIndex(ValueLayout.JAVA_INT, j));
            for (int j = offset + x.length; j < offset + x.length + 3; j++) {
                assertEquals(0x7f7f7f7f, b.getAtIndex(ValueLayout.JAVA_INT_UNALIGNED, j), "vector wrote past the row at " + j);
            }
        }
    }

    /**
     * The vector max keeps four running maxima over blocks of four vectors, then one, then a
     * scalar tail: the largest value must be found wherever it sits, for every length around
     * those boundaries, and a NaN anywhere must come out as NaN (as Math.max).
     */
    @Test
    void maxFindsTheLargestAtEveryPositionAndPropagatesNaN() {
        int lanes = Vectors.lanes();
        try (Arena arena = Arena.ofConfined()) {
            for (int length = 1; length <= 9 * lanes + 3; length++) {
                MemorySegment x = arena.allocate((long) (length + 1) * Float.BYTES);
                for (int at = 0; at < length; at++) {
                    for (int j = 0; j < length; j++) x.setAtIndex(F, 1 + j, -1000f + j * 0.5f - (j == at ? 0 : 600f));
                    float expected = Softmax.SCALAR.max(x, 1, length);
                    assertEquals(-1000f + at * 0.5f, expected);
                    assertEquals(expected, Softmax.VECTOR.max(x, 1, length), "length " + length + ", largest at " + at);
                    x.setAtIndex(F, 1 + at, Float.NaN);
                    assertTrue(Float.isNaN(Softmax.VECTOR.max(x, 1, length)), "NaN at " + at + " of " + length);
                }
                // a fully masked row: every entry −∞, read from offset 0 this time
                for (int j = 0; j < length; j++) x.setAtIndex(F, j, Float.NEGATIVE_INFINITY);
                assertEquals(Float.NEGATIVE_INFINITY, Softmax.VECTOR.max(x, 0, length), "all −∞, length " + length);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 15, 16, 17, 31, 33, 63, 64, 65, 100, 257, 1000})
    void randomRowsAtSeveralOffsets(int length) {
        SplittableRandom r = new SplittableRandom(length);
        for (int offset : new int[]{0, 1, 3, 7}) {
            float[] x = new float[length];
            for (int j = 0; j < length; j++) x[j] = (float) r.nextDouble(-20, 20);
            check(x, offset);
        }
    }

    @Test
    void vectorFillEqualsTheScalarLoop() {
        try (Arena arena = Arena.ofConfined()) {
            for (int count : new int[]{0, 1, 15, 16, 17, 100}) {
                for (int offset : new int[]{0, 3}) {
                    MemorySegment s = arena.allocate((long) (count + offset + 2) * Float.BYTES);
                    Vectors.fill(s, offset, count, -2.5f);
                    for (int j = 0; j < count + offset + 2; j++) {
                        assertEquals(j >= offset && j < offset + count ? -2.5f : 0f, s.getAtIndex(F, j), "count " + count + " offset " + offset + " at " + j);
                    }
                }
            }
        }
    }

    @Test
    void hugeLogitsDoNotOverflow() {
        float[] x = new float[37];
        for (int j = 0; j < x.length; j++) x[j] = j % 2 == 0 ? 1e4f : -1e4f;
        x[5] = 1e4f - 1;
        check(x, 1);
    }

    @Test
    void negativeInfinityEntriesGetZero() {
        float[] x = new float[41];
        for (int j = 0; j < x.length; j++) x[j] = j % 3 == 0 ? Float.NEGATIVE_INFINITY : j * 0.1f;
        check(x, 2);
    }

    @Test
    void fullyMaskedRowBecomesZerosNotNaN() {
        for (int len : new int[]{1, 16, 35}) {
            float[] x = new float[len];
            java.util.Arrays.fill(x, Float.NEGATIVE_INFINITY);
            check(x, 1);
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment s = arena.allocate((long) len * Float.BYTES);
                MemorySegment.copy(x, 0, s, F, 0, len);
                Softmax.VECTOR.softmax(s, 0, len);
                for (int j = 0; j < len; j++) assertEquals(0f, s.getAtIndex(F, j));
            }
        }
    }

    @Test
    void lengthOneIsOneAndLengthZeroTouchesNothing() {
        check(new float[]{-3.5f}, 3);
        check(new float[0], 2);
    }

    @Test
    void vectorExpWithinOneAndAHalfUlpOfMathExp() {
        int lanes = Vectors.lanes();
        try (Arena arena = Arena.ofConfined()) {
            int n = 1 << 16;
            MemorySegment x = arena.allocate((long) n * Float.BYTES);
            SplittableRandom r = new SplittableRandom(3);
            for (int i = 0; i < n; i++) x.setAtIndex(F, i, (float) r.nextDouble(-87.3, 0));
            double worstUlps = 0;
            for (int i = 0; i < n; i += lanes) {
                var v = VectorMath.exp(jdk.incubator.vector.FloatVector.fromMemorySegment(Vectors.SPECIES, x,
                        (long) i * Float.BYTES, Vectors.ORDER));
                for (int l = 0; l < lanes; l++) {
                    double exact = Math.exp(x.getAtIndex(F, i + l));
                    worstUlps = Math.max(worstUlps, Math.abs(v.lane(l) - exact) / Math.ulp((float) exact));
                }
            }
            assertTrue(worstUlps <= 1.5, "worst error " + worstUlps + " ulp");
            var below = VectorMath.exp(jdk.incubator.vector.FloatVector.broadcast(Vectors.SPECIES, -100f));
            var ninf = VectorMath.exp(jdk.incubator.vector.FloatVector.broadcast(Vectors.SPECIES, Float.NEGATIVE_INFINITY));
            var zero = VectorMath.exp(jdk.incubator.vector.FloatVector.broadcast(Vectors.SPECIES, 0f));
            assertEquals(0f, below.lane(0));
            assertEquals(0f, ninf.lane(lanes - 1));
            assertEquals(1f, zero.lane(0));
        }
    }
}
