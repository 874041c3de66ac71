package dev.headroom.attention;

import java.lang.foreign.MemorySegment;

/**
 * Exact attention in memory that does not grow with the sequence: keys are visited in tiles of
 * {@code keyTile}, each tile's scores formed by sgemm, folded in with an online softmax, and
 * multiplied by V into the output (see {@link SpanAttention}). A worker's scratch is
 * queryBlock × keyTile floats whatever n is.
 */
public final class TiledKernel implements AttentionKernel {
    private final int keyTile;

    public TiledKernel(int keyTile) {
        if (keyTile < 1) throw new IllegalArgumentException("key tile must be >= 1, got " + keyTile);
        this.keyTile = keyTile;
    }

    public int keyTile() {
        return keyTile;
    }

    @Override
    public String name() {
        return "tiled(" + keyTile + ")";
    }

    @Override
    public long scratchFloats(int rows, int keys) {
        return SpanAttention.scratchFloats(rows, Math.min(keyTile, keys));
    }

    @Override
    public void attend(HeadBlock blk, MemorySegment scratch) {
        int width = Math.min(keyTile, blk.keys());
        SpanAttention.attend(blk, scratch, SpanAttention.tiles(SpanAttention.blockKeyEnd(blk), width,
                blk.mask().pattern() != null), width);
    }
}
