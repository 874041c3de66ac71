package dev.headroom.bench.ref;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.tensor.Tensor;

import java.util.Map;

/**
 * Self-attention written straight from the formula in double precision, one loop per step and
 * nothing shared with Headroom or the C reference: what {@link ReferenceCheck} holds the C
 * reference against on a small layer, so that "C agrees with Headroom" cannot mean "both are
 * wrong in the same way".
 */
final class NaiveAttention {
    private NaiveAttention() {}

    /** y (n, E) for x (n, E), weights in the separate-projection state dict of {@code config}. */
    static double[] forward(AttentionConfig config, Map<String, Tensor> stateDict, float[] x, int n) {
        int E = config.dModel(), d = config.headDim(), qw = config.queryWidth(), kw = config.kvWidth();
        double[] q = linear(x, n, E, stateDict.get("q_proj.weight"), stateDict.get("q_proj.bias"), qw);  // (n, H·d)
        double[] k = linear(x, n, E, stateDict.get("k_proj.weight"), stateDict.get("k_proj.bias"), kw);  // (n, G·d)
        double[] v = linear(x, n, E, stateDict.get("v_proj.weight"), stateDict.get("v_proj.bias"), kw);  // (n, G·d)
        double[] concat = new double[n * qw];                                                            // (n, H·d)
        double[] p = new double[n];                                                                      // one row of probabilities
        for (int h = 0; h < config.heads(); h++) {
            int g = config.kvHeadOf(h);
            for (int i = 0; i < n; i++) {
                // p = softmax(scale · q_i · K_gᵀ)
                double max = Double.NEGATIVE_INFINITY;
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int t = 0; t < d; t++) s += q[i * qw + h * d + t] * k[j * kw + g * d + t];
                    p[j] = config.scale() * s;
                    max = Math.max(max, p[j]);
                }
                double sum = 0;
                for (int j = 0; j < n; j++) {
                    p[j] = Math.exp(p[j] - max);
                    sum += p[j];
                }
                // o_i = p · V_g / sum
                for (int t = 0; t < d; t++) {
                    double o = 0;
                    for (int j = 0; j < n; j++) o += p[j] * v[j * kw + g * d + t];
                    concat[i * qw + h * d + t] = o / sum;
                }
            }
        }
        // Y = concat · W_Oᵀ + b_O
        return linear(concat, n, qw, stateDict.get("o_proj.weight"), stateDict.get("o_proj.bias"), E);
    }

    /** in (n, inWidth) · Wᵀ + b, W (outWidth, inWidth) row-major, b (outWidth) or null: (n, outWidth). */
    private static double[] linear(float[] in, int n, int inWidth, Tensor weight, Tensor bias, int outWidth) {
        double[] d = new double[in.length];
        for (int i = 0; i < in.length; i++) d[i] = in[i];
        return linear(d, n, inWidth, weight, bias, outWidth);
    }

    private static double[] linear(double[] in, int n, int inWidth, Tensor weight, Tensor bias, int outWidth) {
        float[] w = weight.toArray();
        float[] b = bias == null ? null : bias.toArray();
        double[] out = new double[n * outWidth];
        for (int i = 0; i < n; i++) {
            for (int r = 0; r < outWidth; r++) {
                double s = b == null ? 0 : b[r];
                for (int c = 0; c < inWidth; c++) s += in[i * inWidth + c] * w[r * inWidth + c];
                out[i * outWidth + r] = s;
            }
        }
        return out;
    }
}
