package dev.headroom.model;

import dev.headroom.model.minilm.MiniLmEncoder;

import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.tensor.Tensor;

/**
 * Called by {@link MiniLmEncoder} (and by {@link dev.headroom.model.llama.LlamaModel} through
 * {@code LayerHooks.listening}) just before each layer's attention runs, with what that attention
 * is about to receive, so that head-inspection work can recompute or capture the attention
 * probabilities of that layer (same weights, same input, same mask).
 */
@FunctionalInterface
public interface AttentionListener {
    /**
     * @param layer     the layer index, 0 first
     * @param attention that layer's attention (its weights and config are public)
     * @param input     the attention input X, (B, n, E), in the encoder's workspace: valid during
     *                  this call only, and must not be modified (copy it to keep it)
     * @param mask      the mask of the call (key padding for the encoder, causal for the decoder)
     */
    void beforeAttention(int layer, MultiHeadAttention attention, Tensor input, Mask mask);
}
