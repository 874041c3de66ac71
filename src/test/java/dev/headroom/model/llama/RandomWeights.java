package dev.headroom.model.llama;

import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;
import java.util.Map;

/** Random Llama weights for tests outside this package (see {@link RandomLlama}). */
public final class RandomWeights {
    private RandomWeights() {}

    public static Map<String, Tensor> of(LlamaConfig config, long seed, Arena arena) {
        return RandomLlama.stateDict(config, seed, arena);
    }
}
