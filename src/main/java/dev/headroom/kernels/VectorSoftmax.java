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
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length), bound4 = length - length % (4 * lanes);
        // Four independent maxima: one accumulator would wait on its own latency every vector.
        // The maximum does not depend on the order, so the result is the same.
        FloatVector a0 = FloatVector.broadcast(SPECIES, Float.NEGATIVE_INFINITY), a1 = a0, a2 = a0, a3 = a0;
        int j = 0;
        for (; j < bound4; j += 4 * lanes) {
            long at = (offset + j) * Float.BYTES;
            a0 = a0.max(FloatVector.fromMemorySegment(SPECIES, x, at, ORDER));
            a1 = a1.max(FloatVector.fromMemorySegment(SPECIES, x, at + (long) lanes * Float.BYTES, ORDER));
            a2 = a2.max(FloatVector.fromMemorySegment(SPECIES, x, at + 2L * lanes * Float.BYTES, ORDER));
            a3 = a3.max(FloatVector.fromMemorySegment(SPECIES, x, at + 3L * lanes * Float.BYTES, ORDER));
        }
        for (; j < bound; j += lanes) {
            a0 = a0.max(FloatVector.fromMemorySegment(SPECIES, x, (offset + j) * Float.BYTES, ORDER));
        }
        float m = a0.max(a1).max(a2.max(a3)).reduceLanes(VectorOperators.MAX);
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

    // The array forms: the same loops with fromArray / intoArray (see Softmax on why they exist).

    @Override
    public float max(float[] x, int offset, int length) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length), bound4 = length - length % (4 * lanes);
        FloatVector a0 = FloatVector.broadcast(SPECIES, Float.NEGATIVE_INFINITY), a1 = a0, a2 = a0, a3 = a0;
        int j = 0;
        for (; j < bound4; j += 4 * lanes) {
            a0 = a0.max(FloatVector.fromArray(SPECIES, x, offset + j));
            a1 = a1.max(FloatVector.fromArray(SPECIES, x, offset + j + lanes));
            a2 = a2.max(FloatVector.fromArray(SPECIES, x, offset + j + 2 * lanes));
            a3 = a3.max(FloatVector.fromArray(SPECIES, x, offset + j + 3 * lanes));
        }
        for (; j < bound; j += lanes) a0 = a0.max(FloatVector.fromArray(SPECIES, x, offset + j));
        float m = a0.max(a1).max(a2.max(a3)).reduceLanes(VectorOperators.MAX);
        for (; j < length; j++) m = Math.max(m, x[offset + j]);
        return m;
    }

    @Override
    public float expInPlace(float[] x, int offset, int length, float shift) {
        if (shift == Float.NEGATIVE_INFINITY) {
            java.util.Arrays.fill(x, offset, offset + length, 0f);
            return 0f;
        }
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length);
        FloatVector s = FloatVector.broadcast(SPECIES, shift);
        FloatVector acc = FloatVector.zero(SPECIES);
        int j = 0;
        for (; j < bound; j += lanes) {
            FloatVector e = VectorMath.exp(FloatVector.fromArray(SPECIES, x, offset + j).sub(s));
            e.intoArray(x, offset + j);
            acc = acc.add(e);
        }
        float sum = Vectors.sumLanes(acc);
        for (; j < length; j++) {
            float e = VectorMath.expScalar(x[offset + j] - shift);
            x[offset + j] = e;
            sum += e;
        }
        return sum;
    }

    @Override
    public void scale(float[] x, int offset, int length, float factor) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length);
        int j = 0;
        for (; j < bound; j += lanes) FloatVector.fromArray(SPECIES, x, offset + j).mul(factor).intoArray(x, offset + j);
        for (; j < length; j++) x[offset + j] *= factor;
    }

    @Override
    public String name() {
        return "vector(" + SPECIES.vectorBitSize() + "-bit)";
    }
}
