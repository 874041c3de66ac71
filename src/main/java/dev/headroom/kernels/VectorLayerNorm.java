package dev.headroom.kernels;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * {@link LayerNorm} on the Vector API: full vectors up to {@code loopBound}, then a scalar tail
 * with the arithmetic of {@link ScalarLayerNorm}, so any offset and length work. Lane sums are
 * added in lane order, so results are bitwise reproducible.
 */
final class VectorLayerNorm implements LayerNorm {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Override
    public void normalize(MemorySegment x, long xOffset, MemorySegment gamma, MemorySegment beta, float eps,
                          MemorySegment y, long yOffset, int length) {
        if (length == 0) return;
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length);
        // μ: lane-wise partial sums, then the tail.
        FloatVector acc = FloatVector.zero(SPECIES);
        int j = 0;
        for (; j < bound; j += lanes) acc = acc.add(load(x, xOffset + j));
        float sum = Vectors.sumLanes(acc);
        for (; j < length; j++) sum += x.getAtIndex(F, xOffset + j);
        float mean = sum / length;
        // σ²: a second pass over the deviations d = x − μ. Their sum is n times the float mean's
        // error c (the corrected two-pass algorithm), so σ² = Σd²/n − c² and y uses d − c.
        FloatVector m = FloatVector.broadcast(SPECIES, mean);
        acc = FloatVector.zero(SPECIES);
        FloatVector squaresAcc = FloatVector.zero(SPECIES);
        for (j = 0; j < bound; j += lanes) {
            FloatVector d = load(x, xOffset + j).sub(m);
            acc = acc.add(d);
            squaresAcc = d.fma(d, squaresAcc);
        }
        float deviations = Vectors.sumLanes(acc), squares = Vectors.sumLanes(squaresAcc);
        for (; j < length; j++) {
            float d = x.getAtIndex(F, xOffset + j) - mean;
            deviations += d;
            squares += d * d;
        }
        float c = deviations / length;
        float inverse = 1f / (float) Math.sqrt(Math.max(0f, squares / length - c * c) + eps);
        // y = ((x − μ) − c)·(1/σ)·γ + β
        FloatVector cv = FloatVector.broadcast(SPECIES, c), inv = FloatVector.broadcast(SPECIES, inverse);
        for (j = 0; j < bound; j += lanes) {
            FloatVector d = load(x, xOffset + j).sub(m).sub(cv).mul(inv);
            d.fma(load(gamma, j), load(beta, j)).intoMemorySegment(y, (yOffset + j) * Float.BYTES, ORDER);
        }
        for (; j < length; j++) {
            float d = x.getAtIndex(F, xOffset + j) - mean - c;
            y.setAtIndex(F, yOffset + j, d * inverse * gamma.getAtIndex(F, j) + beta.getAtIndex(F, j));
        }
    }

    @Override
    public void addAndNormalize(MemorySegment x, long xOffset, MemorySegment r, long rOffset, MemorySegment gamma,
                                MemorySegment beta, float eps, MemorySegment y, long yOffset, int length) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length);
        int j = 0;
        for (; j < bound; j += lanes) {
            load(x, xOffset + j).add(load(r, rOffset + j)).intoMemorySegment(y, (yOffset + j) * Float.BYTES, ORDER);
        }
        for (; j < length; j++) {
            y.setAtIndex(F, yOffset + j, x.getAtIndex(F, xOffset + j) + r.getAtIndex(F, rOffset + j));
        }
        normalize(y, yOffset, gamma, beta, eps, y, yOffset, length);
    }


    private static FloatVector load(MemorySegment s, long floatIndex) {
        return FloatVector.fromMemorySegment(SPECIES, s, floatIndex * Float.BYTES, ORDER);
    }

    @Override
    public String name() {
        return "vector(" + SPECIES.vectorBitSize() + "-bit)";
    }
}
