package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** The plain reference {@link RmsNorm}: one element at a time, the sum of squares in double. */
final class ScalarRmsNorm implements RmsNorm {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Override
    public void normalize(MemorySegment x, long xOffset, MemorySegment weight, float eps, MemorySegment y, long yOffset,
                          int length) {
        if (length == 0) return;
        double squares = 0;
        for (int j = 0; j < length; j++) {
            double v = x.getAtIndex(F, xOffset + j);
            squares += v * v;
        }
        float inverse = (float) (1 / Math.sqrt(squares / length + eps));
        for (int j = 0; j < length; j++) {
            y.setAtIndex(F, yOffset + j, x.getAtIndex(F, xOffset + j) * inverse * weight.getAtIndex(F, j));
        }
    }

    @Override
    public void addAndNormalize(MemorySegment x, long xOffset, MemorySegment r, long rOffset, MemorySegment weight, float eps,
                                MemorySegment y, long yOffset, int length) {
        for (int j = 0; j < length; j++) {
            x.setAtIndex(F, xOffset + j, x.getAtIndex(F, xOffset + j) + r.getAtIndex(F, rOffset + j));
        }
        normalize(x, xOffset, weight, eps, y, yOffset, length);
    }

    @Override
    public String name() {
        return "scalar";
    }
}
