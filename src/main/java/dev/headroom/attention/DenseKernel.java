package dev.headroom.attention;

import dev.headroom.blas.Blas;
import dev.headroom.kernels.Softmax;
import dev.headroom.tensor.Matrix;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Exact attention with the full score row of each query: for a block of m query rows it forms
 * the m × n_k scores with one sgemm, applies the mask and softmax in Java, and multiplies by V
 * with a second sgemm. Blocks of about 256 rows keep the scores in the core's L2 cache; the
 * runtime never materialises a whole n_q × n_k matrix.
 *
 * <p>Keys beyond the last one any row of the block may see (causal, padding) are not computed
 * at all. The division by the softmax sum is applied to the m × d output instead of the m × n_k
 * probabilities: the same result for a fraction of the work.
 */
public final class DenseKernel implements AttentionKernel {
    public static final DenseKernel INSTANCE = new DenseKernel();
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private DenseKernel() {}

    @Override
    public String name() {
        return "dense";
    }

    @Override
    public long scratchFloats(int rows, int keys, int headDim) {
        return (long) rows * keys + rows;   // scores (rows, keys), then one softmax sum per row
    }

    @Override
    public void attend(HeadBlock blk, MemorySegment scratch) {
        int m = blk.rows(), b = blk.batch(), q0 = blk.firstQuery();
        Mask.Bound mask = blk.mask();
        Softmax softmax = blk.softmax();

        // Keys that no row of this block may see are skipped altogether.
        int keyEnd = 0;
        for (int i = 0; i < m; i++) keyEnd = Math.max(keyEnd, mask.keyEnd(b, q0 + i));
        if (keyEnd == 0) {
            zero(blk.out());
            return;
        }
        /* S: (m, keyEnd) scores, then unnormalised probabilities. */
        Matrix S = Matrix.of(scratch, 0, m, keyEnd);
        /* rowSum: (m) softmax denominators, after S in the scratch. */
        long rowSum = (long) m * keyEnd;

        long t = blk.start();
        // S = scale · Q_h K_gᵀ
        Blas.sgemm(blk.scale(), blk.queryT(), true, blk.keyT().colRange(0, keyEnd), false, 0f, S);

        t = blk.lap(Profile.Phase.SCORES, t);

        // mask, then P = exp(S − rowmax) with the row sums kept for later
        for (int i = 0; i < m; i++) {
            long row = S.index(i, 0);
            int end = mask.keyEnd(b, q0 + i);
            if (mask.hasExplicit()) mask.applyExplicit(b, blk.head(), q0 + i, scratch, row, 0, end);
            float max = softmax.max(scratch, row, end);
            scratch.setAtIndex(F, rowSum + i, softmax.expInPlace(scratch, row, end, max));
            if (end < keyEnd) scratch.asSlice((row + end) * Float.BYTES, (long) (keyEnd - end) * Float.BYTES).fill((byte) 0);
        }

        t = blk.lap(Profile.Phase.SOFTMAX, t);

        // O_h = P · V_g
        Blas.sgemm(1f, S, false, blk.valueT().colRange(0, keyEnd), true, 0f, blk.out());

        // O_h /= rowSum; a row with no allowed key has sum 0 and outputs zeros
        Matrix out = blk.out();
        for (int i = 0; i < m; i++) {
            float sum = scratch.getAtIndex(F, rowSum + i);
            softmax.scale(out.segment(), out.index(i, 0), out.cols(), sum > 0f ? 1f / sum : 0f);
        }
        blk.lap(Profile.Phase.WEIGHTED_SUM, t);
    }

    static void zero(Matrix out) {
        for (int i = 0; i < out.rows(); i++) {
            out.segment().asSlice(out.index(i, 0) * Float.BYTES, (long) out.cols() * Float.BYTES).fill((byte) 0);
        }
    }
}
