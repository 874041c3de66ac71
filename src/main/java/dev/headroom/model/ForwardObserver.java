package dev.headroom.model;

import dev.headroom.attention.AttentionObserver;
import dev.headroom.tensor.Matrix;

/**
 * What a whole-model forward pass shows besides its output, layer by layer: an
 * {@link AttentionObserver} for each layer's attention call (it sees that call's concatenated head
 * outputs Z_h before W_O, {@link AttentionObserver#headOutputs}, and whatever else an attention
 * observer may ask for), and the residual stream after the embeddings and after every layer.
 * Probing ({@code dev.headroom.probe}) reads its features here; any model that runs its layers
 * through {@code MultiHeadAttention} can offer the same hook.
 *
 * <p>Rows are the model's token rows, batch element by batch element: element b's token i is row
 * b·n + i of a (B·n, ·) matrix, padded positions included (their values are computed but mean
 * nothing). Every matrix is a view into the model's workspace, valid during the call only: copy
 * what you keep. Calls come from the thread that called the model, in layer order.
 */
public interface ForwardObserver {
    /**
     * The observer for layer {@code layer}'s attention call (0 first), or null for a plain call;
     * asked once per layer per forward pass.
     */
    default AttentionObserver attention(int layer) {
        return null;
    }

    /**
     * The residual stream at {@code stage}: 0 is the embeddings (after their LayerNorm, what
     * layer 0 reads), stage l + 1 the output of layer l (what layer l + 1 reads; the last one is
     * the model's last hidden state). {@code hidden} is (B·n, E).
     */
    default void residual(int stage, Matrix hidden) {}
}
