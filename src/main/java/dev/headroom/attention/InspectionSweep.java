package dev.headroom.attention;

import dev.headroom.blas.Blas;
import dev.headroom.inspect.AttentionCapture;
import dev.headroom.inspect.HeadStatistics;
import dev.headroom.inspect.Inspection;
import dev.headroom.kernels.VectorMath;
import dev.headroom.kernels.Vectors;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import dev.headroom.tensor.Matrix;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * The second sweep a kernel makes over a block when it is inspected: with every row's final
 * maximum M and sum L known from the first sweep, it forms the scores of each span again, turns
 * them into exact probabilities p = e^(s − M) / L, and from them captures rows and accumulates
 * {@link HeadStatistics}. It visits the same spans as the kernel (so sparse tiles stay skipped)
 * and keeps nothing larger than the kernel's own scratch.
 *
 * <p>Why a second sweep rather than sums carried through the online softmax: row statistics could
 * be rescaled like the output (entropy as logsumexp − Σ p·s), but the column masses (Σ over rows
 * of p_ij) cannot, because each row's final normaliser is unknown while a span is in cache. One
 * sweep with final probabilities gives every statistic exactly, for every kernel, and costs
 * nothing when inspection is off.
 */
final class InspectionSweep {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private InspectionSweep() {}

    static void run(HeadBlock blk, MemorySegment scratch, SpanAttention.Spans spans, int maxSpan) {
        Inspection insp = blk.inspection();
        int m = blk.rows(), b = blk.batch(), h = blk.head(), q0 = blk.firstQuery(), nk = blk.keys();
        int nq = blk.mask().queries();
        long runningMax = (long) m * maxSpan, runningSum = runningMax + m;
        AttentionCapture capture = insp.capture() != null && insp.capture().hasHead(h) ? insp.capture() : null;
        HeadStatistics stats = insp.statistics();
        boolean anyCaptured = false;
        if (capture != null) for (int i = 0; i < m && !anyCaptured; i++) anyCaptured = capture.hasRow(q0 + i);
        if (!anyCaptured) capture = null;
        if (capture == null && stats == null) return;

        if (capture != null) {
            for (int i = 0; i < m; i++) {
                if (!capture.hasRow(q0 + i)) continue;
                capture.probabilities().segment().asSlice(capture.index(b, h, q0 + i) * Float.BYTES, (long) nk * Float.BYTES).fill((byte) 0);
            }
        }
        HeadStatistics.Acc acc = stats == null ? null : stats.newBlock();
        RowTargets targets = stats == null ? null : RowTargets.of(stats, b, nk, m);
        int maxOffset = stats == null ? 0 : stats.options().maxOffset(), band = stats == null ? 0 : stats.options().band();
        double[] sumPs = new double[m];       // Σ p·s per row, across spans
        int[] allowed = new int[m];           // allowed keys per row
        float[] bestP = new float[m];         // argmax per row
        int[] bestJ = new int[m];
        Arrays.fill(bestJ, -1);
        double[] columns = stats == null ? null : new double[maxSpan];

        double[] moments = new double[2];
        for (int s = 0; s < spans.count(); s++) {
            int k0 = spans.from(s), k1 = spans.to(s), kn = k1 - k0;
            Matrix S = Matrix.of(scratch, 0, m, kn);
            if (acc != null) {
                Blas.sgemm(blk.scale(), blk.queryT(), true, blk.keyT().colRange(k0, k1), false, 0f, S);
            } else {
                // capture only: the scores of the captured rows alone, one row at a time
                for (int i = 0; i < m; i++) {
                    if (!capture.hasRow(q0 + i)) continue;
                    Blas.sgemm(blk.scale(), blk.queryT().colRange(i, i + 1), true, blk.keyT().colRange(k0, k1), false, 0f,
                            S.rowRange(i, i + 1));
                }
            }
            if (columns != null) Arrays.fill(columns, 0, kn, 0);
            int[] ranges = spans.patternRanges(s);
            for (int i = 0; i < m; i++) {
                int qi = q0 + i;
                boolean capturing = capture != null && capture.hasRow(qi);
                boolean measuring = acc != null && stats.options().counts(b, qi);
                if (!measuring && !capturing) continue;
                long row = S.index(i, 0);
                float M = scratch.getAtIndex(F, runningMax + i), L = scratch.getAtIndex(F, runningSum + i);
                int len = SpanAttention.maskRow(blk, scratch, row, qi, k0, kn, ranges);
                if (L <= 0f) continue; // no allowed key in the row: it attends to nothing
                // p = e^(s − M) / L in place, with Σ p·s and the count of allowed keys
                moments[0] = moments[1] = 0;
                probabilities(scratch, row, len, M, 1f / L, moments);
                if (capturing) {
                    MemorySegment.copy(scratch, row * Float.BYTES, capture.probabilities().segment(),
                            (capture.index(b, h, qi) + k0) * Float.BYTES, (long) len * Float.BYTES);
                }
                if (!measuring) continue;
                sumPs[i] += moments[0];
                allowed[i] += (int) moments[1];
                long pos = (long) qi + nk - nq;
                for (int t = 0; t < len; t++) {
                    float p = scratch.getAtIndex(F, row + t);
                    if (p == 0f) continue;
                    int j = k0 + t;
                    if (p > bestP[i]) {
                        bestP[i] = p;
                        bestJ[i] = j;
                    }
                    long off = j - pos;
                    acc.distance += p * (double) Math.abs(off);
                    if (off == 0) acc.self += p;
                    else if (off == -1) acc.previous += p;
                    else if (off == 1) acc.next += p;
                    if (j == 0) acc.first += p;
                    if (Math.abs(off) <= band) acc.band += p;
                    if (Math.abs(off) <= maxOffset) acc.offsets[(int) off + maxOffset] += p;
                    if (targets != null) targets.add(acc, i, pos, j, p);
                    columns[t] += p;
                }
            }
            if (stats != null) stats.addColumns(h, b, nk, k0, columns, kn);
        }
        if (acc == null) return;
        for (int i = 0; i < m; i++) {
            float M = scratch.getAtIndex(F, runningMax + i), L = scratch.getAtIndex(F, runningSum + i);
            if (L <= 0f || allowed[i] == 0 || !stats.options().counts(b, q0 + i)) continue;
            double entropy = Math.max(0, M + Math.log(L) - sumPs[i]); // logsumexp(s) − Σ p·s
            acc.rows++;
            acc.entropy += entropy;
            if (allowed[i] > 1) {
                acc.entropyRows++;
                acc.normalizedEntropy += entropy / Math.log(allowed[i]);
            }
            acc.confidence += bestP[i];
            long pos = (long) (q0 + i) + nk - nq;
            acc.argmaxOffsets.merge((int) (bestJ[i] - pos), 1L, Long::sum);
            if (targets != null) targets.finishRow(acc, i, pos);
        }
        stats.add(h, acc);
    }

