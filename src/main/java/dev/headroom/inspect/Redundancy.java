package dev.headroom.inspect;

/**
 * How alike heads are: the Jensen–Shannon divergence between two heads' attention rows for the
 * same query, averaged over the captured rows and batch elements. JSD(P, Q) = ½ KL(P ‖ M) +
 * ½ KL(Q ‖ M) with M = ½(P + Q), in nats: 0 for identical rows, at most ln 2.
 */
public final class Redundancy {
    private Redundancy() {}

    /** The H_c × H_c matrix over the captured heads (in {@link AttentionCapture#heads()} order). */
    public static double[][] jensenShannon(AttentionCapture capture) {
        int[] heads = capture.heads(), rows = capture.rows();
        int n = capture.keys();
        double[][] jsd = new double[heads.length][heads.length];
        long count = (long) capture.batch() * rows.length;
        for (int b = 0; b < capture.batch(); b++) {
            for (int i : rows) {
                for (int a = 0; a < heads.length; a++) {
                    long ia = capture.index(b, heads[a], i);
                    for (int c = a + 1; c < heads.length; c++) {
                        long ic = capture.index(b, heads[c], i);
                        double d = 0;
                        for (int j = 0; j < n; j++) {
                            double p = capture.probabilities().get(ia + j), q = capture.probabilities().get(ic + j);
                            double mid = 0.5 * (p + q);
                            if (p > 0) d += 0.5 * p * Math.log(p / mid);
                            if (q > 0) d += 0.5 * q * Math.log(q / mid);
                        }
                        jsd[a][c] += d / count;
                    }
                }
            }
        }
        for (int a = 0; a < heads.length; a++) for (int c = 0; c < a; c++) jsd[a][c] = jsd[c][a];
        return jsd;
    }
}
