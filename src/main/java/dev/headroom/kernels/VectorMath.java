package dev.headroom.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * Elementwise math on float vectors that the Vector API does not make fast enough.
 * {@code lanewise(EXP)} costs about 1 ns per float on this class of machine; softmax over
 * 4096² scores per head needs it at well under half that.
 */
public final class VectorMath {
    private VectorMath() {}

    /** Below this, expf underflows past the smallest normal float; the result is flushed to 0. */
    static final float EXP_LOWEST = -87.33654f;
    private static final float LOG2E = 1.44269504088896341f;
    // ln 2 split in two so that k·LN2_HI is exact for |k| < 2^9 (Cody–Waite reduction).
    private static final float LN2_HI = 0.693359375f;
    private static final float LN2_LO = -2.12194440e-4f;
    // 1.5·2^23: adding it rounds to an integer and leaves that integer in the low mantissa bits.
    private static final float ROUND_SHIFT = 0x1.8p23f;

    /**
     * e^x for every lane, within 1.5 ulp of the exact result for x ≥ −87.3 (1.21 ulp worst case measured
     * against {@code Math.exp} in the tests); 0 below that and for −∞; x must not exceed 88.7
     * (softmax only calls it with x ≤ 0). Method: x = k·ln2 + r with |r| ≤ ln2/2, e^r by the
     * Cephes expf polynomial (degree 5 after 1 + r), 2^k built in the exponent bits.
     */
    public static FloatVector exp(FloatVector x) {
        FloatVector xc = x.max(EXP_LOWEST);
        FloatVector z = xc.fma(FloatVector.broadcast(SPECIES, LOG2E), FloatVector.broadcast(SPECIES, ROUND_SHIFT));
        FloatVector k = z.sub(ROUND_SHIFT);
        FloatVector r = k.fma(FloatVector.broadcast(SPECIES, -LN2_HI), xc);
        r = k.fma(FloatVector.broadcast(SPECIES, -LN2_LO), r);
        FloatVector p = r.fma(FloatVector.broadcast(SPECIES, 1.9875691500E-4f), FloatVector.broadcast(SPECIES, 1.3981999507E-3f));
        p = p.fma(r, FloatVector.broadcast(SPECIES, 8.3334519073E-3f));
        p = p.fma(r, FloatVector.broadcast(SPECIES, 4.1665795894E-2f));
        p = p.fma(r, FloatVector.broadcast(SPECIES, 1.6666665459E-1f));
        p = p.fma(r, FloatVector.broadcast(SPECIES, 5.0000001201E-1f));
        p = p.fma(r.mul(r), r.add(1f));                       // e^r = 1 + r + r²·P(r)
        // The low bits of z hold k; shifting them into the exponent field and adding the bias gives 2^k.
        FloatVector twoToK = z.reinterpretAsInts()
                .lanewise(VectorOperators.LSHL, 23)
                .add(0x3F800000)
                .reinterpretAsFloats();
        return p.mul(twoToK).blend(0f, x.lt(EXP_LOWEST));
    }

    /** The scalar twin of {@link #exp}: the same clamping and underflow, computed in double. */
    public static float expScalar(float x) {
        return x < EXP_LOWEST ? 0f : (float) Math.exp(x);
    }

}
