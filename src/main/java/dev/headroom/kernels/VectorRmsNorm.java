package dev.headroom.kernels;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * {@link RmsNorm} on the Vector API: the sum of squares in float lanes (fma), added up in the
 * fixed order of {@link Vectors#sumLanes} so results are bitwise reproducible, then a scalar
 * tail; any offset and length work.
 */
final class VectorRmsNorm implements RmsNorm {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Override
    public void normalize(MemorySegment x, long xOffset, MemorySegment weight, float eps, MemorySegment y, long yOffset,
                          int length) {
        if (length == 0) return;
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length);
        FloatVector acc = FloatVector.zero(SPECIES);
        int j = 0;
        for (; j < bound; j += lanes) {
            FloatVector v = load(x, xOffset + j);
            acc = v.fma(v, acc);
        }
        float squares = Vectors.sumLanes(acc);
        for (; j < length; j++) {
            float v = x.getAtIndex(F, xOffset + j);
            squares += v * v;
        }
        scale(x, xOffset, weight, inverse(squares, length, eps), y, yOffset, length);
    }

    @Override
    public void addAndNormalize(MemorySegment x, long xOffset, MemorySegment r, long rOffset, MemorySegment weight, float eps,
                                MemorySegment y, long yOffset, int length) {
        if (length == 0) return;
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length);
        FloatVector acc = FloatVector.zero(SPECIES);
        int j = 0;
        for (; j < bound; j += lanes) {
            FloatVector v = load(x, xOffset + j).add(load(r, rOffset + j));
            v.intoMemorySegment(x, (xOffset + j) * Float.BYTES, ORDER);
            acc = v.fma(v, acc);
        }
        float squares = Vectors.sumLanes(acc);
        for (; j < length; j++) {
            float v = x.getAtIndex(F, xOffset + j) + r.getAtIndex(F, rOffset + j);
            x.setAtIndex(F, xOffset + j, v);
            squares += v * v;
        }
        scale(x, xOffset, weight, inverse(squares, length, eps), y, yOffset, length);
    }

    private static float inverse(float squares, int length, float eps) {
        return (float) (1 / Math.sqrt(squares / length + eps));
    }

    /** y = (x · inverse) ⊙ w. */
    private static void scale(MemorySegment x, long xOffset, MemorySegment weight, float inverse, MemorySegment y, long yOffset,
                              int length) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length);
        FloatVector inv = FloatVector.broadcast(SPECIES, inverse);
        int j = 0;
        for (; j < bound; j += lanes) {
            load(x, xOffset + j).mul(inv).mul(load(weight, j)).intoMemorySegment(y, (yOffset + j) * Float.BYTES, ORDER);
        }
        for (; j < length; j++) y.setAtIndex(F, yOffset + j, x.getAtIndex(F, xOffset + j) * inverse * weight.getAtIndex(F, j));
    }

    private static FloatVector load(MemorySegment s, long floatIndex) {
        return FloatVector.fromMemorySegment(SPECIES, s, floatIndex * Float.BYTES, ORDER);
    }

    @Override
    public String name() {
        return "vector(" + SPECIES.vectorBitSize() + "-bit)";
    }
}
