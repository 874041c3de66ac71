package dev.headroom.attention;

import dev.headroom.kernels.Softmax;
import dev.headroom.sparse.BlockLayout;
import dev.headroom.tensor.Matrix;

/**
 * One unit of attention work: query rows [firstQuery, firstQuery + m) of batch element
 * {@code batch} and query head {@code head}, against all keys of key/value head {@code kvHead}.
 * Q, K and V arrive transposed (features × tokens) because they are row ranges of the projection
 * buffer, which is laid out that way so that every head's Kᵀ and Vᵀ rows are contiguous.
 *
 * @param queryT  Q_hᵀ for these rows: (d, m), a view into the projection buffer
 * @param queryTSinks Q_hᵀ rotated at the rows' sink positions ({@link Mask.Bound#sinkPosition}), used
 *                against the attention sinks instead of {@code queryT}; null when they are the same
 *                (no RoPE, or no streaming mask)
 * @param keyT    K_gᵀ: (d, n_k), a view into the projection buffer
 * @param values  V_g: (n_k, d) rows, or Vᵀ_g (d, n_k) when {@code valuesTransposed} (a view into the
 *                projection buffer is transposed, a view into keys gathered from a KV cache is not)
 * @param out     O_h for these rows: (m, d), a view into the concatenated-heads buffer
 *                (leading dimension H·d), written by the kernel
 * @param layout  the compiled sparse layout when the mask has a pattern and the sparse kernel runs, else null
 * @param profile where the kernel adds its time per phase, or null
 * @param observer what to show the block's probabilities to, or null
 */
public record HeadBlock(int batch, int head, int firstQuery,
                        Matrix queryT, Matrix queryTSinks, Matrix keyT, Matrix values, boolean valuesTransposed, Matrix out,
                        float scale, Mask.Bound mask, Softmax softmax, BlockLayout layout, Profile profile,
                        AttentionObserver observer) {
    /** Query rows in this block. */
    public int rows() {
        return queryT.cols();
    }

    /** Keys n_k. */
    public int keys() {
        return keyT.cols();
    }

    public int headDim() {
        return queryT.rows();
    }

    /**
     * S = scale · Qᵀ K for keys [k0, k1) into S (m, k1 − k0): the sink keys [0, sinks) against
     * {@link #queryTSinks} when there is one, the rest against {@link #queryT}. {@code row} ≥ 0
     * limits it to that one row (the query's scores alone).
     */
    void scores(int k0, int k1, Matrix S, int row) {
        int split = queryTSinks == null ? k0 : Math.clamp(mask.sinks(), k0, k1);
        Matrix q = row < 0 ? queryT : queryT.colRange(row, row + 1), qs = null;
        if (split > k0) qs = row < 0 ? queryTSinks : queryTSinks.colRange(row, row + 1);
        Matrix s = row < 0 ? S : S.rowRange(row, row + 1);
        if (split > k0) dev.headroom.blas.Blas.sgemm(scale, qs, true, keyT.colRange(k0, split), false, 0f, s.colRange(0, split - k0));
        if (k1 > split) dev.headroom.blas.Blas.sgemm(scale, q, true, keyT.colRange(split, k1), false, 0f, s.colRange(split - k0, k1 - k0));
    }

    /** Adds the time since {@code since} to a phase when profiling; returns the current time. */
    long lap(Profile.Phase phase, long since) {
        if (profile == null) return 0;
        long now = System.nanoTime();
        profile.add(phase, now - since);
        return now;
    }

    /** The current time when profiling, else 0. */
    long start() {
        return profile == null ? 0 : System.nanoTime();
    }
}
