package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;

/**
 * y = x Wᵀ + b for a few rows x, as a linear layer applies it to the new tokens of a decode step,
 * with W (n, k) in PyTorch's Linear layout {@linkplain #pack packed} once, when a model loads,
 * into panels of {@link #panel()} outputs: panel p holds, for c = 0..k−1, the weights of outputs
 * [p·P, (p+1)·P) for input c, contiguously (the last panel padded with zeros). Then
 * <pre>
 *   out[i·rowStride + j·colStride] (+)= Σ_c x[i·ldx + c] · W[j, c] + bias[j]      i &lt; m, j &lt; n
 * </pre>
 * (offsets in floats from each segment's given offset). The strides let one kernel write rows
 * (rowStride = n, colStride = 1) or the feature-major Qᵀ/Kᵀ an attention stage reads
 * (rowStride = 1, colStride = T). With {@code accumulate} the product is added to what
 * {@code out} holds (a residual add), else it replaces it; {@code bias} may be null.
 *
 * <p>Why not sgemm: OpenBLAS's sgemm packs all of W on every call, whatever m is. CPU time per
 * call for the tiny decoder's feed-forward shape (n = 640, k = 256), sixteen such weights used in
 * turn (as a model's layers are), measured with an earlier form of this kernel (four rows at a
 * time, each block reading all of W) on a machine loaded by other work: 1 row 8.8 µs
 * against sgemm's 59, 8 rows 23 against 65, 32 rows 94 against 153. A dot-product formulation
 * over W's own rows, one lane sum per output, took 9-35 µs (its sums cost as much as its
 * products), and Wᵀ unpacked 11-112 µs (its rows are read with a stride). Here the lanes run
 * along the outputs: each step of c broadcasts x[i, c] and multiplies it into two vectors of
 * the panel, for a block of rows of x at a time (eight with 512-bit vectors, the last block padded
 * with zero rows; otherwise four, then single rows), one panel after the other, so a panel is read
 * from memory once per call and nothing is summed across lanes (with the step's products on one
 * thread, 32 rows now take 1.12-1.22 ms against sgemm's 2.00: {@code VectorSmallMatmul}).
 *
 * <p>Every output is one chain of fused multiply-adds over c in index order, whichever block or
 * lane computes it: the result of a row does not depend on m or on the rows beside it, bit for
 * bit, in every JIT tier. {@link #SCALAR} is the plain reference (sums in double).
 */
public interface SmallMatmul {
    SmallMatmul SCALAR = new ScalarSmallMatmul();
    SmallMatmul VECTOR = new VectorSmallMatmul();

    /** P, the outputs per panel: two vectors of {@link Vectors#SPECIES}. */
    static int panel() {
        return 2 * Vectors.lanes();
    }

    /** Floats of the packed form of an (n, k) weight: ⌈n / P⌉ panels of k × P. */
    static long packedFloats(int n, int k) {
        return (long) ((n + panel() - 1) / panel()) * k * panel();
    }

    /** Float offset of the panel that starts at output j (a multiple of P) in a packed (n, k) weight. */
    static long panelOffset(int j, int k) {
        if (j % panel() != 0) throw new IllegalArgumentException("output " + j + " does not start a panel of " + panel());
        return (long) (j / panel()) * k * panel();
    }

    /** Packs W (n, k), rows {@code ldw} floats apart from {@code wOffset}, into {@link #packedFloats} floats of {@code packed}. */
    static void pack(MemorySegment w, long wOffset, int ldw, int n, int k, MemorySegment packed, long packedOffset) {
        int P = panel();
        java.lang.foreign.ValueLayout.OfFloat f = java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED;
        for (int p = 0; p * P < n; p++) {
            long base = packedOffset + (long) p * k * P;
            for (int l = 0; l < P; l++) {
                int j = p * P + l;
                for (int c = 0; c < k; c++) packed.setAtIndex(f, base + (long) c * P + l, j < n ? w.getAtIndex(f, wOffset + (long) j * ldw + c) : 0f);
            }
        }
    }

    /**
     * @param x          m rows of k floats, row i from float index {@code xOffset + i·ldx}
     * @param packed     W (n, k) as {@link #pack} wrote it, from float index {@code packedOffset}
     * @param bias       n floats from index 0, or null
     * @param accumulate add to {@code out} instead of overwriting it
     * @param out        output (i, j) at float index {@code outOffset + i·rowStride + j·colStride}
     */
    void apply(MemorySegment x, long xOffset, int ldx, int m, int k, MemorySegment packed, long packedOffset, int n,
               MemorySegment bias, boolean accumulate, MemorySegment out, long outOffset, long rowStride, long colStride);

    /** The name shown in benchmarks and reports. */
    String name();
}
