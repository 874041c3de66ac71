package dev.headroom.attention;

import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

/**
 * Multi-head attention written the plainest way, in double precision, straight from the
 * formulas, one loop per step: the one reference path every fast path (dense, tiled, sparse,
 * the KV cache, the benchmarks' C reference) is tested against. It shares nothing with the
 * runtime but the weight views and the raw mask data; the mask rules (causal by position,
 * padding, broadcasting of explicit masks, patterns by their element truth) are written again
 * here. O(B·H·n_q·n_k·d) time and O(n) Java heap per row: for small problems only.
 */
public final class ReferenceAttention {
    private ReferenceAttention() {}

    /** Y (B, n_q, E) in double for query (B, n_q, E) or (n_q, E) and keyValue likewise, queries at their default positions. */
    public static double[][][] forward(AttentionWeights w, Tensor query, Tensor keyValue, Mask mask) {
        Tensor kv = keyValue == null ? query : keyValue;
        return forward(w, query, keyValue, mask, Positions.bottomRight(query.dim(-2), kv.dim(-2)));
    }

    /** Y (B, n_q, E) in double, with query i of batch element b at position {@code positions.of(b, i)}. */
    public static double[][][] forward(AttentionWeights w, Tensor query, Tensor keyValue, Mask mask, Positions positions) {
        AttentionConfig c = w.config();
        Tensor kvT = keyValue == null ? query : keyValue;
        int B = query.rank() == 3 ? query.dim(0) : 1, nq = query.dim(-2), nk = kvT.dim(-2);
        int E = c.dModel(), H = c.heads(), d = c.headDim();
        mask.bind(B, H, nq, nk, positions); // the same shape checks the runtime applies
        double[][][] y = new double[B][nq][E];
        for (int b = 0; b < B; b++) {
            double[][] x = rows(query, b, nq, E), kv = rows(kvT, b, nk, E);
            double[][] q = linear(x, w.wq, w.bq), k = linear(kv, w.wk, w.bk), v = linear(kv, w.wv, w.bv);
            // positions: query i at positions.of(b, i); key j at j. With a streaming mask, a query
            // looks at the sinks from its place in the cache: p − Δ, Δ = max(0, p − window + 1 − sinks).
            int sinks = 0, window = 0;
            if (mask.pattern() instanceof dev.headroom.sparse.AttentionPattern.Streaming st) {
                sinks = st.sinks();
                window = st.window();
            }
            long[] qPos = new long[nq], qSinkPos = new long[nq];
            for (int i = 0; i < nq; i++) {
                qPos[i] = positions.of(b, i);
                qSinkPos[i] = sinks == 0 ? qPos[i] : qPos[i] - Math.max(0, qPos[i] - window + 1 - sinks);
            }
            double[][] qSinks = q;
            if (c.rope() != null) {
                qSinks = new double[nq][];
                for (int i = 0; i < nq; i++) qSinks[i] = rope(c, q[i], H, qSinkPos[i]);
                for (int i = 0; i < nq; i++) q[i] = rope(c, q[i], H, qPos[i]);
                for (int j = 0; j < nk; j++) k[j] = rope(c, k[j], c.kvHeads(), j);
            }
            double[][] concat = new double[nq][c.queryWidth()];
            for (int h = 0; h < H; h++) {
                int g = h / (H / c.kvHeads());
                for (int i = 0; i < nq; i++) {
                    double[] s = new double[nk];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j < nk; j++) {
                        double add = explicit(mask, b, h, i, j, H, nq, nk);
                        if (!allowed(mask, b, h, positions.of(b, i), j, nk) || add == Double.NEGATIVE_INFINITY) {
                            s[j] = Double.NEGATIVE_INFINITY;
                            continue;
                        }
                        double[] qi = j < sinks ? qSinks[i] : q[i];
                        double dot = 0;
                        for (int t = 0; t < d; t++) dot += qi[h * d + t] * k[j][g * d + t];
                        s[j] = dot * c.scale() + add;
                        if (c.alibi()) s[j] -= c.alibiSlope(h) * (double) Math.abs((j < sinks ? qSinkPos[i] : qPos[i]) - j);
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

    /**
     * RoPE of one token's features (heads·d) at position p, in double: pair (a, b) of head h turns
     * by p·θ^(−2i/R); pairs are (2i, 2i+1) or (i, i + R/2) by layout.
     */
    static double[] rope(AttentionConfig c, double[] x, int heads, long p) {
        RotaryEmbedding r = c.rope();
        int d = c.headDim(), R = r.rotaryDims();
        double[] y = x.clone();
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < R / 2; i++) {
                int a = h * d + (r.layout() == RotaryEmbedding.Layout.PAIRS ? 2 * i : i);
                int b = h * d + (r.layout() == RotaryEmbedding.Layout.PAIRS ? 2 * i + 1 : i + R / 2);
                double angle = p * Math.pow(r.theta(), -2.0 * i / R);
                y[a] = x[a] * Math.cos(angle) - x[b] * Math.sin(angle);
                y[b] = x[b] * Math.cos(angle) + x[a] * Math.sin(angle);
            }
        }
        return y;
    }

    /** Causal (key j ≤ the query's position p), padding and pattern rules. */
    static boolean allowed(Mask mask, int b, int h, long p, int j, int nk) {
        if (mask.isCausal() && j > p) return false;
        if (mask.pattern() != null && !mask.pattern().allowed(h, p, j, nk)) return false;
        int[] lengths = mask.keyLengthsOrNull();
        return lengths == null || j < lengths[b];
    }

    /** The rows of {@code y} flattened: (B·n_q·E), as {@link Tensor#toArray()} orders a (B, n_q, E) tensor. */
    public static double[] flatten(double[][][] y) {
        int B = y.length, n = y[0].length, E = y[0][0].length;
        double[] flat = new double[B * n * E];
        for (int b = 0; b < B; b++) for (int i = 0; i < n; i++) System.arraycopy(y[b][i], 0, flat, (b * n + i) * E, E);
        return flat;
    }

    /** The explicit mask's term: 0 or −∞ for boolean masks, the value for additive ones, 0 without. */
    static double explicit(Mask mask, int b, int h, int i, int j, int H, int nq, int nk) {
        int[] shape = mask.explicitShapeOrNull();
        if (shape == null) return 0;
        long index = switch (shape.length) {
            case 2 -> (long) i * nk + j;
            case 3 -> ((long) b * nq + i) * nk + j;
            default -> (((long) b * H + h) * nq + i) * nk + j;
        };
        if (mask.allowedOrNull() != null) {
            return mask.allowedOrNull().get(java.lang.foreign.ValueLayout.JAVA_BYTE, index) != 0 ? 0 : Double.NEGATIVE_INFINITY;
        }
        return mask.additiveOrNull().get(index);
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
