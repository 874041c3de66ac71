package dev.headroom.attention;

import dev.headroom.memory.OffHeap;

/**
 * What a forward call will hold off-heap, in bytes, known before it runs.
 *
 * @param weights     W_Q, W_K, W_V, W_O and biases
 * @param activations inputs, output, the Q/K/V projections and the concatenated heads: O(n)
 * @param scratch     the kernel's per-worker scratch (O(1) in n for the tiled and sparse kernels,
 *                    O(n_k) for the dense kernel). A sparse layout's index lives on the Java heap
 *                    and is not counted.
 */
public record MemoryEstimate(long weights, long activations, long scratch) {
    public long total() {
        return weights + activations + scratch;
    }

    @Override
    public String toString() {
        return OffHeap.format(total()) + " (weights " + OffHeap.format(weights) + ", activations "
                + OffHeap.format(activations) + ", scratch " + OffHeap.format(scratch) + ")";
    }
}
