package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;

/**
 * Layer normalisation over one row of {@code length} floats, as BERT applies it to each token:
 * <pre>
 *   μ = mean(x),  σ² = mean((x − μ)²),  y = γ ⊙ (x − μ) / √(σ² + eps) + β
 * </pre>
 * Offsets and lengths count floats; γ and β are read from float index 0 of their segments
 * ({@code length} floats each). The output may be the input itself (same segment and offset):
 * each element is read before it is written.
 *
 * <p>{@link #addAndNormalize} is the residual step of a post-LN transformer, y = LN(x + r),
 * in one kernel so that the sum is never stored on its own.
 *
 * <p>Two implementations with the same contract: {@link #SCALAR}, plain loops (the reference),
 * and {@link #VECTOR}, the Vector API with a scalar tail. Both work in float, as the ONNX graph
 * of the model does, but with the corrected two-pass algorithm (Chan, Golub and LeVeque): the
 * deviations from the float mean are summed too, which recovers the mean's rounding error, so
 * rows far from zero keep their accuracy (E[x²] − μ² would cancel catastrophically there, and a
 * plain two-pass loses the mean's last bits). The twins differ only in summation order.
 */
public interface LayerNorm {
    LayerNorm SCALAR = new ScalarLayerNorm();
    LayerNorm VECTOR = new VectorLayerNorm();

    /** y[yOffset..] = LN(x[xOffset..]) over {@code length} floats. */
    void normalize(MemorySegment x, long xOffset, MemorySegment gamma, MemorySegment beta, float eps,
                   MemorySegment y, long yOffset, int length);

    /**
     * y[yOffset..] = LN(x[xOffset..] + r[rOffset..]) over {@code length} floats; y may be x or r
     * (same offset).
     */
    void addAndNormalize(MemorySegment x, long xOffset, MemorySegment r, long rOffset, MemorySegment gamma,
                         MemorySegment beta, float eps, MemorySegment y, long yOffset, int length);

    /** The name shown in benchmarks and reports. */
    String name();
}
