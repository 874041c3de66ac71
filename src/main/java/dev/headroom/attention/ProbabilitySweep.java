package dev.headroom.attention;

import dev.headroom.kernels.VectorMath;
import dev.headroom.kernels.Vectors;
import dev.headroom.tensor.Matrix;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * The second sweep a kernel makes over a block when an {@link AttentionObserver} asks for its
 * probabilities: with every row's final maximum M and sum L known from the first sweep, it forms
 * the scores of each span again, turns them into exact probabilities p = e^(s − M) / L, and hands
 * them to the observer. It visits the same spans as the kernel (so sparse tiles stay skipped)
 * and keeps nothing larger than the kernel's own scratch.
 *
 * <p>Why a second sweep rather than sums carried through the online softmax: row statistics could
 * be rescaled like the output (entropy as logsumexp − Σ p·s), but column masses (Σ over rows of
 * p_ij) cannot, because each row's final normaliser is unknown while a span is in cache. One sweep
 * with final probabilities gives every statistic exactly, for every kernel, and costs nothing
 * when nobody observes.
 */
final class ProbabilitySweep {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private ProbabilitySweep() {}

    static void run(HeadBlock blk, MemorySegment scratch, SpanAttention.Spans spans, int maxSpan, AttentionObserver.Rows rows) {
        int m = blk.rows(), b = blk.batch(), q0 = blk.firstQuery();
        long runningMax = (long) m * maxSpan, runningSum = runningMax + m;
        boolean every = rows.wantsEveryRow();
        double[] sumPs = new double[m];       // Σ p·s per row, across spans
        int[] allowed = new int[m];           // allowed keys per row, across spans
        double[] moments = new double[2];
        for (int s = 0; s < spans.count(); s++) {
            dev.headroom.runtime.WorkerPool.checkCancelled();
            int k0 = spans.from(s), k1 = spans.to(s), kn = k1 - k0;
            Matrix S = Matrix.of(scratch, 0, m, kn);
            if (every) {
                blk.scores(k0, k1, S, -1);
            } else {
                for (int i = 0; i < m; i++) if (rows.wants(i)) blk.scores(k0, k1, S, i);
            }
            int[] ranges = spans.patternRanges(s);
            for (int i = 0; i < m; i++) {
                if (!rows.wants(i)) continue;
                long row = S.index(i, 0);
                float M = scratch.getAtIndex(F, runningMax + i), L = scratch.getAtIndex(F, runningSum + i);
                int len = SpanAttention.maskRow(blk, scratch, row, q0 + i, k0, kn, ranges);
                if (L <= 0f) continue; // no allowed key in the row: it attends to nothing
                // p = e^(s − M) / L in place, with Σ p·s and the count of allowed keys
                moments[0] = moments[1] = 0;
                probabilities(scratch, row, len, M, 1f / L, moments);
                sumPs[i] += moments[0];
                allowed[i] += (int) moments[1];
                rows.probabilities(i, blk.mask().position(b, q0 + i), k0, scratch, row, len);
            }
            rows.endSpan(k0, kn);
        }
        for (int i = 0; i < m; i++) {
            float M = scratch.getAtIndex(F, runningMax + i), L = scratch.getAtIndex(F, runningSum + i);
            if (!rows.wants(i) || L <= 0f || allowed[i] == 0) continue;
            double entropy = Math.max(0, M + Math.log(L) - sumPs[i]); // logsumexp(s) − Σ p·s
            rows.endRow(i, blk.mask().position(b, q0 + i), entropy, allowed[i]);
        }
        rows.end();
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
}
