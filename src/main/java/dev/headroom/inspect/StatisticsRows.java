package dev.headroom.inspect;

import dev.headroom.attention.AttentionObserver;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * One block's contribution to {@link HeadStatistics}: batch element b, head h, query rows
 * [q0, q0 + m). Sums the probabilities it is given into a block accumulator (no locking per
 * element) and adds the block to the head's totals at the end.
 */
final class StatisticsRows implements AttentionObserver.Rows {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private final HeadStatistics stats;
    private final int b, h, q0, keys, band, maxOffset;
    private final HeadStatistics.Acc acc;
    private final RowTargets targets;
    /** Per row of the block: the largest probability and its key, for confidence and the argmax offset. */
    private final float[] bestP;
    private final int[] bestJ;
    /** Column mass of the current span, (span keys), grown to the widest span. */
    private double[] columns = new double[0];

    StatisticsRows(HeadStatistics stats, int b, int h, int q0, int rows, int keys) {
        this.stats = stats;
        this.b = b;
        this.h = h;
        this.q0 = q0;
        this.keys = keys;
        this.band = stats.options().band();
        this.maxOffset = stats.options().maxOffset();
        this.acc = stats.newBlock();
        this.targets = RowTargets.of(stats, b, keys, rows);
        this.bestP = new float[rows];
        this.bestJ = new int[rows];
        Arrays.fill(bestJ, -1);
    }

    @Override
    public boolean wants(int row) {
        return stats.options().counts(b, q0 + row);
    }

    @Override
    public boolean wantsEveryRow() {
        return true;
    }

    @Override
    public void probabilities(int row, long pos, int k0, MemorySegment p, long offset, int len) {
        if (columns.length < len) columns = Arrays.copyOf(columns, len);
        for (int t = 0; t < len; t++) {
            float pj = p.getAtIndex(F, offset + t);
            if (pj == 0f) continue;
            int j = k0 + t;
            if (pj > bestP[row]) {
                bestP[row] = pj;
                bestJ[row] = j;
            }
            long off = j - pos;
            acc.distance += pj * (double) Math.abs(off);
            if (off == 0) acc.self += pj;
            else if (off == -1) acc.previous += pj;
            else if (off == 1) acc.next += pj;
            if (j == 0) acc.first += pj;
            if (Math.abs(off) <= band) acc.band += pj;
            if (Math.abs(off) <= maxOffset) acc.offsets[(int) off + maxOffset] += pj;
            if (targets != null) targets.add(acc, row, pos, j, pj);
            columns[t] += pj;
        }
    }

    @Override
    public void endSpan(int k0, int kn) {
        if (columns.length < kn) columns = Arrays.copyOf(columns, kn);
        stats.addColumns(h, b, keys, k0, columns, kn);
        Arrays.fill(columns, 0, kn, 0);
    }

    @Override
    public void endRow(int row, long pos, double entropy, int allowed) {
        acc.rows++;
        acc.entropy += entropy;
        if (allowed > 1) {
            acc.entropyRows++;
            acc.normalizedEntropy += entropy / Math.log(allowed);
        }
        acc.confidence += bestP[row];
        acc.argmaxOffsets.merge((int) (bestJ[row] - pos), 1L, Long::sum);
        if (targets != null) targets.finishRow(acc, row, pos);
    }

    @Override
    public void end() {
        stats.add(h, acc);
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
