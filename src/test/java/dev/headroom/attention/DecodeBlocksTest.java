package dev.headroom.attention;

import dev.headroom.cache.KvDtype;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The vector decode products against their scalar twin on raw blocks: every dtype, head widths and
 * block sizes that are and are not multiples of the lane count, partly filled blocks, 1 to 9 query
 * rows (the scores loop takes four at a time, then two, then one; with 512-bit vectors the
 * weighted sum takes four), scores written at a column offset inside a wider row. Run at every
 * vector width the build tests (512, 256, 128 bits).
 */
class DecodeBlocksTest {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Test
    void vectorEqualsScalar() {
        SplittableRandom rnd = new SplittableRandom(7);
        try (Arena arena = Arena.ofConfined()) {
            for (KvDtype dtype : KvDtype.values()) {
                for (int d : new int[]{5, 16, 64, 67, 128, 136}) { // V tiles of 64 features: one partial, one, two, two and a partial
                    for (int bs : new int[]{1, 7, 16, 33}) {
                        for (int tokens : new int[]{1, bs / 2 + 1, bs}) {
                            if (tokens > bs) continue;
                            for (int R = 1; R <= 9; R++) check(arena, rnd, dtype, d, bs, tokens, R);
                        }
                    }
                }
            }
        }
    }

