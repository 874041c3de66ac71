package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** The plain reference {@link SwiGlu}: one element at a time, in double. */
final class ScalarSwiGlu implements SwiGlu {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Override
    public void apply(MemorySegment gate, long gateOffset, MemorySegment up, long upOffset, MemorySegment out, long outOffset,
                      int length) {
        for (int j = 0; j < length; j++) {
            float g = gate.getAtIndex(F, gateOffset + j), u = up.getAtIndex(F, upOffset + j);
            out.setAtIndex(F, outOffset + j, (float) (silu(g) * u));
        }
    }

    /** g · σ(g) in double, as described in {@link SwiGlu}. */
    static double silu(double g) {
        if (Double.isNaN(g)) return g;
        double t = Math.exp(-Math.abs(g));
        double sigma = g >= 0 ? 1 / (1 + t) : t / (1 + t);
        return sigma == 0 ? 0 : g * sigma;
    }

    @Override
    public String name() {
        return "scalar";
    }
}
