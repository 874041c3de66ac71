package dev.headroom.attention;

import dev.headroom.memory.TrackedArena;
import dev.headroom.sparse.AttentionPattern;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.stream.Stream;

import static dev.headroom.attention.MultiHeadAttentionTest.assertClose;
import static dev.headroom.attention.MultiHeadAttentionTest.randomInput;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** RoPE, ALiBi and attention sinks on whole forwards, against the double-precision reference. */
class PositionEncodingTest {

    @Test
    void vectorRotationEqualsItsScalarTwinBitForBit() {
        for (RotaryEmbedding.Layout layout : RotaryEmbedding.Layout.values()) {
            for (int T : new int[]{1, 15, 16, 17, 70}) {
                for (int R : new int[]{2, 6, 12}) {
                    RotaryEmbedding rope = new RotaryEmbedding(10000, R, layout);
                    try (Arena arena = TrackedArena.ofShared()) {
                        // a strided view: 2 heads of d = 12 inside a wider buffer, at an offset
                        Tensor buf = randomInput(arena, T + R, 30, T + 9);
                        Matrix a = buf.matrix().rowRange(3, 27).colRange(5, 5 + T);
                        Tensor copy = Tensor.allocate(arena, 30, T + 9);
                        MemorySegment.copy(buf.segment(), 0, copy.segment(), 0, buf.segment().byteSize());
                        Matrix b = copy.matrix().rowRange(3, 27).colRange(5, 5 + T);
                        MemorySegment cos = arena.allocate(4L * R / 2 * T), sin = arena.allocate(4L * R / 2 * T);
                        rope.angles(c -> 3 * c + 1000, T, cos, sin);
                        rope.rotate(a, 2, 12, cos, sin);
                        rope.rotateScalar(b, 2, 12, cos, sin);
                        assertArrayEquals(copy.toArray(), buf.toArray(), layout + " T=" + T + " R=" + R);
                    }
                }
            }
        }
    }

    @Test
    void rotationMatchesTheDefinitionInDouble() {
        RotaryEmbedding rope = new RotaryEmbedding(500, 8, RotaryEmbedding.Layout.HALVES);
        try (Arena arena = TrackedArena.ofShared()) {
            Tensor x = randomInput(arena, 3, 10, 4); // one head of d = 10 (8 rotary), 4 tokens
            float[] before = x.toArray();
            MemorySegment cos = arena.allocate(4L * 4 * 4), sin = arena.allocate(4L * 4 * 4);
            rope.angles(c -> c * 70L, 4, cos, sin);
            rope.rotate(x.matrix(), 1, 10, cos, sin);
            for (int t = 0; t < 4; t++) {
                for (int i = 0; i < 4; i++) {
                    double a = t * 70.0 * Math.pow(500, -2.0 * i / 8), xa = before[i * 4 + t], xb = before[(i + 4) * 4 + t];
                    assertEquals(xa * Math.cos(a) - xb * Math.sin(a), x.get(i * 4 + t), 1e-6);
                    assertEquals(xb * Math.cos(a) + xa * Math.sin(a), x.get((i + 4) * 4 + t), 1e-6);
                }
                for (int f = 8; f < 10; f++) assertEquals(before[f * 4 + t], x.get(f * 4 + t), 0f, "features past R stay");
            }
        }
    }

    /**
     * The kept table (positions below {@link RotaryEmbedding#TABLE_POSITIONS}, in chunks) gives the
     * same floats as computing each angle: at the chunks' edges, past the table, in any order of
     * first use, and from threads filling the same chunks at once.
     */
    @Test
    void anglesFromTheKeptTableEqualEachAngleComputedAlone() throws Exception {
        int R = 12, pairs = R / 2, C = RotaryEmbedding.TABLE_CHUNK, P = RotaryEmbedding.TABLE_POSITIONS;
        long[] positions = {P + 5, 0, 1, C - 1, C, C + 1, 3L * C + 17, P - 1, P, 1L << 40, 7, 2L * C - 1};
        RotaryEmbedding rope = new RotaryEmbedding(10000, R, RotaryEmbedding.Layout.PAIRS);
        java.util.concurrent.ExecutorService threads = java.util.concurrent.Executors.newFixedThreadPool(4);
        try (Arena arena = TrackedArena.ofShared()) {
            java.util.List<java.util.concurrent.Future<?>> done = new java.util.ArrayList<>();
            for (int k = 0; k < 4; k++) {
                done.add(threads.submit(() -> {
                    MemorySegment cos = arena.allocate(4L * pairs * positions.length), sin = arena.allocate(4L * pairs * positions.length);
                    rope.angles(c -> positions[c], positions.length, cos, sin);
                    for (int t = 0; t < positions.length; t++) {
                        for (int i = 0; i < pairs; i++) {
                            double a = positions[t] * Math.pow(10000, -2.0 * i / R);
                            assertEquals((float) Math.cos(a), cos.getAtIndex(ValueLayout.JAVA_FLOAT, (long) i * positions.length + t), 0f,
                                    "cos, position " + positions[t] + ", pair " + i);
                            assertEquals((float) Math.sin(a), sin.getAtIndex(ValueLayout.JAVA_FLOAT, (long) i * positions.length + t), 0f,
                                    "sin, position " + positions[t] + ", pair " + i);
                        }
                    }
                }));
            }
            for (java.util.concurrent.Future<?> f : done) f.get();
        } finally {
            threads.shutdown();
        }
    }

