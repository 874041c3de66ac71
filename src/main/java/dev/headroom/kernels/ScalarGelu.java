package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** The plain reference {@link Gelu}: one element at a time, in double. */
final class ScalarGelu implements Gelu {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final double INV_SQRT2 = 1 / Math.sqrt(2);
    /** Coefficients of P(t), highest degree first (Numerical Recipes' erfcc); the vector twin reads them too. */
    static final double[] ERFC_POLY = {0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
            -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223};

    @Override
    public void apply(MemorySegment x, long offset, int length, MemorySegment bias) {
        for (int j = 0; j < length; j++) {
            float u = x.getAtIndex(F, offset + j) + (bias == null ? 0f : bias.getAtIndex(F, j));
            x.setAtIndex(F, offset + j, gelu(u));
        }
    }

    /** GELU of one float, as described in {@link Gelu}. */
    static float gelu(float u) {
        if (Float.isNaN(u)) return u;
        if (u < ZERO_BELOW) return 0f; // as the vector twin: no subnormals (see Gelu)
        double z = Math.abs(u) * INV_SQRT2;
        double t = 1 / (1 + 0.5 * z);
        double p = 0;
        for (double c : ERFC_POLY) p = p * t + c;
        double erfc = t * Math.exp(-z * z + p);            // erfc(z), z ≥ 0
        double cdf = u >= 0 ? 1 - 0.5 * erfc : 0.5 * erfc;  // Φ(u)
        return cdf == 0 ? 0f : (float) (u * cdf);
    }

    @Override
    public String name() {
        return "scalar";
    }
}
