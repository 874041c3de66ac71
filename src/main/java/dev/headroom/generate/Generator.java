package dev.headroom.generate;

import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.DecoderWorkspace;
import dev.headroom.model.llama.LlamaConfig;
import dev.headroom.model.llama.LlamaModel;
import dev.headroom.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Text generation with a {@link LlamaModel} over a paged {@link KvCache}, for one prompt or many
 * at once (a ragged batch: each prompt its own length, sampling, stop strings and budget):
 * <pre>
 *   prefill:  the prompts' tokens go through the model in steps of at most {@value #MAX_STEP_TOKENS}
 *             tokens (a long prompt is cut into chunks); each prompt's last position gives its first token
 *   decode:   one step per token: every unfinished sequence feeds its last token, one row each,
 *             and samples the next from that row's logits
 * </pre>
 * until each sequence meets an end token of the model ({@code eos_token_id}), one of its stop
 * strings, its token budget, or the model's context ({@code max_position_embeddings}: a
 * sequence never grows past it). Each sequence samples with its own seeded random numbers, so
 * a prompt gets the same tokens alone as in a batch, as long as its logits are the same: they
 * agree to float rounding, not bitwise (OpenBLAS picks its kernels by the shape of a product and
 * the decode attention splits long contexts by the batch's total keys), which can flip a near
 * tie between two tokens.
 *
 * <p>Text is streamed to a {@link Listener} per token: bytes become characters only once a
 * character is complete, and text that might begin a stop string is held back until it cannot.
 *
 * <p>Each sequence's state is a {@link Decoding} and each model step a {@link StepBatch}: the
 * pieces a scheduler that admits and retires sequences between steps drives as this loop does
 * ({@code dev.headroom.serve.Engine}).
 */
public final class Generator {
    /** At most this many prompt tokens go through the model in one prefill step (bounds the step's scratch). */
    public static final int MAX_STEP_TOKENS = 2048;
    /** Tokens per KV cache block. */
    public static final int BLOCK_SIZE = 16;

    /** Why a sequence ended. */
    public enum Finish {
        /** it sampled one of the model's end tokens (kept in the tokens, not in the text) */
        EOS,
        /** its text reached one of its stop strings (which is not in the text) */
        STOP_STRING,
        /** it generated {@code maxTokens} tokens */
        MAX_TOKENS,
        /** prompt and generated tokens filled the model's context */
        CONTEXT
    }

    /**
     * One prompt to continue.
     *
     * @param prompt    its token ids (with {@code <bos>} when the model expects one), at least one
     * @param maxTokens at most this many tokens are generated
     * @param sampling  how tokens are chosen
     * @param stops     stop strings (none: empty)
     */
    public record Request(int[] prompt, int maxTokens, Sampling sampling, List<String> stops) {
        public Request {
            if (prompt == null || prompt.length == 0) throw new IllegalArgumentException("a prompt needs at least one token");
            if (maxTokens < 0) throw new IllegalArgumentException("maxTokens must be >= 0, got " + maxTokens);
            if (sampling == null) throw new IllegalArgumentException("sampling must be given (Sampling.greedy() for argmax)");
            prompt = prompt.clone();
            stops = List.copyOf(stops == null ? List.of() : stops);
        }

        @Override
        public int[] prompt() {
            return prompt.clone();
        }
    }

    /** A sequence's result: the tokens it generated, their text (up to a stop string), and why it ended. */
    public record Output(int[] tokens, String text, Finish finish) {}

    /**
     * The run's figures.
     *
     * @param promptTokens     prompt tokens put through the model (tokens found in the cache excluded)
     * @param prefillSeconds   wall time of the prefill steps, sampling of the first tokens included
     * @param generatedTokens  tokens sampled, over all sequences
     * @param decodeTokens     tokens fed through decode steps (each gives its sequence's next token)
     * @param decodeSeconds    wall time of the decode steps, sampling included
     * @param cachePeakBytes   the most cache memory the sequences used at once (whole blocks)
     * @param cacheBytesPerToken bytes one cached token takes, over all layers, keys and values
     */
    public record Stats(int sequences, long promptTokens, double prefillSeconds, long generatedTokens, long decodeTokens,
                        double decodeSeconds, long cachePeakBytes, double cacheBytesPerToken) {
        public double promptTokensPerSecond() {
            return prefillSeconds > 0 ? promptTokens / prefillSeconds : Double.NaN;
        }

        /** Decode-step tokens per second: the rate at which tokens after each sequence's first are produced. */
        public double generatedTokensPerSecond() {
            return decodeSeconds > 0 ? decodeTokens / decodeSeconds : Double.NaN;
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "%d sequence%s; prompt: %d tokens in %.3f s (%.0f tokens/s); generation: %d tokens, "
                            + "%d through decode steps in %.3f s (%.0f tokens/s); KV cache: %s at most (%.0f bytes per token)",
                    sequences, sequences == 1 ? "" : "s", promptTokens, prefillSeconds, promptTokensPerSecond(), generatedTokens,
                    decodeTokens, decodeSeconds, generatedTokensPerSecond(), OffHeap.format(cachePeakBytes), cacheBytesPerToken);
        }
    }

    public record Result(List<Output> outputs, Stats stats) {}

    /** Told each sampled token and the text it releases. */
    @FunctionalInterface
    public interface Listener {
        Listener NONE = (request, token, text) -> {};

        /**
         * Request {@code request} sampled {@code token}, which releases {@code text}: often "" (a
         * character not yet complete, text held back for a stop string, a special token). When a
         * sequence ends with text still held, it is released with {@code token} −1.
         */
        void token(int request, int token, String text);
    }

    private final LlamaModel model;
    private final LlamaConfig config;
    private final ByteTokenizer tokenizer;
    /** How the cache that {@link #generate(List, Listener)} makes stores keys and values. */
    private final KvDtype cacheDtype;

    /** A generator whose own caches store float32. */
    public Generator(LlamaModel model, ByteTokenizer tokenizer) {
        this(model, tokenizer, KvDtype.F32);
    }

    private Generator(LlamaModel model, ByteTokenizer tokenizer, KvDtype cacheDtype) {
        this.model = model;
        this.config = model.config();
        if (tokenizer.vocabSize() != config.vocabSize()) {
            throw new IllegalArgumentException("the tokenizer has " + tokenizer.vocabSize() + " ids, the model " + config.vocabSize());
        }
        this.tokenizer = tokenizer;
        this.cacheDtype = cacheDtype;
    }

    /** The same generator with caches of {@code dtype} (float16 halves the cache, int8 with its scales takes about a quarter). */
    public Generator withCacheDtype(KvDtype dtype) {
        return new Generator(model, tokenizer, dtype);
    }

    /** Bytes of KV cache the requests need at most (each to its budget or the context), in whole blocks. */
    public long cacheBytesFor(List<Request> requests) {
        KvCache.Shape shape = model.cacheShape(BLOCK_SIZE, cacheDtype);
        long bytes = 0;
        for (Request r : requests) {
            bytes += KvCache.bytesFor(shape, 1, Math.min((long) r.prompt().length + r.maxTokens(), config.maxPositions()));
        }
        return Math.max(bytes, shape.blockBytes());
    }

    /** Generates for every request in a cache of exactly the size they need ({@link #cacheBytesFor}), freed at the end. */
    public Result generate(List<Request> requests, Listener listener) {
        try (KvCache cache = new KvCache(model.cacheShape(BLOCK_SIZE, cacheDtype), cacheBytesFor(requests))) {
            return generate(cache, requests, listener);
        }
    }

    /**
     * Generates in the caller's cache: each request starts a sequence on the longest prefix of its
     * prompt the cache already holds ({@link KvCache#create(int[])}) and frees it at the end (its
     * full blocks stay registered for reuse). A {@link dev.headroom.cache.KvCacheFullException}
     * propagates when the cache cannot hold a step.
     */
    public Result generate(KvCache cache, List<Request> requests, Listener listener) {
        int n = requests.size(), V = config.vocabSize();
        for (int i = 0; i < n; i++) check(i, requests.get(i));
        Decoding[] seqs = new Decoding[n];
        int[] ids = new int[n];
        Decoding.Sink[] sinks = new Decoding.Sink[n];
        long promptTokens = 0, generated = 0, decodeTokens = 0, peak = 0;
        double prefillSeconds, decodeSeconds;
        try (TrackedArena arena = TrackedArena.ofShared(); DecoderWorkspace ws = new DecoderWorkspace()) {
            for (int i = 0; i < n; i++) {
                int index = i;
                seqs[i] = new Decoding(requests.get(i), config, tokenizer); // before create: a bad stop string leaves no sequence
                ids[i] = cache.create(requests.get(i).prompt());
                seqs[i].setCached(cache.length(ids[i]));
                sinks[i] = (token, text) -> listener.token(index, token, text);
            }
            /* logits: (rows, V), one row per sequence that samples in a step. */
            Tensor logitBuffer = Tensor.allocate(arena, Math.max(1, n), V);
            float[] row = new float[V];

            // prefill: every prompt's uncached tokens, in steps of at most MAX_STEP_TOKENS
            long t0 = System.nanoTime();
            for (int i = 0; i < n; i++) { // sequences that cannot generate anything are not prefilled
                Finish early = seqs[i].finishBeforeStart();
                if (early != null) seqs[i].finish(early, sinks[i]);
            }
            while (true) {
                StepBatch batch = new StepBatch();
                List<Integer> sampling = new ArrayList<>();
                int budget = MAX_STEP_TOKENS;
                for (int i = 0; i < n && budget > 0; i++) {
                    Decoding s = seqs[i];
                    int remaining = s.promptLength() - s.cached(); // prompt tokens only: sampled ones go through decode
                    if (s.finished() || remaining == 0) continue;
                    int c = Math.min(remaining, budget);
                    budget -= c;
                    boolean sample = c == remaining;
                    batch.add(ids[i], s.feed(c), sample);
                    if (sample) sampling.add(i);
                }
                if (batch.isEmpty()) break;
                KvCache.Step step = batch.reserve(cache);
                promptTokens += batch.tokens();
                batch.forward(model, cache, step, logitBuffer, ws);
                for (int k = 0; k < sampling.size(); k++) {
                    Decoding s = seqs[sampling.get(k)];
                    batch.logits(k, row);
                    s.accept(s.sample(row), sinks[sampling.get(k)]);
                    generated++;
                }
                peak = Math.max(peak, cache.stats().usedBytes());
            }
            long t1 = System.nanoTime();
            prefillSeconds = (t1 - t0) / 1e9;

            // decode: one token per unfinished sequence per step
            while (true) {
                StepBatch batch = new StepBatch();
                List<Integer> active = new ArrayList<>();
                for (int i = 0; i < n; i++) {
                    if (seqs[i].finished()) continue;
                    active.add(i);
                    batch.add(ids[i], seqs[i].feed(1), true);
                }
                if (batch.isEmpty()) break;
                KvCache.Step step = batch.reserve(cache);
                batch.forward(model, cache, step, logitBuffer, ws);
                decodeTokens += active.size();
                for (int k = 0; k < active.size(); k++) {
                    Decoding s = seqs[active.get(k)];
                    batch.logits(k, row);
                    s.accept(s.sample(row), sinks[active.get(k)]);
                    generated++;
                }
                peak = Math.max(peak, cache.stats().usedBytes());
            }
            decodeSeconds = (System.nanoTime() - t1) / 1e9;
        } finally {
            for (int id : ids) if (id != 0) cache.free(id); // sequence ids start at 1
        }
        List<Output> outputs = new ArrayList<>();
        for (Decoding s : seqs) outputs.add(s.output());
        Stats stats = new Stats(n, promptTokens, prefillSeconds, generated, decodeTokens, decodeSeconds, peak,
                cache.shape().bytesPerToken());
        return new Result(outputs, stats);
    }

    private void check(int i, Request r) {
        int[] p = r.prompt();
        if (p.length > config.maxPositions()) {
            throw new IllegalArgumentException("prompt " + i + " has " + p.length + " tokens; the model's context is "
                    + config.maxPositions() + " (max_position_embeddings)");
        }
        for (int k = 0; k < p.length; k++) {
            if (p[k] < 0 || p[k] >= config.vocabSize()) {
                throw new IllegalArgumentException("prompt " + i + ": token id " + p[k] + " at " + k + " is outside the vocabulary of "
                        + config.vocabSize());
            }
        }
    }
}