    @Test
    void alibiSlopesAreThePapers() {
        float[] eight = Alibi.slopes(8);
        for (int h = 0; h < 8; h++) assertEquals(Math.pow(2, -(h + 1)), eight[h], 1e-9);
        // 6 heads: the 4-head slopes 2^-2, 2^-4, 2^-6, 2^-8, then every other 8-head slope: 2^-1, 2^-3
        assertArrayEquals(new float[]{0.25f, 0.0625f, 0.015625f, 0.00390625f, 0.5f, 0.125f}, Alibi.slopes(6));
    }

    static Stream<Arguments> layers() {
        RotaryEmbedding pairs = new RotaryEmbedding(10000, 8, RotaryEmbedding.Layout.PAIRS);
        RotaryEmbedding halves = new RotaryEmbedding(1e6, 8, RotaryEmbedding.Layout.HALVES);
        RotaryEmbedding partial = new RotaryEmbedding(10000, 4, RotaryEmbedding.Layout.HALVES);
        return Stream.of(
                Arguments.of("rope pairs, GQA", AttentionConfig.of(48, 6, 2, 8).withRope(pairs)),
                Arguments.of("rope halves, MQA", AttentionConfig.of(40, 5, 1, 8).withRope(halves)),
                Arguments.of("rope partial (4 of 10)", AttentionConfig.of(30, 3, 3, 10).withRope(partial)),
                Arguments.of("alibi, 6 heads", AttentionConfig.of(36, 6).withAlibi(true)),
                Arguments.of("rope and alibi", AttentionConfig.of(48, 6, 3, 8).withRope(pairs).withAlibi(true)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("layers")
    void wholeForwardMatchesTheReference(String name, AttentionConfig c) {
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 5, arena);
            for (int n : new int[]{1, 19, 300}) {
                Tensor x = randomInput(arena, n, 2, n, c.dModel());
                for (Mask mask : new Mask[]{Mask.causal(), Mask.none(), Mask.causal().withPattern(AttentionPattern.streaming(3, 7))}) {
                    for (AttentionKernel kernel : new AttentionKernel[]{DenseKernel.INSTANCE, new TiledKernel(64)}) {
                        try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults()
                                .withKernel(kernel).withQueryBlock(37))) {
                            Tensor y = mha.forward(x, mask, arena);
                            assertClose(ReferenceAttention.forward(w, x, null, mask), y, n, c,
                                    name + " n=" + n + " " + kernel.name() + " mask " + mask.isCausal() + "/" + mask.pattern());
                        }
                    }
                }
            }
        }
    }

    /** Review: sinks nested in a combined pattern were taken at their text positions, silently; refused now. */
    @Test
    void sinksCombinedWithAnotherPatternAreRefused() {
        AttentionPattern nested = AttentionPattern.streaming(4, 16).and(AttentionPattern.causal());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Mask.causal().withPattern(nested));
        assertTrue(e.getMessage().contains("whole pattern"), e.getMessage());
        assertThrows(IllegalArgumentException.class,
                () -> Mask.causal().withPattern(AttentionPattern.causal().or(AttentionPattern.causal().and(AttentionPattern.streaming(1, 2)))));
        Mask.causal().withPattern(AttentionPattern.streaming(4, 16)); // alone: accepted
    }

    @Test
    void sinksAndWindowEqualTheEquivalentExplicitMaskWithoutPositionEncoding() {
        AttentionConfig c = AttentionConfig.of(24, 4, 2, 6);
        int n = 90, sinks = 4, window = 16;
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 9, arena);
            Tensor x = randomInput(arena, 1, 1, n, c.dModel());
            MemorySegment allowed = arena.allocate((long) n * n);
            for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) {
                allowed.set(ValueLayout.JAVA_BYTE, (long) i * n + j, (byte) (j <= i && (j < sinks || j > i - window) ? 1 : 0));
            }
            try (MultiHeadAttention mha = new MultiHeadAttention(w)) {
                Tensor streaming = mha.forward(x, Mask.causal().withPattern(AttentionPattern.streaming(sinks, window)), arena);
                Tensor explicit = mha.forward(x, Mask.none().withAllowed(allowed, n, n), arena);
                float[] a = streaming.toArray(), b = explicit.toArray();
                for (int t = 0; t < a.length; t++) assertEquals(b[t], a[t], 2e-6f * (1 + Math.abs(b[t])), "element " + t);
            }
        }
    }

    @Test
    void ropeWiderThanTheHeadIsRefused() {
        RotaryEmbedding rope = new RotaryEmbedding(10000, 16, RotaryEmbedding.Layout.PAIRS);
        String m = assertThrows(IllegalArgumentException.class, () -> AttentionConfig.of(24, 4).withRope(rope)).getMessage();
        assertEquals("RoPE rotates 16 dimensions but head_dim is 6", m);
        assertThrows(IllegalArgumentException.class, () -> new RotaryEmbedding(10000, 7, RotaryEmbedding.Layout.PAIRS));
        assertThrows(IllegalArgumentException.class, () -> new RotaryEmbedding(1, 8, RotaryEmbedding.Layout.PAIRS));
    }
}
