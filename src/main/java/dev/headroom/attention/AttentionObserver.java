package dev.headroom.attention;

import java.lang.foreign.MemorySegment;

/**
 * What a forward call shows besides its output: whether each head is kept, progress, and the
 * exact attention probabilities of the rows an observer asks for. Inspection
 * ({@code dev.headroom.inspect.Inspection}) implements it; this package knows nothing of what is
 * done with the probabilities. A call without an observer runs exactly as if none existed.
 *
 * <p>The probabilities come from a second sweep over a block's spans, made once every row's
 * final softmax maximum M and sum L are known (see {@link SpanAttention}): p = e^(s − M) / L,
 * the same numbers the output was weighted by.
 */
public interface AttentionObserver {

    /** False to zero head h's output (ablation). */
    default boolean keeps(int head) {
        return true;
    }

    /** Told the number of query rows of each (batch, head) block once it is done, for progress bars. */
    default void finished(int rows) {}

    /**
     * Checks the observer against a call's shapes before anything runs, at the public boundary;
     * {@code workerThreads} is true when threads other than the caller will call it (memory it
     * writes must then be in a shared arena).
     *
     * @throws IllegalArgumentException naming the mismatch
     */
    default void check(int batch, int heads, int queries, int keys, boolean workerThreads) {}

    /**
     * Shown each call's concatenated head outputs once the attend stage is done and before the
     * output projection: {@code concat} is (rows, H·d), head h's output Z_h = softmax(·)V_h in
     * columns [h·d, (h+1)·d); rows are the call's query tokens (batch element by batch element, or
     * a cache step's new tokens sequence by sequence). A view into the call's workspace: copy what
     * you keep. Probing reads per-head features here.
     */
    default void headOutputs(dev.headroom.tensor.Matrix concat) {}

    /**
     * What to do with head h's probabilities for query rows [firstQuery, firstQuery + rows) of
     * batch element b against n_k keys, or null when this block needs no second sweep. Called
     * once per block on the worker that computes it; the returned object is used by that worker
     * only.
     */
    Rows rows(int batch, int head, int firstQuery, int rows, int keys);

    /** The receiver of one block's probabilities, row by row and span by span. */
    interface Rows {
        /** Whether row r (0 = the block's first query) is wanted. */
        boolean wants(int row);

        /**
         * True when most rows are wanted, so that the scores of the whole block are formed in one
         * product; false forms them one wanted row at a time.
         */
        boolean wantsEveryRow();

        /**
         * The probabilities of row r, at query position {@code position}, for keys [k0, k0 + len):
         * {@code p[offset .. offset + len)}, final and exact; keys past the row's causal or
         * padding end are not given. Spans arrive in ascending key order.
         */
        void probabilities(int row, long position, int k0, MemorySegment p, long offset, int len);

        /** Every wanted row's share of keys [k0, k0 + kn) has been given. */
        default void endSpan(int k0, int kn) {}

        /**
         * Row r is complete and saw {@code allowed} > 0 keys: its entropy (nats), from
         * logsumexp(s) − Σ p·s over all its spans.
         */
        default void endRow(int row, long position, double entropy, int allowed) {}

        /** The block is complete. */
        default void end() {}
    }
}
