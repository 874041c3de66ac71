package dev.headroom.attention;

import dev.headroom.cache.KvDtype;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
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
     */
    final class Vector implements DecodeBlocks {
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
                scores(widen(mem, keys, d * bs), 0, 0, KvDtype.F32, d, bs, tokens, q, R, scale, S, ldS, col);
                return;
            }
            if (dtype == KvDtype.INT8 && !BYTES_MATCH) {
                SCALAR.scores(mem, keys, keyScales, dtype, d, bs, tokens, q, R, scale, S, ldS, col);
                return;
            }
            int lanes = SPECIES.length();
            for (int tc = 0; tc < tokens; tc += lanes) {
                VectorMask<Float> m = tc + lanes <= tokens ? null : SPECIES.indexInRange(tc, tokens);
                FloatVector tokenScale = dtype == KvDtype.INT8
                        ? load(mem, keyScales + (long) tc * Float.BYTES, m).mul(scale) : FloatVector.broadcast(SPECIES, scale);
                int r = 0;
                for (; r + 4 <= R; r += 4) {
                    int q0 = r * d, q1 = q0 + d, q2 = q1 + d, q3 = q2 + d;
                    FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
                    int f = 0;
                    for (; f + 2 <= d; f += 2) {
                        FloatVector k = key(mem, keys, (long) f * bs + tc, dtype, m);
                        FloatVector k2 = key(mem, keys, (long) (f + 1) * bs + tc, dtype, m);
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
                        FloatVector k = key(mem, keys, (long) f * bs + tc, dtype, m);
                        a0 = k.fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a0);
                        a1 = k.fma(FloatVector.broadcast(SPECIES, q[q1 + f]), a1);
                        a2 = k.fma(FloatVector.broadcast(SPECIES, q[q2 + f]), a2);
                        a3 = k.fma(FloatVector.broadcast(SPECIES, q[q3 + f]), a3);
                    }
                    store(a0.add(b0).mul(tokenScale), S, r * ldS + col + tc, m);
                    store(a1.add(b1).mul(tokenScale), S, (r + 1) * ldS + col + tc, m);
                    store(a2.add(b2).mul(tokenScale), S, (r + 2) * ldS + col + tc, m);
                    store(a3.add(b3).mul(tokenScale), S, (r + 3) * ldS + col + tc, m);
                }
                for (; r < R; r++) {
                    FloatVector a = FloatVector.zero(SPECIES), b = a;
                    int q0 = r * d, f = 0;
                    for (; f + 2 <= d; f += 2) {
                        a = key(mem, keys, (long) f * bs + tc, dtype, m).fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a);
                        b = key(mem, keys, (long) (f + 1) * bs + tc, dtype, m).fma(FloatVector.broadcast(SPECIES, q[q0 + f + 1]), b);
                    }
                    if (f < d) a = key(mem, keys, (long) f * bs + tc, dtype, m).fma(FloatVector.broadcast(SPECIES, q[q0 + f]), a);
                    store(a.add(b).mul(tokenScale), S, r * ldS + col + tc, m);
                }
            }
        }

        @Override
        public void accumulate(MemorySegment mem, long values, long valueScales, KvDtype dtype, int d, int bs, int tokens,
                               float[] S, int ldS, int col, int R, float[] O) {
            if (dtype == KvDtype.F16) {
                accumulate(widen(mem, values, d * bs), 0, 0, KvDtype.F32, d, bs, tokens, S, ldS, col, R, O);
                return;
            }
            if (dtype == KvDtype.INT8) {
                if (!BYTES_MATCH) {
                    SCALAR.accumulate(mem, values, valueScales, dtype, d, bs, tokens, S, ldS, col, R, O);
                    return;
                }
                // fold each token's value scale into the probabilities: p'_rt = p_rt · s_t
                float[] scaled = buffer(1, R * tokens);
                for (int r = 0; r < R; r++) {
                    for (int t = 0; t < tokens; t++) {
                        scaled[r * tokens + t] = S[r * ldS + col + t] * mem.get(ValueLayout.JAVA_FLOAT_UNALIGNED,
                                valueScales + (long) t * Float.BYTES);
                    }
                }
                S = scaled;
                ldS = tokens;
                col = 0;
            }
            int lanes = SPECIES.length(), wide = 4 * lanes;
            int r = 0;
            for (; r + 2 <= R; r += 2) {
                int p0 = r * ldS + col, p1 = p0 + ldS, o0 = r * d, o1 = o0 + d;
                int fc = 0;
                for (; fc + wide <= d; fc += wide) {
                    FloatVector a0 = FloatVector.fromArray(SPECIES, O, o0 + fc), a1 = FloatVector.fromArray(SPECIES, O, o0 + fc + lanes);
                    FloatVector a2 = FloatVector.fromArray(SPECIES, O, o0 + fc + 2 * lanes), a3 = FloatVector.fromArray(SPECIES, O, o0 + fc + 3 * lanes);
                    FloatVector c0 = FloatVector.fromArray(SPECIES, O, o1 + fc), c1 = FloatVector.fromArray(SPECIES, O, o1 + fc + lanes);
                    FloatVector c2 = FloatVector.fromArray(SPECIES, O, o1 + fc + 2 * lanes), c3 = FloatVector.fromArray(SPECIES, O, o1 + fc + 3 * lanes);
                    for (int t = 0; t < tokens; t++) {
                        long row = (long) t * d + fc;
                        FloatVector v0 = key(mem, values, row, dtype, null), v1 = key(mem, values, row + lanes, dtype, null);
                        FloatVector v2 = key(mem, values, row + 2L * lanes, dtype, null), v3 = key(mem, values, row + 3L * lanes, dtype, null);
                        float p = S[p0 + t], pp = S[p1 + t];
                        a0 = v0.fma(FloatVector.broadcast(SPECIES, p), a0);
                        a1 = v1.fma(FloatVector.broadcast(SPECIES, p), a1);
                        a2 = v2.fma(FloatVector.broadcast(SPECIES, p), a2);
                        a3 = v3.fma(FloatVector.broadcast(SPECIES, p), a3);
                        c0 = v0.fma(FloatVector.broadcast(SPECIES, pp), c0);
                        c1 = v1.fma(FloatVector.broadcast(SPECIES, pp), c1);
                        c2 = v2.fma(FloatVector.broadcast(SPECIES, pp), c2);
                        c3 = v3.fma(FloatVector.broadcast(SPECIES, pp), c3);
                    }
                    a0.intoArray(O, o0 + fc);
                    a1.intoArray(O, o0 + fc + lanes);
                    a2.intoArray(O, o0 + fc + 2 * lanes);
                    a3.intoArray(O, o0 + fc + 3 * lanes);
                    c0.intoArray(O, o1 + fc);
                    c1.intoArray(O, o1 + fc + lanes);
                    c2.intoArray(O, o1 + fc + 2 * lanes);
                    c3.intoArray(O, o1 + fc + 3 * lanes);
                }
                accumulateTail(mem, values, dtype, d, tokens, S, p0, fc, O, o0);
                accumulateTail(mem, values, dtype, d, tokens, S, p1, fc, O, o1);
            }
            for (; r < R; r++) accumulateTail(mem, values, dtype, d, tokens, S, r * ldS + col, 0, O, r * d);
        }

        /** Features [from, d) of one output row, a vector at a time (masked at the end). */
        private static void accumulateTail(MemorySegment mem, long values, KvDtype dtype, int d, int tokens, float[] S, int p0,
                                           int from, float[] O, int o0) {
            int lanes = SPECIES.length();
            for (int fc = from; fc < d; fc += lanes) {
                VectorMask<Float> m = fc + lanes <= d ? null : SPECIES.indexInRange(fc, d);
                FloatVector acc = m == null ? FloatVector.fromArray(SPECIES, O, o0 + fc) : FloatVector.fromArray(SPECIES, O, o0 + fc, m);
                for (int t = 0; t < tokens; t++) acc = key(mem, values, (long) t * d + fc, dtype, m).fma(FloatVector.broadcast(SPECIES, S[p0 + t]), acc);
                if (m == null) acc.intoArray(O, o0 + fc);
                else acc.intoArray(O, o0 + fc, m);
            }
        }

        /** Lanes of element i.. of a block part (float32, or int8 converted to float); m null for all lanes. */
        private static FloatVector key(MemorySegment mem, long base, long i, KvDtype dtype, VectorMask<Float> m) {
            if (dtype == KvDtype.F32) return load(mem, base + i * Float.BYTES, m);
            ByteVector b = m == null ? ByteVector.fromMemorySegment(BYTES, mem, base + i, ORDER)
                    : ByteVector.fromMemorySegment(BYTES, mem, base + i, ORDER, m.cast(BYTES));
            return (FloatVector) b.convertShape(VectorOperators.B2F, SPECIES, 0);
        }

        private static FloatVector load(MemorySegment mem, long byteOffset, VectorMask<Float> m) {
            return m == null ? FloatVector.fromMemorySegment(SPECIES, mem, byteOffset, ORDER)
                    : FloatVector.fromMemorySegment(SPECIES, mem, byteOffset, ORDER, m);
        }

        private static void store(FloatVector v, float[] a, int at, VectorMask<Float> m) {
            if (m == null) v.intoArray(a, at);
            else v.intoArray(a, at, m);
        }
    }
}
