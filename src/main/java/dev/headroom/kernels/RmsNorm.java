package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;

/**
 * Root-mean-square normalisation over one row of {@code length} floats, as Llama applies it to
 * each token (Zhang and Sennrich 2019; no mean subtracted, no bias):
 * <pre>
 *   y = (x / √(mean(x²) + eps)) ⊙ w
 * </pre>
 * in that order of operations, as Hugging Face's {@code LlamaRMSNorm} and PyTorch write it
 * ({@code x * rsqrt(x.pow(2).mean(-1) + eps) * weight}). Offsets and lengths count floats; the
 * weight w is read from float index 0 of its segment ({@code length} floats). The output may be
 * the input itself (same segment and offset): each element is read before it is written.
 *
 * <p>{@link #addAndNormalize} is the residual step of a pre-norm transformer: x ← x + r, then
 * y = RMSNorm(x), in one pass over x so that the sum is stored once and read back from cache.
 *
 * <p>Two implementations with the same contract: {@link #SCALAR}, plain loops with the sum of
 * squares in double (the reference), and {@link #VECTOR}, the Vector API with float lane sums
 * and a scalar tail. A row of zeros gives zeros (√eps in the denominator), never NaN.
 */
public interface RmsNorm {
    RmsNorm SCALAR = new ScalarRmsNorm();
    RmsNorm VECTOR = new VectorRmsNorm();

    /** y[yOffset..] = RMSNorm(x[xOffset..]) ⊙ w over {@code length} floats. */
    void normalize(MemorySegment x, long xOffset, MemorySegment weight, float eps, MemorySegment y, long yOffset, int length);

    /**
     * x[xOffset..] ← x + r[rOffset..], then y[yOffset..] = RMSNorm(x) ⊙ w, over {@code length}
     * floats; y may be x (same offset), r must not overlap x unless it is x.
     */
    void addAndNormalize(MemorySegment x, long xOffset, MemorySegment r, long rOffset, MemorySegment weight, float eps,
                         MemorySegment y, long yOffset, int length);

    /** The name shown in benchmarks and reports. */
    String name();
}
