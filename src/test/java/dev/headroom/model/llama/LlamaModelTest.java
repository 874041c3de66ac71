package dev.headroom.model.llama;

import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Decoding through the KV cache equals a whole causal forward of the same tokens: prompts cut into
 * prefill chunks of several sizes, then one token per step, several sequences of different
 * lengths in the same steps (a ragged batch), for the tiny model and for random models of other
 * shapes (multi-head, multi-query, grouped, head_dim ≠ E/H, attention biases, an untied output
 * layer). The paths differ in the order their products sum (other sgemm shapes, the decode
 * kernel's online softmax), so they agree to float rounding: within 1e-5 of the logit scale.
 */
class LlamaModelTest {
    static final double TOLERANCE = 1e-5;

    /** Whole-forward logits of one sequence, (n, V), as rows. */
    static float[][] whole(LlamaModel model, int[] ids) {
        try (TrackedArena a = TrackedArena.ofShared()) {
            return rows(model.logits(ids, a));
        }
    }

    static float[][] rows(Tensor t) {
        float[][] r = new float[t.dim(0)][t.dim(1)];
        for (int i = 0; i < r.length; i++) for (int j = 0; j < r[i].length; j++) r[i][j] = t.get((long) i * r[i].length + j);
        return r;
    }

    static double relative(float[][] a, float[][] b) {
        assertEquals(b.length, a.length);
        double diff = 0, scale = 0;
        for (int i = 0; i < a.length; i++) {
            for (int j = 0; j < a[i].length; j++) {
                diff = Math.max(diff, Math.abs((double) a[i][j] - b[i][j]));
                scale = Math.max(scale, Math.abs(b[i][j]));
            }
        }
        return diff / scale;
    }

    /**
     * Every sequence's logits at every position through the cache: sequence i's tokens go in
     * chunks of {@code chunks[i]} (cycled; 1 = decode steps), all sequences in the same steps.
     */
    static float[][][] cached(LlamaModel model, int[][] seqs, int[][] chunks, int blockSize, KvDtype dtype) {
        int V = model.config().vocabSize(), n = seqs.length;
        float[][][] out = new float[n][][];
        for (int i = 0; i < n; i++) out[i] = new float[seqs[i].length][];
        try (KvCache cache = model.newCache(blockSize, dtype, 64L << 20); DecoderWorkspace ws = new DecoderWorkspace();
             TrackedArena arena = TrackedArena.ofShared()) {
            int[] ids = new int[n], done = new int[n], step = new int[n];
            for (int i = 0; i < n; i++) ids[i] = cache.create();
            while (true) {
                List<Integer> in = new ArrayList<>();
                List<Integer> counts = new ArrayList<>();
                for (int i = 0; i < n; i++) {
                    if (done[i] == seqs[i].length) continue;
                    int c = Math.min(chunks[i][step[i]++ % chunks[i].length], seqs[i].length - done[i]);
                    in.add(i);
                    counts.add(c);
                }
                if (in.isEmpty()) break;
                int T = counts.stream().mapToInt(Integer::intValue).sum();
                int[] tokens = new int[T], cacheIds = new int[in.size()], cs = new int[in.size()];
                int[][] stepIds = new int[in.size()][];
                for (int k = 0, r = 0; k < in.size(); k++) {
                    int i = in.get(k);
                    cs[k] = counts.get(k);
                    cacheIds[k] = ids[i];
                    stepIds[k] = Arrays.copyOfRange(seqs[i], done[i], done[i] + cs[k]);
                    System.arraycopy(stepIds[k], 0, tokens, r, cs[k]);
                    r += cs[k];
                }
                KvCache.Step s = cache.step(cacheIds, cs, stepIds);
                Tensor logits = Tensor.allocate(arena, T, V);
                model.forward(cache, s, tokens, null, logits, ws, LlamaModel.LayerHooks.NONE);
                float[][] r = rows(logits);
                for (int k = 0, row = 0; k < in.size(); k++) {
                    int i = in.get(k);
                    for (int t = 0; t < cs[k]; t++) out[i][done[i] + t] = r[row++];
                    done[i] += cs[k];
                }
            }
        }
        return out;
    }

    private static int[] randomIds(SplittableRandom rnd, int n, int bos) {
        int[] ids = new int[n];
        ids[0] = bos;
        for (int i = 1; i < n; i++) ids[i] = rnd.nextInt(32, 127);
        return ids;
    }

    @Test
    void tinyModelThroughTheCacheEqualsTheWholeForward() throws IOException {
        try (LlamaModel model = Models.tiny(2)) {
            ByteTokenizer tok = ByteTokenizer.of(model.config());
            int[][] seqs = {
                    tok.encode("The jury said that the city's election was conducted well."),
                    tok.encode("A"),
                    randomIds(new SplittableRandom(1), 200, 256),
                    tok.encode("Caf\u00e9 na\u00efve \u2014 1961 \u00bd and more text after it"),
            };
            int[][] chunks = {{1}, {1}, {17, 5, 64, 1}, {7, 3, 1}};
            float[][][] viaCache = cached(model, seqs, chunks, 16, KvDtype.F32);
            for (int i = 0; i < seqs.length; i++) {
                double d = relative(viaCache[i], whole(model, seqs[i]));
                System.out.printf(Locale.ROOT, "tiny, sequence %d (%d tokens): max |cache - whole| / scale = %.2e%n", i, seqs[i].length, d);
                assertTrue(d <= TOLERANCE, "sequence " + i + ": " + d);
            }
        }
    }

    /**
     * Decode steps and small prompt chunks (at most 64 rows a step: {@link dev.headroom.kernels.SmallMatmul}'s
     * products) on two threads, where each layer's Q, K and V products share one hand-off to the
     * workers and the feed-forward's gate and up products are gated by column blocks, give the
     * logits one thread gives, bit for bit: the split changes no number (contexts below
     * {@code CachedAttention}'s 512-key chunks, which do depend on the threads).
     */
    @Test
    void decodeStepsOnTwoThreadsEqualOneThreadBitForBit() throws IOException {
        SplittableRandom rnd = new SplittableRandom(8);
        int[][] seqs = {randomIds(rnd, 90, 256), randomIds(rnd, 7, 256), randomIds(rnd, 130, 256), randomIds(rnd, 40, 256)};
        int[][] chunks = {{20, 1}, {1}, {3, 9, 1, 1}, {33, 1}};
        float[][][] one, two;
        try (LlamaModel model = Models.tiny(1)) {
            one = cached(model, seqs, chunks, 16, KvDtype.F32);
        }
        try (LlamaModel model = Models.tiny(2)) {
            two = cached(model, seqs, chunks, 16, KvDtype.F32);
        }
        for (int i = 0; i < seqs.length; i++) {
            for (int t = 0; t < seqs[i].length; t++) {
                assertTrue(Arrays.equals(one[i][t], two[i][t]), "sequence " + i + ", token " + t + ": 2 threads differ from 1");
            }
        }
    }

    @Test
    void otherShapesThroughTheCacheEqualTheWholeForward() {
        LlamaConfig[] configs = {
                RandomLlama.config(64, 96, 2, 4, 4, 16, 128, true, false),   // multi-head
                RandomLlama.config(64, 96, 2, 4, 1, 16, 128, false, false),  // multi-query, untied output
                RandomLlama.config(80, 112, 3, 6, 2, 16, 128, false, true),  // GQA, head_dim·heads ≠ E, biases
        };
        SplittableRandom rnd = new SplittableRandom(5);
        for (LlamaConfig c : configs) {
            try (TrackedArena arena = TrackedArena.ofShared();
                 LlamaModel model = new LlamaModel(LlamaWeights.fromStateDict(c, RandomLlama.stateDict(c, 3, arena)), 2)) {
                int[][] seqs = {randomIds(rnd, 50, 256), randomIds(rnd, 9, 256), randomIds(rnd, 100, 256)};
                int[][] chunks = {{50}, {2, 1}, {33, 1, 1, 20}};
                for (int blockSize : new int[]{16, 5}) {
                    float[][][] viaCache = cached(model, seqs, chunks, blockSize, KvDtype.F32);
                    for (int i = 0; i < seqs.length; i++) {
                        double d = relative(viaCache[i], whole(model, seqs[i]));
                        assertTrue(d <= TOLERANCE, c + ", block " + blockSize + ", sequence " + i + ": " + d);
                    }
                }
            }
        }
    }

    /** --dummy-weights' model: the state dict of its seed, bit for bit, in an arena the model frees when it closes. */
    @Test
    void aRandomModelOwnsTheWeightsOfItsSeed() {
        LlamaConfig c = RandomLlama.config(48, 80, 2, 3, 1, 16, 64, false, true);
        int[] ids = {256, 7, 200, 31, 31, 90};
        long before = OffHeap.currentBytes();
        float[][] owned;
        try (LlamaModel model = RandomLlama.model(c, 9, MultiHeadAttention.Options.defaults().withThreads(2))) {
            assertTrue(OffHeap.currentBytes() - before >= Float.BYTES * c.parameterCount(), "the weights are allocated off-heap");
            owned = whole(model, ids);
        }
        assertEquals(before, OffHeap.currentBytes(), "closing the model freed its weights");
        try (TrackedArena arena = TrackedArena.ofShared();
             LlamaModel model = new LlamaModel(LlamaWeights.fromStateDict(c, RandomLlama.stateDict(c, 9, arena)), 2)) {
            float[][] expected = whole(model, ids);
            for (int i = 0; i < ids.length; i++) assertTrue(Arrays.equals(expected[i], owned[i]), "logits of token " + i);
            assertTrue(!Arrays.equals(expected[0], expected[1]), "the logits depend on the tokens");
        }
    }

    /** What the CLI's budget check counts before loading (LlamaModel.packedBytesFor) is what a model then packs. */
    @Test
    void thePackedBytesOfAConfigAreKnownBeforeItsWeights() throws IOException {
        try (LlamaModel tiny = Models.tiny(1)) {
            assertEquals(tiny.packedBytes(), LlamaModel.packedBytesFor(tiny.config()), "tiny");
            assertTrue(tiny.packedBytes() >= Float.BYTES * (tiny.config().parameterCount() - tiny.config().layers() * 2L * 256 - 256),
                    "every matrix is packed, the tied output layer too: " + tiny.packedBytes());
        }
        for (LlamaConfig c : List.of(RandomLlama.config(72, 100, 2, 6, 2, 12, 64, false, false), // GQA, untied, widths off the panel
                RandomLlama.config(40, 56, 1, 5, 5, 8, 64, true, true))) {                        // multi-head, tied, biases
            try (LlamaModel model = RandomLlama.model(c, 1, MultiHeadAttention.Options.defaults().withThreads(1))) {
                assertEquals(model.packedBytes(), LlamaModel.packedBytesFor(c), c.toString());
            }
        }
    }

    /** Weights that cannot be read while the model packs them: the error, and nothing left allocated or running. */
    @Test
    void aModelThatFailsToPackItsWeightsLeavesNothingBehind() {
        LlamaConfig c = RandomLlama.config(48, 80, 2, 3, 1, 16, 64, false, false);
        TrackedArena arena = TrackedArena.ofShared();
        LlamaWeights w = LlamaWeights.fromStateDict(c, RandomLlama.stateDict(c, 9, arena));
        arena.close(); // the model reads the weights first when it packs them for decode steps
        long before = OffHeap.currentBytes(), workersBefore = workerThreads();
        assertThrows(IllegalStateException.class, () -> new LlamaModel(w, MultiHeadAttention.Options.defaults().withThreads(2), null));
        assertEquals(before, OffHeap.currentBytes(), "the packed copies made before the failure are freed");
        long deadline = System.nanoTime() + 10_000_000_000L; // a closed pool's threads end once they see it closed
        while (workerThreads() > workersBefore && System.nanoTime() < deadline) Thread.onSpinWait();
        assertEquals(workersBefore, workerThreads(), "the model's worker thread ended");
    }

    private static long workerThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.isAlive() && t.getName().startsWith("headroom-worker")).count();
    }

    @Test
    void logitRowsAndBatchesOfTheWholeForwardAgree() throws IOException {
        try (LlamaModel model = Models.tiny(2); TrackedArena arena = TrackedArena.ofShared();
             DecoderWorkspace ws = new DecoderWorkspace()) {
            SplittableRandom rnd = new SplittableRandom(9);
            int n = 40, V = model.config().vocabSize();
            int[] a = randomIds(rnd, n, 256), b = randomIds(rnd, n, 256);
            int[] both = new int[2 * n];
            System.arraycopy(a, 0, both, 0, n);
            System.arraycopy(b, 0, both, n, n);
            Tensor batched = Tensor.allocate(arena, 2 * n, V);
            model.forward(both, 2, null, batched, ws, LlamaModel.LayerHooks.NONE);
            float[][] rows = rows(batched);
            assertTrue(relative(Arrays.copyOfRange(rows, 0, n), whole(model, a)) <= TOLERANCE);
            assertTrue(relative(Arrays.copyOfRange(rows, n, 2 * n), whole(model, b)) <= TOLERANCE);
            // only some rows, in the order asked (the output product has another shape: rounding may differ)
            Tensor some = Tensor.allocate(arena, 3, V);
            model.forward(both, 2, new int[]{2 * n - 1, 0, n - 1}, some, ws, LlamaModel.LayerHooks.NONE);
            assertTrue(relative(rows(some), new float[][]{rows[2 * n - 1], rows[0], rows[n - 1]}) <= TOLERANCE);
        }
    }

    @Test
    void stepsAreCheckedAgainstTheModel() throws IOException {
        try (LlamaModel model = Models.tiny(1); TrackedArena arena = TrackedArena.ofShared();
             DecoderWorkspace ws = new DecoderWorkspace();
             KvCache other = new KvCache(new KvCache.Shape(4, 3, 64, 16, KvDtype.F32), 1 << 20);
             KvCache cache = model.newCache(16, KvDtype.F32, 1 << 20)) {
            int s = cache.create();
            KvCache.Step step = cache.step(new int[]{s}, new int[]{2}, null);
            Tensor logits = Tensor.allocate(arena, 2, 258);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> model.forward(cache, step, new int[]{256}, null, logits, ws, LlamaModel.LayerHooks.NONE));
            assertEquals("the step has 2 new tokens but 1 ids were given", e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> model.forward(cache, step, new int[]{256, 300}, null, logits, ws, LlamaModel.LayerHooks.NONE));
            assertEquals("token id 300 at row 1 is outside the vocabulary of 258", e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> model.forward(cache, step, new int[]{256, 65}, null, Tensor.allocate(arena, 1, 258), ws, LlamaModel.LayerHooks.NONE));
            assertEquals("logits must be (2, 258) for 2 rows of a vocabulary of 258, got (1, 258)", e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> model.forward(cache, step, new int[]{256, 65}, new int[]{2}, Tensor.allocate(arena, 1, 258), ws, LlamaModel.LayerHooks.NONE));
            assertEquals("logit row 2 is outside the 2 new tokens", e.getMessage());
            int o = other.create();
            KvCache.Step otherStep = other.step(new int[]{o}, new int[]{2}, null);
            e = assertThrows(IllegalArgumentException.class,
                    () -> model.forward(other, otherStep, new int[]{256, 65}, null, logits, ws, LlamaModel.LayerHooks.NONE));
            assertEquals("the KV cache holds 4 layers × 3 heads of 64, the model needs 4 × 2 of 64", e.getMessage());
        }
    }

    @Test
    void finiteChecksNameWhereAnOverflowAppears() {
        LlamaConfig c = RandomLlama.config(32, 48, 2, 2, 1, 16, 64, true, false);
        try (TrackedArena arena = TrackedArena.ofShared()) {
            java.util.Map<String, Tensor> sd = new java.util.LinkedHashMap<>(RandomLlama.stateDict(c, 1, arena));
            // positive inputs and a huge W_V: V = h W_Vᵀ overflows in layer 0
            Tensor embed = sd.get("model.embed_tokens.weight"), wv = sd.get("model.layers.0.self_attn.v_proj.weight");
            for (int j = 0; j < 32; j++) {
                embed.set(256L * 32 + j, 1f);
                embed.set(65L * 32 + j, 1f);
            }
            for (long i = 0; i < wv.size(); i++) wv.set(i, 3e38f);
            LlamaWeights w = LlamaWeights.fromStateDict(c, sd);
            try (LlamaModel model = new LlamaModel(w, MultiHeadAttention.Options.defaults().withThreads(1).withCheckFinite(true), null);
                 KvCache cache = model.newCache(16, KvDtype.F32, 1 << 20); DecoderWorkspace ws = new DecoderWorkspace()) {
                int s = cache.create();
                KvCache.Step step = cache.step(new int[]{s}, new int[]{2}, null);
                RuntimeException e = assertThrows(dev.headroom.attention.NonFiniteException.class, () -> model.forward(cache, step,
                        new int[]{256, 65}, null, Tensor.allocate(arena, 2, 260), ws, LlamaModel.LayerHooks.NONE));
                assertTrue(e.getMessage().matches("the V projection of layer 0 holds (Infinity|-Infinity|NaN) at token 0 of the step, "
                        + "feature \\d+ \\(inputs or weights too large; checkFinite is on\\)"), e.getMessage());
            }
        }
    }

    @Test
    void confinedWeightsAreRefusedForSeveralThreads() {
        LlamaConfig c = RandomLlama.config(32, 48, 1, 2, 1, 16, 64, true, false);
        try (TrackedArena confined = TrackedArena.ofConfined()) {
            LlamaWeights w = LlamaWeights.fromStateDict(c, RandomLlama.stateDict(c, 1, confined));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new LlamaModel(w, MultiHeadAttention.Options.defaults().withThreads(2), null));
            assertTrue(e.getMessage().startsWith("the weights live in a confined arena"), e.getMessage());
        }
    }
}
