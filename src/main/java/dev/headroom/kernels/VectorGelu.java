package dev.headroom.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * {@link Gelu} on the Vector API: the same erfc formula in float lanes, e^x from
 * {@link VectorMath#exp} (which flushes to 0 below −87.3, so GELU of u below about −13 is 0),
 * and a scalar tail computed by {@link ScalarGelu#gelu}.
 */
final class VectorGelu implements Gelu {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final float INV_SQRT2 = (float) (1 / Math.sqrt(2));
    private static final float[] POLY = new float[ScalarGelu.ERFC_POLY.length];

    static {
        for (int i = 0; i < POLY.length; i++) POLY[i] = (float) ScalarGelu.ERFC_POLY[i];
    }

    @Override
    public void apply(MemorySegment x, long offset, int length, MemorySegment bias) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length);
        int j = 0;
        for (; j < bound; j += lanes) {
            long at = (offset + j) * Float.BYTES;
            FloatVector u = FloatVector.fromMemorySegment(SPECIES, x, at, ORDER);
            if (bias != null) u = u.add(FloatVector.fromMemorySegment(SPECIES, bias, (long) j * Float.BYTES, ORDER));
            gelu(u).intoMemorySegment(x, at, ORDER);
        }
        for (; j < length; j++) {
            float u = x.getAtIndex(F, offset + j) + (bias == null ? 0f : bias.getAtIndex(F, j));
            x.setAtIndex(F, offset + j, ScalarGelu.gelu(u));
        }
    }

    private static FloatVector gelu(FloatVector u) {
        FloatVector z = u.abs().mul(INV_SQRT2);
        FloatVector t = z.fma(0.5f, 1f);
        t = FloatVector.broadcast(SPECIES, 1f).div(t);
        FloatVector p = FloatVector.broadcast(SPECIES, POLY[0]);
        for (int i = 1; i < POLY.length; i++) p = p.fma(t, FloatVector.broadcast(SPECIES, POLY[i]));
        FloatVector erfc = t.mul(VectorMath.exp(z.fma(z.neg(), p)));        // erfc(z) = t·e^(−z² + P(t))
        VectorMask<Float> positive = u.compare(VectorOperators.GE, 0f);
        FloatVector half = erfc.mul(0.5f);
        FloatVector cdf = half.neg().add(1f).blend(half, positive.not());   // Φ(u)
        // u·Φ(u), with Φ = 0 giving exactly 0 (so GELU(−∞) is 0, not NaN); NaN lanes stay NaN.
        return u.mul(cdf).blend(0f, cdf.compare(VectorOperators.EQ, 0f));
    }

    @Override
    public String name() {
        return "vector(" + SPECIES.vectorBitSize() + "-bit)";
    }
}
