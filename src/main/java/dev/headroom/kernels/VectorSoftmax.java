package dev.headroom.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * {@link Softmax} on the Vector API: full vectors up to {@code loopBound}, then a scalar tail
 * (the same arithmetic as {@link ScalarSoftmax}), so any offset and length work.
 */
final class VectorSoftmax implements Softmax {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Override
    public float max(MemorySegment x, long offset, int length) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length);
        FloatVector acc = FloatVector.broadcast(SPECIES, Float.NEGATIVE_INFINITY);
        int j = 0;
        for (; j < bound; j += lanes) {
            acc = acc.max(FloatVector.fromMemorySegment(SPECIES, x, (offset + j) * Float.BYTES, ORDER));
        }
        float m = acc.reduceLanes(VectorOperators.MAX);
        for (; j < length; j++) m = Math.max(m, x.getAtIndex(F, offset + j));
        return m;
    }

    @Override
    public float expInPlace(MemorySegment x, long offset, int length, float shift) {
        if (shift == Float.NEGATIVE_INFINITY) {
            x.asSlice(offset * Float.BYTES, (long) length * Float.BYTES).fill((byte) 0);
            return 0f;
        }
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length);
        FloatVector s = FloatVector.broadcast(SPECIES, shift);
        FloatVector acc = FloatVector.zero(SPECIES);
        int j = 0;
        for (; j < bound; j += lanes) {
            long byteOffset = (offset + j) * Float.BYTES;
            FloatVector e = VectorMath.exp(FloatVector.fromMemorySegment(SPECIES, x, byteOffset, ORDER).sub(s));
            e.intoMemorySegment(x, byteOffset, ORDER);
            acc = acc.add(e);
        }
        float sum = Vectors.sumLanes(acc);
        for (; j < length; j++) {
            float e = VectorMath.expScalar(x.getAtIndex(F, offset + j) - shift);
            x.setAtIndex(F, offset + j, e);
            sum += e;
        }
        return sum;
    }

    @Override
    public void scale(MemorySegment x, long offset, int length, float factor) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length);
        int j = 0;
        for (; j < bound; j += lanes) {
            long byteOffset = (offset + j) * Float.BYTES;
            FloatVector.fromMemorySegment(SPECIES, x, byteOffset, ORDER).mul(factor).intoMemorySegment(x, byteOffset, ORDER);
        }
        for (; j < length; j++) x.setAtIndex(F, offset + j, x.getAtIndex(F, offset + j) * factor);
    }

    @Override
    public String name() {
        return "vector(" + SPECIES.vectorBitSize() + "-bit)";
    }
}
