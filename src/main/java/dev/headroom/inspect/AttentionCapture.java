package dev.headroom.inspect;

import dev.headroom.attention.AttentionObserver;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.MemorySegment;

import java.lang.foreign.Arena;
import java.util.Arrays;

/**
 * Storage, owned by the caller's arena, for the attention probabilities of chosen heads and
 * (for long sequences) chosen query rows: a tensor of shape (B, heads, rows, n_k) where entry
 * [b, a, r, j] is p(query rows[r] → key j) of head heads[a] in batch element b. Keys a sparse
 * pattern skips hold 0.
 */
public final class AttentionCapture {
    private final int[] heads;      // ascending query heads
    private final int[] rows;       // ascending query rows, or null for all
    private final int[] headSlot;   // head → index in heads, −1 when not captured
    private final int[] rowSlot;    // row → index in rows, −1 when not captured (null: all)
    private final Tensor probabilities;
    private final int batch, queries, keys;

    private AttentionCapture(Arena arena, int batch, int allHeads, int[] heads, int queries, int keys, int[] rows) {
        this.batch = batch;
        this.queries = queries;
        this.keys = keys;
        this.heads = sortedDistinct(heads, allHeads, "head");
        this.rows = rows == null ? null : sortedDistinct(rows, queries, "query row");
        headSlot = new int[allHeads];
        Arrays.fill(headSlot, -1);
        for (int a = 0; a < this.heads.length; a++) headSlot[this.heads[a]] = a;
        if (this.rows == null) {
            rowSlot = null;
        } else {
            rowSlot = new int[queries];
            Arrays.fill(rowSlot, -1);
            for (int r = 0; r < this.rows.length; r++) rowSlot[this.rows[r]] = r;
        }
        int capturedRows = this.rows == null ? queries : this.rows.length;
        probabilities = Tensor.allocate(arena, batch, this.heads.length, capturedRows, keys);
    }

    /** Captures every row of the given heads (of {@code allHeads}) for B × n_q queries and n_k keys. */
    public static AttentionCapture allRows(Arena arena, int batch, int allHeads, int[] heads, int queries, int keys) {
        return new AttentionCapture(arena, batch, allHeads, heads, queries, keys, null);
    }

    /** Captures only the given query rows (for long sequences). */
    public static AttentionCapture rows(Arena arena, int batch, int allHeads, int[] heads, int queries, int keys, int[] rows) {
        return new AttentionCapture(arena, batch, allHeads, heads, queries, keys, rows);
    }

    private static int[] sortedDistinct(int[] v, int bound, String what) {
        int[] s = Arrays.stream(v).distinct().sorted().toArray();
        if (s.length == 0) throw new IllegalArgumentException("capture needs at least one " + what);
        if (s[0] < 0 || s[s.length - 1] >= bound) {
            throw new IllegalArgumentException(what + "s " + Arrays.toString(v) + " must lie in [0, " + bound + ")");
        }
        return s;
    }

    /** (B, heads, rows, n_k) probabilities. */
    public Tensor probabilities() {
        return probabilities;
    }

    public int[] heads() {
        return heads.clone();
    }

    /** The captured query rows (all rows 0..n_q−1 when every row is captured). */
    public int[] rows() {
        if (rows != null) return rows.clone();
        int[] all = new int[queries];
        Arrays.setAll(all, i -> i);
        return all;
    }

    public int batch() {
        return batch;
    }

    public int queries() {
        return queries;
    }

    public int keys() {
        return keys;
    }

    /** Whether head h is captured. */
    public boolean hasHead(int h) {
        return h < headSlot.length && headSlot[h] >= 0;
    }

    /** Whether query row i is captured. */
    public boolean hasRow(int i) {
        return rowSlot == null || rowSlot[i] >= 0;
    }

    /** Float index of p(b, h, i → key 0) in {@link #probabilities()}; h and i must be captured. */
    public long index(int b, int h, int i) {
        int r = rowSlot == null ? i : rowSlot[i];
        int capturedRows = rowSlot == null ? queries : rows.length;
        return (((long) b * heads.length + headSlot[h]) * capturedRows + r) * keys;
    }

    /** p(b, h, i → j), for captured h and i. */
    public float get(int b, int h, int i, int j) {
        return probabilities.get(index(b, h, i) + j);
    }

    /**
     * The receiver of head h's probabilities for query rows [q0, q0 + m) of batch element b: zeroes
     * the captured rows first (keys that are masked or that a sparse pattern skips stay 0), then
     * copies each span of a captured row into place.
     */
    AttentionObserver.Rows rows(int b, int h, int q0, int m) {
        for (int i = q0; i < q0 + m; i++) {
            if (hasRow(i)) probabilities.segment().asSlice(index(b, h, i) * Float.BYTES, (long) keys * Float.BYTES).fill((byte) 0);
        }
        return new AttentionObserver.Rows() {
            @Override
            public boolean wants(int row) {
                return hasRow(q0 + row);
            }

            @Override
            public boolean wantsEveryRow() {
                return false;
            }

            @Override
            public void probabilities(int row, long position, int k0, MemorySegment p, long offset, int len) {
                MemorySegment.copy(p, offset * Float.BYTES, probabilities.segment(), (index(b, h, q0 + row) + k0) * Float.BYTES,
                        (long) len * Float.BYTES);
            }
        };
    }

    /** Checks the capture against a call's shapes. */
    public void check(int batch, int allHeads, int queries, int keys) {
        if (batch != this.batch || queries != this.queries || keys != this.keys || allHeads != headSlot.length) {
            throw new IllegalArgumentException("capture was made for batch " + this.batch + ", " + headSlot.length + " heads, n_q="
                    + this.queries + ", n_k=" + this.keys + "; the call has batch " + batch + ", " + allHeads + " heads, n_q="
                    + queries + ", n_k=" + keys);
        }
        if (!probabilities.segment().scope().isAlive()) throw new IllegalStateException("the capture's arena is closed");
    }
}
