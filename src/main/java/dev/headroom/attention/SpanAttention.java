package dev.headroom.attention;

import dev.headroom.blas.Blas;
import dev.headroom.kernels.Softmax;
import dev.headroom.runtime.WorkerPool;
import dev.headroom.tensor.Matrix;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The one attention loop every kernel runs: for a block of m query rows, go through spans of
 * keys; per span, scores by sgemm, mask, an online softmax step, and the weighted sum by sgemm
 * into the output. Kernels differ only in which spans they visit: the dense kernel one span of
 * all keys, the tiled kernel fixed-width tiles, the sparse kernel the non-empty tiles of a
 * compiled layout.
 *
 * <p>The online softmax (Milakov and Gimelshein 2018, as in FlashAttention) keeps per row the
 * running maximum M and the running sum L of e^(s − M). When a span raises the maximum, the
 * partial output and L are rescaled by e^(M_old − M_new). After the last span O /= L. With one
 * span this is exactly the ordinary softmax. Rows with no allowed key keep M = −∞, L = 0 and
 * output zeros.
 */
final class SpanAttention {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private SpanAttention() {}

    /** Keys [from, to) to visit, and how to mask them beyond the regular mask. */
    interface Spans {
        /** Number of spans. */
        int count();

        int from(int s);

        int to(int s);

        /**
         * Key ranges of span s where the sparse pattern must be applied element by element (its
         * partial tiles), as flattened pairs {from, to, from, to, …}; empty when none.
         */
        int[] patternRanges(int s);
    }

    /** Scratch floats for m rows and spans of at most {@code maxSpan} keys. */
    static long scratchFloats(int m, int maxSpan) {
        return (long) m * maxSpan + 2L * m;
    }

    /**
     * Attends {@code blk} over {@code spans}, which must be ascending, disjoint and each at most
     * {@code maxSpan} keys long.
     */
    static void attend(HeadBlock blk, MemorySegment scratch, Spans spans, int maxSpan) {
        attend(blk, scratch, spans, maxSpan, null, null, 0);
    }

    /**
     * As {@link #attend(HeadBlock, MemorySegment, Spans, int)}, but with {@code maxOut} and
     * {@code sumOut} given the last step, O /= L, is not taken: the output is left unnormalised
     * and each row's M and L are written to them at float index {@code at + i}, for the caller
     * to merge with the state of other keys ({@link PartialAttention}). Blocks with an observer
     * must not ask for the state.
     */
    static void attend(HeadBlock blk, MemorySegment scratch, Spans spans, int maxSpan, MemorySegment maxOut,
                       MemorySegment sumOut, long at) {
        assert maxOut == null || blk.observer() == null : "an observed block is normalised";
        int m = blk.rows(), q0 = blk.firstQuery();
        Softmax softmax = blk.softmax();
        Matrix out = blk.out();
        /* runningMax M, runningSum L: (m) each, after the scores in the scratch. */
        long runningMax = (long) m * maxSpan, runningSum = runningMax + m;
        for (int i = 0; i < m; i++) {
            scratch.setAtIndex(F, runningMax + i, Float.NEGATIVE_INFINITY);
            scratch.setAtIndex(F, runningSum + i, 0f);
        }
        if (spans.count() == 0) {
            zero(out);
            if (maxOut != null) copyState(scratch, runningMax, runningSum, m, maxOut, sumOut, at);
            observe(blk, scratch, spans, maxSpan);
            return;
        }
        for (int s = 0; s < spans.count(); s++) {
            WorkerPool.checkCancelled(); // a cancelled call stops here: one span of work per worker at most
            int k0 = spans.from(s), k1 = spans.to(s), kn = k1 - k0;
            assert kn > 0 && kn <= maxSpan : "span [" + k0 + ", " + k1 + ") vs max " + maxSpan;
            boolean first = s == 0;
            /* S: (m, kn) scores of this span, then unnormalised probabilities. */
            Matrix S = Matrix.of(scratch, 0, m, kn);
            long t = blk.start();

            // S = scale · Q_h K_gᵀ   for keys [k0, k1)
            blk.scores(k0, k1, S, -1);
            t = blk.lap(Profile.Phase.SCORES, t);

            // mask; P = e^(S − M_new); L = L·e^(M_old − M_new) + Σ P; O rows rescaled alike
            int[] ranges = spans.patternRanges(s);
            for (int i = 0; i < m; i++) {
                long row = S.index(i, 0);
                int len = maskRow(blk, scratch, row, q0 + i, k0, kn, ranges);
                float oldMax = scratch.getAtIndex(F, runningMax + i);
                float newMax = Math.max(oldMax, softmax.max(scratch, row, len));
                float spanSum = softmax.expInPlace(scratch, row, len, newMax);
                if (len < kn) scratch.asSlice((row + len) * Float.BYTES, (long) (kn - len) * Float.BYTES).fill((byte) 0);
                if (newMax == Float.NEGATIVE_INFINITY) continue;        // nothing allowed yet
                float correction = oldMax == newMax ? 1f : (float) Math.exp(oldMax - newMax); // 0 when oldMax = −∞
                scratch.setAtIndex(F, runningMax + i, newMax);
                scratch.setAtIndex(F, runningSum + i, scratch.getAtIndex(F, runningSum + i) * correction + spanSum);
                if (!first && correction != 1f) softmax.scale(out.segment(), out.index(i, 0), out.cols(), correction);
            }
            t = blk.lap(Profile.Phase.SOFTMAX, t);

            // O_h (+)= P · V_g   for keys [k0, k1), in row blocks that OpenBLAS can take without packing P:
            // on one thread a width-32 head over 512 keys ran at 133 GFLOP/s in blocks of 32 rows
            // against 101 in one call of 256 (HeadShapeSgemmBenchmark)
            Matrix V = blk.valuesTransposed() ? blk.values().colRange(k0, k1) : blk.values().rowRange(k0, k1);
            Blas.sgemmInSmallBlocks(1f, S, V, blk.valuesTransposed(), first ? 0f : 1f, out);
            blk.lap(Profile.Phase.WEIGHTED_SUM, t);
        }

        if (maxOut != null) { // the state instead of O_h /= L: the caller merges it, then normalises
            copyState(scratch, runningMax, runningSum, m, maxOut, sumOut, at);
            return;
        }

        // O_h /= L; a row with no allowed key has L = 0 and outputs zeros
        long t = blk.start();
        for (int i = 0; i < m; i++) {
            float sum = scratch.getAtIndex(F, runningSum + i);
            softmax.scale(out.segment(), out.index(i, 0), out.cols(), sum > 0f ? 1f / sum : 0f);
        }
        blk.lap(Profile.Phase.WEIGHTED_SUM, t);

        // Observed blocks only: a second sweep with the final M and L (see ProbabilitySweep)
        observe(blk, scratch, spans, maxSpan);
    }

