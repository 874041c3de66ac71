package dev.headroom.inspect;

import dev.headroom.attention.AttentionObserver;
import dev.headroom.runtime.WorkerPool;

import java.lang.foreign.MemorySegment;

/**
 * What a forward call should record or change besides its output: attention probabilities
 * ({@link AttentionCapture}), per-head statistics ({@link HeadStatistics}) and a head mask for
 * ablation. Pass {@code null} to forward for a plain call: the kernels then do exactly what they
 * do without inspection.
 *
 * @param capture    where to write probabilities, or null
 * @param statistics where to add per-head statistics, or null
 * @param keepHead   per query head, false to zero its output (ablation); null keeps all
 * @param progress   told the number of query rows of each (batch, head) block as it finishes, for
 *                   progress bars on long inputs; or null
 */
public record Inspection(AttentionCapture capture, HeadStatistics statistics, boolean[] keepHead,
                         java.util.function.IntConsumer progress) implements AttentionObserver {
    public Inspection(AttentionCapture capture, HeadStatistics statistics, boolean[] keepHead) {
        this(capture, statistics, keepHead, null);
    }

    public static Inspection capture(AttentionCapture c) {
        return new Inspection(c, null, null);
    }

    public static Inspection statistics(HeadStatistics s) {
        return new Inspection(null, s, null);
    }

    /** Zero the outputs of the given heads of an H-head layer. */
    public static Inspection ablate(int heads, int... masked) {
        boolean[] keep = new boolean[heads];
        java.util.Arrays.fill(keep, true);
        for (int h : masked) {
            if (h < 0 || h >= heads) throw new IllegalArgumentException("head " + h + " outside [0, " + heads + ")");
            keep[h] = false;
        }
        return new Inspection(null, null, keep);
    }

    public Inspection withCapture(AttentionCapture c) {
        return new Inspection(c, statistics, keepHead, progress);
    }

    public Inspection withStatistics(HeadStatistics s) {
        return new Inspection(capture, s, keepHead, progress);
    }

    public Inspection withProgress(java.util.function.IntConsumer p) {
        return new Inspection(capture, statistics, keepHead, p);
    }

    /** Whether head h's output is kept. */
    @Override
    public boolean keeps(int h) {
        return keepHead == null || keepHead[h];
    }

    @Override
    public void finished(int rows) {
        if (progress != null) progress.accept(rows);
    }

    @Override
    public void check(int batch, int heads, int queries, int keys, boolean workerThreads) {
        if (capture != null) {
            capture.check(batch, heads, queries, keys);
            MemorySegment p = capture.probabilities().segment();
            if (workerThreads && !WorkerPool.shareable(p)) {
                throw new IllegalArgumentException("the attention capture lives in a confined arena, which the worker threads "
                        + "cannot write; allocate it in a shared arena or use Options.withThreads(1)");
            }
        }
        if (statistics != null) {
            if (statistics.heads() != heads) {
                throw new IllegalArgumentException("statistics were made for " + statistics.heads()
                        + " heads, the layer has " + heads);
            }
            statistics.options().check(batch, queries, keys);
        }
        if (keepHead != null && keepHead.length != heads) {
            throw new IllegalArgumentException("head mask has " + keepHead.length + " entries, the layer has "
                    + heads + " heads");
        }
    }

    @Override
    public Rows rows(int b, int h, int q0, int m, int keys) {
        Rows captured = null;
        if (capture != null && capture.hasHead(h)) {
            for (int i = q0; i < q0 + m && captured == null; i++) if (capture.hasRow(i)) captured = capture.rows(b, h, q0, m);
        }
        Rows measured = statistics == null ? null : new StatisticsRows(statistics, b, h, q0, m, keys);
        if (captured == null) return measured;
        if (measured == null) return captured;
        return new Both(captured, measured);
    }

    /** Capture and statistics of one block: each sees only the rows it wants. */
    private record Both(Rows capture, Rows statistics) implements Rows {
        @Override
        public boolean wants(int row) {
            return capture.wants(row) || statistics.wants(row);
        }

        @Override
        public boolean wantsEveryRow() {
            return true;
        }

        @Override
        public void probabilities(int row, long position, int k0, MemorySegment p, long offset, int len) {
            if (capture.wants(row)) capture.probabilities(row, position, k0, p, offset, len);
            if (statistics.wants(row)) statistics.probabilities(row, position, k0, p, offset, len);
        }

        @Override
        public void endSpan(int k0, int kn) {
            statistics.endSpan(k0, kn);
        }

        @Override
        public void endRow(int row, long position, double entropy, int allowed) {
            if (statistics.wants(row)) statistics.endRow(row, position, entropy, allowed);
        }

        @Override
        public void end() {
            statistics.end();
        }
    }
}
