package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** The plain reference {@link LayerNorm}: one element at a time, sums in index order. */
final class ScalarLayerNorm implements LayerNorm {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Override
    public void normalize(MemorySegment x, long xOffset, MemorySegment gamma, MemorySegment beta, float eps,
                          MemorySegment y, long yOffset, int length) {
        if (length == 0) return;
        float sum = 0f;
        for (int j = 0; j < length; j++) sum += x.getAtIndex(F, xOffset + j);
        float mean = sum / length;
        // Corrected two-pass: the deviations from the float mean also sum to that mean's error c.
        float deviations = 0f, squares = 0f;
        for (int j = 0; j < length; j++) {
            float d = x.getAtIndex(F, xOffset + j) - mean;
            deviations += d;
            squares += d * d;
        }
        float c = deviations / length;
        float inverse = 1f / (float) Math.sqrt(Math.max(0f, squares / length - c * c) + eps);
        for (int j = 0; j < length; j++) {
            float d = x.getAtIndex(F, xOffset + j) - mean - c;
            y.setAtIndex(F, yOffset + j, d * inverse * gamma.getAtIndex(F, j) + beta.getAtIndex(F, j));
        }
    }

    @Override
    public void addAndNormalize(MemorySegment x, long xOffset, MemorySegment r, long rOffset, MemorySegment gamma,
                                MemorySegment beta, float eps, MemorySegment y, long yOffset, int length) {
        for (int j = 0; j < length; j++) {
            y.setAtIndex(F, yOffset + j, x.getAtIndex(F, xOffset + j) + r.getAtIndex(F, rOffset + j));
        }
        normalize(y, yOffset, gamma, beta, eps, y, yOffset, length);
    }

    @Override
    public String name() {
        return "scalar";
    }
}
