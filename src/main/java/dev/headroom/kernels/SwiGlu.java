package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;

/**
 * The gated product of a SwiGLU feed-forward layer (Shazeer 2020, as Llama uses it), over
 * {@code length} floats:
 * <pre>
 *   out = silu(g) ⊙ u,   silu(g) = g · σ(g) = g / (1 + e^(−g))
 * </pre>
 * where g = x W_gateᵀ and u = x W_upᵀ; the down projection then reads {@code out}. Offsets count
 * floats; {@code out} may be {@code gate} or {@code up} (same offset): each element is read
 * before it is written.
 *
 * <p>σ is evaluated as 1 / (1 + t) for g ≥ 0 and t / (1 + t) for g &lt; 0 with t = e^(−|g|) ≤ 1, so
 * e^x never overflows whatever g is: silu(+∞) = +∞, silu(−∞) = 0 (−∞ · 0 would be NaN, so the
 * product is taken as 0 wherever σ is 0), NaN stays NaN. {@link #SCALAR} computes it in double
 * (the reference); {@link #VECTOR} in float lanes with {@link VectorMath#exp}, which flushes
 * e^x to 0 below x = −87.3: there silu(g) is below 10⁻³⁶ and is returned as 0.
 */
public interface SwiGlu {
    SwiGlu SCALAR = new ScalarSwiGlu();
    SwiGlu VECTOR = new VectorSwiGlu();

    /** out[outOffset + j] = silu(gate[gateOffset + j]) · up[upOffset + j] for j &lt; length. */
    void apply(MemorySegment gate, long gateOffset, MemorySegment up, long upOffset, MemorySegment out, long outOffset,
               int length);

    /** The name shown in benchmarks and reports. */
    String name();
}
