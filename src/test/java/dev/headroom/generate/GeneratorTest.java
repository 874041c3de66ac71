package dev.headroom.generate;

import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.GoldenFixtures;
import dev.headroom.model.llama.LlamaModel;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Generation with the tiny model through the KV cache: PyTorch's greedy continuations, batched
 * equal to one at a time, seeds, stop strings, the context limit, streaming.
 *
 * <p><b>Near ties.</b> Headroom's and PyTorch's logits differ by about 1e-5 (float rounding in
 * another order; see TinyGoldenTest), so where the two best tokens are closer than that, either
 * may come first. Continuations are compared token for token; where they part, the top-2 gap at
 * that step (Headroom's whole-forward logits of the common prefix) must be below
 * {@value #NEAR_TIE}, a hundred times the logits' difference, else the test fails; after a
 * legitimate parting the rest is not compared (the two texts continue from different tokens).
 */
class GeneratorTest {
    static final double NEAR_TIE = 1e-3;
    private static LlamaModel model;
    private static ByteTokenizer tokenizer;

    @BeforeAll
    static void load() throws IOException {
        model = Models.tiny(2);
        tokenizer = ByteTokenizer.of(model.config());
    }

    @AfterAll
    static void close() {
        model.close();
    }

    /** The top-1 minus top-2 logit after {@code ids}, from the whole forward. */
    static double margin(int[] ids) {
        try (TrackedArena a = TrackedArena.ofShared()) {
            Tensor logits = model.logits(ids, a);
            int V = logits.dim(1);
            float best = Float.NEGATIVE_INFINITY, second = Float.NEGATIVE_INFINITY;
            for (int j = 0; j < V; j++) {
                float v = logits.get((long) (ids.length - 1) * V + j);
                if (v > best) {
                    second = best;
                    best = v;
                } else if (v > second) second = v;
            }
            return best - second;
        }
    }

    /**
     * Compares two greedy continuations of {@code prompt}: equal token for token, or parting only
     * at a near tie. Returns how many tokens were compared.
     */
    static int compareGreedy(String what, int[] prompt, int[] expected, int[] actual) {
        int n = Math.min(expected.length, actual.length);
        for (int k = 0; k < n; k++) {
            if (expected[k] == actual[k]) continue;
            int[] prefix = new int[prompt.length + k];
            System.arraycopy(prompt, 0, prefix, 0, prompt.length);
            System.arraycopy(actual, 0, prefix, prompt.length, k);
            double m = margin(prefix);
            assertTrue(m < NEAR_TIE, what + ": token " + k + " is " + actual[k] + ", expected " + expected[k]
                    + ", with a top-2 gap of " + m + " (not a near tie)");
            System.out.printf(Locale.ROOT, "%s: parts at token %d of %d at a near tie (gap %.2e)%n", what, k, expected.length, m);
            return k;
        }
        assertEquals(expected.length, actual.length, what + ": continuation lengths");
        return n;
    }

    private static Generator.Request greedy(int[] prompt, int max) {
        return new Generator.Request(prompt, max, Sampling.greedy(), List.of());
    }

    @Test
    void greedyContinuationsThroughTheCacheMatchPyTorch() throws IOException {
        Generator g = new Generator(model, tokenizer);
        for (GoldenFixtures.Fixture f : GoldenFixtures.all()) {
            Generator.Result r = g.generate(List.of(greedy(f.promptIds(), f.continuation().length)), Generator.Listener.NONE);
            Generator.Output o = r.outputs().getFirst();
            int compared = compareGreedy(f.name(), f.promptIds(), f.continuation(), o.tokens());
            System.out.printf(Locale.ROOT, "%s: %d of %d greedy tokens equal to PyTorch's: %s%n", f.name(), compared,
                    f.continuation().length, tokenizer.decode(o.tokens()));
            if (compared == f.continuation().length) {
                boolean eos = f.continuation()[f.continuation().length - 1] == 257;
                assertEquals(eos ? Generator.Finish.EOS : Generator.Finish.MAX_TOKENS, o.finish());
                assertEquals(tokenizer.decode(f.continuation()), o.text());
            }
        }
    }

    @Test
    void aBatchGivesEachPromptWhatItGetsAlone() throws IOException {
        Generator g = new Generator(model, tokenizer);
        List<Generator.Request> requests = new ArrayList<>();
        int i = 0;
        for (GoldenFixtures.Fixture f : GoldenFixtures.all()) {
            // greedy, and sampled with each its own seed, top-k and top-p; different budgets
            requests.add(greedy(f.promptIds(), 20 + 7 * i));
            requests.add(new Generator.Request(f.promptIds(), 30, new Sampling(0.9, 20, 0.95, 100 + i), List.of()));
            i++;
        }
        Generator.Result batched = g.generate(requests, Generator.Listener.NONE);
        for (int k = 0; k < requests.size(); k++) {
            Generator.Request r = requests.get(k);
            Generator.Output alone = g.generate(List.of(r), Generator.Listener.NONE).outputs().getFirst();
            Generator.Output inBatch = batched.outputs().get(k);
            if (r.sampling().isGreedy()) {
                compareGreedy("request " + k, r.prompt(), alone.tokens(), inBatch.tokens());
            } else {
                assertArrayEquals(alone.tokens(), inBatch.tokens(), "request " + k + " (" + r.sampling() + ")");
            }
        }
        Generator.Stats s = batched.stats();
        assertEquals(requests.size(), s.sequences());
        long prompts = requests.stream().mapToLong(r -> r.prompt().length).sum();
        assertEquals(prompts, s.promptTokens());
        long generated = batched.outputs().stream().mapToLong(o -> o.tokens().length).sum();
        assertEquals(generated, s.generatedTokens());
        assertEquals(generated - requests.size(), s.decodeTokens()); // each sequence's first token comes from its prompt
        assertTrue(s.cachePeakBytes() > 0 && s.cacheBytesPerToken() == 4 * 2 * 2 * 64 * 4, s.toString());
    }

    @Test
    void seedsReproduceAndStopStringsCutTheText() {
        Generator g = new Generator(model, tokenizer);
        int[] prompt = tokenizer.encode("The jury said");
        Sampling s = new Sampling(1.0, 0, 1, 1234);
        Generator.Output a = g.generate(List.of(new Generator.Request(prompt, 60, s, List.of())), Generator.Listener.NONE).outputs().getFirst();
        Generator.Output b = g.generate(List.of(new Generator.Request(prompt, 60, s, List.of())), Generator.Listener.NONE).outputs().getFirst();
        assertArrayEquals(a.tokens(), b.tokens());
        // a stop string taken from the text itself: the output ends right before its first occurrence
        String text = a.text();
        assertTrue(text.length() > 12, text);
        String stop = text.substring(8, 11);
        List<String> streamed = new ArrayList<>();
        Generator.Output c = g.generate(List.of(new Generator.Request(prompt, 60, s, List.of(stop))),
                (request, token, t) -> streamed.add(t)).outputs().getFirst();
        assertEquals(text.substring(0, text.indexOf(stop)), c.text());
        assertEquals(Generator.Finish.STOP_STRING, c.finish());
        assertEquals(c.text(), String.join("", streamed));
        assertArrayEquals(Arrays.copyOf(a.tokens(), c.tokens().length), c.tokens());
    }

    @Test
    void sequencesStopAtTheContextAndTheirBudget() {
        Generator g = new Generator(model, tokenizer);
        int context = model.config().maxPositions();
        int[] nearlyFull = new int[context - 3];
        Arrays.fill(nearlyFull, 1, nearlyFull.length, 'a');
        nearlyFull[0] = 256;
        int[] full = new int[context];
        Arrays.fill(full, 'b');
        Generator.Result r = g.generate(List.of(greedy(nearlyFull, 100), greedy(full, 100), greedy(tokenizer.encode("x"), 0),
                greedy(tokenizer.encode("y"), 5)), Generator.Listener.NONE);
        assertEquals(3, r.outputs().get(0).tokens().length);
        assertEquals(Generator.Finish.CONTEXT, r.outputs().get(0).finish());
        assertEquals(0, r.outputs().get(1).tokens().length);
        assertEquals(Generator.Finish.CONTEXT, r.outputs().get(1).finish());
        assertEquals(0, r.outputs().get(2).tokens().length);
        assertEquals(Generator.Finish.MAX_TOKENS, r.outputs().get(2).finish());
        Generator.Output y = r.outputs().get(3);
        assertTrue(y.finish() == Generator.Finish.MAX_TOKENS ? y.tokens().length == 5 : y.finish() == Generator.Finish.EOS, y.toString());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> g.generate(List.of(greedy(new int[context + 1], 1)), Generator.Listener.NONE));
        assertEquals("prompt 0 has 257 tokens; the model's context is 256 (max_position_embeddings)", e.getMessage());
    }

    @Test
    void aPromptLongerThanOneStepIsPrefilledInChunks() {
        // a random model with a long context: 2,100 prompt tokens take two prefill steps (2,048 + 52)
        dev.headroom.model.llama.LlamaConfig c = new dev.headroom.model.llama.LlamaConfig(32, 48, 2, 2, 1, 16, 1e-5, 10000, 260,
                4096, true, false, 256, new int[]{257});
        try (TrackedArena arena = TrackedArena.ofShared();
             LlamaModel random = new LlamaModel(dev.headroom.model.llama.LlamaWeights.fromStateDict(c,
                     dev.headroom.model.llama.RandomWeights.of(c, 4, arena)), 2)) {
            java.util.SplittableRandom rnd = new java.util.SplittableRandom(1);
            int[] prompt = new int[2100];
            prompt[0] = 256;
            for (int i = 1; i < prompt.length; i++) prompt[i] = rnd.nextInt(32, 127);
            Generator.Result r = new Generator(random, ByteTokenizer.of(c)).generate(List.of(greedy(prompt, 1)), Generator.Listener.NONE);
            assertEquals(2100, r.stats().promptTokens());
            Tensor logits = random.logits(prompt, arena);
            float[] last = new float[260];
            for (int j = 0; j < 260; j++) last[j] = logits.get((long) (prompt.length - 1) * 260 + j);
            assertEquals(Sampler.argmax(last), r.outputs().getFirst().tokens()[0]);
        }
    }

    @Test
    void aSharedCacheReusesAPromptPrefix() {
        Generator g = new Generator(model, tokenizer);
        int[] prompt = tokenizer.encode("After the meeting on Tuesday, the committee said that the new budget would be sent to the Governor.");
        try (KvCache cache = model.newCache(Generator.BLOCK_SIZE, KvDtype.F32, 8L << 20)) {
            Generator.Result first = g.generate(cache, List.of(greedy(prompt, 10)), Generator.Listener.NONE);
            Generator.Result second = g.generate(cache, List.of(greedy(prompt, 10)), Generator.Listener.NONE);
            assertEquals(prompt.length, first.stats().promptTokens());
            // every whole block of the prompt but the one holding its last token came from the cache
            assertEquals(prompt.length - (prompt.length - 1) / Generator.BLOCK_SIZE * Generator.BLOCK_SIZE, second.stats().promptTokens());
            compareGreedy("reused prefix", prompt, first.outputs().getFirst().tokens(), second.outputs().getFirst().tokens());
            assertEquals(0, cache.sequences());
        }
    }

    @Test
    void aRefusedRequestLeavesNoSequenceInASharedCache() {
        Generator g = new Generator(model, tokenizer);
        try (KvCache cache = model.newCache(Generator.BLOCK_SIZE, KvDtype.F32, 1L << 20)) {
            List<Generator.Request> requests = List.of(greedy(tokenizer.encode("fine"), 3),
                    new Generator.Request(tokenizer.encode("bad stop"), 3, Sampling.greedy(), List.of("")));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> g.generate(cache, requests, Generator.Listener.NONE));
            assertEquals("stop strings must not be empty", e.getMessage());
            assertEquals(0, cache.sequences());
            assertEquals(0, cache.stats().usedBlocks());
        }
    }
}
