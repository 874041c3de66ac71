package dev.headroom.inspect;

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
                         java.util.function.IntConsumer progress) {
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
    public boolean keeps(int h) {
        return keepHead == null || keepHead[h];
    }

    /** Whether the kernel must make a second sweep for this head and block. */
    public boolean sweeps(int h) {
        return statistics != null || (capture != null && capture.hasHead(h));
    }
}
