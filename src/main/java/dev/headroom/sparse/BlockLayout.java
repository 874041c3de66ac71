package dev.headroom.sparse;

import java.util.Arrays;

/**
 * A pattern compiled for one problem size and query start position: for every head and every block of
 * {@code queryBlock} query rows, the key blocks of {@code keyBlock} keys that hold an allowed
 * pair, each FULL or PARTIAL. Empty tiles are simply absent. The sparse kernel walks these lists;
 * nothing is ever computed for a tile that is not listed.
 *
 * <p>Compiling costs one {@link AttentionPattern#classify} per tile, (n_q / queryBlock) ·
 * (n_k / keyBlock) per distinct head, and is done once per (pattern, sizes) and cached by the
 * runtime. Heads share one layout when the pattern says they may.
 */
public final class BlockLayout {
    private final AttentionPattern pattern;
    private final int heads, nq, nk, queryBlock, keyBlock, queryBlocks, keyBlocks;
    /** Position of query 0 among the keys (query i is at start + i). */
    private final long start;
    /** Per distinct head layout: CSR over query blocks of (key block, kind). */
    private final int[][] rowStart;
    private final int[][] keyBlockIndex;
    private final byte[][] kind;

    private BlockLayout(AttentionPattern pattern, int heads, int nq, int nk, long start, int queryBlock, int keyBlock) {
        this.pattern = pattern;
        this.start = start;
        this.heads = heads;
        this.nq = nq;
        this.nk = nk;
        this.queryBlock = queryBlock;
        this.keyBlock = keyBlock;
        this.queryBlocks = (nq + queryBlock - 1) / queryBlock;
        this.keyBlocks = (nk + keyBlock - 1) / keyBlock;
        int distinct = pattern.sameForAllHeads() ? 1 : heads;
        rowStart = new int[distinct][];
        keyBlockIndex = new int[distinct][];
        kind = new byte[distinct][];
        for (int h = 0; h < distinct; h++) compileHead(h);
    }

    /**
     * Compiles {@code pattern} for {@code heads} heads, n_q queries at positions start … start + n_q − 1,
     * and n_k keys.
     */
    public static BlockLayout compile(AttentionPattern pattern, int heads, int nq, int nk, long start, int queryBlock,
                                      int keyBlock) {
        if (heads < 1 || nq < 1 || nk < 1 || queryBlock < 1 || keyBlock < 1) {
            throw new IllegalArgumentException("block layout needs positive sizes: heads=" + heads + ", n_q=" + nq
                    + ", n_k=" + nk + ", blocks " + queryBlock + "×" + keyBlock);
        }
        return new BlockLayout(pattern, heads, nq, nk, start, queryBlock, keyBlock);
    }

    private void compileHead(int h) {
        int[] rowStart = new int[queryBlocks + 1];
        int[] keys = new int[Math.max(16, queryBlocks * 4)];
        byte[] kinds = new byte[keys.length];
        int count = 0;
        for (int qb = 0; qb < queryBlocks; qb++) {
            rowStart[qb] = count;
            int q0 = qb * queryBlock, q1 = Math.min(nq, q0 + queryBlock);
            for (int kb = 0; kb < keyBlocks; kb++) {
                int k0 = kb * keyBlock, k1 = Math.min(nk, k0 + keyBlock);
                TileKind t = pattern.classify(h, start + q0, start + q1, k0, k1, nk);
                if (t == TileKind.EMPTY) continue;
                if (count == keys.length) {
                    keys = Arrays.copyOf(keys, keys.length * 2);
                    kinds = Arrays.copyOf(kinds, keys.length);
                }
                keys[count] = kb;
                kinds[count] = (byte) t.ordinal();
                count++;
            }
        }
        rowStart[queryBlocks] = count;
        this.rowStart[h] = rowStart;
        keyBlockIndex[h] = Arrays.copyOf(keys, count);
        kind[h] = Arrays.copyOf(kinds, count);
    }

    private int slot(int head) {
        if (head < 0 || head >= heads) throw new IndexOutOfBoundsException("head " + head + " of " + heads);
        return rowStart.length == 1 ? 0 : head;
    }

    public AttentionPattern pattern() {
        return pattern;
    }

    /** Position of query 0. */
    public long start() {
        return start;
    }

    public int queryBlock() {
        return queryBlock;
    }

    public int keyBlock() {
        return keyBlock;
    }

    public int queryBlocks() {
        return queryBlocks;
    }

    public int keyBlocks() {
        return keyBlocks;
    }

    /** Non-empty tiles of query block qb in head h. */
    public int tileCount(int head, int qb) {
        int s = slot(head);
        return rowStart[s][qb + 1] - rowStart[s][qb];
    }

    /** The key block of the t-th non-empty tile of query block qb (ascending). */
    public int tileKeyBlock(int head, int qb, int t) {
        int s = slot(head);
        return keyBlockIndex[s][rowStart[s][qb] + t];
    }

    /** The kind (FULL or PARTIAL) of the t-th non-empty tile of query block qb. */
    public TileKind tileKind(int head, int qb, int t) {
        int s = slot(head);
        return TileKind.values()[kind[s][rowStart[s][qb] + t]];
    }

    /** Tiles of a kind over all heads (EMPTY counts the skipped ones). */
    public long tiles(TileKind k) {
        long full = 0, partial = 0;
        for (int h = 0; h < heads; h++) {
            byte[] kinds = kind[slot(h)];
            for (byte b : kinds) {
                if (b == TileKind.FULL.ordinal()) full++;
                else partial++;
            }
        }
        return switch (k) {
            case FULL -> full;
            case PARTIAL -> partial;
            case EMPTY -> (long) heads * queryBlocks * keyBlocks - full - partial;
        };
    }

    /**
     * The fraction of (head, query, key) pairs the pattern allows: full tiles count whole, partial
     * tiles element by element.
     */
    public double density() {
        double allowed = 0;
        for (int h = 0; h < heads; h++) {
            for (int qb = 0; qb < queryBlocks; qb++) {
                int q0 = qb * queryBlock, q1 = Math.min(nq, q0 + queryBlock);
                for (int t = 0; t < tileCount(h, qb); t++) {
                    int k0 = tileKeyBlock(h, qb, t) * keyBlock, k1 = Math.min(nk, k0 + keyBlock);
                    if (tileKind(h, qb, t) == TileKind.FULL) {
                        allowed += (double) (q1 - q0) * (k1 - k0);
                    } else {
                        for (int i = q0; i < q1; i++) for (int j = k0; j < k1; j++) if (pattern.allowed(h, start + i, j, nk)) allowed++;
                    }
                }
            }
        }
        return allowed / ((double) heads * nq * nk);
    }

    /** The fraction of tiles that are computed (full or partial). */
    public double tileDensity() {
        return (tiles(TileKind.FULL) + tiles(TileKind.PARTIAL)) / (double) ((long) heads * queryBlocks * keyBlocks);
    }

    @Override
    public String toString() {
        return "BlockLayout(" + pattern.describe() + ", " + heads + " heads, " + nq + "×" + nk + " from position " + start + " in " + queryBlock + "×"
                + keyBlock + " tiles: " + tiles(TileKind.FULL) + " full, " + tiles(TileKind.PARTIAL) + " partial, "
                + tiles(TileKind.EMPTY) + " skipped)";
    }
}
