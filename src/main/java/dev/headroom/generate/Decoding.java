package dev.headroom.generate;

import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.LlamaConfig;

import java.util.Arrays;

/**
 * One sequence being generated: its prompt, the tokens sampled so far, its sampler (with the
 * sequence's own random numbers), its text as it streams (whole characters only, stop strings
 * held back) and, once it ends, why. What {@link Generator} runs for each request, and what a
 * scheduler that drives the model step by step keeps per request (see {@code dev.headroom.serve}).
 *
 * <p>The <b>context</b> is the prompt followed by the sampled tokens; {@link #cached()} of its
 * tokens are in the KV cache. The rest, {@link #pending()}, must go through the model before the
 * next token is sampled: the prompt's tokens in prefill, the last sampled token in decode, or the
 * whole context again after the sequence's cache was freed (preemption: recomputed, not resumed
 * from copies). Each step takes some pending tokens ({@link #feed}); when none are left, the
 * logits of the last one give the next token ({@link #accept}).
 *
 * <p>Not thread-safe: one thread drives a sequence.
 */
public final class Decoding {
    /** Told the text each token releases (see {@link Generator.Listener#token}). */
    @FunctionalInterface
    public interface Sink {
        Sink NONE = (token, text) -> {};

        /** {@code token} released {@code text} (often ""); −1 when a finished sequence releases the text it held. */
        void token(int token, String text);
    }

    private final LlamaConfig config;
    private final ByteTokenizer tokenizer;
    private final int[] prompt;
    private final int maxTokens;
    private final Sampler sampler;
    private final ByteTokenizer.Stream bytes;
    private final StopText text;
    /** Sampled tokens, the first {@code generated} of them. */
    private int[] tokens = new int[16];
    private int generated;
    /** Tokens of the context in the KV cache (reused from an earlier sequence, or put through the model). */
    private int cached;
    private Generator.Finish finish;

    /** A sequence for {@code request} of a model with {@code config} and {@code tokenizer}'s vocabulary. */
    public Decoding(Generator.Request request, LlamaConfig config, ByteTokenizer tokenizer) {
        this.config = config;
        this.tokenizer = tokenizer;
        this.prompt = request.prompt();
        this.maxTokens = request.maxTokens();
        this.sampler = new Sampler(request.sampling());
        this.bytes = tokenizer.stream();
        this.text = new StopText(request.stops());
    }

    public int[] prompt() {
        return prompt.clone();
    }

    public int promptLength() {
        return prompt.length;
    }

    /** The tokens sampled so far. */
    public int[] tokens() {
        return Arrays.copyOf(tokens, generated);
    }

    public int generated() {
        return generated;
    }

    /** Prompt and sampled tokens. */
    public int contextLength() {
        return prompt.length + generated;
    }

    /** The prompt followed by the sampled tokens. */
    public int[] context() {
        int[] c = Arrays.copyOf(prompt, contextLength());
        System.arraycopy(tokens, 0, c, prompt.length, generated);
        return c;
    }

    /** Tokens of the context in the cache. */
    public int cached() {
        return cached;
    }

    /** Says that the cache holds the first {@code n} tokens of the context (prefix reuse; 0 after the cache was freed). */
    public void setCached(int n) {
        if (n < 0 || n > contextLength()) throw new IllegalArgumentException("cached tokens " + n + " outside [0, " + contextLength() + "]");
        cached = n;
    }

    /** Tokens of the context not yet in the cache. */
    public int pending() {
        return contextLength() - cached;
    }

    /**
     * The next {@code n} pending tokens, counted as cached from now on (the caller puts them in a
     * step); after the last pending token, that step's logits for it give the next token.
     */
    public int[] feed(int n) {
        if (n < 1 || n > pending()) throw new IllegalArgumentException("cannot feed " + n + " of " + pending() + " pending tokens");
        int[] out = new int[n];
        for (int k = 0; k < n; k++) {
            int i = cached + k;
            out[k] = i < prompt.length ? prompt[i] : tokens[i - prompt.length];
        }
        cached += n;
        return out;
    }

    /** Why the sequence cannot generate anything (its budget is 0, or its prompt fills the context), or null. */
    public Generator.Finish finishBeforeStart() {
        if (maxTokens == 0) return Generator.Finish.MAX_TOKENS;
        if (prompt.length >= config.maxPositions()) return Generator.Finish.CONTEXT;
        return null;
    }

    /** The next token for {@code logits} (one per vocabulary id), from this sequence's sampler. */
    public int sample(float[] logits) {
        return sampler.next(logits);
    }

    public Sampling sampling() {
        return sampler.sampling();
    }

    /** Records a sampled token, streams its text to {@code sink}, and ends the sequence if the token ends it. */
    public void accept(int token, Sink sink) {
        if (finish != null) throw new IllegalStateException("the sequence has finished (" + finish + ")");
        if (generated == tokens.length) tokens = Arrays.copyOf(tokens, 2 * tokens.length);
        tokens[generated++] = token;
        String released = text.add(bytes.accept(token));
        sink.token(token, released);
        if (config.isEos(token) || tokenizer.isEos(token)) finish(Generator.Finish.EOS, sink);
        else if (text.stopped()) finish(Generator.Finish.STOP_STRING, sink);
        else if (generated >= maxTokens) finish(Generator.Finish.MAX_TOKENS, sink);
        else if (prompt.length + generated >= config.maxPositions()) finish(Generator.Finish.CONTEXT, sink);
    }

    /** Ends the sequence (no-op if it has ended): text still held back that is not part of a stop string goes to {@code sink}. */
    public void finish(Generator.Finish why, Sink sink) {
        if (finish != null) return;
        finish = why;
        String rest = text.add(bytes.finish());
        rest += text.finish();
        if (!rest.isEmpty()) sink.token(-1, rest);
    }

    public boolean finished() {
        return finish != null;
    }

    /** Why it ended, or null while it runs. */
    public Generator.Finish finish() {
        return finish;
    }

    /** The text released so far (all of it once finished). */
    public String text() {
        return text.text();
    }

    /** Its result: tokens, text and why it ended. */
    public Generator.Output output() {
        return new Generator.Output(tokens(), text(), finish);
    }
}
