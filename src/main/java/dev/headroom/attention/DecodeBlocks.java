package dev.headroom.attention;

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
 * block's Kᵀ (d, bs) elements of this head, {@code values} of its V (bs, d), and
 * {@code keyScales}/{@code valueScales} of the int8 scales (bs floats each; unused otherwise);
 * only the first {@code tokens} ≤ bs slots hold keys. The small per-row operands live in Java
 * arrays (a worker's own, reused): query rows {@code q[r·d ..]}, scores {@code S[r·ldS + col ..]},
 * output rows {@code O[r·d ..]}, so that their reads need no memory-session checks.
 */
interface DecodeBlocks {

    /** S[r·ldS + col + t] = scale · q_r · k_t for rows r &lt; R and tokens t &lt; tokens. */
    void scores(MemorySegment mem, long keys, long keyScales, KvDtype dtype, int d, int bs, int tokens,
                float[] q, int R, float scale, float[] S, int ldS, int col);

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
                    for (int f = 0; f < d; f++) O[r * d + f] += p * element(mem, values, (long) t * d + f, dtype);
                }
            }
        }
    }

    /**
     * The Vector API form. Scores: the lanes run over a block's tokens (Kᵀ rows are contiguous over
     * tokens), four query rows at a time and the features in two interleaved halves, so eight
     * independent multiply-add chains hide the latency and each Kᵀ row is loaded once per four
     * rows; no horizontal sums. Weighted sum: the lanes run over features, two output rows and
     * four feature chunks at a time (eight chains again), each value row loaded once per two rows.
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
        /** Per thread: a float32 copy of one float16 block part (d × bs), and int8-scaled probabilities (R × bs). */
        private static final ThreadLocal<float[][]> BUFFERS = ThreadLocal.withInitial(() -> new float[][]{new float[0], new float[0]});

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
            int lanes = SPECIES.length(), full = tokens - tokens % lanes;
            for (int tc = 0; tc < full; tc += lanes) {
                int r = 0;
                if (dtype == KvDtype.F32) {
                    for (; r + 4 <= R; r += 4) fourRowsF32(mem, keys + (long) tc * Float.BYTES, d, bs, q, r, scale, S, ldS, col + tc);
                    for (; r < R; r++) oneRowF32(mem, keys + (long) tc * Float.BYTES, d, bs, q, r, scale, S, ldS, col + tc);
                } else {
                    FloatVector tokenScale = FloatVector.fromMemorySegment(SPECIES, mem, keyScales + (long) tc * Float.BYTES, ORDER)
                            .mul(scale);
                    for (; r + 4 <= R; r += 4) fourRowsI8(mem, keys + tc, d, bs, q, r, tokenScale, S, ldS, col + tc);
                    for (; r < R; r++) oneRowI8(mem, keys + tc, d, bs, q, r, tokenScale, S, ldS, col + tc);
                }
            }
            if (full < tokens) { // the tokens past the last whole vector
                for (int r = 0; r < R; r++) {
                    for (int t = full; t < tokens; t++) {
                        float dot = 0;
                        for (int f = 0; f < d; f++) dot += q[r * d + f] * Scalar.element(mem, keys, (long) f * bs + t, dtype);
                        S[r * ldS + col + t] = dot * Scalar.tokenScale(mem, keyScales, t, dtype) * scale;
                    }
                }
            }
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

        private static void oneRowF32(MemorySegment mem, long at, int d, int bs, float[] q, int r, float scale, float[] S, int ldS,
                                      int col) {
            long row = (long) bs * Float.BYTES;
            FloatVector a = FloatVector.zero(SPECIES);
            for (int f = 0; f < d; f++) {
                a = FloatVector.fromMemorySegment(SPECIES, mem, at + f * row, ORDER).fma(FloatVector.broadcast(SPECIES, q[r * d + f]), a);
            }
            a.mul(scale).intoArray(S, r * ldS + col);
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

        private static void oneRowI8(MemorySegment mem, long at, int d, int bs, float[] q, int r, FloatVector tokenScale, float[] S,
                                     int ldS, int col) {
            FloatVector a = FloatVector.zero(SPECIES);
            for (int f = 0; f < d; f++) a = bytes(mem, at + (long) f * bs).fma(FloatVector.broadcast(SPECIES, q[r * d + f]), a);
            a.mul(tokenScale).intoArray(S, r * ldS + col);
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
                for (int r = 0; r < R; r++) {
                    for (int t = 0; t < tokens; t++) scaled[r * tokens + t] = S[r * ldS + col + t] * mem.get(F, valueScales + (long) t * Float.BYTES);
                }
                S = scaled;
                ldS = tokens;
                col = 0;
            }
            int lanes = SPECIES.length(), wide = 4 * lanes, fullWide = d - d % wide, full = d - d % lanes;
            boolean f32 = dtype == KvDtype.F32;
            int r = 0;
            for (; r + 2 <= R; r += 2) {
                for (int fc = 0; fc < fullWide; fc += wide) {
                    if (f32) twoRowsF32(mem, values, d, tokens, S, r * ldS + col, ldS, fc, O, r * d);
                    else twoRowsI8(mem, values, d, tokens, S, r * ldS + col, ldS, fc, O, r * d);
                }
            }
            // rows left over, and feature vectors past the wide ones, one vector at a time; then scalar features
            for (int row = 0; row < R; row++) {
                int from = row < r ? fullWide : 0;
                for (int fc = from; fc < full; fc += lanes) {
                    if (f32) oneVectorF32(mem, values, d, tokens, S, row * ldS + col, fc, O, row * d);
                    else oneVectorI8(mem, values, d, tokens, S, row * ldS + col, fc, O, row * d);
                }
                for (int f = full; f < d; f++) {
                    float acc = O[row * d + f];
                    for (int t = 0; t < tokens; t++) acc += S[row * ldS + col + t] * Scalar.element(mem, values, (long) t * d + f, dtype);
                    O[row * d + f] = acc;
                }
            }
        }

        /** O rows r, r+1 (at o, o + d), features fc … fc + 4 vectors, += Σ_t p·v_t; float32 values. */
        private static void twoRowsF32(MemorySegment mem, long values, int d, int tokens, float[] S, int p0, int ldS, int fc,
                                       float[] O, int o) {
            int lanes = SPECIES.length(), o1 = o + d;
            FloatVector a0 = FloatVector.fromArray(SPECIES, O, o + fc), a1 = FloatVector.fromArray(SPECIES, O, o + fc + lanes);
            FloatVector a2 = FloatVector.fromArray(SPECIES, O, o + fc + 2 * lanes), a3 = FloatVector.fromArray(SPECIES, O, o + fc + 3 * lanes);
            FloatVector c0 = FloatVector.fromArray(SPECIES, O, o1 + fc), c1 = FloatVector.fromArray(SPECIES, O, o1 + fc + lanes);
            FloatVector c2 = FloatVector.fromArray(SPECIES, O, o1 + fc + 2 * lanes), c3 = FloatVector.fromArray(SPECIES, O, o1 + fc + 3 * lanes);
            long step = (long) lanes * Float.BYTES;
            for (int t = 0; t < tokens; t++) {
                long at = values + ((long) t * d + fc) * Float.BYTES;
                FloatVector v0 = FloatVector.fromMemorySegment(SPECIES, mem, at, ORDER);
                FloatVector v1 = FloatVector.fromMemorySegment(SPECIES, mem, at + step, ORDER);
                FloatVector v2 = FloatVector.fromMemorySegment(SPECIES, mem, at + 2 * step, ORDER);
                FloatVector v3 = FloatVector.fromMemorySegment(SPECIES, mem, at + 3 * step, ORDER);
                FloatVector p = FloatVector.broadcast(SPECIES, S[p0 + t]), pp = FloatVector.broadcast(SPECIES, S[p0 + ldS + t]);
                a0 = v0.fma(p, a0);
                a1 = v1.fma(p, a1);
                a2 = v2.fma(p, a2);
                a3 = v3.fma(p, a3);
                c0 = v0.fma(pp, c0);
                c1 = v1.fma(pp, c1);
                c2 = v2.fma(pp, c2);
                c3 = v3.fma(pp, c3);
            }
            a0.intoArray(O, o + fc);
            a1.intoArray(O, o + fc + lanes);
            a2.intoArray(O, o + fc + 2 * lanes);
            a3.intoArray(O, o + fc + 3 * lanes);
            c0.intoArray(O, o1 + fc);
            c1.intoArray(O, o1 + fc + lanes);
            c2.intoArray(O, o1 + fc + 2 * lanes);
            c3.intoArray(O, o1 + fc + 3 * lanes);
        }

        /** As {@link #twoRowsF32} for int8 values (the probabilities already scaled by each token's scale). */
        private static void twoRowsI8(MemorySegment mem, long values, int d, int tokens, float[] S, int p0, int ldS, int fc,
                                      float[] O, int o) {
            int lanes = SPECIES.length(), o1 = o + d;
            FloatVector a0 = FloatVector.fromArray(SPECIES, O, o + fc), a1 = FloatVector.fromArray(SPECIES, O, o + fc + lanes);
            FloatVector a2 = FloatVector.fromArray(SPECIES, O, o + fc + 2 * lanes), a3 = FloatVector.fromArray(SPECIES, O, o + fc + 3 * lanes);
            FloatVector c0 = FloatVector.fromArray(SPECIES, O, o1 + fc), c1 = FloatVector.fromArray(SPECIES, O, o1 + fc + lanes);
            FloatVector c2 = FloatVector.fromArray(SPECIES, O, o1 + fc + 2 * lanes), c3 = FloatVector.fromArray(SPECIES, O, o1 + fc + 3 * lanes);
            for (int t = 0; t < tokens; t++) {
                long at = values + (long) t * d + fc;
                FloatVector v0 = bytes(mem, at), v1 = bytes(mem, at + lanes), v2 = bytes(mem, at + 2L * lanes), v3 = bytes(mem, at + 3L * lanes);
                FloatVector p = FloatVector.broadcast(SPECIES, S[p0 + t]), pp = FloatVector.broadcast(SPECIES, S[p0 + ldS + t]);
                a0 = v0.fma(p, a0);
                a1 = v1.fma(p, a1);
                a2 = v2.fma(p, a2);
                a3 = v3.fma(p, a3);
                c0 = v0.fma(pp, c0);
                c1 = v1.fma(pp, c1);
                c2 = v2.fma(pp, c2);
                c3 = v3.fma(pp, c3);
            }
            a0.intoArray(O, o + fc);
            a1.intoArray(O, o + fc + lanes);
            a2.intoArray(O, o + fc + 2 * lanes);
            a3.intoArray(O, o + fc + 3 * lanes);
            c0.intoArray(O, o1 + fc);
            c1.intoArray(O, o1 + fc + lanes);
            c2.intoArray(O, o1 + fc + 2 * lanes);
            c3.intoArray(O, o1 + fc + 3 * lanes);
        }

        private static void oneVectorF32(MemorySegment mem, long values, int d, int tokens, float[] S, int p0, int fc, float[] O, int o) {
            FloatVector acc = FloatVector.fromArray(SPECIES, O, o + fc);
            for (int t = 0; t < tokens; t++) {
                acc = FloatVector.fromMemorySegment(SPECIES, mem, values + ((long) t * d + fc) * Float.BYTES, ORDER)
                        .fma(FloatVector.broadcast(SPECIES, S[p0 + t]), acc);
            }
            acc.intoArray(O, o + fc);
        }

        private static void oneVectorI8(MemorySegment mem, long values, int d, int tokens, float[] S, int p0, int fc, float[] O, int o) {
            FloatVector acc = FloatVector.fromArray(SPECIES, O, o + fc);
            for (int t = 0; t < tokens; t++) acc = bytes(mem, values + (long) t * d + fc).fma(FloatVector.broadcast(SPECIES, S[p0 + t]), acc);
            acc.intoArray(O, o + fc);
        }
    }
}
