package dev.headroom.attention;

import dev.headroom.memory.OffHeap;

/**
 * What a forward call will hold off-heap, in bytes, known before it runs.
 *
 * @param weights     W_Q, W_K, W_V, W_O and biases
 * @param activations inputs, output, the Q/K/V projections and the concatenated heads (and with
 *                    RoPE its angle tables): O(n)
 * @param scratch     the kernel's per-worker scratch (O(1) in n for the tiled and sparse kernels,
 *                    O(n_k) for the dense kernel). A sparse layout's index lives on the Java heap
 *                    and is not counted.
 */
public record MemoryEstimate(long weights, long activations, long scratch) {

    /**
     * What a forward of {@code batch} × n_q queries over n_k keys holds with layer {@code c}
     * (biases when {@code bias}): the weights, the inputs (a key/value input only when
     * {@code cross}), the output, the projections Qᵀ, Kᵀ, Vᵀ, the concatenated heads, and
     * {@code threads} workers' scratch for {@code kernel} on blocks of {@code block} queries.
     */
    public static MemoryEstimate of(AttentionConfig c, boolean bias, int threads, int block, AttentionKernel kernel,
                                    int batch, int nq, int nk, boolean cross) {
        return of(c, bias, threads, block, kernel, batch, nq, nk, cross, false);
    }

    /**
     * As above; with RoPE the angle tables are added, and with {@code sinkQueries} (RoPE under a
     * streaming mask) a second copy of Qᵀ.
     */
    public static MemoryEstimate of(AttentionConfig c, boolean bias, int threads, int block, AttentionKernel kernel,
                                    int batch, int nq, int nk, boolean cross, boolean sinkQueries) {
        long f = Float.BYTES, E = c.dModel();
        long weights = f * c.parameterCount(bias);
        long inputs = f * batch * (nq + (cross ? nk : 0)) * E;
        long output = f * batch * nq * E;
        long projections = f * ((long) c.queryWidth() * batch * nq + 2L * c.kvWidth() * batch * nk);
        long concat = f * batch * nq * c.queryWidth();
        long positions = 0;
        if (c.rope() != null) {
            positions = f * 2L * c.rope().pairs() * batch * Math.max(nq, nk);
            if (sinkQueries) positions += f * c.queryWidth() * batch * nq;
        }
        long scratch = f * threads * kernel.scratchFloats(block, nk);
        return new MemoryEstimate(weights, inputs + output + projections + concat + positions, scratch);
    }

    public long total() {
        return weights + activations + scratch;
    }

    @Override
    public String toString() {
        return OffHeap.format(total()) + " (weights " + OffHeap.format(weights) + ", activations "
                + OffHeap.format(activations) + ", scratch " + OffHeap.format(scratch) + ")";
    }
}
