package dev.headroom.attention;

import java.lang.foreign.MemorySegment;

/**
 * Exact attention with the full score row of each query: for a block of m query rows it forms
 * the m × n_k scores with one sgemm, applies the mask and softmax in Java, and multiplies by V
 * with a second sgemm (one span of {@link SpanAttention}). A block of 256 rows holds
 * 256 × n_k scores (4 MiB at n_k = 4096, the size the runtime uses it up to); the n_q × n_k
 * matrix is never stored whole.
 *
 * <p>Keys beyond the last one any row of the block may see (causal, padding) are not computed
 * at all. The division by the softmax sum is applied to the m × d output instead of the
 * m × n_k probabilities: the same result for a fraction of the work. Scratch grows with n_k;
 * for long sequences {@link TiledKernel} bounds it.
 */
public final class DenseKernel implements AttentionKernel {
    public static final DenseKernel INSTANCE = new DenseKernel();

    private DenseKernel() {}

    @Override
    public String name() {
        return "dense";
    }

    @Override
    public long scratchFloats(int rows, int keys) {
        return SpanAttention.scratchFloats(rows, keys);
    }

    @Override
    public void attend(HeadBlock blk, MemorySegment scratch) {
        int keyEnd = SpanAttention.blockKeyEnd(blk);
        SpanAttention.attend(blk, scratch, SpanAttention.tiles(keyEnd, Math.max(1, keyEnd), blk.mask().pattern() != null),
                Math.max(1, blk.keys()));
    }
}
