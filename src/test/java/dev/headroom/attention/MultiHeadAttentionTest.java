package dev.headroom.attention;

import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertTrue;

class MultiHeadAttentionTest {

    /** Seeded, uniform in [−1, 1). */
    static Tensor randomInput(Arena arena, long seed, int... shape) {
        return Tensor.uniform(arena, seed, 1, shape);
    }

    /**
     * Max |y − ref| over max |ref|. The tolerance: float sums of K terms carry a relative error of
     * about √K·2⁻²⁴ when signs are random; the longest reductions here are the projections
     * (K = E or H·d) and the weighted sum over n_k keys, so tol = 8·(√E + √(H·d) + √n_k)·2⁻²⁴, with
     * a factor 8 for the softmax's own rounding and the exp polynomial (≤ 1.5 ulp).
     */
    static void assertClose(double[][][] ref, Tensor y, int nk, AttentionConfig c, String what) {
        double maxRef = 0, maxErr = 0;
        int E = c.dModel();
        long idx = 0;
        for (double[][] batch : ref) for (double[] row : batch) for (int e = 0; e < E; e++, idx++) {
            maxRef = Math.max(maxRef, Math.abs(row[e]));
            maxErr = Math.max(maxErr, Math.abs(row[e] - y.get(idx)));
        }
        double tol = 8 * (Math.sqrt(E) + Math.sqrt(c.queryWidth()) + Math.sqrt(nk)) * 0x1p-24;
        double rel = maxErr / Math.max(maxRef, 1e-30);
        assertTrue(rel <= tol, what + ": relative max error " + rel + " exceeds " + tol
                + " (max |ref| " + maxRef + ", max err " + maxErr + ")");
    }

    static Stream<Arguments> sizes() {
        return Stream.of(1, 2, 7, 64, 129, 513).flatMap(n -> Stream.of(
                Arguments.of(n, AttentionConfig.of(20, 4)),                      // d = 5
                Arguments.of(n, AttentionConfig.of(35, 7).withKvHeads(1)),       // multi-query, d = 5
                Arguments.of(n, AttentionConfig.of(48, 16).withKvHeads(4)),      // GQA, d = 3
                Arguments.of(n, AttentionConfig.of(33, 3).withHeadDim(13)),      // head dim ≠ E / H
                Arguments.of(n, AttentionConfig.of(17, 1))));                    // one head, d = 17
    }

    @ParameterizedTest(name = "n={0} {1}")
    @MethodSource("sizes")
    void selfAttentionMatchesDoubleReference(int n, AttentionConfig c) {
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 11, arena);
            Tensor x = randomInput(arena, n, n, c.dModel());
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withQueryBlock(50))) {
                Tensor y = mha.forward(x, arena);
                assertClose(ReferenceAttention.forward(w, x, null, Mask.none()), y, n, c, "n=" + n + " " + c);
            }
        }
    }

    @Test
    void headsOneToSixteen() {
        try (Arena arena = TrackedArena.ofShared()) {
            for (int h = 1; h <= 16; h++) {
                AttentionConfig c = AttentionConfig.of(3 * h, h);
                AttentionWeights w = AttentionWeights.random(c, h % 2 == 0, h, arena);
                Tensor x = randomInput(arena, h, 2, 9, c.dModel());
                try (MultiHeadAttention mha = new MultiHeadAttention(w)) {
                    Tensor y = mha.forward(x, Mask.causal(), arena);
                    assertClose(ReferenceAttention.forward(w, x, null, Mask.causal()), y, 9, c, "heads=" + h);
                }
            }
        }
    }
}
