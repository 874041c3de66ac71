package dev.headroom.attention;

import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * The two products decode attention makes on one cache block of one key/value head, read in
 * place (see {@link dev.headroom.cache.KvCache} for the block layout): the scores of R query rows
 * against the block's keys, and the probability-weighted sum of its values into R output rows.
 * Decode is memory-bound (each key and value is read once per step and used by the few query
 * rows of its group), and its products are too small for sgemm's call and packing overhead, so
 * they are written here: {@link #VECTOR} on the Vector API, {@link #SCALAR} its plain twin with
 * the same signature, which tests hold the vector one to.
 *
 * <p>Argument conventions: {@code mem} is the block's slab; {@code keys} the byte offset of the
 * block's Kᵀ (d, bs) elements of this head, {@code values} of its V (bs, d) in tiles of features
 * ({@link KvCache#valueElement}), and
 * {@code keyScales}/{@code valueScales} of the int8 scales (bs floats each; unused otherwise);
 * only the first {@code tokens} ≤ bs slots hold keys. The small per-row operands live in Java
 * arrays (a worker's own, reused): query rows {@code q[r·d ..]}, scores {@code S[r·ldS + col ..]},
 * output rows {@code O[r·d ..]}, so that their reads need no memory-session checks.
 */
interface DecodeBlocks {

    /** S[r·ldS + col + t] = scale · q_r · k_t for rows r &lt; R and tokens t &lt; tokens. */
    void scores(MemorySegment mem, long keys, long keyScales, KvDtype dtype, int d, int bs, int tokens,
                float[] q, int R, float scale, float[] S, int ldS, int col);

    /**
     * The scores of two full blocks (bs tokens each, of the same dtype, anywhere in the cache): block
     * a's to columns col .. col + bs, block b's to col + bs .. col + 2bs. The same numbers as two
     * {@link #scores} calls, which is what this default does; the vector form reads both in one
     * pass, so that each query element it broadcasts serves a key vector of each block.
     */
    default void scoresOfTwo(MemorySegment memA, long keysA, long keyScalesA, MemorySegment memB, long keysB, long keyScalesB,
                             KvDtype dtype, int d, int bs, float[] q, int R, float scale, float[] S, int ldS, int col) {
        scores(memA, keysA, keyScalesA, dtype, d, bs, bs, q, R, scale, S, ldS, col);
        scores(memB, keysB, keyScalesB, dtype, d, bs, bs, q, R, scale, S, ldS, col + bs);
    }

    /** O_r += Σ_t S[r·ldS + col + t] · v_t for rows r &lt; R and tokens t &lt; tokens. */
    void accumulate(MemorySegment mem, long values, long valueScales, KvDtype dtype, int d, int bs, int tokens,
                    float[] S, int ldS, int col, int R, float[] O);

    DecodeBlocks SCALAR = new Scalar();
    DecodeBlocks VECTOR = new Vector();

    /** The plain twin: one element at a time, dequantising as it reads. */
    final class Scalar implements DecodeBlocks {
        private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

        static float element(MemorySegment mem, long base, long i, KvDtype dtype) {
            return switch (dtype) {
                case F32 -> mem.get(F, base + i * Float.BYTES);
                case F16 -> Float.float16ToFloat(mem.get(ValueLayout.JAVA_SHORT_UNALIGNED, base + i * 2));
                case INT8 -> mem.get(ValueLayout.JAVA_BYTE, base + i);
            };
        }

        static float tokenScale(MemorySegment mem, long scales, int t, KvDtype dtype) {
            return dtype == KvDtype.INT8 ? mem.get(F, scales + (long) t * Float.BYTES) : 1f;
        }

        @Override
        public void scores(MemorySegment mem, long keys, long keyScales, KvDtype dtype, int d, int bs, int tokens,
                           float[] q, int R, float scale, float[] S, int ldS, int col) {
            for (int r = 0; r < R; r++) {
                for (int t = 0; t < tokens; t++) {
                    float dot = 0;
                    for (int f = 0; f < d; f++) dot += q[r * d + f] * element(mem, keys, (long) f * bs + t, dtype);
                    S[r * ldS + col + t] = dot * tokenScale(mem, keyScales, t, dtype) * scale;
                }
            }
        }

        @Override
        public void accumulate(MemorySegment mem, long values, long valueScales, KvDtype dtype, int d, int bs, int tokens,
                               float[] S, int ldS, int col, int R, float[] O) {
            for (int r = 0; r < R; r++) {
                for (int t = 0; t < tokens; t++) {
                    float p = S[r * ldS + col + t] * tokenScale(mem, valueScales, t, dtype);
                    for (int f = 0; f < d; f++) O[r * d + f] += p * element(mem, values, KvCache.valueElement(d, bs, t, f), dtype);
                }
            }
        }
    }

    /**
     * The Vector API form. Scores: the lanes run over a block's tokens (Kᵀ rows are contiguous over
     * tokens), four query rows at a time and the features in two interleaved halves, so eight
     * independent multiply-add chains hide the latency and each Kᵀ row is loaded once per four
     * rows (then two rows, four chains each, as one row sums them); no horizontal sums.
     * Weighted sum: the lanes run over features, one tile of V at a time
     * ({@link KvCache#VALUE_TILE} features, whose token rows are contiguous), four vectors of
     * features for four output rows (sixteen chains; two rows where registers are fewer), so each
     * value is read from memory once per step, in order.
     * int8 converts bytes to floats in registers and applies the per-token scale once per score
     * (keys) or folds it into the probability (values). float16 has no vector conversion in this
     * JDK's Vector API, so its blocks are converted to float32 in a per-thread buffer first.
     *
     * <p>Every inner loop is a small method of its own, one per dtype, without branches on the
     * dtype or masks inside: C2 inlines the Vector API only while a method stays within its
     * inlining budget, and a larger one fell back to boxed vectors (seen in profiles as
     * {@code VectorSupport.ternaryOp} frames). Token counts that are not whole vectors (block
     * sizes that are not a multiple of the lanes, a last partial block) finish with scalar loops.
     */
    final class Vector implements DecodeBlocks {
        private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
        /** Bytes with as many lanes as {@link dev.headroom.kernels.Vectors#SPECIES} has floats (when such a shape exists). */
        private static final VectorSpecies<Byte> BYTES = VectorSpecies.of(byte.class,
                VectorShape.forBitSize(Math.max(64, SPECIES.length() * 8)));
        private static final boolean BYTES_MATCH = BYTES.length() == SPECIES.length();
        /** Weighted sums four rows at a time (16 accumulators) only with 512-bit vectors, which come with 32 registers. */
        private static final boolean FOUR_ROWS = SPECIES.vectorBitSize() >= 512;
        /**
         * Per thread, grown as needed: a float32 copy of one float16 block part (d × bs), int8-scaled probabilities (R × bs),
         * and the scores of R rows for one vector of tokens (R × lanes, row r from r·lanes).
         */
        private static final ThreadLocal<float[][]> BUFFERS = ThreadLocal.withInitial(() -> new float[][]{new float[0], new float[0], new float[0]});

        private static float[] buffer(int which, int floats) {
            float[][] b = BUFFERS.get();
            if (b[which].length < floats) b[which] = new float[floats];
            return b[which];
        }

        /** A float32 copy of {@code count} float16 elements from {@code base}, in this thread's buffer. */
        private static MemorySegment widen(MemorySegment mem, long base, int count) {
            float[] buf = buffer(0, count);
            for (int i = 0; i < count; i++) buf[i] = Float.float16ToFloat(mem.get(ValueLayout.JAVA_SHORT_UNALIGNED, base + i * 2L));
            return MemorySegment.ofArray(buf);
        }

        @Override
        public void scores(MemorySegment mem, long keys, long keyScales, KvDtype dtype, int d, int bs, int tokens,
                           float[] q, int R, float scale, float[] S, int ldS, int col) {
            if (dtype == KvDtype.F16) {
                mem = widen(mem, keys, d * bs);
                keys = 0;
                dtype = KvDtype.F32;
            }
            if (dtype == KvDtype.INT8 && !BYTES_MATCH) {
                SCALAR.scores(mem, keys, keyScales, dtype, d, bs, tokens, q, R, scale, S, ldS, col);
                return;
            }
            // rows four at a time, then two, then one (the decode path pads groups of three to four: CachedAttention.kernelRows)
            int lanes = SPECIES.length(), full = tokens - tokens % lanes;
            for (int tc = 0; tc < full; tc += lanes) {
                int r = 0;
                if (dtype == KvDtype.F32) {
                    long at = keys + (long) tc * Float.BYTES;
                    for (; r + 4 <= R; r += 4) fourRowsF32(mem, at, d, bs, q, r, scale, S, ldS, col + tc);
                    for (; r + 2 <= R; r += 2) twoRowsF32(mem, at, d, bs, q, r, scale, S, ldS, col + tc);
                    for (; r < R; r++) oneRowF32(mem, at, d, bs, q, r, scale, S, ldS, col + tc);
                } else {
                    FloatVector tokenScale = FloatVector.fromMemorySegment(SPECIES, mem, keyScales + (long) tc * Float.BYTES, ORDER)
                            .mul(scale);
                    for (; r + 4 <= R; r += 4) fourRowsI8(mem, keys + tc, d, bs, q, r, tokenScale, S, ldS, col + tc);
                    for (; r + 2 <= R; r += 2) twoRowsI8(mem, keys + tc, d, bs, q, r, tokenScale, S, ldS, col + tc);
                    for (; r < R; r++) oneRowI8(mem, keys + tc, d, bs, q, r, tokenScale, S, ldS, col + tc);
                }
            }
            if (full < tokens && dtype == KvDtype.F32 && bs % lanes == 0) {
                lastVectorF32(mem, keys, d, bs, tokens, full, q, R, scale, S, ldS, col);
            } else if (full < tokens) { // the tokens past the last whole vector
                for (int r = 0; r < R; r++) {
                    for (int t = full; t < tokens; t++) {
                        float dot = 0;
                        for (int f = 0; f < d; f++) dot += q[r * d + f] * Scalar.element(mem, keys, (long) f * bs + t, dtype);
                        S[r * ldS + col + t] = dot * Scalar.tokenScale(mem, keyScales, t, dtype) * scale;
                    }
                }
            }
        }

        /**
         * Scores of the tokens [full, tokens) of the last, partial block (fewer than one vector): one more vector of tokens
         * (the slots past them hold whatever the block held before) into this thread's scratch rows, of which only the
         * tokens are copied to S. The scalar loop it replaces held 3.3 % of a 32-row decode's samples (a tenth of the
         * attention's) at short contexts, where every (sequence, layer, head) ends in such a block; now 0.2 % (perf,
         * DecoderBenchmark batch 32, AMD EPYC Zen 5). A method of its own: inside {@link #scores} the same code made
         * decode runs vary by ±200 ms in 550 (C2 and the Vector API's inlining budget), here by ±50 in 450.
         */
        private static void lastVectorF32(MemorySegment mem, long keys, int d, int bs, int tokens, int full, float[] q, int R, float scale,
                                          float[] S, int ldS, int col) {
            int lanes = SPECIES.length(), r = 0;
            float[] rows = buffer(2, R * lanes);
            long at = keys + (long) full * Float.BYTES;
            for (; r + 4 <= R; r += 4) fourRowsF32(mem, at, d, bs, q, r, scale, rows, lanes, 0); // row r at r·lanes, as in scores
            for (; r + 2 <= R; r += 2) twoRowsF32(mem, at, d, bs, q, r, scale, rows, lanes, 0);
            for (; r < R; r++) oneRowF32(mem, at, d, bs, q, r, scale, rows, lanes, 0);
            for (r = 0; r < R; r++) System.arraycopy(rows, r * lanes, S, r * ldS + col + full, tokens - full);
        }

        @Override
        public void scoresOfTwo(MemorySegment memA, long keysA, long keyScalesA, MemorySegment memB, long keysB, long keyScalesB,
                                KvDtype dtype, int d, int bs, float[] q, int R, float scale, float[] S, int ldS, int col) {
            int lanes = SPECIES.length();
            if (bs != lanes || dtype == KvDtype.F16 || (dtype == KvDtype.INT8 && !BYTES_MATCH)) { // one vector of tokens per block only
                DecodeBlocks.super.scoresOfTwo(memA, keysA, keyScalesA, memB, keysB, keyScalesB, dtype, d, bs, q, R, scale, S, ldS, col);
                return;
            }
            boolean f32 = dtype == KvDtype.F32;
            FloatVector scaleA = f32 ? null : FloatVector.fromMemorySegment(SPECIES, memA, keyScalesA, ORDER).mul(scale);
            FloatVector scaleB = f32 ? null : FloatVector.fromMemorySegment(SPECIES, memB, keyScalesB, ORDER).mul(scale);
            int r = 0;
            for (; r + 4 <= R; r += 4) {
                if (f32) fourRowsOfTwoF32(memA, keysA, memB, keysB, d, q, r, scale, S, ldS, col);
                else fourRowsOfTwoI8(memA, keysA, memB, keysB, d, q, r, scaleA, scaleB, S, ldS, col);
            }
            for (; r + 2 <= R; r += 2) { // then pairs, as in scores
                if (f32) {
                    twoRowsF32(memA, keysA, d, bs, q, r, scale, S, ldS, col);
                    twoRowsF32(memB, keysB, d, bs, q, r, scale, S, ldS, col + bs);
                } else {
                    twoRowsI8(memA, keysA, d, bs, q, r, scaleA, S, ldS, col);
                    twoRowsI8(memB, keysB, d, bs, q, r, scaleB, S, ldS, col + bs);
                }
            }
            for (; r < R; r++) { // the rest one by one, as in scores
                if (f32) {
                    oneRowF32(memA, keysA, d, bs, q, r, scale, S, ldS, col);
                    oneRowF32(memB, keysB, d, bs, q, r, scale, S, ldS, col + bs);
                } else {
                    oneRowI8(memA, keysA, d, bs, q, r, scaleA, S, ldS, col);
                    oneRowI8(memB, keysB, d, bs, q, r, scaleB, S, ldS, col + bs);
                }
            }
        }

        /**
         * Scores of rows r..r+3 for two blocks of one vector of tokens each (Kᵀ rows of one vector):
         * per feature, one load from each block and one broadcast per row serving both, eight chains.
         */
        private static void fourRowsOfTwoF32(MemorySegment memA, long atA, MemorySegment memB, long atB, int d, float[] q, int r,
                                             float scale, float[] S, int ldS, int col) {
            int q0 = r * d, q1 = q0 + d, q2 = q1 + d, q3 = q2 + d, lanes = SPECIES.length();
            long row = (long) lanes * Float.BYTES;
            FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (int f = 0; f < d; f++) {
                FloatVector ka = FloatVector.fromMemorySegment(SPECIES, memA, atA + f * row, ORDER);
                FloatVector kb = FloatVector.fromMemorySegment(SPECIES, memB, atB + f * row, ORDER);
                FloatVector x = FloatVector.broadcast(SPECIES, q[q0 + f]);
                a0 = ka.fma(x, a0);
                b0 = kb.fma(x, b0);
                x = FloatVector.broadcast(SPECIES, q[q1 + f]);
                a1 = ka.fma(x, a1);
                b1 = kb.fma(x, b1);
                x = FloatVector.broadcast(SPECIES, q[q2 + f]);
                a2 = ka.fma(x, a2);
                b2 = kb.fma(x, b2);
                x = FloatVector.broadcast(SPECIES, q[q3 + f]);
                a3 = ka.fma(x, a3);
                b3 = kb.fma(x, b3);
            }
            a0.mul(scale).intoArray(S, r * ldS + col);
            b0.mul(scale).intoArray(S, r * ldS + col + lanes);
            a1.mul(scale).intoArray(S, (r + 1) * ldS + col);
            b1.mul(scale).intoArray(S, (r + 1) * ldS + col + lanes);
            a2.mul(scale).intoArray(S, (r + 2) * ldS + col);
            b2.mul(scale).intoArray(S, (r + 2) * ldS + col + lanes);
            a3.mul(scale).intoArray(S, (r + 3) * ldS + col);
            b3.mul(scale).intoArray(S, (r + 3) * ldS + col + lanes);
        }

        /** As {@link #fourRowsOfTwoF32} for int8 keys, each block's tokens scaled by its {@code scaleA} / {@code scaleB}. */
        private static void fourRowsOfTwoI8(MemorySegment memA, long atA, MemorySegment memB, long atB, int d, float[] q, int r,
                                            FloatVector scaleA, FloatVector scaleB, float[] S, int ldS, int col) {
            int q0 = r * d, q1 = q0 + d, q2 = q1 + d, q3 = q2 + d, lanes = SPECIES.length();
            FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (int f = 0; f < d; f++) {
                FloatVector ka = bytes(memA, atA + (long) f * lanes), kb = bytes(memB, atB + (long) f * lanes);
                FloatVector x = FloatVector.broadcast(SPECIES, q[q0 + f]);
                a0 = ka.fma(x, a0);
                b0 = kb.fma(x, b0);
                x = FloatVector.broadcast(SPECIES, q[q1 + f]);
                a1 = ka.fma(x, a1);
                b1 = kb.fma(x, b1);
                x = FloatVector.broadcast(SPECIES, q[q2 + f]);
                a2 = ka.fma(x, a2);
                b2 = kb.fma(x, b2);
                x = FloatVector.broadcast(SPECIES, q[q3 + f]);
                a3 = ka.fma(x, a3);
                b3 = kb.fma(x, b3);
            }
            a0.mul(scaleA).intoArray(S, r * ldS + col);
            b0.mul(scaleB).intoArray(S, r * ldS + col + lanes);
            a1.mul(scaleA).intoArray(S, (r + 1) * ldS + col);
            b1.mul(scaleB).intoArray(S, (r + 1) * ldS + col + lanes);
            a2.mul(scaleA).intoArray(S, (r + 2) * ldS + col);
            b2.mul(scaleB).intoArray(S, (r + 2) * ldS + col + lanes);
            a3.mul(scaleA).intoArray(S, (r + 3) * ldS + col);
            b3.mul(scaleB).intoArray(S, (r + 3) * ldS + col + lanes);
        }

        /** Scores of rows r..r+3 for one vector of tokens whose Kᵀ column starts at byte {@code at}; float32. */
        private static void fourRowsF32(MemorySegment mem, long at, int d, int bs, float[] q, int r, float scale, float[] S, int ldS,
                                        int col) {
            int q0 = r * d, q1 = q0 + d, q2 = q1 + d, q3 = q2 + d;
            long row = (long) bs * Float.BYTES;
            FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            int f = 0;
            for (; f + 2 <= d; f += 2) {
                FloatVector k = FloatVector.fromMemorySegment(SPECIES, mem, at + f * row, ORDER);
                FloatVector k2 = FloatVector.fromMemorySegment(SPECIES, mem, at + (f + 1) * row, ORDER);
                a0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a0);
                a1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f]), a1);
                a2 = k.fma(FloatVector.broadcast(SPECIES, q[q2 + f]), a2);
                a3 = k.fma(FloatVector.broadcast(SPECIES, q[q3 + f]), a3);
                b0 = k2.fma(FloatVector.broadcast(SPECIES, q[q0 + f + 1]), b0);
                b1 = k2.fma(FloatVector.broadcast(SPECIES, q[q1 + f + 1]), b1);
                b2 = k2.fma(FloatVector.broadcast(SPECIES, q[q2 + f + 1]), b2);
                b3 = k2.fma(FloatVector.broadcast(SPECIES, q[q3 + f + 1]), b3);
            }
            if (f < d) {
                FloatVector k = FloatVector.fromMemorySegment(SPECIES, mem, at + f * row, ORDER);
                a0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a0);
                a1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f]), a1);
                a2 = k.fma(FloatVector.broadcast(SPECIES, q[q2 + f]), a2);
                a3 = k.fma(FloatVector.broadcast(SPECIES, q[q3 + f]), a3);
            }
            a0.add(b0).mul(scale).intoArray(S, r * ldS + col);
            a1.add(b1).mul(scale).intoArray(S, (r + 1) * ldS + col);
            a2.add(b2).mul(scale).intoArray(S, (r + 2) * ldS + col);
            a3.add(b3).mul(scale).intoArray(S, (r + 3) * ldS + col);
        }

        /**
         * Rows r and r+1 for one vector of tokens, float32: each key vector read once for both, and
         * each row's sum formed exactly as {@link #oneRowF32} forms it (four chains over f mod 4,
         * (a + b) + (c + e)), so the two rows come out as two calls of it would give them. A group
         * of two query rows (a model with two query heads per key/value head, one new token each)
         * was padded to four zero-padded rows before: half of the scores' work on zeros.
         */
        private static void twoRowsF32(MemorySegment mem, long at, int d, int bs, float[] q, int r, float scale, float[] S, int ldS,
                                       int col) {
            long row = (long) bs * Float.BYTES;
            int q0 = r * d, q1 = q0 + d, f = 0;
            FloatVector a0 = FloatVector.zero(SPECIES), b0 = a0, c0 = a0, e0 = a0, a1 = a0, b1 = a0, c1 = a0, e1 = a0;
            for (; f + 4 <= d; f += 4) {
                FloatVector k = FloatVector.fromMemorySegment(SPECIES, mem, at + f * row, ORDER);
                a0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a0);
                a1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f]), a1);
                k = FloatVector.fromMemorySegment(SPECIES, mem, at + (f + 1) * row, ORDER);
                b0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f + 1]), b0);
                b1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f + 1]), b1);
                k = FloatVector.fromMemorySegment(SPECIES, mem, at + (f + 2) * row, ORDER);
                c0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f + 2]), c0);
                c1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f + 2]), c1);
                k = FloatVector.fromMemorySegment(SPECIES, mem, at + (f + 3) * row, ORDER);
                e0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f + 3]), e0);
                e1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f + 3]), e1);
            }
            for (; f < d; f++) {
                FloatVector k = FloatVector.fromMemorySegment(SPECIES, mem, at + f * row, ORDER);
                a0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a0);
                a1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f]), a1);
            }
            a0.add(b0).add(c0.add(e0)).mul(scale).intoArray(S, r * ldS + col);
            a1.add(b1).add(c1.add(e1)).mul(scale).intoArray(S, (r + 1) * ldS + col);
        }

        private static void oneRowF32(MemorySegment mem, long at, int d, int bs, float[] q, int r, float scale, float[] S, int ldS,
                                      int col) {
            long row = (long) bs * Float.BYTES;
            int q0 = r * d, f = 0;
            FloatVector a = FloatVector.zero(SPECIES), b = a, c = a, e = a; // four chains: one alone waited on each multiply-add
            for (; f + 4 <= d; f += 4) {
                a = FloatVector.fromMemorySegment(SPECIES, mem, at + f * row, ORDER).fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a);
                b = FloatVector.fromMemorySegment(SPECIES, mem, at + (f + 1) * row, ORDER).fma(FloatVector.broadcast(SPECIES, q[q0 + f + 1]), b);
                c = FloatVector.fromMemorySegment(SPECIES, mem, at + (f + 2) * row, ORDER).fma(FloatVector.broadcast(SPECIES, q[q0 + f + 2]), c);
                e = FloatVector.fromMemorySegment(SPECIES, mem, at + (f + 3) * row, ORDER).fma(FloatVector.broadcast(SPECIES, q[q0 + f + 3]), e);
            }
            for (; f < d; f++) {
                a = FloatVector.fromMemorySegment(SPECIES, mem, at + f * row, ORDER).fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a);
            }
            a.add(b).add(c.add(e)).mul(scale).intoArray(S, r * ldS + col);
        }

        /** Lanes of bytes from {@code at}, as floats. */
        private static FloatVector bytes(MemorySegment mem, long at) {
            return (FloatVector) ByteVector.fromMemorySegment(BYTES, mem, at, ORDER).convertShape(VectorOperators.B2F, SPECIES, 0);
        }

        /** As {@link #fourRowsF32} for int8 keys (Kᵀ rows of bs bytes), scaled per token by {@code tokenScale}. */
        private static void fourRowsI8(MemorySegment mem, long at, int d, int bs, float[] q, int r, FloatVector tokenScale, float[] S,
                                       int ldS, int col) {
            int q0 = r * d, q1 = q0 + d, q2 = q1 + d, q3 = q2 + d;
            FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            int f = 0;
            for (; f + 2 <= d; f += 2) {
                FloatVector k = bytes(mem, at + (long) f * bs), k2 = bytes(mem, at + (long) (f + 1) * bs);
                a0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a0);
                a1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f]), a1);
                a2 = k.fma(FloatVector.broadcast(SPECIES, q[q2 + f]), a2);
                a3 = k.fma(FloatVector.broadcast(SPECIES, q[q3 + f]), a3);
                b0 = k2.fma(FloatVector.broadcast(SPECIES, q[q0 + f + 1]), b0);
                b1 = k2.fma(FloatVector.broadcast(SPECIES, q[q1 + f + 1]), b1);
                b2 = k2.fma(FloatVector.broadcast(SPECIES, q[q2 + f + 1]), b2);
                b3 = k2.fma(FloatVector.broadcast(SPECIES, q[q3 + f + 1]), b3);
            }
            if (f < d) {
                FloatVector k = bytes(mem, at + (long) f * bs);
                a0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a0);
                a1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f]), a1);
                a2 = k.fma(FloatVector.broadcast(SPECIES, q[q2 + f]), a2);
                a3 = k.fma(FloatVector.broadcast(SPECIES, q[q3 + f]), a3);
            }
            a0.add(b0).mul(tokenScale).intoArray(S, r * ldS + col);
            a1.add(b1).mul(tokenScale).intoArray(S, (r + 1) * ldS + col);
            a2.add(b2).mul(tokenScale).intoArray(S, (r + 2) * ldS + col);
            a3.add(b3).mul(tokenScale).intoArray(S, (r + 3) * ldS + col);
        }

        /**
         * As {@link #twoRowsF32} for int8 keys: each key vector converted once for both rows, each row's sum formed as
         * {@link #oneRowI8} forms it, so a group of two query rows needs no padding to four (which spent half the scores'
         * conversions' use on zero rows).
         */
        private static void twoRowsI8(MemorySegment mem, long at, int d, int bs, float[] q, int r, FloatVector tokenScale, float[] S,
                                      int ldS, int col) {
            int q0 = r * d, q1 = q0 + d, f = 0;
            FloatVector a0 = FloatVector.zero(SPECIES), b0 = a0, c0 = a0, e0 = a0, a1 = a0, b1 = a0, c1 = a0, e1 = a0;
            for (; f + 4 <= d; f += 4) {
                FloatVector k = bytes(mem, at + (long) f * bs);
                a0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a0);
                a1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f]), a1);
                k = bytes(mem, at + (long) (f + 1) * bs);
                b0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f + 1]), b0);
                b1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f + 1]), b1);
                k = bytes(mem, at + (long) (f + 2) * bs);
                c0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f + 2]), c0);
                c1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f + 2]), c1);
                k = bytes(mem, at + (long) (f + 3) * bs);
                e0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f + 3]), e0);
                e1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f + 3]), e1);
            }
            for (; f < d; f++) {
                FloatVector k = bytes(mem, at + (long) f * bs);
                a0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a0);
                a1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f]), a1);
            }
            a0.add(b0).add(c0.add(e0)).mul(tokenScale).intoArray(S, r * ldS + col);
            a1.add(b1).add(c1.add(e1)).mul(tokenScale).intoArray(S, (r + 1) * ldS + col);
        }

        private static void oneRowI8(MemorySegment mem, long at, int d, int bs, float[] q, int r, FloatVector tokenScale, float[] S,
                                     int ldS, int col) {
            int q0 = r * d, f = 0;
            FloatVector a = FloatVector.zero(SPECIES), b = a, c = a, e = a;
            for (; f + 4 <= d; f += 4) {
                a = bytes(mem, at + (long) f * bs).fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a);
                b = bytes(mem, at + (long) (f + 1) * bs).fma(FloatVector.broadcast(SPECIES, q[q0 + f + 1]), b);
                c = bytes(mem, at + (long) (f + 2) * bs).fma(FloatVector.broadcast(SPECIES, q[q0 + f + 2]), c);
                e = bytes(mem, at + (long) (f + 3) * bs).fma(FloatVector.broadcast(SPECIES, q[q0 + f + 3]), e);
            }
            for (; f < d; f++) a = bytes(mem, at + (long) f * bs).fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a);
            a.add(b).add(c.add(e)).mul(tokenScale).intoArray(S, r * ldS + col);
        }

        @Override
        public void accumulate(MemorySegment mem, long values, long valueScales, KvDtype dtype, int d, int bs, int tokens,
                               float[] S, int ldS, int col, int R, float[] O) {
            if (dtype == KvDtype.F16) {
                mem = widen(mem, values, d * bs);
                values = 0;
                dtype = KvDtype.F32;
            }
            if (dtype == KvDtype.INT8) {
                if (!BYTES_MATCH) {
                    SCALAR.accumulate(mem, values, valueScales, dtype, d, bs, tokens, S, ldS, col, R, O);
                    return;
                }
                // fold each token's value scale into the probabilities: p'_rt = p_rt · s_t
                float[] scaled = buffer(1, R * tokens);
                int lanes = SPECIES.length(), full = tokens - tokens % lanes;
                for (int r = 0; r < R; r++) {
                    int t = 0;
                    for (; t < full; t += lanes) {
                        FloatVector.fromArray(SPECIES, S, r * ldS + col + t)
                                .mul(FloatVector.fromMemorySegment(SPECIES, mem, valueScales + (long) t * Float.BYTES, ORDER))
                                .intoArray(scaled, r * tokens + t);
                    }
                    for (; t < tokens; t++) scaled[r * tokens + t] = S[r * ldS + col + t] * mem.get(F, valueScales + (long) t * Float.BYTES);
                }
                S = scaled;
                ldS = tokens;
                col = 0;
            }
            boolean f32 = dtype == KvDtype.F32;
            int lanes = SPECIES.length(), wide = 4 * lanes, bytes = f32 ? Float.BYTES : 1;
            // one tile of features at a time: its rows (w features of each token) are contiguous, read once from memory
            for (int first = 0; first < d; first += KvCache.VALUE_TILE) {
                int w = Math.min(KvCache.VALUE_TILE, d - first), fullWide = w - w % wide, full = w - w % lanes;
                long tile = values + (long) first * bs * bytes, row = (long) w * bytes;
                int r = 0;
                if (FOUR_ROWS) {
                    for (; r + 4 <= R; r += 4) {
                        for (int fc = 0; fc < fullWide; fc += wide) {
                            long at = tile + (long) fc * bytes;
                            int o = r * d + first + fc, p = r * ldS + col;
                            if (f32) sumFourRowsF32(mem, at, row, tokens, S, p, ldS, O, o, d);
                            else sumFourRowsI8(mem, at, row, tokens, S, p, ldS, O, o, d);
                        }
                    }
                }
                for (; r + 2 <= R; r += 2) {
                    for (int fc = 0; fc < fullWide; fc += wide) {
                        long at = tile + (long) fc * bytes;
                        int o = r * d + first + fc, p = r * ldS + col;
                        if (f32) sumTwoRowsF32(mem, at, row, tokens, S, p, ldS, O, o, d);
                        else sumTwoRowsI8(mem, at, row, tokens, S, p, ldS, O, o, d);
                    }
                }
                for (; r < R; r++) {
                    for (int fc = 0; fc < fullWide; fc += wide) {
                        long at = tile + (long) fc * bytes;
                        if (f32) sumOneRowF32(mem, at, row, tokens, S, r * ldS + col, O, r * d + first + fc);
                        else sumOneRowI8(mem, at, row, tokens, S, r * ldS + col, O, r * d + first + fc);
                    }
                }
                // the tile's features past the wide ones: one vector at a time, then scalar
                for (int rr = 0; rr < R; rr++) {
                    int p = rr * ldS + col;
                    for (int fc = fullWide; fc < full; fc += lanes) {
                        long at = tile + (long) fc * bytes;
                        if (f32) sumOneVectorF32(mem, at, row, tokens, S, p, O, rr * d + first + fc);
                        else sumOneVectorI8(mem, at, row, tokens, S, p, O, rr * d + first + fc);
                    }
                    for (int fc = full; fc < w; fc++) {
                        float acc = O[rr * d + first + fc];
                        for (int t = 0; t < tokens; t++) {
                            acc += S[p + t] * Scalar.element(mem, tile, (long) t * w + fc, dtype);
                        }
                        O[rr * d + first + fc] = acc;
                    }
                }
            }
        }

        /*
         * The weighted-sum kernels. Each covers 4 vectors of features (at byte {@code at}, token t's
         * at at + t·row) for its rows, sums the block's tokens into accumulators that start at zero
         * and adds them to O once at the end: starting from O's values instead chained every block's
         * sum to the one before, and the same kernel read from memory about a fifth slower.
         * O row k of the kernel is at o + k·ldO; its probabilities at S[p + k·ldS + t]. The final
         * additions are written out in each kernel: a helper taking the vectors was not inlined
         * and boxed them (its frame held a tenth of a decode step's profile).
         */

        /** Four rows (16 accumulators: only where the vector registers hold them, {@link #FOUR_ROWS}); float32 values. */
        private static void sumFourRowsF32(MemorySegment mem, long at, long row, int tokens, float[] S, int p, int ldS, float[] O, int o,
                                        int ldO) {
            int lanes = SPECIES.length();
            long step = (long) lanes * Float.BYTES;
            FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            FloatVector c0 = a0, c1 = a0, c2 = a0, c3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
            for (int t = 0; t < tokens; t++) {
                long x = at + t * row;
                FloatVector p0 = FloatVector.broadcast(SPECIES, S[p + t]), p1 = FloatVector.broadcast(SPECIES, S[p + ldS + t]);
                FloatVector p2 = FloatVector.broadcast(SPECIES, S[p + 2 * ldS + t]), p3 = FloatVector.broadcast(SPECIES, S[p + 3 * ldS + t]);
                FloatVector v = FloatVector.fromMemorySegment(SPECIES, mem, x, ORDER);
                a0 = v.fma(p0, a0);
                b0 = v.fma(p1, b0);
                c0 = v.fma(p2, c0);
                e0 = v.fma(p3, e0);
                v = FloatVector.fromMemorySegment(SPECIES, mem, x + step, ORDER);
                a1 = v.fma(p0, a1);
                b1 = v.fma(p1, b1);
                c1 = v.fma(p2, c1);
                e1 = v.fma(p3, e1);
                v = FloatVector.fromMemorySegment(SPECIES, mem, x + 2 * step, ORDER);
                a2 = v.fma(p0, a2);
                b2 = v.fma(p1, b2);
                c2 = v.fma(p2, c2);
                e2 = v.fma(p3, e2);
                v = FloatVector.fromMemorySegment(SPECIES, mem, x + 3 * step, ORDER);
                a3 = v.fma(p0, a3);
                b3 = v.fma(p1, b3);
                c3 = v.fma(p2, c3);
                e3 = v.fma(p3, e3);
            }
            a0.add(FloatVector.fromArray(SPECIES, O, o)).intoArray(O, o);
            a1.add(FloatVector.fromArray(SPECIES, O, o + lanes)).intoArray(O, o + lanes);
            a2.add(FloatVector.fromArray(SPECIES, O, o + 2 * lanes)).intoArray(O, o + 2 * lanes);
            a3.add(FloatVector.fromArray(SPECIES, O, o + 3 * lanes)).intoArray(O, o + 3 * lanes);
            b0.add(FloatVector.fromArray(SPECIES, O, o + ldO)).intoArray(O, o + ldO);
            b1.add(FloatVector.fromArray(SPECIES, O, o + ldO + lanes)).intoArray(O, o + ldO + lanes);
            b2.add(FloatVector.fromArray(SPECIES, O, o + ldO + 2 * lanes)).intoArray(O, o + ldO + 2 * lanes);
            b3.add(FloatVector.fromArray(SPECIES, O, o + ldO + 3 * lanes)).intoArray(O, o + ldO + 3 * lanes);
            c0.add(FloatVector.fromArray(SPECIES, O, o + 2 * ldO)).intoArray(O, o + 2 * ldO);
            c1.add(FloatVector.fromArray(SPECIES, O, o + 2 * ldO + lanes)).intoArray(O, o + 2 * ldO + lanes);
            c2.add(FloatVector.fromArray(SPECIES, O, o + 2 * ldO + 2 * lanes)).intoArray(O, o + 2 * ldO + 2 * lanes);
            c3.add(FloatVector.fromArray(SPECIES, O, o + 2 * ldO + 3 * lanes)).intoArray(O, o + 2 * ldO + 3 * lanes);
            e0.add(FloatVector.fromArray(SPECIES, O, o + 3 * ldO)).intoArray(O, o + 3 * ldO);
            e1.add(FloatVector.fromArray(SPECIES, O, o + 3 * ldO + lanes)).intoArray(O, o + 3 * ldO + lanes);
            e2.add(FloatVector.fromArray(SPECIES, O, o + 3 * ldO + 2 * lanes)).intoArray(O, o + 3 * ldO + 2 * lanes);
            e3.add(FloatVector.fromArray(SPECIES, O, o + 3 * ldO + 3 * lanes)).intoArray(O, o + 3 * ldO + 3 * lanes);
        }

        /** As {@link #sumFourRowsF32} for int8 values (the probabilities already scaled by each token's scale). */
        private static void sumFourRowsI8(MemorySegment mem, long at, long row, int tokens, float[] S, int p, int ldS, float[] O, int o,
                                       int ldO) {
            int lanes = SPECIES.length();
            FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            FloatVector c0 = a0, c1 = a0, c2 = a0, c3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
            for (int t = 0; t < tokens; t++) {
                long x = at + t * row;
                FloatVector p0 = FloatVector.broadcast(SPECIES, S[p + t]), p1 = FloatVector.broadcast(SPECIES, S[p + ldS + t]);
                FloatVector p2 = FloatVector.broadcast(SPECIES, S[p + 2 * ldS + t]), p3 = FloatVector.broadcast(SPECIES, S[p + 3 * ldS + t]);
                FloatVector v = bytes(mem, x);
                a0 = v.fma(p0, a0);
                b0 = v.fma(p1, b0);
                c0 = v.fma(p2, c0);
                e0 = v.fma(p3, e0);
                v = bytes(mem, x + lanes);
                a1 = v.fma(p0, a1);
                b1 = v.fma(p1, b1);
                c1 = v.fma(p2, c1);
                e1 = v.fma(p3, e1);
                v = bytes(mem, x + 2L * lanes);
                a2 = v.fma(p0, a2);
                b2 = v.fma(p1, b2);
                c2 = v.fma(p2, c2);
                e2 = v.fma(p3, e2);
                v = bytes(mem, x + 3L * lanes);
                a3 = v.fma(p0, a3);
                b3 = v.fma(p1, b3);
                c3 = v.fma(p2, c3);
                e3 = v.fma(p3, e3);
            }
            a0.add(FloatVector.fromArray(SPECIES, O, o)).intoArray(O, o);
            a1.add(FloatVector.fromArray(SPECIES, O, o + lanes)).intoArray(O, o + lanes);
            a2.add(FloatVector.fromArray(SPECIES, O, o + 2 * lanes)).intoArray(O, o + 2 * lanes);
            a3.add(FloatVector.fromArray(SPECIES, O, o + 3 * lanes)).intoArray(O, o + 3 * lanes);
            b0.add(FloatVector.fromArray(SPECIES, O, o + ldO)).intoArray(O, o + ldO);
            b1.add(FloatVector.fromArray(SPECIES, O, o + ldO + lanes)).intoArray(O, o + ldO + lanes);
            b2.add(FloatVector.fromArray(SPECIES, O, o + ldO + 2 * lanes)).intoArray(O, o + ldO + 2 * lanes);
            b3.add(FloatVector.fromArray(SPECIES, O, o + ldO + 3 * lanes)).intoArray(O, o + ldO + 3 * lanes);
            c0.add(FloatVector.fromArray(SPECIES, O, o + 2 * ldO)).intoArray(O, o + 2 * ldO);
            c1.add(FloatVector.fromArray(SPECIES, O, o + 2 * ldO + lanes)).intoArray(O, o + 2 * ldO + lanes);
            c2.add(FloatVector.fromArray(SPECIES, O, o + 2 * ldO + 2 * lanes)).intoArray(O, o + 2 * ldO + 2 * lanes);
            c3.add(FloatVector.fromArray(SPECIES, O, o + 2 * ldO + 3 * lanes)).intoArray(O, o + 2 * ldO + 3 * lanes);
            e0.add(FloatVector.fromArray(SPECIES, O, o + 3 * ldO)).intoArray(O, o + 3 * ldO);
            e1.add(FloatVector.fromArray(SPECIES, O, o + 3 * ldO + lanes)).intoArray(O, o + 3 * ldO + lanes);
            e2.add(FloatVector.fromArray(SPECIES, O, o + 3 * ldO + 2 * lanes)).intoArray(O, o + 3 * ldO + 2 * lanes);
            e3.add(FloatVector.fromArray(SPECIES, O, o + 3 * ldO + 3 * lanes)).intoArray(O, o + 3 * ldO + 3 * lanes);
        }

        /** Two rows (8 accumulators); float32 values. */
        private static void sumTwoRowsF32(MemorySegment mem, long at, long row, int tokens, float[] S, int p, int ldS, float[] O, int o,
                                       int ldO) {
            int lanes = SPECIES.length();
            long step = (long) lanes * Float.BYTES;
            FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
            for (int t = 0; t < tokens; t++) {
                long x = at + t * row;
                FloatVector v0 = FloatVector.fromMemorySegment(SPECIES, mem, x, ORDER);
                FloatVector v1 = FloatVector.fromMemorySegment(SPECIES, mem, x + step, ORDER);
                FloatVector v2 = FloatVector.fromMemorySegment(SPECIES, mem, x + 2 * step, ORDER);
                FloatVector v3 = FloatVector.fromMemorySegment(SPECIES, mem, x + 3 * step, ORDER);
                FloatVector p0 = FloatVector.broadcast(SPECIES, S[p + t]), p1 = FloatVector.broadcast(SPECIES, S[p + ldS + t]);
                a0 = v0.fma(p0, a0);
                a1 = v1.fma(p0, a1);
                a2 = v2.fma(p0, a2);
                a3 = v3.fma(p0, a3);
                c0 = v0.fma(p1, c0);
                c1 = v1.fma(p1, c1);
                c2 = v2.fma(p1, c2);
                c3 = v3.fma(p1, c3);
            }
            a0.add(FloatVector.fromArray(SPECIES, O, o)).intoArray(O, o);
            a1.add(FloatVector.fromArray(SPECIES, O, o + lanes)).intoArray(O, o + lanes);
            a2.add(FloatVector.fromArray(SPECIES, O, o + 2 * lanes)).intoArray(O, o + 2 * lanes);
            a3.add(FloatVector.fromArray(SPECIES, O, o + 3 * lanes)).intoArray(O, o + 3 * lanes);
            c0.add(FloatVector.fromArray(SPECIES, O, o + ldO)).intoArray(O, o + ldO);
            c1.add(FloatVector.fromArray(SPECIES, O, o + ldO + lanes)).intoArray(O, o + ldO + lanes);
            c2.add(FloatVector.fromArray(SPECIES, O, o + ldO + 2 * lanes)).intoArray(O, o + ldO + 2 * lanes);
            c3.add(FloatVector.fromArray(SPECIES, O, o + ldO + 3 * lanes)).intoArray(O, o + ldO + 3 * lanes);
        }

        /** As {@link #sumTwoRowsF32} for int8 values. */
        private static void sumTwoRowsI8(MemorySegment mem, long at, long row, int tokens, float[] S, int p, int ldS, float[] O, int o,
                                      int ldO) {
            int lanes = SPECIES.length();
            FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
            for (int t = 0; t < tokens; t++) {
                long x = at + t * row;
                FloatVector v0 = bytes(mem, x), v1 = bytes(mem, x + lanes), v2 = bytes(mem, x + 2L * lanes), v3 = bytes(mem, x + 3L * lanes);
                FloatVector p0 = FloatVector.broadcast(SPECIES, S[p + t]), p1 = FloatVector.broadcast(SPECIES, S[p + ldS + t]);
                a0 = v0.fma(p0, a0);
                a1 = v1.fma(p0, a1);
                a2 = v2.fma(p0, a2);
                a3 = v3.fma(p0, a3);
                c0 = v0.fma(p1, c0);
                c1 = v1.fma(p1, c1);
                c2 = v2.fma(p1, c2);
                c3 = v3.fma(p1, c3);
            }
            a0.add(FloatVector.fromArray(SPECIES, O, o)).intoArray(O, o);
            a1.add(FloatVector.fromArray(SPECIES, O, o + lanes)).intoArray(O, o + lanes);
            a2.add(FloatVector.fromArray(SPECIES, O, o + 2 * lanes)).intoArray(O, o + 2 * lanes);
            a3.add(FloatVector.fromArray(SPECIES, O, o + 3 * lanes)).intoArray(O, o + 3 * lanes);
            c0.add(FloatVector.fromArray(SPECIES, O, o + ldO)).intoArray(O, o + ldO);
            c1.add(FloatVector.fromArray(SPECIES, O, o + ldO + lanes)).intoArray(O, o + ldO + lanes);
            c2.add(FloatVector.fromArray(SPECIES, O, o + ldO + 2 * lanes)).intoArray(O, o + ldO + 2 * lanes);
            c3.add(FloatVector.fromArray(SPECIES, O, o + ldO + 3 * lanes)).intoArray(O, o + ldO + 3 * lanes);
        }

        /** One row (4 accumulators); float32 values. */
        private static void sumOneRowF32(MemorySegment mem, long at, long row, int tokens, float[] S, int p, float[] O, int o) {
            int lanes = SPECIES.length();
            long step = (long) lanes * Float.BYTES;
            FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0;
            for (int t = 0; t < tokens; t++) {
                long x = at + t * row;
                FloatVector p0 = FloatVector.broadcast(SPECIES, S[p + t]);
                a0 = FloatVector.fromMemorySegment(SPECIES, mem, x, ORDER).fma(p0, a0);
                a1 = FloatVector.fromMemorySegment(SPECIES, mem, x + step, ORDER).fma(p0, a1);
                a2 = FloatVector.fromMemorySegment(SPECIES, mem, x + 2 * step, ORDER).fma(p0, a2);
                a3 = FloatVector.fromMemorySegment(SPECIES, mem, x + 3 * step, ORDER).fma(p0, a3);
            }
            a0.add(FloatVector.fromArray(SPECIES, O, o)).intoArray(O, o);
            a1.add(FloatVector.fromArray(SPECIES, O, o + lanes)).intoArray(O, o + lanes);
            a2.add(FloatVector.fromArray(SPECIES, O, o + 2 * lanes)).intoArray(O, o + 2 * lanes);
            a3.add(FloatVector.fromArray(SPECIES, O, o + 3 * lanes)).intoArray(O, o + 3 * lanes);
        }

        /** As {@link #sumOneRowF32} for int8 values. */
        private static void sumOneRowI8(MemorySegment mem, long at, long row, int tokens, float[] S, int p, float[] O, int o) {
            int lanes = SPECIES.length();
            FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0;
            for (int t = 0; t < tokens; t++) {
                long x = at + t * row;
                FloatVector p0 = FloatVector.broadcast(SPECIES, S[p + t]);
                a0 = bytes(mem, x).fma(p0, a0);
                a1 = bytes(mem, x + lanes).fma(p0, a1);
                a2 = bytes(mem, x + 2L * lanes).fma(p0, a2);
                a3 = bytes(mem, x + 3L * lanes).fma(p0, a3);
            }
            a0.add(FloatVector.fromArray(SPECIES, O, o)).intoArray(O, o);
            a1.add(FloatVector.fromArray(SPECIES, O, o + lanes)).intoArray(O, o + lanes);
            a2.add(FloatVector.fromArray(SPECIES, O, o + 2 * lanes)).intoArray(O, o + 2 * lanes);
            a3.add(FloatVector.fromArray(SPECIES, O, o + 3 * lanes)).intoArray(O, o + 3 * lanes);
        }

        private static void sumOneVectorF32(MemorySegment mem, long at, long row, int tokens, float[] S, int p, float[] O, int o) {
            FloatVector acc = FloatVector.zero(SPECIES);
            for (int t = 0; t < tokens; t++) {
                acc = FloatVector.fromMemorySegment(SPECIES, mem, at + t * row, ORDER).fma(FloatVector.broadcast(SPECIES, S[p + t]), acc);
            }
            acc.add(FloatVector.fromArray(SPECIES, O, o)).intoArray(O, o);
        }

        private static void sumOneVectorI8(MemorySegment mem, long at, long row, int tokens, float[] S, int p, float[] O, int o) {
            FloatVector acc = FloatVector.zero(SPECIES);
            for (int t = 0; t < tokens; t++) acc = bytes(mem, at + t * row).fma(FloatVector.broadcast(SPECIES, S[p + t]), acc);
            acc.add(FloatVector.fromArray(SPECIES, O, o)).intoArray(O, o);
        }
    }
}
