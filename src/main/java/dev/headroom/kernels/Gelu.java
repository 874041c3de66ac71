package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;

/**
 * The exact GELU of BERT, with an optional bias added first, in place over {@code length}
 * floats from float index {@code offset}:
 * <pre>
 *   u = x + b,   x ← GELU(u) = u·Φ(u) = ½·u·(1 + erf(u/√2)) = ½·u·erfc(−u/√2)
 * </pre>
 * {@code bias} holds {@code length} floats from index 0, or is null for no bias. This is the
 * erf form that BERT and the ONNX export of MiniLM use (Div by √2, Erf, Add 1, Mul, Mul ½), not
 * the tanh approximation.
 *
 * <p>Java has no erf, so both implementations compute erfc by the Chebyshev-fitted formula of
 * Numerical Recipes (2nd ed., §6.2, {@code erfcc}): with z = |u|/√2 and t = 1/(1 + z/2),
 * erfc(z) = t·exp(−z² + P(t)), P of degree 9, fractional error below 1.2·10⁻⁷ for every z. It
 * is written as erfc so that the result keeps its relative accuracy for large negative u, where
 * GELU is a tiny number (1 − erf would cancel). Then GELU(u) = ½u·erfc(z) for u &lt; 0 and
 * ½u·(2 − erfc(z)) for u ≥ 0. Below u = {@value #ZERO_BELOW}, where |GELU(u)| &lt; 5·10⁻³⁵, the
 * result is 0: further down the intermediates become subnormal floats, and subnormal arithmetic
 * costs about a hundred cycles per lane on x86 (it made GELU a sixth of MiniLM's time). Limits:
 * GELU(+∞) = +∞, GELU(−∞) = 0, NaN stays NaN.
 *
 * <p>{@link #SCALAR} evaluates it in double with {@code Math.exp} (the reference);
 * {@link #VECTOR} in float lanes with {@link VectorMath#exp} and a scalar tail.
 */
public interface Gelu {
    Gelu SCALAR = new ScalarGelu();
    Gelu VECTOR = new VectorGelu();

    /** Below this, GELU is taken as 0 (|GELU(−12.5)| = 4.6·10⁻³⁵; see the class comment). */
    float ZERO_BELOW = -12.5f;

    /** x[offset .. offset + length) ← GELU(x + bias); {@code bias} may be null. */
    void apply(MemorySegment x, long offset, int length, MemorySegment bias);

    /** The name shown in benchmarks and reports. */
    String name();
}
