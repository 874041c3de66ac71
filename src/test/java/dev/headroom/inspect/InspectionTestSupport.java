package dev.headroom.inspect;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/** Layers with heads built to do known things, for inspection and report tests. */
public final class InspectionTestSupport {
    private InspectionTestSupport() {}

    /**
     * Four heads whose weights make them attend, on one-hot position inputs X_i = e_i, to the
     * previous token, to themselves, to position 0, and uniformly: q_i·k_j is β when j is the
     * target and 0 otherwise (K = I, Q = β × a shift, identity, e_0 column, or zero).
     */
    public static MultiHeadAttention constructedHeads(Arena arena, int n, MultiHeadAttention.Options options) {
        int E = n, d = n, H = 4;
        float beta = 40f * (float) Math.sqrt(d); // after the 1/√d scale, a score of 40 on the target
        AttentionConfig c = AttentionConfig.of(E, H, H, d);
        Tensor wq = Tensor.allocate(arena, H * d, E), wk = Tensor.allocate(arena, H * d, E), wv = Tensor.allocate(arena, H * d, E);
        Tensor wo = Tensor.allocate(arena, E, H * d);
        SplittableRandom r = new SplittableRandom(3);
        for (int h = 0; h < H; h++) {
            for (int t = 0; t < d; t++) {
                wk.set((long) (h * d + t) * E + t, 1f);                            // k_j = e_j
                if (h == 0 && t + 1 < E) wq.set((long) (h * d + t) * E + t + 1, beta); // q_i = β e_{i−1}
                if (h == 1) wq.set((long) (h * d + t) * E + t, beta);                 // q_i = β e_i
                if (h == 2 && t == 0) for (int e = 0; e < E; e++) wq.set((long) (h * d) * E + e, beta); // q_i = β e_0
            }
        }
        for (long i = 0; i < wv.size(); i++) wv.set(i, (float) r.nextDouble(-1, 1));
        for (long i = 0; i < wo.size(); i++) wo.set(i, (float) r.nextDouble(-1, 1));
        Map<String, Tensor> sd = new LinkedHashMap<>();
        sd.put("q_proj.weight", wq);
        sd.put("k_proj.weight", wk);
        sd.put("v_proj.weight", wv);
        sd.put("o_proj.weight", wo);
        return new MultiHeadAttention(AttentionWeights.fromStateDict(c, sd, ""), options);
    }

    public static Tensor oneHotPositions(Arena arena, int n) {
        Tensor x = Tensor.allocate(arena, 1, n, n);
        for (int i = 0; i < n; i++) x.set((long) i * n + i, 1f);
        return x;
    }

}
