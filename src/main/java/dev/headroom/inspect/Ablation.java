package dev.headroom.inspect;

import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;

import java.util.List;

/** Head importance by ablation: how much the output moves when one head is switched off. */
public final class Ablation {
    private Ablation() {}

    /**
     * For every head h, the mean over {@code inputs} of ‖Y − Y_{−h}‖ / ‖Y‖ (Frobenius norms), where
     * Y_{−h} is the output with head h masked (Michel et al. 2019, "Are Sixteen Heads Really Better
     * Than One?", measure importance by the effect of masking a head). Self-attention inputs.
     */
    public static double[] importance(MultiHeadAttention mha, List<Tensor> inputs, Mask mask) {
        int H = mha.config().heads();
        double[] importance = new double[H];
        try (TrackedArena arena = TrackedArena.ofShared(); Workspace ws = new Workspace()) {
            for (Tensor x : inputs) {
                Tensor full = Tensor.allocate(arena, x.shape()), masked = Tensor.allocate(arena, x.shape());
                mha.forward(x, null, mask, full, ws);
                double norm = 0;
                for (long i = 0; i < full.size(); i++) norm += (double) full.get(i) * full.get(i);
                norm = Math.sqrt(Math.max(norm, 1e-300));
                for (int h = 0; h < H; h++) {
                    mha.forward(x, null, mask, masked, ws, Inspection.ablate(H, h));
                    double diff = 0;
                    for (long i = 0; i < full.size(); i++) {
                        double e = full.get(i) - masked.get(i);
                        diff += e * e;
                    }
                    importance[h] += Math.sqrt(diff) / norm / inputs.size();
                }
            }
        }
        return importance;
    }
}
