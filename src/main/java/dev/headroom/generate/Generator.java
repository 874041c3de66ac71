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

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
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
 */
public final class Generator {
    /** At most this many prompt tokens go through the model in one prefill step (bounds the step's scratch). */
    public static final int MAX_STEP_TOKENS = 2048;
    /** Tokens per KV cache block. */
    public static final int BLOCK_SIZE = 16;
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

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
        Seq[] seqs = new Seq[n];
        long promptTokens = 0, generated = 0, decodeTokens = 0, peak = 0;
        double prefillSeconds = 0, decodeSeconds = 0;
        try (TrackedArena arena = TrackedArena.ofShared(); DecoderWorkspace ws = new DecoderWorkspace()) {
            for (int i = 0; i < n; i++) {
                int id = cache.create(requests.get(i).prompt());
                seqs[i] = new Seq(i, requests.get(i), id, cache.length(id));
            }
            /* logits: (rows, V), one row per sequence that samples in a step. */
            Tensor logitBuffer = Tensor.allocate(arena, Math.max(1, n), V);
            float[] row = new float[V];

            // prefill: every prompt's uncached tokens, in steps of at most MAX_STEP_TOKENS
            long t0 = System.nanoTime();
            for (Seq s : seqs) { // sequences that cannot generate anything are not prefilled
                if (s.maxTokens == 0) s.finish(Finish.MAX_TOKENS, listener);
                else if (s.prompt.length >= config.maxPositions()) s.finish(Finish.CONTEXT, listener);
            }
            while (true) {
                List<Seq> in = new ArrayList<>();
                List<Integer> counts = new ArrayList<>();
                int budget = MAX_STEP_TOKENS;
                for (Seq s : seqs) {
                    int remaining = s.prompt.length - s.cached;
                    if (s.finished || remaining == 0 || budget == 0) continue;
                    int c = Math.min(remaining, budget);
                    in.add(s);
                    counts.add(c);
                    budget -= c;
                }
                if (in.isEmpty()) break;
                int[] ids = new int[MAX_STEP_TOKENS - budget], seqIds = new int[in.size()], cs = new int[in.size()];
                int[][] stepIds = new int[in.size()][];
                List<Integer> sampleRows = new ArrayList<>();
                List<Seq> sampling = new ArrayList<>();
                for (int k = 0, r = 0; k < in.size(); k++) {
                    Seq s = in.get(k);
                    cs[k] = counts.get(k);
                    seqIds[k] = s.id;
                    stepIds[k] = Arrays.copyOfRange(s.prompt, s.cached, s.cached + cs[k]);
                    System.arraycopy(stepIds[k], 0, ids, r, cs[k]);
                    r += cs[k];
                    s.cached += cs[k];
                    if (s.cached == s.prompt.length && !s.finished) {
                        sampleRows.add(r - 1);
                        sampling.add(s);
                    }
                }
                KvCache.Step step = cache.step(seqIds, cs, stepIds);
                promptTokens += ids.length;
                int[] rows = sampleRows.stream().mapToInt(Integer::intValue).toArray();
                Tensor logits = view(logitBuffer, rows.length, V);
                model.forward(cache, step, ids, rows, logits, ws, LlamaModel.LayerHooks.NONE);
                for (int k = 0; k < rows.length; k++) {
                    copyRow(logits, k, row);
                    sampling.get(k).accept(sampling.get(k).sampler.next(row), listener);
                    generated++;
                }
                peak = Math.max(peak, cache.stats().usedBytes());
            }
            long t1 = System.nanoTime();
            prefillSeconds = (t1 - t0) / 1e9;

            // decode: one token per unfinished sequence per step
            while (true) {
                List<Seq> active = new ArrayList<>();
                for (Seq s : seqs) if (!s.finished) active.add(s);
                if (active.isEmpty()) break;
                int m = active.size();
                int[] seqIds = new int[m], ones = new int[m], ids = new int[m];
                int[][] stepIds = new int[m][];
                for (int k = 0; k < m; k++) {
                    Seq s = active.get(k);
                    seqIds[k] = s.id;
                    ones[k] = 1;
                    ids[k] = s.last();
                    stepIds[k] = new int[]{ids[k]};
                }
                KvCache.Step step = cache.step(seqIds, ones, stepIds);
                Tensor logits = view(logitBuffer, m, V);
                model.forward(cache, step, ids, null, logits, ws, LlamaModel.LayerHooks.NONE);
                decodeTokens += m;
                for (int k = 0; k < m; k++) {
                    copyRow(logits, k, row);
                    active.get(k).accept(active.get(k).sampler.next(row), listener);
                    generated++;
                }
                peak = Math.max(peak, cache.stats().usedBytes());
            }
            decodeSeconds = (System.nanoTime() - t1) / 1e9;
        } finally {
            for (Seq s : seqs) if (s != null) cache.free(s.id);
        }
        List<Output> outputs = new ArrayList<>();
        for (Seq s : seqs) outputs.add(new Output(s.tokens.stream().mapToInt(Integer::intValue).toArray(), s.text.text(), s.finish));
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

    /** The first {@code rows} rows of a (capacity, V) buffer as a (rows, V) tensor. */
    private static Tensor view(Tensor buffer, int rows, int V) {
        return Tensor.wrap(buffer.segment().asSlice(0, (long) rows * V * Float.BYTES), rows, V);
    }

    private static void copyRow(Tensor logits, int r, float[] row) {
        MemorySegment.copy(logits.segment(), F, (long) r * row.length * Float.BYTES, row, 0, row.length);
    }

    /** One request's sequence: its cache id, progress, tokens, text and sampler. */
    private final class Seq {
        final int index, id;
        final int[] prompt;
        final int maxTokens;
        final Sampler sampler;
        final ByteTokenizer.Stream bytes = tokenizer.stream();
        final StopText text;
        final List<Integer> tokens = new ArrayList<>();
        /** Prompt tokens in the cache (reused from an earlier sequence, or put through prefill). */
        int cached;
        boolean finished;
        Finish finish;

        Seq(int index, Request r, int id, int cached) {
            this.index = index;
            this.id = id;
            this.prompt = r.prompt();
            this.maxTokens = r.maxTokens();
            this.sampler = new Sampler(r.sampling());
            this.text = new StopText(r.stops());
            this.cached = cached;
        }

        int last() {
            return tokens.getLast();
        }

        /** Records a sampled token, streams its text, and ends the sequence if the token ends it. */
        void accept(int token, Listener listener) {
            tokens.add(token);
            String released = text.add(bytes.accept(token));
            listener.token(index, token, released);
            if (config.isEos(token) || tokenizer.isEos(token)) finish(Finish.EOS, listener);
            else if (text.stopped()) finish(Finish.STOP_STRING, listener);
            else if (tokens.size() >= maxTokens) finish(Finish.MAX_TOKENS, listener);
            else if (prompt.length + tokens.size() >= config.maxPositions()) finish(Finish.CONTEXT, listener);
        }

        void finish(Finish why, Listener listener) {
            if (finished) return;
            finished = true;
            finish = why;
            String rest = text.add(bytes.finish());
            rest += text.finish();
            if (!rest.isEmpty()) listener.token(index, -1, rest);
        }
    }

}
