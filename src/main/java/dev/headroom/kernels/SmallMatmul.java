package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;

/**
 * y = x Wᵀ (+ b) for a few rows x, as a linear layer applies it to the new tokens of a decode
 * step: W is (n, k), row-major (PyTorch's Linear layout), x is m rows of k floats, and
 * <pre>
 *   out[i·rowStride + j·colStride] (+)= Σ_k x[i·ldx + k] · W[j·ldw + k] + bias[j]      i &lt; m, j &lt; n
 * </pre>
 * (offsets in floats from each segment's given offset). The strides let one kernel write rows
 * (rowStride = n, colStride = 1) or the feature-major Qᵀ/Kᵀ an attention stage reads
 * (rowStride = 1, colStride = T). With {@code accumulate} the product is added to what
 * {@code out} holds (a residual add), else it replaces it; {@code bias} may be null.
 *
 * <p>Why not sgemm: OpenBLAS's sgemm packs all of W on every call, whatever m is. For one row of
 * the tiny decoder's feed-forward (640 × 256) it took 49 µs of CPU time per call here against
 * 8.6 µs for a plain Vector API loop that reads each row of W once (interleaved runs, 20,000
 * calls each, on a machine loaded by other work; OpenBLAS 0.3.21, whose sgemm has no
 * matrix-vector shortcut). This kernel reads each row of W once for all m rows of x, which stay
 * in L1. Larger m goes to {@link dev.headroom.blas.Blas#sgemm}.
 *
 * <p>Every output is one multiply-add chain over k in index order, in lanes, then the lanes
 * added ({@code reduceLanes}: its order is the JIT's, which may differ between compilation tiers
 * in the last bit), then the tail. {@link #SCALAR} is the plain reference (sums in double).
 */
public interface SmallMatmul {
    SmallMatmul SCALAR = new ScalarSmallMatmul();
    SmallMatmul VECTOR = new VectorSmallMatmul();

    /**
     * @param x          m rows of k floats, row i from float index {@code xOffset + i·ldx}
     * @param w          n rows of k floats, row j from float index {@code wOffset + j·ldw}
     * @param bias       n floats from index 0, or null
     * @param accumulate add to {@code out} instead of overwriting it
     * @param out        output (i, j) at float index {@code outOffset + i·rowStride + j·colStride}
     */
    void apply(MemorySegment x, long xOffset, int ldx, int m, int k, MemorySegment w, long wOffset, int ldw, int n,
               MemorySegment bias, boolean accumulate, MemorySegment out, long outOffset, long rowStride, long colStride);

    /** The name shown in benchmarks and reports. */
    String name();
}
