package dev.headroom.attention;

import dev.headroom.sparse.BlockLayout;
import dev.headroom.sparse.TileKind;

import java.lang.foreign.MemorySegment;

/**
 * Block-sparse attention: visits only the tiles the compiled {@link BlockLayout} lists for the
 * block's head and query block. Adjacent non-empty tiles are merged into one span (one sgemm
 * each way) up to {@code maxSpan} keys; FULL tiles run unmasked, spans holding a PARTIAL tile
 * apply the pattern per element. Work and time are proportional to the tiles kept, and scratch is
 * queryBlock × maxSpan floats whatever n is.
 */
public final class SparseKernel implements AttentionKernel {
    private final int keyBlock, maxSpan;

    /**
     * @param keyBlock keys per layout tile (the granularity at which work is skipped)
     * @param maxSpan  most keys one span (one pair of sgemm calls) may cover; a multiple of keyBlock
     */
    public SparseKernel(int keyBlock, int maxSpan) {
        if (keyBlock < 1 || maxSpan < keyBlock) {
            throw new IllegalArgumentException("sparse kernel needs 1 <= keyBlock <= maxSpan, got " + keyBlock + ", " + maxSpan);
        }
        this.keyBlock = keyBlock;
        this.maxSpan = maxSpan / keyBlock * keyBlock;
    }

    public int keyBlock() {
        return keyBlock;
    }

    @Override
    public String name() {
        return "sparse(" + keyBlock + ")";
    }

    @Override
    public long scratchFloats(int rows, int keys) {
        return SpanAttention.scratchFloats(rows, Math.min(maxSpan, keys));
    }

    @Override
    public void attend(HeadBlock blk, MemorySegment scratch) {
        BlockLayout layout = blk.layout();
        if (layout == null || layout.keyBlock() != keyBlock || blk.firstQuery() % layout.queryBlock() != 0) {
            throw new IllegalStateException("the sparse kernel needs a layout compiled with key block " + keyBlock
                    + " and query blocks aligned to the task's, got " + layout);
        }
        int h = blk.head(), qb = blk.firstQuery() / layout.queryBlock(), keyEnd = SpanAttention.blockKeyEnd(blk);
        // Merge runs of adjacent tiles into spans of at most maxSpan keys, cut at keyEnd; remember
        // the partial tiles of each span (adjacent ones merged) for element masking.
        int tiles = layout.tileCount(h, qb);
        int[] from = new int[tiles], to = new int[tiles];
        int[][] partial = new int[tiles][];
        int count = 0, visited = 0;
        int[] ranges = new int[2 * tiles];
        int rangeCount = 0;
        for (int t = 0; t < tiles; t++) {
            int k0 = layout.tileKeyBlock(h, qb, t) * keyBlock, k1 = Math.min(keyEnd, k0 + keyBlock);
            if (k0 >= keyEnd) break;
            visited++;
            boolean extend = count > 0 && to[count - 1] == k0 && k1 - from[count - 1] <= maxSpan;
            if (!extend) {
                if (count > 0) partial[count - 1] = java.util.Arrays.copyOf(ranges, rangeCount);
                rangeCount = 0;
                from[count] = k0;
                count++;
            }
            to[count - 1] = k1;
            if (layout.tileKind(h, qb, t) == TileKind.PARTIAL) {
                if (rangeCount > 0 && ranges[rangeCount - 1] == k0) ranges[rangeCount - 1] = k1;
                else {
                    ranges[rangeCount++] = k0;
                    ranges[rangeCount++] = k1;
                }
            }
        }
        if (count > 0) partial[count - 1] = java.util.Arrays.copyOf(ranges, rangeCount);
        if (blk.profile() != null) blk.profile().addTiles(visited);
        int spans = count;
        int width = Math.min(maxSpan, blk.keys()); // the scratch was sized for this (see scratchFloats)
        SpanAttention.attend(blk, scratch, new SpanAttention.Spans() {
            public int count() {
                return spans;
            }

            public int from(int s) {
                return from[s];
            }

            public int to(int s) {
                return to[s];
            }

            public int[] patternRanges(int s) {
                return partial[s];
            }
        }, width);
    }
}
