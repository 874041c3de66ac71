package dev.headroom.probe;

/**
 * Counts of (gold label, predicted label) over the scored words of a part.
 *
 * @param counts (classes, classes): counts[gold][predicted]
 */
public record Confusion(long[][] counts) {
    public int classes() {
        return counts.length;
    }

    public long total() {
        long n = 0;
        for (long[] row : counts) for (long c : row) n += c;
        return n;
    }

    public long correct() {
        long n = 0;
        for (int i = 0; i < counts.length; i++) n += counts[i][i];
        return n;
    }

    /** Share of words labelled right; NaN for no words. */
    public double accuracy() {
        long total = total();
        return total == 0 ? Double.NaN : correct() / (double) total;
    }

    /** Words whose gold label is c. */
    public long support(int c) {
        long n = 0;
        for (long v : counts[c]) n += v;
        return n;
    }

    /** Of the words with gold label c, the share predicted c (recall); NaN when there are none. */
    public double recall(int c) {
        long s = support(c);
        return s == 0 ? Double.NaN : counts[c][c] / (double) s;
    }

    /** Of the words predicted c, the share whose gold label is c; NaN when none was predicted c. */
    public double precision(int c) {
        long predicted = 0;
        for (long[] row : counts) predicted += row[c];
        return predicted == 0 ? Double.NaN : counts[c][c] / (double) predicted;
    }

    /** Harmonic mean of precision and recall of class c; 0 when either is 0 or undefined. */
    public double f1(int c) {
        double p = precision(c), r = recall(c);
        if (Double.isNaN(p) || Double.isNaN(r) || p + r == 0) return 0;
        return 2 * p * r / (p + r);
    }
}
