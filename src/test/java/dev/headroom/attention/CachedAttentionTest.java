package dev.headroom.attention;

import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.memory.OffHeap;
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
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static dev.headroom.attention.MultiHeadAttentionTest.randomInput;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Attention over the KV cache equals the whole causal forward, row by row, for every position
 * option, GQA and MQA, block sizes 1, 16 and one that divides nothing, and chunked prefill whose
 * chunks cross block boundaries. Tolerance: float32 rounding, |y − y_whole| ≤ 2e-5·max|y_whole|
 * (the two paths sum the same terms in different orders: split-K chunks, spans of a different
 * width, and the decode kernel's own products instead of sgemm).
 */
class CachedAttentionTest {
    static final double TOLERANCE = 2e-5;

    static Stream<Arguments> layers() {
        RotaryEmbedding pairs = new RotaryEmbedding(10000, 8, RotaryEmbedding.Layout.PAIRS);
        RotaryEmbedding halves = new RotaryEmbedding(10000, 6, RotaryEmbedding.Layout.HALVES);
        return Stream.of(
                Arguments.of("GQA 6/2, rope pairs", AttentionConfig.of(48, 6, 2, 8).withRope(pairs), Mask.causal()),
                Arguments.of("MQA 4/1, rope halves partial", AttentionConfig.of(32, 4, 1, 8).withRope(halves), Mask.causal()),
                Arguments.of("MHA 3, alibi", AttentionConfig.of(30, 3).withAlibi(true), Mask.causal()),
                Arguments.of("GQA, no position encoding", AttentionConfig.of(40, 4, 2, 10), Mask.causal()),
                Arguments.of("GQA, sinks 3 + window 9", AttentionConfig.of(48, 6, 2, 8),
                        Mask.causal().withPattern(AttentionPattern.streaming(3, 9))),
                Arguments.of("GQA, rope, sinks 4 + window 11", AttentionConfig.of(48, 6, 2, 8).withRope(pairs),
                        Mask.causal().withPattern(AttentionPattern.streaming(4, 11))),
                Arguments.of("alibi, sinks 2 + window 6", AttentionConfig.of(36, 6, 3, 6).withAlibi(true),
                        Mask.causal().withPattern(AttentionPattern.streaming(2, 6))),
                Arguments.of("causal window 10", AttentionConfig.of(48, 6, 2, 8).withRope(pairs),
                        Mask.causal().withPattern(AttentionPattern.causalWindow(10))));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("layers")
    void prefillThenDecodeEqualsTheWholeForward(String name, AttentionConfig c, Mask mask) {
        int n = 70;
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 3, arena);
            Tensor x = randomInput(arena, 5, n, c.dModel());
            try (MultiHeadAttention mha = new MultiHeadAttention(w)) {
                float[] whole = mha.forward(x, mask, arena).toArray();
                for (int bs : new int[]{1, 16, 7}) {
                    for (int[] chunks : new int[][]{{23}, {5, 13, 17}, {1}}) {
                        float[] cached = runCached(mha, x, mask, bs, KvDtype.F32, chunks, false);
                        assertClose(whole, cached, name + " block " + bs + " chunks " + java.util.Arrays.toString(chunks));
                    }
                }
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("layers")
    void theScalarDecodeTwinAgrees(String name, AttentionConfig c, Mask mask) {
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, false, 4, arena);
            Tensor x = randomInput(arena, 6, 40, c.dModel());
            try (MultiHeadAttention mha = new MultiHeadAttention(w)) {
                for (KvDtype dtype : KvDtype.values()) {
                    float[] vector = runCached(mha, x, mask, 16, dtype, new int[]{9}, false);
                    float[] scalar = runCached(mha, x, mask, 16, dtype, new int[]{9}, true);
                    assertClose(scalar, vector, name + " " + dtype + ": vector vs scalar decode");
                }
            }
        }
    }

    /**
     * Runs x (n, E) through a fresh one-layer cache: the first chunks[0] tokens as one step, then
     * the following chunks (cycled), then the rest one token per step; evicts what a streaming
     * mask will never see again after every step. Returns the outputs of all n tokens.
     */
    static float[] runCached(MultiHeadAttention mha, Tensor x, Mask mask, int bs, KvDtype dtype, int[] chunks, boolean scalar) {
        AttentionConfig c = mha.config();
        int n = x.dim(0), E = c.dModel();
        float[] result = new float[n * E];
        try (Arena arena = TrackedArena.ofShared(); Workspace ws = new Workspace();
             KvCache cache = new KvCache(new KvCache.Shape(1, c.kvHeads(), c.headDim(), bs, dtype), 2L << 20)) {
            int seq = cache.create();
            int pos = 0, step = 0;
            while (pos < n) {
                int count = step < chunks.length ? Math.min(chunks[step], n - pos) : 1;
                KvCache.Step s = cache.step(new int[]{seq}, new int[]{count}, null);
                assertEquals(pos, s.starts()[0]);
                Tensor in = rows(arena, x, pos, count), out = Tensor.allocate(arena, count, E);
                if (scalar) mha.forwardScalarDecode(cache, s, 0, in, mask, out, ws);
                else mha.forward(cache, s, 0, in, mask, out, ws, CallOptions.NONE);
                System.arraycopy(out.toArray(), 0, result, pos * E, count * E);
                pos += count;
                step++;
                if (mask.pattern() instanceof AttentionPattern.Streaming st && pos - st.window() + 1 > st.sinks()) {
                    cache.evict(seq, st.sinks(), pos - st.window() + 1);
                }
            }
        }
        return result;
    }

    /** Rows [from, from + count) of x (n, E), copied into a new tensor. */
    static Tensor rows(Arena arena, Tensor x, int from, int count) {
        int E = x.dim(-1);
        Tensor t = Tensor.allocate(arena, count, E);
        MemorySegment.copy(x.segment(), (long) from * E * Float.BYTES, t.segment(), 0, (long) count * E * Float.BYTES);
        return t;
    }

    static void assertClose(float[] expected, float[] actual, String what) {
        double max = 0, err = 0;
        int worst = -1;
        for (int i = 0; i < expected.length; i++) {
            max = Math.max(max, Math.abs(expected[i]));
            double e = Math.abs(expected[i] - actual[i]);
            if (!(e <= err)) {
                err = e;
                worst = i;
            }
        }
        assertTrue(err <= TOLERANCE * max, what + ": max |Δ| " + err + " at " + worst + " > " + TOLERANCE + " · " + max);
    }

    /** max |y − reference| / max |reference|. */
    private static double relativeError(float[] y, float[] reference) {
        double err = 0, max = 0;
        for (int i = 0; i < y.length; i++) {
            err = Math.max(err, Math.abs(y[i] - reference[i]));
            max = Math.max(max, Math.abs(reference[i]));
        }
        return err / max;
    }

    @Test
    void longContextsAreSplitOverWorkersAndMergedExactly() {
        // one key/value head and 2 000 keys: the decode path cuts the keys into chunks (split-K)
        AttentionConfig c = AttentionConfig.of(32, 4, 1, 8).withRope(new RotaryEmbedding(10000, 8, RotaryEmbedding.Layout.PAIRS));
        int n = 2000;
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 12, arena);
            Tensor x = randomInput(arena, 13, n, c.dModel());
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(2))) {
                float[] whole = mha.forward(x, Mask.causal(), arena).toArray();
                float[] cached = runCached(mha, x, Mask.causal(), 16, KvDtype.F32, new int[]{n - 6}, false);
                assertClose(whole, cached, "split-K decode over " + n + " keys");
                assertTrue(CachedAttention.chunks(n, 1, 2) > 1, "the decode steps ran on several chunks");
            }
        }
    }

    @Test
    void aTaskOverSeveralSpansCorrectsItsRunningSoftmax() {
        // one worker and four key/value heads: one chunk per head, of 3 000 keys, i.e. several online-softmax spans
        AttentionConfig c = AttentionConfig.of(32, 4, 4, 8);
        int n = 3000;
        assertEquals(1, CachedAttention.chunks(n, 4, 1), "one chunk per head");
        assertTrue(n > 2 * CachedAttention.DECODE_SPAN_KEYS, "more than two spans per chunk");
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 14, arena);
            Tensor x = randomInput(arena, 15, n, c.dModel());
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(1))) {
                float[] whole = mha.forward(x, Mask.causal(), arena).toArray();
                float[] cached = runCached(mha, x, Mask.causal(), 16, KvDtype.F32, new int[]{n - 4}, false);
                assertClose(whole, cached, "decode over " + n + " keys in spans of " + CachedAttention.DECODE_SPAN_KEYS);
            }
        }
    }

    /**
     * Head dim 136: V parts of two full tiles of 64 features and a partial one of 8, written by the
     * cache, gathered by a prefill chunk and read in place by decode (vector and scalar), for
     * every dtype; groups of 2 query rows (padded to four for the kernels).
     */
    @Test
    void headsWiderThanOneValueTileDecodeAndGatherExactly() {
        AttentionConfig c = AttentionConfig.of(272, 4, 2, 136).withRope(new RotaryEmbedding(10000, 136, RotaryEmbedding.Layout.PAIRS));
        int n = 90;
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 16, arena);
            Tensor x = randomInput(arena, 17, n, c.dModel());
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(2))) {
                float[] whole = mha.forward(x, Mask.causal(), arena).toArray();
                int[] chunks = {50, 3};                                  // a gathered prefill, a 3-token decode, then single tokens
                assertClose(whole, runCached(mha, x, Mask.causal(), 16, KvDtype.F32, chunks, false), "d 136, float32");
                assertClose(whole, runCached(mha, x, Mask.causal(), 16, KvDtype.F32, chunks, true), "d 136, float32, scalar kernels");
                for (KvDtype dtype : new KvDtype[]{KvDtype.F16, KvDtype.INT8}) {
                    double relative = relativeError(runCached(mha, x, Mask.causal(), 16, dtype, chunks, false), whole);
                    assertTrue(relative < (dtype == KvDtype.F16 ? 1e-3 : 2e-2), "d 136, " + dtype + ": error " + relative);
                }
            }
        }
    }

    /**
     * The error a quantised cache adds to the attention output, relative to the largest output,
     * against a float32 cache, over 300 tokens (prefill 200, decode 100) of a GQA layer with RoPE:
     * float16 stays under 1e-3, int8 (a scale per token and head) under 2e-2.
     */
    @Test
    void quantisedCachesStayWithinTheirStatedError() {
        AttentionConfig c = AttentionConfig.of(64, 8, 2, 16).withRope(new RotaryEmbedding(10000, 16, RotaryEmbedding.Layout.HALVES));
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 30, arena);
            Tensor x = randomInput(arena, 31, 300, c.dModel());
            try (MultiHeadAttention mha = new MultiHeadAttention(w)) {
                float[] exact = runCached(mha, x, Mask.causal(), 16, KvDtype.F32, new int[]{200}, false);
                for (KvDtype dtype : new KvDtype[]{KvDtype.F16, KvDtype.INT8}) {
                    double relative = relativeError(runCached(mha, x, Mask.causal(), 16, dtype, new int[]{200}, false), exact);
                    double bound = dtype == KvDtype.F16 ? 1e-3 : 2e-2;
                    System.out.printf("KV %s: max |Δ| / max |y| = %.2e (bound %.0e)%n", dtype, relative, bound);
                    assertTrue(relative < bound, dtype + " error " + relative);
                    assertTrue(relative > 0, dtype + " must differ from float32 somewhere (else the test proves nothing)");
                }
            }
        }
    }

    /** An observer sees over the cache the probabilities a whole forward shows: the same rows, the same numbers. */
    @Test
    void inspectionOverTheCacheSeesWhatTheWholeForwardSees() {
        AttentionConfig c = AttentionConfig.of(32, 4, 2, 8).withRope(new RotaryEmbedding(10000, 8, RotaryEmbedding.Layout.HALVES));
        int n = 40, P = 30, H = c.heads();
        Mask mask = Mask.causal().withPattern(dev.headroom.sparse.AttentionPattern.streaming(2, 12));
        try (Arena arena = TrackedArena.ofShared(); Workspace ws = new Workspace()) {
            AttentionWeights w = AttentionWeights.random(c, true, 40, arena);
            Tensor x = randomInput(arena, 41, n, c.dModel());
            int[] heads = java.util.stream.IntStream.range(0, H).toArray();
            try (MultiHeadAttention mha = new MultiHeadAttention(w);
                 KvCache cache = new KvCache(new KvCache.Shape(1, 2, 8, 16, KvDtype.F32), 1L << 20)) {
                dev.headroom.inspect.AttentionCapture whole = dev.headroom.inspect.AttentionCapture.allRows(arena, 1, H, heads, n, n);
                mha.forward(x, null, mask, Tensor.allocate(arena, x.shape()), ws, dev.headroom.inspect.Inspection.capture(whole));
                int seq = cache.create();
                KvCache.Step first = cache.step(new int[]{seq}, new int[]{P}, null);
                mha.forward(cache, first, 0, rows(arena, x, 0, P), mask, Tensor.allocate(arena, P, c.dModel()), ws, CallOptions.NONE);
                KvCache.Step second = cache.step(new int[]{seq}, new int[]{n - P}, null);
                dev.headroom.inspect.AttentionCapture cached = dev.headroom.inspect.AttentionCapture.allRows(arena, 1, H, heads, n - P, n);
                mha.forward(cache, second, 0, rows(arena, x, P, n - P), mask, Tensor.allocate(arena, n - P, c.dModel()), ws,
                        CallOptions.observing(dev.headroom.inspect.Inspection.capture(cached)));
                for (int h = 0; h < H; h++) {
                    for (int i = 0; i < n - P; i++) {
                        for (int j = 0; j < n; j++) {
                            assertEquals(whole.get(0, h, P + i, j), cached.get(0, h, i, j), 1e-6f, "head " + h + " query " + (P + i) + " key " + j);
                        }
                    }
                }
            }
        }
    }

    @Test
    void aRaggedBatchEqualsEachSequenceAlone() {
        AttentionConfig c = AttentionConfig.of(48, 6, 2, 8).withRope(new RotaryEmbedding(10000, 8, RotaryEmbedding.Layout.HALVES));
        int[] lengths = {3, 40, 17, 1, 64};
        try (Arena arena = TrackedArena.ofShared(); Workspace ws = new Workspace()) {
            AttentionWeights w = AttentionWeights.random(c, true, 8, arena);
            List<Tensor> inputs = new ArrayList<>();
            for (int s = 0; s < lengths.length; s++) inputs.add(randomInput(arena, 50 + s, lengths[s] + 3, c.dModel()));
            try (MultiHeadAttention mha = new MultiHeadAttention(w);
                 KvCache cache = new KvCache(new KvCache.Shape(1, 2, 8, 16, KvDtype.F32), 2L << 20)) {
                int[] seqs = new int[lengths.length];
                for (int s = 0; s < seqs.length; s++) seqs[s] = cache.create();
                // step 1: every prompt at once (prefill chunks of different lengths); steps 2–4: one token each
                for (int step = 0; step < 4; step++) {
                    int[] counts = new int[seqs.length];
                    int T = 0;
                    for (int s = 0; s < seqs.length; s++) T += counts[s] = step == 0 ? lengths[s] : 1;
                    KvCache.Step st = cache.step(seqs, counts, null);
                    Tensor in = Tensor.allocate(arena, T, c.dModel()), out = Tensor.allocate(arena, T, c.dModel());
                    for (int s = 0, r = 0; s < seqs.length; r += counts[s], s++) {
                        MemorySegment.copy(inputs.get(s).segment(), (long) st.starts()[s] * c.dModel() * 4, in.segment(),
                                (long) r * c.dModel() * 4, (long) counts[s] * c.dModel() * 4);
                    }
                    mha.forward(cache, st, 0, in, Mask.causal(), out, ws, CallOptions.NONE);
                    for (int s = 0, r = 0; s < seqs.length; r += counts[s], s++) {
                        int p = st.starts()[s];
                        float[] whole = mha.forward(rows(arena, inputs.get(s), 0, p + counts[s]), Mask.causal(), arena).toArray();
                        float[] mine = new float[counts[s] * c.dModel()], theirs = new float[counts[s] * c.dModel()];
                        System.arraycopy(whole, p * c.dModel(), theirs, 0, theirs.length);
                        MemorySegment.copy(out.segment(), java.lang.foreign.ValueLayout.JAVA_FLOAT, (long) r * c.dModel() * 4, mine, 0,
                                mine.length);
                        assertClose(theirs, mine, "sequence " + s + " step " + step);
                    }
                }
            }
        }
    }

    @Test
    void forkedPrefixReusedAndTruncatedSequencesEqualIndependentOnes() {
        AttentionConfig c = AttentionConfig.of(32, 4, 2, 8).withRope(new RotaryEmbedding(10000, 8, RotaryEmbedding.Layout.PAIRS));
        int E = c.dModel(), bs = 4;
        try (Arena arena = TrackedArena.ofShared(); Workspace ws = new Workspace()) {
            AttentionWeights w = AttentionWeights.random(c, true, 21, arena);
            Tensor common = randomInput(arena, 1, 10, E), a = randomInput(arena, 2, 6, E), b = randomInput(arena, 3, 6, E);
            try (MultiHeadAttention mha = new MultiHeadAttention(w);
                 KvCache cache = new KvCache(new KvCache.Shape(1, 2, 8, bs, KvDtype.F32), 1L << 20)) {
                int[] prompt = new int[10];
                for (int t = 0; t < 10; t++) prompt[t] = 100 + t;
                int s1 = cache.create();
                feed(mha, cache, ws, arena, s1, common, prompt);
                // fork after 10 tokens (block 2 half full, shared): both continue differently
                int s2 = cache.fork(s1);
                int sharedBefore = cache.stats().sharedBlocks();
                assertEquals(3, sharedBefore, "three blocks are shared right after the fork");
                float[] ya = feed(mha, cache, ws, arena, s1, a, null);
                float[] yb = feed(mha, cache, ws, arena, s2, b, null);
                assertEquals(2, cache.stats().sharedBlocks(), "the half-full block was copied on the first write");
                assertClose(whole(mha, arena, common, a), ya, "first branch");
                assertClose(whole(mha, arena, common, b), yb, "forked branch");

                // prefix reuse: a new sequence with the same first 10 tokens starts on the 2 full registered blocks
                int[] prompt2 = java.util.Arrays.copyOf(prompt, 13);
                prompt2[10] = 7;
                prompt2[11] = 8;
                prompt2[12] = 9;
                int s3 = cache.create(prompt2);
                assertEquals(8, cache.length(s3), "two full blocks reused");
                Tensor x3 = concat(arena, common, a);
                float[] y3 = feed(mha, cache, ws, arena, s3, rows(arena, x3, 8, 5), java.util.Arrays.copyOfRange(prompt2, 8, 13));
                float[] full = whole(mha, arena, rows(arena, x3, 0, 13), null);
                assertClose(java.util.Arrays.copyOfRange(full, 8 * E, 13 * E), y3, "reused prefix");

                // truncate then append equals never having appended
                cache.truncate(s1, 12);
                float[] again = feed(mha, cache, ws, arena, s1, b, null);
                Tensor expected = concat(arena, rows(arena, concat(arena, common, a), 0, 12), b);
                float[] y = whole(mha, arena, expected, null);
                assertClose(java.util.Arrays.copyOfRange(y, 12 * E, 18 * E), again, "truncated and appended again");
            }
        }
    }

    /** Appends x's rows to sequence seq one step at a time (2 tokens, then single ones); returns their outputs. */
    static float[] feed(MultiHeadAttention mha, KvCache cache, Workspace ws, Arena arena, int seq, Tensor x, int[] ids) {
        int n = x.dim(0), E = x.dim(1);
        float[] y = new float[n * E];
        for (int pos = 0; pos < n; ) {
            int count = pos == 0 ? Math.min(2, n) : 1;
            int[] tokens = ids == null ? null : java.util.Arrays.copyOfRange(ids, pos, pos + count);
            KvCache.Step st = cache.step(new int[]{seq}, new int[]{count}, tokens == null ? null : new int[][]{tokens});
            Tensor out = Tensor.allocate(arena, count, E);
            mha.forward(cache, st, 0, rows(arena, x, pos, count), Mask.causal(), out, ws, CallOptions.NONE);
            System.arraycopy(out.toArray(), 0, y, pos * E, count * E);
            pos += count;
        }
        return y;
    }

    /** The whole causal forward of prefix then x; returns the outputs of x's rows (all rows when x is null). */
    static float[] whole(MultiHeadAttention mha, Arena arena, Tensor prefix, Tensor x) {
        Tensor all = x == null ? prefix : concat(arena, prefix, x);
        float[] y = mha.forward(all, Mask.causal(), arena).toArray();
        if (x == null) return y;
        return java.util.Arrays.copyOfRange(y, prefix.dim(0) * prefix.dim(1), y.length);
    }

    static Tensor concat(Arena arena, Tensor a, Tensor b) {
        Tensor t = Tensor.allocate(arena, a.dim(0) + b.dim(0), a.dim(1));
        MemorySegment.copy(a.segment(), 0, t.segment(), 0, a.segment().byteSize());
        MemorySegment.copy(b.segment(), 0, t.segment(), a.segment().byteSize(), b.segment().byteSize());
        return t;
    }

    // ---- from the review of the serving core: each of the first six failed before its fix ----

    /**
     * The decode path refuses a mask that still sees an evicted block (IllegalStateException);
     * the prefill path (more than 8 new tokens, or any observer) gathers the evicted keys as
     * zeros and attends to them silently.
     */
    @Test
    void thePrefillPathRefusesEvictedKeysTheMaskStillSees() {
        AttentionConfig c = AttentionConfig.of(16, 2);
        try (Arena arena = TrackedArena.ofShared(); Workspace ws = new Workspace();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena));
             KvCache cache = new KvCache(new KvCache.Shape(1, 2, 8, 4, KvDtype.F32), 1L << 20)) {
            int s = cache.create();
            KvCache.Step st = cache.step(new int[]{s}, new int[]{12}, null);
            mha.forward(cache, st, 0, randomInput(arena, 1, 12, 16), Mask.causal(), Tensor.allocate(arena, 12, 16), ws, CallOptions.NONE);
            cache.evict(s, 0, 8);
            int f = cache.fork(s);
            KvCache.Step one = cache.step(new int[]{f}, new int[]{1}, null);
            IllegalStateException decode = assertThrows(IllegalStateException.class, () -> mha.forward(cache, one, 0,
                    randomInput(arena, 2, 1, 16), Mask.causal(), Tensor.allocate(arena, 1, 16), ws, CallOptions.NONE));
            assertTrue(decode.getMessage().contains("was evicted"), decode.getMessage());
            KvCache.Step nine = cache.step(new int[]{s}, new int[]{9}, null);
            assertThrows(IllegalStateException.class, () -> mha.forward(cache, nine, 0, randomInput(arena, 3, 9, 16), Mask.causal(),
                    Tensor.allocate(arena, 9, 16), ws, CallOptions.NONE), "prefill path attended to evicted (zero) keys silently");
        }
    }

    /**
     * DecodeScratch grows only when q, S or S2 is too small, but M and L are sized by rows alone:
     * a thread that first decoded a wide head (d 64, blocks of 512) and then a GQA layer with more
     * rows (d 8, blocks of 16) indexes past M.
     */
    @Test
    void twoModelsOnOneThreadDecode() {
        try (Arena arena = TrackedArena.ofShared(); Workspace ws = new Workspace()) {
            AttentionConfig wide = AttentionConfig.of(64, 1, 1, 64), gqa = AttentionConfig.of(16, 2, 1, 8);
            MultiHeadAttention.Options one = MultiHeadAttention.Options.defaults().withThreads(1);
            try (MultiHeadAttention a = new MultiHeadAttention(AttentionWeights.random(wide, false, 1, arena), one);
                 MultiHeadAttention b = new MultiHeadAttention(AttentionWeights.random(gqa, false, 2, arena), one);
                 KvCache ca = new KvCache(new KvCache.Shape(1, 1, 64, 512, KvDtype.F32), 4L << 20);
                 KvCache cb = new KvCache(new KvCache.Shape(1, 1, 8, 16, KvDtype.F32), 1L << 20)) {
                int sa = ca.create(), sb = cb.create();
                a.forward(ca, ca.step(new int[]{sa}, new int[]{1}, null), 0, randomInput(arena, 3, 1, 64), Mask.causal(),
                        Tensor.allocate(arena, 1, 64), ws, CallOptions.NONE);
                b.forward(cb, cb.step(new int[]{sb}, new int[]{1}, null), 0, randomInput(arena, 4, 1, 16), Mask.causal(),
                        Tensor.allocate(arena, 1, 16), ws, CallOptions.NONE);
            }
        }
    }

    /**
     * README: "For a given thread count, results are bitwise identical from run to run and
     * whatever other calls run beside them". Over the cache, a sequence's decode output depends
     * on which other sequences share its step: split-K cuts its keys by its share of the step's keys.
     */
    @Test
    void aSequencesDecodeOutputDoesNotDependOnItsBatch() {
        int d = 8, La = 2000, Lb = 20000;
        AttentionConfig c = AttentionConfig.of(16, 2, 1, d);
        try (Arena arena = TrackedArena.ofShared(); Workspace ws = new Workspace();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, false, 1, arena),
                     MultiHeadAttention.Options.defaults().withThreads(2));
             KvCache cache = new KvCache(new KvCache.Shape(1, 1, d, 16, KvDtype.F32), 8L << 20)) {
            int a = cache.create(), b = cache.create();
            Matrix kT = randomInput(arena, 5, d, Lb).matrix(), v = randomInput(arena, 6, Lb, d).matrix();
            cache.append(a, La, null);
            cache.write(a, 0, 0, La, kT, 0, v, 0);
            cache.append(b, Lb, null);
            cache.write(b, 0, 0, Lb, kT, 0, v, 0);
            Matrix qT = randomInput(arena, 7, 2 * d, 2).matrix(), nk = randomInput(arena, 8, d, 2).matrix(), nv = randomInput(arena, 9, 2, d).matrix();
            Matrix alone = Tensor.allocate(arena, 1, 2 * d).matrix(), batched = Tensor.allocate(arena, 2, 2 * d).matrix();
            mha.attend(cache, cache.step(new int[]{a}, new int[]{1}, null), 0, qT.colRange(0, 1), nk.colRange(0, 1), nv.rowRange(0, 1),
                    alone, Mask.causal(), ws, CallOptions.NONE);
            cache.truncate(a, La);
            mha.attend(cache, cache.step(new int[]{a, b}, new int[]{1, 1}, null), 0, qT, nk, nv, batched, Mask.causal(), ws, CallOptions.NONE);
            float[] x = new float[2 * d], y = new float[2 * d];
            for (int f = 0; f < 2 * d; f++) { x[f] = alone.get(0, f); y[f] = batched.get(0, f); }
                        assertArrayEquals(x, y, "sequence a alone vs. batched with a long sequence");
        }
    }

    /** The memory budget refuses a whole forward of this size; the cached forward of the same tokens is never estimated. */
    @Test
    void theBudgetHoldsForCachedForwardsToo() {
        AttentionConfig c = AttentionConfig.of(64, 4);
        int n = 2048;
        try (Arena arena = TrackedArena.ofShared(); Workspace ws = new Workspace();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena),
                     MultiHeadAttention.Options.defaults().withThreads(1).withMemoryBudget(512 << 10));
             KvCache cache = new KvCache(new KvCache.Shape(1, 4, 16, 16, KvDtype.F32), 8L << 20)) {
            Tensor x = randomInput(arena, 1, n, 64);
            assertThrows(MemoryBudgetExceededException.class, () -> mha.forward(x, Mask.causal(), arena));
            int s = cache.create();
            long before = OffHeap.currentBytes();
            assertThrows(MemoryBudgetExceededException.class, () -> mha.forward(cache, cache.step(new int[]{s}, new int[]{n}, null), 0, x,
                    Mask.causal(), Tensor.allocate(arena, n, 64), ws, CallOptions.NONE),
                    "workspace grew by " + OffHeap.format(ws.byteSize()) + " over a 512 KiB budget");
        }
    }

    /** DecodeWorkload's constructor leaks its arena (data, weights) when a later step fails. */
    @Test
    void aFailedDecodeWorkloadLeavesNothingAllocated() {
        long before = OffHeap.currentBytes();
        assertThrows(IllegalArgumentException.class, () -> new DecodeWorkload(12, 4, 64, 256, 2, KvDtype.F32, 16, 0));
        assertEquals(before, OffHeap.currentBytes(), "off-heap bytes left behind");
    }

    /** Two layers in one cache (every committed cache test uses layers = 1), int8 and f32. */
    @Test
    void twoLayersInOneCache() {
        AttentionConfig c = AttentionConfig.of(32, 4, 2, 8).withRope(new RotaryEmbedding(10000, 8, RotaryEmbedding.Layout.PAIRS));
        int n = 30;
        for (KvDtype dtype : new KvDtype[]{KvDtype.F32, KvDtype.INT8}) {
            try (Arena arena = TrackedArena.ofShared(); Workspace ws = new Workspace();
                 MultiHeadAttention l0 = new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena));
                 MultiHeadAttention l1 = new MultiHeadAttention(AttentionWeights.random(c, true, 2, arena));
                 KvCache cache = new KvCache(new KvCache.Shape(2, 2, 8, 4, dtype), 1L << 20)) {
                Tensor x = randomInput(arena, 3, n, 32);
                float[] whole = l1.forward(l0.forward(x, Mask.causal(), arena), Mask.causal(), arena).toArray();
                int s = cache.create();
                float[] got = new float[n * 32];
                for (int pos = 0; pos < n; ) {
                    int count = pos == 0 ? 11 : 1;
                    KvCache.Step st = cache.step(new int[]{s}, new int[]{count}, null);
                    Tensor h = Tensor.allocate(arena, count, 32), y = Tensor.allocate(arena, count, 32);
                    l0.forward(cache, st, 0, rows(arena, x, pos, count), Mask.causal(), h, ws, CallOptions.NONE);
                    l1.forward(cache, st, 1, h, Mask.causal(), y, ws, CallOptions.NONE);
                    System.arraycopy(y.toArray(), 0, got, pos * 32, count * 32);
                    pos += count;
                }
                double max = 0, err = 0;
                for (int i = 0; i < whole.length; i++) { max = Math.max(max, Math.abs(whole[i])); err = Math.max(err, Math.abs(whole[i] - got[i])); }
                                assertTrue(err / max < (dtype == KvDtype.F32 ? 2e-5 : 3e-2), dtype + " " + err / max);
            }
        }
    }

    /** Split-K where a middle chunk sees no allowed key (streaming mask, nothing evicted): the merge's weight-0 branch. */
    @Test
    void splitKWithAnEmptyChunk() {
        AttentionConfig c = AttentionConfig.of(16, 2, 1, 8);
        int n = 2000;
        Mask mask = Mask.causal().withPattern(AttentionPattern.streaming(4, 16));
        try (Arena arena = TrackedArena.ofShared(); Workspace ws = new Workspace();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena),
                     MultiHeadAttention.Options.defaults().withThreads(2));
             KvCache cache = new KvCache(new KvCache.Shape(1, 1, 8, 16, KvDtype.F32), 4L << 20)) {
            Tensor x = randomInput(arena, 2, n, 16);
            float[] whole = mha.forward(x, mask, arena).toArray();
            int s = cache.create();
            KvCache.Step p = cache.step(new int[]{s}, new int[]{n - 1}, null);
            mha.forward(cache, p, 0, rows(arena, x, 0, n - 1), mask, Tensor.allocate(arena, n - 1, 16), ws, CallOptions.NONE);
            KvCache.Step d = cache.step(new int[]{s}, new int[]{1}, null);
            Tensor y = Tensor.allocate(arena, 1, 16);
            mha.forward(cache, d, 0, rows(arena, x, n - 1, 1), mask, y, ws, CallOptions.NONE);
            assertTrue(CachedAttention.chunks(n, 1, 2) > 2);
            for (int f = 0; f < 16; f++) assertEquals(whole[(n - 1) * 16 + f], y.get(f), 1e-5f * (1 + Math.abs(whole[(n - 1) * 16 + f])));
        }
    }

    /** A step of one cache used with another cache whose sequence ids coincide (ids start at 1 in every cache). */
    @Test
    void aStepOfAnotherCacheIsRefused() {
        AttentionConfig c = AttentionConfig.of(16, 2);
        try (Arena arena = TrackedArena.ofShared(); Workspace ws = new Workspace();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena));
             KvCache draft = new KvCache(new KvCache.Shape(1, 2, 8, 4, KvDtype.F32), 1L << 20);
             KvCache target = new KvCache(new KvCache.Shape(1, 2, 8, 4, KvDtype.F32), 1L << 20)) {
            int a = draft.create(), b = target.create();
            assertEquals(a, b);
            target.step(new int[]{b}, new int[]{5}, null);
            KvCache.Step fromDraft = draft.step(new int[]{a}, new int[]{3}, null);
            assertThrows(IllegalArgumentException.class, () -> mha.forward(target, fromDraft, 0, randomInput(arena, 1, 3, 16), Mask.causal(),
                    Tensor.allocate(arena, 3, 16), ws, CallOptions.NONE), "a draft-cache step ran against the target cache");
        }
    }

    /** A failed growth of an extra buffer leaves the closed old segment in place; a later small request gets it. */
    @Test
    void aFailedGrowthLeavesTheWorkspaceUsable() {
        try (Workspace ws = new Workspace()) {
            ws.extra(Workspace.Extra.GATHERED_KEYS_VALUES, 1024);
            assertThrows(OutOfMemoryError.class, () -> ws.extra(Workspace.Extra.GATHERED_KEYS_VALUES, 1L << 48));
            var small = ws.extra(Workspace.Extra.GATHERED_KEYS_VALUES, 16);
            small.set(ValueLayout.JAVA_FLOAT, 0, 1f); // "Already closed" here
        }
    }

    /**
     * A step cancelled half-way (layer 0 written, layer 1 interrupted) is rolled back: the sequence
     * is as before the step and can go on, and the prefix it held is not registered for reuse with
     * unwritten slots.
     */
    @Test
    void aCancelledStepIsRolledBack() {
        AttentionConfig c = AttentionConfig.of(16, 2);
        try (Arena arena = TrackedArena.ofShared(); Workspace ws = new Workspace();
             MultiHeadAttention l0 = new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena));
             MultiHeadAttention l1 = new MultiHeadAttention(AttentionWeights.random(c, true, 2, arena));
             KvCache cache = new KvCache(new KvCache.Shape(2, 2, 8, 4, KvDtype.F32), 1L << 20)) {
            int[] prompt = {5, 6, 7, 8, 9, 10, 11, 12, 13};
            int s = cache.create();
            KvCache.Step step = cache.step(new int[]{s}, new int[]{9}, new int[][]{prompt});
            Tensor x = randomInput(arena, 1, 9, 16), h = Tensor.allocate(arena, 9, 16);
            l0.forward(cache, step, 0, x, Mask.causal(), h, ws, CallOptions.NONE);
            Thread.currentThread().interrupt();
            assertThrows(java.util.concurrent.CancellationException.class,
                    () -> l1.forward(cache, step, 1, h, Mask.causal(), Tensor.allocate(arena, 9, 16), ws, CallOptions.NONE));
            assertTrue(Thread.interrupted());
            cache.rollback(step);
            assertEquals(0, cache.length(s));
            cache.free(s);
            assertEquals(0, cache.length(cache.create(prompt)), "nothing of the cancelled step was registered for reuse");
        }
    }
}