    /** Copies the m running maxima and sums from the scratch to {@code maxOut} and {@code sumOut} at float index {@code at}. */
    private static void copyState(MemorySegment scratch, long runningMax, long runningSum, int m, MemorySegment maxOut,
                                  MemorySegment sumOut, long at) {
        MemorySegment.copy(scratch, runningMax * Float.BYTES, maxOut, at * Float.BYTES, (long) m * Float.BYTES);
        MemorySegment.copy(scratch, runningSum * Float.BYTES, sumOut, at * Float.BYTES, (long) m * Float.BYTES);
    }

    private static void observe(HeadBlock blk, MemorySegment scratch, Spans spans, int maxSpan) {
        if (blk.observer() == null) return;
        AttentionObserver.Rows rows = blk.observer().rows(blk.batch(), blk.head(), blk.firstQuery(), blk.rows(), blk.keys());
        if (rows != null) ProbabilitySweep.run(blk, scratch, spans, maxSpan, rows);
    }

    /**
     * Masks the scores of query row i for keys [k0, k0 + kn) (at {@code row} in {@code scratch}):
     * the explicit mask, then the sparse pattern over {@code patternRanges}, then any position
     * bias (ALiBi); returns how many of
     * the span's keys the row may see at all (the rest are past its causal or padding end). The
     * kernels and the probability sweep both call this, so the probabilities they see agree.
     */
    static int maskRow(HeadBlock blk, MemorySegment scratch, long row, int i, int k0, int kn, int[] patternRanges) {
        Mask.Bound mask = blk.mask();
        int len = Math.clamp((long) mask.keyEnd(blk.batch(), i) - k0, 0, kn);
        if (mask.hasExplicit()) mask.applyExplicit(blk.batch(), blk.head(), i, scratch, row, k0, k0 + len);
        for (int r = 0; r < patternRanges.length; r += 2) {
            mask.applyPattern(blk.batch(), blk.head(), i, scratch, row, k0, patternRanges[r], Math.min(patternRanges[r + 1], k0 + len));
        }
        if (mask.hasBias()) mask.applyBias(blk.batch(), blk.head(), i, scratch, row, k0, len);
        return len;
    }

    /** The largest key end any row of the block may see (0: the block sees nothing). */
    static int blockKeyEnd(HeadBlock blk) {
        int end = 0;
        for (int i = 0; i < blk.rows(); i++) end = Math.max(end, blk.mask().keyEnd(blk.batch(), blk.firstQuery() + i));
        return end;
    }

    static void zero(Matrix out) {
        for (int i = 0; i < out.rows(); i++) {
            out.segment().asSlice(out.index(i, 0) * Float.BYTES, (long) out.cols() * Float.BYTES).fill((byte) 0);
        }
    }

    private static final int[] NO_RANGES = {};

    /** Consecutive spans of at most {@code width} keys covering [0, end); the pattern, if any, applied to all. */
    static Spans tiles(int end, int width, boolean needsPattern) {
        int count = (end + width - 1) / width;
        return new Spans() {
            public int count() {
                return count;
            }

            public int from(int s) {
                return s * width;
            }

            public int to(int s) {
                return Math.min(end, (s + 1) * width);
            }

            public int[] patternRanges(int s) {
                return needsPattern ? new int[]{from(s), to(s)} : NO_RANGES;
            }
        };
    }
}
