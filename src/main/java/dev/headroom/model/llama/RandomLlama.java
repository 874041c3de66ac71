package dev.headroom.model.llama;

import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Random Llama weights under Hugging Face's names: for tests of shapes the tiny model does not have,
 * and for {@code --dummy-weights} (vLLM's {@code --load-format dummy}), which serves a config's
 * shape without trained weights to measure the machinery around the model.
 */
public final class RandomLlama {
    private RandomLlama() {}

    /** A config with the given shape, byte vocabulary 260 (bos 256, eos 257), context {@code positions}. */
    public static LlamaConfig config(int E, int I, int layers, int H, int G, int d, int positions, boolean tied, boolean bias) {
        return new LlamaConfig(E, I, layers, H, G, d, 1e-5, 10000, 260, positions, tied, bias, 256, new int[]{257});
    }

    /**
     * A model of the config's shape with {@link #stateDict random weights} of the given seed, in
     * an arena of its own that the model owns (closing the model frees them).
     */
    public static LlamaModel model(LlamaConfig c, long seed, MultiHeadAttention.Options options) {
        TrackedArena arena = TrackedArena.ofShared();
        try {
            return new LlamaModel(LlamaWeights.fromStateDict(c, stateDict(c, seed, arena)), options, arena);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    /** Every tensor the config needs, N(0, 0.3²) matrices (so that attention is far from uniform), norms near 1. */
    public static Map<String, Tensor> stateDict(LlamaConfig c, long seed, Arena arena) {
        SplittableRandom rnd = new SplittableRandom(seed);
        int E = c.hiddenSize(), I = c.intermediateSize(), V = c.vocabSize(), q = c.heads() * c.headDim(), kv = c.kvHeads() * c.headDim();
        Map<String, Tensor> sd = new LinkedHashMap<>();
        sd.put("model.embed_tokens.weight", normal(arena, rnd, 1.0, V, E));
        for (int l = 0; l < c.layers(); l++) {
            String p = "model.layers." + l + ".";
            sd.put(p + "input_layernorm.weight", nearOne(arena, rnd, E));
            sd.put(p + "self_attn.q_proj.weight", normal(arena, rnd, 0.3, q, E));
            sd.put(p + "self_attn.k_proj.weight", normal(arena, rnd, 0.3, kv, E));
            sd.put(p + "self_attn.v_proj.weight", normal(arena, rnd, 0.3, kv, E));
            sd.put(p + "self_attn.o_proj.weight", normal(arena, rnd, 0.1, E, q));
            if (c.attentionBias()) {
                sd.put(p + "self_attn.q_proj.bias", normal(arena, rnd, 0.1, q));
                sd.put(p + "self_attn.k_proj.bias", normal(arena, rnd, 0.1, kv));
                sd.put(p + "self_attn.v_proj.bias", normal(arena, rnd, 0.1, kv));
                sd.put(p + "self_attn.o_proj.bias", normal(arena, rnd, 0.1, E));
            }
            sd.put(p + "post_attention_layernorm.weight", nearOne(arena, rnd, E));
            sd.put(p + "mlp.gate_proj.weight", normal(arena, rnd, 0.3, I, E));
            sd.put(p + "mlp.up_proj.weight", normal(arena, rnd, 0.3, I, E));
            sd.put(p + "mlp.down_proj.weight", normal(arena, rnd, 0.1, E, I));
        }
        sd.put("model.norm.weight", nearOne(arena, rnd, E));
        if (!c.tieWordEmbeddings()) sd.put("lm_head.weight", normal(arena, rnd, 0.3, V, E));
        return sd;
    }

    static Tensor normal(Arena arena, SplittableRandom rnd, double std, int... shape) {
        Tensor t = Tensor.allocate(arena, shape);
        for (long i = 0; i < t.size(); i++) t.set(i, (float) (rnd.nextGaussian() * std));
        return t;
    }

    private static Tensor nearOne(Arena arena, SplittableRandom rnd, int n) {
        Tensor t = Tensor.allocate(arena, n);
        for (int i = 0; i < n; i++) t.set(i, (float) rnd.nextDouble(0.8, 1.2));
        return t;
    }
}