    /**
     * x[row .. row + len) ← e^(x − M)·invL in place (−∞, a forbidden key, becomes 0); adds Σ p·s
     * to moments[0] and the number of allowed keys to moments[1]. Vector lanes, then a scalar tail
     * with the same arithmetic.
     */
    static void probabilities(MemorySegment x, long row, int len, float M, float invL, double[] moments) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(len);
        FloatVector max = FloatVector.broadcast(SPECIES, M), inv = FloatVector.broadcast(SPECIES, invL);
        FloatVector ps = FloatVector.zero(SPECIES);
        int count = 0, t = 0;
        for (; t < bound; t += lanes) {
            long at = (row + t) * Float.BYTES;
            FloatVector s = FloatVector.fromMemorySegment(SPECIES, x, at, ORDER);
            VectorMask<Float> forbidden = s.compare(VectorOperators.EQ, Float.NEGATIVE_INFINITY);
            FloatVector p = VectorMath.exp(s.sub(max)).mul(inv);
            ps = ps.add(p.mul(s).blend(0f, forbidden)); // 0·(−∞) would be NaN
            count += lanes - forbidden.trueCount();
            p.intoMemorySegment(x, at, ORDER);
        }
        double sum = Vectors.sumLanes(ps);
        for (; t < len; t++) {
            float s = x.getAtIndex(F, row + t);
            if (s == Float.NEGATIVE_INFINITY) {
                x.setAtIndex(F, row + t, 0f);
                continue;
            }
            float p = VectorMath.expScalar(s - M) * invL;
            x.setAtIndex(F, row + t, p);
            sum += (double) p * s;
            count++;
        }
        moments[0] += sum;
        moments[1] += count;
    }

    /**
     * The delimiter and duplicate/induction sums of one block's rows, over the targets of its batch
     * element (computed once per batch element by {@link HeadStatistics#targets}).
     */
    static final class RowTargets {
        private final HeadStatistics.Targets targets;
        /** Per row of the block: mass on earlier occurrences, and on the tokens after them. */
        private final double[] rowDuplicate, rowInduction;

        private RowTargets(HeadStatistics.Targets targets, int rows) {
            this.targets = targets;
            this.rowDuplicate = new double[rows];
            this.rowInduction = new double[rows];
        }

        static RowTargets of(HeadStatistics stats, int b, int keys, int rows) {
            HeadStatistics.Targets t = stats.targets(b, keys);
            return t == null ? null : new RowTargets(t, rows);
        }

        void add(HeadStatistics.Acc acc, int row, long pos, int j, float p) {
            if (targets.delimiter() != null && targets.delimiter()[j]) acc.delimiter += p;
            int[] tokens = targets.tokens();
            if (tokens == null || pos < 0 || pos >= tokens.length || j >= pos) return;
            int t = tokens[(int) pos];
            if (tokens[j] == t) rowDuplicate[row] += p;                    // an earlier occurrence of my token
            if (j >= 1 && tokens[j - 1] == t) rowInduction[row] += p;      // the token after one (j − 1 < pos − 1 as j < pos)
        }

        void finishRow(HeadStatistics.Acc acc, int row, long pos) {
            int[] tokens = targets.tokens();
            if (tokens == null || pos < 0 || pos >= tokens.length) return;
            if (targets.hasDuplicate()[(int) pos]) {
                acc.duplicateRows++;
                acc.duplicate += rowDuplicate[row];
            }
            if (targets.hasInduction()[(int) pos]) {
                acc.inductionRows++;
                acc.induction += rowInduction[row];
            }
        }
    }
}
