package dev.headroom.attention;

import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

/**
 * Multi-head attention written the plainest way, in double precision, straight from the
 * formulas: the independent reference the runtime is tested against. It shares nothing with
 * the runtime but the weight views and the mask's element query {@link Mask.Bound#allowed}.
 */
final class ReferenceAttention {
    private ReferenceAttention() {}

    /** Y (B, n_q, E) in double for query (B, n_q, E) or (n_q, E) and keyValue likewise. */
    static double[][][] forward(AttentionWeights w, Tensor query, Tensor keyValue, Mask mask) {
        AttentionConfig c = w.config();
        Tensor kvT = keyValue == null ? query : keyValue;
        int B = query.rank() == 3 ? query.dim(0) : 1, nq = query.dim(-2), nk = kvT.dim(-2);
        int E = c.dModel(), H = c.heads(), d = c.headDim();
        Mask.Bound m = mask.bind(B, H, nq, nk);
        double[][][] y = new double[B][nq][E];
        for (int b = 0; b < B; b++) {
            double[][] x = rows(query, b, nq, E), kv = rows(kvT, b, nk, E);
            double[][] q = linear(x, w.wq, w.bq), k = linear(kv, w.wk, w.bk), v = linear(kv, w.wv, w.bv);
            double[][] concat = new double[nq][c.queryWidth()];
            for (int h = 0; h < H; h++) {
                int g = h / (H / c.kvHeads());
                for (int i = 0; i < nq; i++) {
                    double[] s = new double[nk];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j < nk; j++) {
                        if (!m.allowed(b, h, i, j)) {
                            s[j] = Double.NEGATIVE_INFINITY;
                            continue;
                        }
                        double dot = 0;
                        for (int t = 0; t < d; t++) dot += q[i][h * d + t] * k[j][g * d + t];
                        s[j] = dot * c.scale() + m.additive(b, h, i, j);
                        max = Math.max(max, s[j]);
                    }
                    if (max == Double.NEGATIVE_INFINITY) continue; // no allowed key: zeros
                    double sum = 0;
                    for (int j = 0; j < nk; j++) {
                        s[j] = s[j] == Double.NEGATIVE_INFINITY ? 0 : Math.exp(s[j] - max);
                        sum += s[j];
                    }
                    for (int t = 0; t < d; t++) {
                        double acc = 0;
                        for (int j = 0; j < nk; j++) acc += s[j] / sum * v[j][g * d + t];
                        concat[i][h * d + t] = acc;
                    }
                }
            }
            double[][] out = linear(concat, w.wo, w.bo);
            for (int i = 0; i < nq; i++) y[b][i] = out[i];
        }
        return y;
    }

    static double[][] rows(Tensor t, int b, int n, int E) {
        double[][] r = new double[n][E];
        long base = (long) b * n * E;
        for (int i = 0; i < n; i++) for (int e = 0; e < E; e++) r[i][e] = t.get(base + (long) i * E + e);
        return r;
    }

    /** x Wᵀ + bias for W of shape (out, in). */
    static double[][] linear(double[][] x, Matrix w, Tensor bias) {
        double[][] y = new double[x.length][w.rows()];
        for (int i = 0; i < x.length; i++) {
            for (int o = 0; o < w.rows(); o++) {
                double acc = bias == null ? 0 : bias.get(o);
                for (int e = 0; e < w.cols(); e++) acc += x[i][e] * w.get(o, e);
                y[i][o] = acc;
            }
        }
        return y;
    }
}
