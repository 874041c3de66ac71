package dev.headroom.attention;

import java.util.Arrays;

/**
 * Where each batch element's queries sit among its keys: query i of element b is at position
 * {@code start(b) + i}. Causal masks, sparse patterns, position encodings and the inspection
 * statistics all read a query's position from here and nowhere else.
 *
 * <ul>
 *   <li>Self-attention over a whole sequence: start = 0, so query i is at position i.</li>
 *   <li>Queries after a KV cache: start = the number of tokens cached before them, per sequence.</li>
 *   <li>Anything else with n_q ≠ n_k: by default the queries are the last n_q positions of the
 *       n_k keys (start = n_k − n_q, the bottom-right alignment of FlashAttention ≥ 2.1), which
 *       may be negative when there are fewer keys than queries.</li>
 * </ul>
 */
public final class Positions {
    /** Per batch element; a single entry applies to every element. */
    private final int[] starts;

    private Positions(int[] starts) {
        this.starts = starts;
    }

    /** Every batch element's queries start at {@code start}. */
    public static Positions uniform(int start) {
        return new Positions(new int[]{start});
    }

    /** Batch element b's queries start at {@code starts[b]} (each ≥ 0: a cached length). */
    public static Positions of(int... starts) {
        if (starts.length == 0) throw new IllegalArgumentException("positions need at least one start");
        for (int s : starts) {
            if (s < 0) throw new IllegalArgumentException("query start positions must be >= 0, got " + Arrays.toString(starts));
        }
        return new Positions(starts.clone());
    }

    /** The default when no positions are given: the n_q queries are the last of the n_k keys. */
    public static Positions bottomRight(int queries, int keys) {
        return uniform(keys - queries);
    }

    /** Position of the first query of batch element b. */
    public int start(int b) {
        return starts.length == 1 ? starts[0] : starts[b];
    }

    /** Position of query i of batch element b. */
    public long of(int b, int i) {
        return (long) start(b) + i;
    }

    /** True when every batch element starts at the same position. */
    public boolean isUniform() {
        for (int s : starts) if (s != starts[0]) return false;
        return true;
    }

    /** Checks that these positions fit a batch of {@code batch}. */
    void check(int batch) {
        if (starts.length != 1 && starts.length != batch) {
            throw new IllegalArgumentException("positions give " + starts.length + " start positions " + this
                    + " for a batch of " + batch);
        }
    }

    @Override
    public String toString() {
        return starts.length == 1 ? "start " + starts[0] : "starts " + Arrays.toString(starts);
    }
}
