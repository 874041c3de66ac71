package dev.headroom.attention;

import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

import static dev.headroom.attention.MultiHeadAttentionTest.assertClose;
import static dev.headroom.attention.MultiHeadAttentionTest.randomInput;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** Every mask kind, batches, grouped-query and cross-attention against the double reference. */
class MaskAndShapeTest {
    private static final AttentionConfig GQA = AttentionConfig.of(36, 6).withKvHeads(2); // d = 6

    private static void check(AttentionConfig c, int batch, int nq, int nk, boolean cross, Mask mask, int block) {
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 5, arena);
            Tensor q = randomInput(arena, 1, batch, nq, c.dModel());
            Tensor kv = cross ? randomInput(arena, 2, batch, nk, c.dModel()) : null;
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withQueryBlock(block))) {
                Tensor y = mha.forward(q, kv, mask, arena);
                assertClose(ReferenceAttention.forward(w, q, kv, mask), y, nk, c,
                        "B=" + batch + " n_q=" + nq + " n_k=" + nk + " " + c);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 7, 129})
    void causal(int n) {
        check(GQA, 2, n, n, false, Mask.causal(), 16);
    }

    @Test
    void keyPaddingIncludingAnEmptySequence() {
        // Batch element 1 has no keys at all: its outputs are b_O (zero attention, then the bias).
        check(GQA, 3, 9, 9, false, Mask.keyLengths(5, 0, 9), 4);
    }

    @Test
    void causalWithPadding() {
        check(GQA, 2, 33, 33, false, Mask.causal().withKeyLengths(20, 33), 8);
    }

    @Test
    void crossAttentionLongerKeys() {
        check(GQA, 2, 7, 129, true, Mask.none(), 3);
    }

    @Test
    void crossAttentionShorterKeysCausalBottomRight() {
        // n_q = 12 > n_k = 5: rows i < 7 see no key (zeros), row 11 sees all 5.
        check(GQA, 1, 12, 5, true, Mask.causal(), 5);
    }

    @Test
    void crossAttentionLongerKeysCausalAndPadding() {
        check(AttentionConfig.of(20, 4).withKvHeads(1), 2, 7, 30, true, Mask.causal().withKeyLengths(30, 17), 4);
    }

    static MemorySegment randomBooleans(Arena arena, long n, long seed, double pAllowed) {
        MemorySegment m = arena.allocate(n);
        SplittableRandom r = new SplittableRandom(seed);
        for (long i = 0; i < n; i++) m.set(ValueLayout.JAVA_BYTE, i, (byte) (r.nextDouble() < pAllowed ? 1 : 0));
        return m;
    }

    @Test
    void booleanMasksOfEveryRankWithFullyMaskedRows() {
        int B = 2, H = GQA.heads(), nq = 11, nk = 13;
        try (Arena arena = TrackedArena.ofShared()) {
            MemorySegment m2 = randomBooleans(arena, (long) nq * nk, 1, 0.6);
            for (int j = 0; j < nk; j++) m2.set(ValueLayout.JAVA_BYTE, 3L * nk + j, (byte) 0); // row 3: nothing allowed
            MemorySegment m3 = randomBooleans(arena, (long) B * nq * nk, 2, 0.5);
            MemorySegment m4 = randomBooleans(arena, (long) B * H * nq * nk, 3, 0.4);
            check(GQA, B, nq, nk, true, Mask.none().withAllowed(m2, nq, nk), 4);
            check(GQA, B, nq, nk, true, Mask.none().withAllowed(m3, B, nq, nk), 4);
            check(GQA, B, nq, nk, true, Mask.none().withAllowed(m4, B, H, nq, nk), 4);
            check(GQA, B, nq, nk, true, Mask.causal().withKeyLengths(13, 6).withAllowed(m4, B, H, nq, nk), 5);
        }
    }

    @Test
    void additiveMaskWithInfinities() {
        int B = 2, nq = 10, nk = 10;
        try (Arena arena = TrackedArena.ofShared()) {
            Tensor add = Tensor.allocate(arena, B, GQA.heads(), nq, nk);
            SplittableRandom r = new SplittableRandom(9);
            for (long i = 0; i < add.size(); i++) {
                add.set(i, r.nextDouble() < 0.3 ? Float.NEGATIVE_INFINITY : (float) r.nextDouble(-3, 3));
            }
            check(GQA, B, nq, nk, false, Mask.none().withAdditive(add), 3);
            Tensor add2 = Tensor.allocate(arena, nq, nk); // ALiBi-like bias −|i − j|
            for (int i = 0; i < nq; i++) for (int j = 0; j < nk; j++) add2.set((long) i * nk + j, -Math.abs(i - j));
            check(GQA, B, nq, nk, false, Mask.causal().withAdditive(add2), 3);
        }
    }

    @Test
    void fullyMaskedRowOutputsZerosNotNaN() {
        AttentionConfig c = AttentionConfig.of(8, 2);
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, false, 1, arena);
            Tensor x = randomInput(arena, 3, 1, 4, 8);
            try (MultiHeadAttention mha = new MultiHeadAttention(w)) {
                Tensor y = mha.forward(x, Mask.keyLengths(0), arena);
                for (long i = 0; i < y.size(); i++) assertEquals(0f, y.get(i), "element " + i);
            }
        }
    }
}
