package dev.headroom.attention;

/**
 * ALiBi (Press et al. 2022, "Train Short, Test Long"): no position embedding; instead each head
 * h adds −m_h·|p − j| to the score of the query at position p for key j, with a fixed slope per
 * head. For causal attention (j ≤ p) this is the paper's −m_h·(p − j); for keys after the query
 * (encoders) it is symmetric.
 */
public final class Alibi {
    private Alibi() {}

    /**
     * The slopes of the paper's reference code: for H a power of two, m_h = 2^(−8(h+1)/H);
     * otherwise those of the nearest lower power of two n, then every other slope of 2n.
     */
    public static float[] slopes(int heads) {
        if (heads < 1) throw new IllegalArgumentException("ALiBi needs at least one head, got " + heads);
        double[] m = slopesDouble(heads);
        float[] f = new float[heads];
        for (int h = 0; h < heads; h++) f[h] = (float) m[h];
        return f;
    }

    private static double[] slopesDouble(int n) {
        int closest = Integer.highestOneBit(n);
        double[] out = new double[n];
        double start = Math.pow(2, -8.0 / closest);
        for (int h = 0; h < closest; h++) out[h] = Math.pow(start, h + 1);
        if (closest < n) {
            double[] doubled = slopesDouble(2 * closest);
            for (int t = 0; t < n - closest; t++) out[closest + t] = doubled[2 * t];
        }
        return out;
    }
}