    /**
     * Scores of two rows in one pass (a GQA group of two query heads, unpadded) equal each row scored
     * alone, bit for bit, for float32 and int8 keys: the two-row kernels form each row's sum as the
     * one-row kernels do. The same for two full blocks in one pass (scoresOfTwo), whose pairs of rows
     * use the same kernels.
     */
    @Test
    void twoRowsAtOnceEqualEachRowAloneBitForBit() {
        SplittableRandom rnd = new SplittableRandom(13);
        try (Arena arena = Arena.ofConfined()) {
            for (KvDtype dtype : new KvDtype[]{KvDtype.F32, KvDtype.INT8}) {
                for (int d : new int[]{5, 64, 67}) {
                    // a block of one vector of tokens takes scoresOfTwo's own pass at every vector width
                    for (int bs : new int[]{16, 33, dev.headroom.kernels.Vectors.SPECIES.length()}) {
                        for (int tokens : new int[]{bs / 2 + 1, bs}) {
                            MemorySegment mem = block(arena, rnd, dtype, d, bs), other = block(arena, rnd, dtype, d, bs);
                            long scales = scalesAt(dtype, d, bs);
                            float[] q = new float[2 * d];
                            for (int i = 0; i < q.length; i++) q[i] = (float) rnd.nextDouble(-1, 1);
                            float[] both = new float[2 * tokens], alone = new float[tokens];
                            DecodeBlocks.VECTOR.scores(mem, 8, scales, dtype, d, bs, tokens, q, 2, 0.37f, both, tokens, 0);
                            float[] pair = new float[2 * 2 * bs], alonePair = new float[2 * bs];
                            if (tokens == bs) DecodeBlocks.VECTOR.scoresOfTwo(mem, 8, scales, other, 8, scales, dtype, d, bs, q, 2, 0.37f, pair, 2 * bs, 0);
                            for (int r = 0; r < 2; r++) {
                                float[] qr = Arrays.copyOfRange(q, r * d, (r + 1) * d);
                                DecodeBlocks.VECTOR.scores(mem, 8, scales, dtype, d, bs, tokens, qr, 1, 0.37f, alone, tokens, 0);
                                for (int t = 0; t < tokens; t++) {
                                    assertEquals(Float.floatToRawIntBits(alone[t]), Float.floatToRawIntBits(both[r * tokens + t]),
                                            dtype + " d=" + d + " bs=" + bs + " tokens=" + tokens + " row " + r + " token " + t);
                                }
                                if (tokens < bs) continue;
                                DecodeBlocks.VECTOR.scoresOfTwo(mem, 8, scales, other, 8, scales, dtype, d, bs, qr, 1, 0.37f, alonePair, 2 * bs, 0);
                                for (int t = 0; t < 2 * bs; t++) {
                                    assertEquals(Float.floatToRawIntBits(alonePair[t]), Float.floatToRawIntBits(pair[r * 2 * bs + t]),
                                            dtype + " two blocks d=" + d + " bs=" + bs + " row " + r + " token " + t);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /** Two full blocks scored in one pass (the vector form's own kernel when a block is one vector of tokens) equal two scalar calls. */
    @Test
    void scoresOfTwoBlocksEqualTwoScalarScores() {
        SplittableRandom rnd = new SplittableRandom(11);
        try (Arena arena = Arena.ofConfined()) {
            for (KvDtype dtype : KvDtype.values()) {
                for (int d : new int[]{5, 16, 67, 128}) {
                    for (int bs : new int[]{4, 8, 16, 7}) {
                        for (int R = 1; R <= 9; R++) {
                            MemorySegment a = block(arena, rnd, dtype, d, bs), b = block(arena, rnd, dtype, d, bs);
                            long scalesAt = scalesAt(dtype, d, bs);
                            float[] q = new float[R * d];
                            for (int i = 0; i < R * d; i++) q[i] = (float) rnd.nextDouble(-1, 1);
                            int ldS = 2 * bs + 3, col = 2;
                            float[] s1 = new float[R * ldS], s2 = new float[R * ldS];
                            DecodeBlocks.SCALAR.scoresOfTwo(a, 8, scalesAt, b, 8, scalesAt, dtype, d, bs, q, R, 0.37f, s1, ldS, col);
                            DecodeBlocks.VECTOR.scoresOfTwo(a, 8, scalesAt, b, 8, scalesAt, dtype, d, bs, q, R, 0.37f, s2, ldS, col);
                            for (int i = 0; i < R * ldS; i++) {
                                assertEquals(s1[i], s2[i], 1e-5f * (1 + Math.abs(s1[i])) * Math.sqrt(d),
                                        dtype + " d=" + d + " bs=" + bs + " R=" + R + " score " + i / ldS + "," + i % ldS);
                            }
                        }
                    }
                }
            }
        }
    }

    /** Byte offset of a {@link #block}'s scales. */
    private static long scalesAt(KvDtype dtype, int d, int bs) {
        return 8 + (long) d * bs * dtype.bytes() + 8;
    }

    /**
     * One block part (Kᵀ or V elements from byte 8, then its bs scales at {@link #scalesAt}), random
     * values of the dtype: random bytes make valid int8, and values in ±2 finite float16.
     */
    private static MemorySegment block(Arena arena, SplittableRandom rnd, KvDtype dtype, int d, int bs) {
        long elems = (long) d * bs, keys = 8, scales = scalesAt(dtype, d, bs);
        MemorySegment mem = arena.allocate(scales + bs * 4L + 64);
        for (long i = 0; i < elems; i++) {
            float v = (float) rnd.nextDouble(-2, 2);
            switch (dtype) {
                case F32 -> mem.set(F, keys + i * 4, v);
                case F16 -> mem.set(ValueLayout.JAVA_SHORT_UNALIGNED, keys + i * 2, Float.floatToFloat16(v));
                case INT8 -> mem.set(ValueLayout.JAVA_BYTE, keys + i, (byte) rnd.nextInt(-127, 128));
            }
        }
        for (int t = 0; t < bs; t++) mem.set(F, scales + t * 4L, (float) rnd.nextDouble(0.001, 0.05));
        return mem;
    }

    private static void check(Arena arena, SplittableRandom rnd, KvDtype dtype, int d, int bs, int tokens, int R) {
        MemorySegment mem = block(arena, rnd, dtype, d, bs);
        long keys = 8, scales = scalesAt(dtype, d, bs);
        float[] q = new float[R * d];
        for (int i = 0; i < R * d; i++) q[i] = (float) rnd.nextDouble(-1, 1);
        int ldS = tokens + 5, col = 3;
        float[] s1 = new float[R * ldS], s2 = new float[R * ldS];
        DecodeBlocks.SCALAR.scores(mem, keys, scales, dtype, d, bs, tokens, q, R, 0.37f, s1, ldS, col);
        DecodeBlocks.VECTOR.scores(mem, keys, scales, dtype, d, bs, tokens, q, R, 0.37f, s2, ldS, col);
        String what = dtype + " d=" + d + " bs=" + bs + " tokens=" + tokens + " R=" + R;
        for (int r = 0; r < R; r++) {
            for (int t = 0; t < ldS; t++) {
                float a = s1[r * ldS + t], b = s2[r * ldS + t];
                assertEquals(a, b, 1e-5f * (1 + Math.abs(a)) * Math.sqrt(d), what + " score " + r + "," + t);
            }
        }
        // weighted sums: probabilities in [0, 1) with some exact zeros (masked keys)
        for (int r = 0; r < R; r++) for (int t = 0; t < tokens; t++) {
            s1[r * ldS + col + t] = rnd.nextInt(4) == 0 ? 0f : (float) rnd.nextDouble();
        }
        float[] o1 = new float[R * d], o2 = new float[R * d];
        for (int i = 0; i < R * d; i++) o1[i] = o2[i] = (float) rnd.nextDouble(-1, 1);
        DecodeBlocks.SCALAR.accumulate(mem, keys, scales, dtype, d, bs, tokens, s1, ldS, col, R, o1);
        DecodeBlocks.VECTOR.accumulate(mem, keys, scales, dtype, d, bs, tokens, s1, ldS, col, R, o2);
        for (int i = 0; i < R * d; i++) {
            float a = o1[i], b = o2[i];
            assertEquals(a, b, 1e-5f * (1 + Math.abs(a)) * Math.sqrt(tokens), what + " output " + i);
        }
    }
}
