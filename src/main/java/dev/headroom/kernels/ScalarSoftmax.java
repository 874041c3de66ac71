package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** The plain reference {@link Softmax}: one element at a time, e^x from {@code Math.exp}. */
final class ScalarSoftmax implements Softmax {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Override
    public float max(MemorySegment x, long offset, int length) {
        float m = Float.NEGATIVE_INFINITY;
        for (int j = 0; j < length; j++) m = Math.max(m, x.getAtIndex(F, offset + j));
        return m;
    }

    @Override
    public float expInPlace(MemorySegment x, long offset, int length, float shift) {
        if (shift == Float.NEGATIVE_INFINITY) {
            x.asSlice(offset * Float.BYTES, (long) length * Float.BYTES).fill((byte) 0);
            return 0f;
        }
        float sum = 0f;
        for (int j = 0; j < length; j++) {
            float e = VectorMath.expScalar(x.getAtIndex(F, offset + j) - shift);
            x.setAtIndex(F, offset + j, e);
            sum += e;
        }
        return sum;
    }

    @Override
    public void scale(MemorySegment x, long offset, int length, float factor) {
        for (int j = 0; j < length; j++) x.setAtIndex(F, offset + j, x.getAtIndex(F, offset + j) * factor);
    }

    @Override
    public String name() {
        return "scalar";
    }
}
