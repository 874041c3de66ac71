package dev.headroom.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * {@link SwiGlu} on the Vector API: t = e^(−|g|) from {@link VectorMath#exp}, σ chosen by the
 * sign of g, full vectors up to {@code loopBound} and a scalar tail with {@link VectorMath#expScalar}
 * (the same flush to 0 below −87.3).
 */
final class VectorSwiGlu implements SwiGlu {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Override
    public void apply(MemorySegment gate, long gateOffset, MemorySegment up, long upOffset, MemorySegment out, long outOffset,
                      int length) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(length);
        int j = 0;
        for (; j < bound; j += lanes) {
            FloatVector g = FloatVector.fromMemorySegment(SPECIES, gate, (gateOffset + j) * Float.BYTES, ORDER);
            FloatVector u = FloatVector.fromMemorySegment(SPECIES, up, (upOffset + j) * Float.BYTES, ORDER);
            FloatVector t = VectorMath.exp(g.abs().neg());                          // e^(−|g|), in (0, 1]
            FloatVector r = FloatVector.broadcast(SPECIES, 1f).div(t.add(1f));     // 1 / (1 + t)
            FloatVector sigma = t.mul(r).blend(r, g.compare(VectorOperators.GE, 0f)); // σ(g): t·r for g < 0, r for g ≥ 0
            // σ = 0 (g below −87.3, or −∞) gives 0, not g·0 = NaN for g = −∞
            g.mul(sigma).blend(0f, sigma.eq(0f)).mul(u).intoMemorySegment(out, (outOffset + j) * Float.BYTES, ORDER);
        }
        for (; j < length; j++) {
            float g = gate.getAtIndex(F, gateOffset + j), u = up.getAtIndex(F, upOffset + j);
            out.setAtIndex(F, outOffset + j, silu(g) * u);
        }
    }

    /** The tail: the same formula in float, e^x from {@link VectorMath#expScalar}. */
    static float silu(float g) {
        if (Float.isNaN(g)) return g;
        float t = VectorMath.expScalar(-Math.abs(g));
        float r = 1f / (1f + t), sigma = g >= 0 ? r : t * r;
        return sigma == 0f ? 0f : g * sigma;
    }

    @Override
    public String name() {
        return "vector(" + SPECIES.vectorBitSize() + "-bit)";
    }
}
