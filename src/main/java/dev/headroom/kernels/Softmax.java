package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;

/**
 * Row softmax over {@code length} floats of a segment starting at float index {@code offset}.
 * Numerically stable: it subtracts the row maximum before exponentiating. A row whose entries
 * are all −∞ (every key masked) becomes all zeros, never NaN: there is nothing to attend to, so
 * it contributes nothing. A row of length 0 is left as it is.
 *
 * <p>Two implementations with the same contract: {@link #SCALAR}, plain loops and {@code Math.exp}
 * (the reference), and {@link #VECTOR}, the Vector API with {@link VectorMath#exp}. Tests hold the
 * vector one to the scalar one. The attention kernels use the three steps separately, because
 * they fold the division by the sum into the (much smaller) output instead of the scores.
 */
public interface Softmax {
    Softmax SCALAR = new ScalarSoftmax();
    Softmax VECTOR = new VectorSoftmax();

    /** The largest of the {@code length} floats, −∞ if there are none. */
    float max(MemorySegment x, long offset, int length);

    /**
     * x ← e^(x − shift) in place, returning Σ e^(x − shift). With {@code shift = −∞} (the row is
     * fully masked) the row becomes zeros and 0 is returned.
     */
    float expInPlace(MemorySegment x, long offset, int length, float shift);

    /** x ← x · factor in place. */
    void scale(MemorySegment x, long offset, int length, float factor);

    /*
     * The same three steps over a Java array (float index offset), for rows a worker keeps on the
     * heap (the decode path's scores). The defaults view the array as a segment; the vector form
     * has loops of its own, because a heap segment passed where native ones also pass is not
     * compiled to vector stores (C2 fell back to FloatVector.memorySegmentSet, a tenth of a
     * decode step's profile).
     */

    /** {@link #max(MemorySegment, long, int)} over {@code x[offset .. offset + length)}. */
    default float max(float[] x, int offset, int length) {
        return max(MemorySegment.ofArray(x), offset, length);
    }

    /** {@link #expInPlace(MemorySegment, long, int, float)} over {@code x[offset .. offset + length)}. */
    default float expInPlace(float[] x, int offset, int length, float shift) {
        return expInPlace(MemorySegment.ofArray(x), offset, length, shift);
    }

    /** {@link #scale(MemorySegment, long, int, float)} over {@code x[offset .. offset + length)}. */
    default void scale(float[] x, int offset, int length, float factor) {
        scale(MemorySegment.ofArray(x), offset, length, factor);
    }

    /** The softmax of the row, in place; zeros for a fully masked row. */
    default void softmax(MemorySegment x, long offset, int length) {
        if (length == 0) return;
        float max = max(x, offset, length);
        float sum = expInPlace(x, offset, length, max);
        scale(x, offset, length, sum > 0 ? 1f / sum : 0f);
    }

    /** The name shown in benchmarks and reports. */
    String name();
}
