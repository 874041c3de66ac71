package dev.headroom.attention;

import dev.headroom.cache.KvDtype;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
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
 * only the first {@code tokens} ≤ bs slots hold keys. Query rows are {@code q[r·d ..]} in a float
 * segment, scores {@code S[r·ldS + col ..]}, output rows {@code O[r·d ..]}.
 */
interface DecodeBlocks {

    /** S[r][col + t] = scale · q_r · k_t for rows r &lt; R and tokens t &lt; tokens. */
    void scores(MemorySegment mem, long keys, long keyScales, KvDtype dtype, int d, int bs, int tokens,
                MemorySegment q, int R, float scale, MemorySegment S, int ldS, int col);

    /** O_r += Σ_t S[r][col + t] · v_t for rows r &lt; R and tokens t &lt; tokens. */
    void accumulate(MemorySegment mem, long values, long valueScales, KvDtype dtype, int d, int bs, int tokens,
                    MemorySegment S, int ldS, int col, int R, MemorySegment O);

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
                           MemorySegment q, int R, float scale, MemorySegment S, int ldS, int col) {
            for (int r = 0; r < R; r++) {
                for (int t = 0; t < tokens; t++) {
                    float dot = 0;
                    for (int f = 0; f < d; f++) dot += q.getAtIndex(F, (long) r * d + f) * element(mem, keys, (long) f * bs + t, dtype);
                    S.setAtIndex(F, (long) r * ldS + col + t, dot * tokenScale(mem, keyScales, t, dtype) * scale);
                }
            }
        }

        @Override
        public void accumulate(MemorySegment mem, long values, long valueScales, KvDtype dtype, int d, int bs, int tokens,
                               MemorySegment S, int ldS, int col, int R, MemorySegment O) {
            for (int r = 0; r < R; r++) {
                for (int t = 0; t < tokens; t++) {
                    float p = S.getAtIndex(F, (long) r * ldS + col + t) * tokenScale(mem, valueScales, t, dtype);
                    if (p == 0f) continue;
                    for (int f = 0; f < d; f++) {
                        long o = (long) r * d + f;
                        O.setAtIndex(F, o, O.getAtIndex(F, o) + p * element(mem, values, (long) t * d + f, dtype));
                    }
                }
            }
        }
    }

    /**
     * The Vector API form. Scores: the lanes run over a block's tokens (Kᵀ rows are contiguous
     * over tokens), four query rows at a time so each Kᵀ row is loaded once per four rows; no
     * horizontal sums. Weighted sum: the lanes run over features, one output row at a time kept in
     * a register across the block's tokens. int8 converts bytes to floats in registers and applies
     * the per-token scale once per score (keys) or folds it into the probability (values). float16
     * has no vector conversion in this JDK's Vector API, so its blocks are converted to float32 in
     * a per-thread buffer first.
     */
    final class Vector implements DecodeBlocks {
        private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
        /** Bytes with as many lanes as {@link dev.headroom.kernels.Vectors#SPECIES} has floats (if such a shape exists). */
        private static final VectorSpecies<Byte> BYTES = VectorSpecies.of(byte.class,
                jdk.incubator.vector.VectorShape.forBitSize(Math.max(64, SPECIES.length() * 8)));
        /** Per thread, a float32 copy of one float16 block part (d × bs floats, a few KiB): heap, reused. */
        private static final ThreadLocal<float[]> F16_BUFFER = ThreadLocal.withInitial(() -> new float[0]);

        private static boolean bytesMatch() {
            return BYTES.length() == SPECIES.length();
        }

        /** A float32 copy of {@code count} float16 elements from {@code base}, in this thread's buffer. */
        private static MemorySegment widen(MemorySegment mem, long base, int count) {
            float[] buf = F16_BUFFER.get();
            if (buf.length < count) F16_BUFFER.set(buf = new float[count]);
            for (int i = 0; i < count; i++) buf[i] = Float.float16ToFloat(mem.get(ValueLayout.JAVA_SHORT_UNALIGNED, base + i * 2L));
            return MemorySegment.ofArray(buf);
        }

        @Override
        public void scores(MemorySegment mem, long keys, long keyScales, KvDtype dtype, int d, int bs, int tokens,
                           MemorySegment q, int R, float scale, MemorySegment S, int ldS, int col) {
            if (dtype == KvDtype.F16) {
                scores(widen(mem, keys, d * bs), 0, 0, KvDtype.F32, d, bs, tokens, q, R, scale, S, ldS, col);
                return;
            }
            if (dtype == KvDtype.INT8 && !bytesMatch()) {
                SCALAR.scores(mem, keys, keyScales, dtype, d, bs, tokens, q, R, scale, S, ldS, col);
                return;
            }
            int lanes = SPECIES.length();
            for (int tc = 0; tc < tokens; tc += lanes) {
                VectorMask<Float> m = tc + lanes <= tokens ? null : SPECIES.indexInRange(tc, tokens);
                FloatVector tokenScale = FloatVector.broadcast(SPECIES, scale);
                if (dtype == KvDtype.INT8) {
                    tokenScale = load(mem, keyScales + (long) tc * Float.BYTES, m).mul(scale);
                }
                int r = 0;
                for (; r + 4 <= R; r += 4) {
                    FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0;
                    long q0 = (long) r * d, q1 = q0 + d, q2 = q1 + d, q3 = q2 + d;
                    for (int f = 0; f < d; f++) {
                        FloatVector k = key(mem, keys, (long) f * bs + tc, dtype, m);
                        a0 = k.fma(FloatVector.broadcast(SPECIES, q.getAtIndex(F, q0 + f)), a0);
                        a1 = k.fma(FloatVector.broadcast(SPECIES, q.getAtIndex(F, q1 + f)), a1);
                        a2 = k.fma(FloatVector.broadcast(SPECIES, q.getAtIndex(F, q2 + f)), a2);
                        a3 = k.fma(FloatVector.broadcast(SPECIES, q.getAtIndex(F, q3 + f)), a3);
                    }
                    store(a0.mul(tokenScale), S, ((long) r * ldS + col + tc) * Float.BYTES, m);
                    store(a1.mul(tokenScale), S, ((long) (r + 1) * ldS + col + tc) * Float.BYTES, m);
                    store(a2.mul(tokenScale), S, ((long) (r + 2) * ldS + col + tc) * Float.BYTES, m);
                    store(a3.mul(tokenScale), S, ((long) (r + 3) * ldS + col + tc) * Float.BYTES, m);
                }
                for (; r < R; r++) {
                    FloatVector a = FloatVector.zero(SPECIES);
                    long q0 = (long) r * d;
                    for (int f = 0; f < d; f++) a = key(mem, keys, (long) f * bs + tc, dtype, m).fma(FloatVector.broadcast(SPECIES, q.getAtIndex(F, q0 + f)), a);
                    store(a.mul(tokenScale), S, ((long) r * ldS + col + tc) * Float.BYTES, m);
                }
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

        private static void store(FloatVector v, MemorySegment mem, long byteOffset, VectorMask<Float> m) {
            if (m == null) v.intoMemorySegment(mem, byteOffset, ORDER);
            else v.intoMemorySegment(mem, byteOffset, ORDER, m);
        }

        @Override
        public void accumulate(MemorySegment mem, long values, long valueScales, KvDtype dtype, int d, int bs, int tokens,
                               MemorySegment S, int ldS, int col, int R, MemorySegment O) {
            if (dtype == KvDtype.F16) {
                accumulate(widen(mem, values, d * bs), 0, 0, KvDtype.F32, d, bs, tokens, S, ldS, col, R, O);
                return;
            }
            if (dtype == KvDtype.INT8 && !bytesMatch()) {
                SCALAR.accumulate(mem, values, valueScales, dtype, d, bs, tokens, S, ldS, col, R, O);
                return;
            }
            int lanes = SPECIES.length();
            for (int r = 0; r < R; r++) {
                long p0 = (long) r * ldS + col;
                for (int fc = 0; fc < d; fc += lanes) {
                    VectorMask<Float> m = fc + lanes <= d ? null : SPECIES.indexInRange(fc, d);
                    long o = ((long) r * d + fc) * Float.BYTES;
                    FloatVector acc = load(O, o, m);
                    for (int t = 0; t < tokens; t++) {
                        float p = S.getAtIndex(F, p0 + t);
                        if (p == 0f) continue;
                        if (dtype == KvDtype.INT8) p *= mem.get(F, valueScales + (long) t * Float.BYTES);
                        acc = key(mem, values, (long) t * d + fc, dtype, m).fma(FloatVector.broadcast(SPECIES, p), acc);
                    }
                    store(acc, O, o, m);
                }
            }
        }
    }
}
