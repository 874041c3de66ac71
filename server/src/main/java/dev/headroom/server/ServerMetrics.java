package dev.headroom.server;

import dev.headroom.cache.KvCache;
import dev.headroom.serve.EmbeddingBatcher;
import dev.headroom.serve.Engine;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.CounterWithCallback;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.prometheus.metrics.model.snapshots.Unit;

import java.io.IOException;
import java.io.OutputStream;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * The server's Prometheus metrics (prefix {@code headroom_}), in a registry of its own, written in
 * the text format at {@code /metrics}. Counts that the engine, the cache and the embedding batcher
 * keep are read from them at scrape time (callbacks), so there is one source of truth; latencies
 * are observed as they happen.
 */
final class ServerMetrics {
    /** Time to first token: 5 ms to 60 s. */
    private static final double[] TTFT_BOUNDS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    /** Time between two tokens of a stream: 1 ms to 10 s. */
    private static final double[] ITL_BOUNDS = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5, 5, 10};
    /** Request and step durations: 1 ms to 5 min. */
    private static final double[] DURATION_BOUNDS = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
    /** Seconds of history behind the tokens-per-second gauge. */
    static final int RATE_WINDOW = 10;

    final PrometheusRegistry registry = new PrometheusRegistry();
    private final PrometheusTextFormatWriter writer = PrometheusTextFormatWriter.create();
    final Counter requests;
    final Histogram timeToFirstToken, interTokenLatency, requestDuration, stepDuration, stepTokens, embeddingBatchSize;
    /** Tokens sampled per second of the clock, in a ring of RATE_WINDOW + 1 seconds: [second % n] holds (second, count). */
    private final AtomicLongArray rateSeconds = new AtomicLongArray(RATE_WINDOW + 1), rateCounts = new AtomicLongArray(RATE_WINDOW + 1);

    ServerMetrics(Engine engine, EmbeddingBatcher embeddings) {
        requests = Counter.builder().name("headroom_http_requests_total").help("HTTP requests by endpoint and status code")
                .labelNames("endpoint", "code").register(registry);
        timeToFirstToken = Histogram.builder().name("headroom_time_to_first_token_seconds").unit(Unit.SECONDS)
                .help("From a completion request's arrival to its first generated token (queueing and prefill included)")
                .classicUpperBounds(TTFT_BOUNDS).classicOnly().withoutExemplars().register(registry);
        interTokenLatency = Histogram.builder().name("headroom_inter_token_latency_seconds").unit(Unit.SECONDS)
                .help("Between two consecutive generated tokens of one sequence").classicUpperBounds(ITL_BOUNDS).classicOnly()
                .withoutExemplars().register(registry);
        requestDuration = Histogram.builder().name("headroom_request_duration_seconds").unit(Unit.SECONDS)
                .help("From a request's arrival to its last byte, by endpoint").labelNames("endpoint")
                .classicUpperBounds(DURATION_BOUNDS).classicOnly().withoutExemplars().register(registry);
        stepDuration = Histogram.builder().name("headroom_engine_step_duration_seconds").unit(Unit.SECONDS)
                .help("Wall time of one engine step (plan, forward, sample)").classicUpperBounds(DURATION_BOUNDS).classicOnly()
                .withoutExemplars().register(registry);
        stepTokens = Histogram.builder().name("headroom_engine_step_tokens").help("Tokens fed through the model per step (decode + prefill)")
                .classicUpperBounds(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048).classicOnly().withoutExemplars().register(registry);
        embeddingBatchSize = Histogram.builder().name("headroom_embedding_request_inputs")
                .help("Inputs per embeddings request").classicUpperBounds(1, 2, 4, 8, 16, 32, 64, 128, 512, 2048)
                .classicOnly().withoutExemplars().register(registry);

        GaugeWithCallback.builder().name("headroom_queue_length").help("Completion requests waiting for KV cache memory (preempted ones included)")
                .callback(cb -> cb.call(engine.snapshot().waiting())).register(registry);
        GaugeWithCallback.builder().name("headroom_running_sequences").help("Sequences in the running batch")
                .callback(cb -> cb.call(engine.snapshot().running())).register(registry);
        GaugeWithCallback.builder().name("headroom_generation_tokens_per_second")
                .help("Tokens generated per second over the last " + RATE_WINDOW + " whole seconds")
                .callback(cb -> cb.call(tokensPerSecond())).register(registry);
        GaugeWithCallback.builder().name("headroom_kv_blocks")
                .help("KV cache blocks by state: used (referenced by a sequence), shared (by more than one), cached (a registered "
                        + "prefix nobody uses, evictable), free (holding nothing), capacity")
                .labelNames("state").callback(cb -> {
                    KvCache.Stats s = engine.cacheStats();
                    cb.call(s.usedBlocks(), "used");
                    cb.call(s.sharedBlocks(), "shared");
                    cb.call(s.cachedBlocks(), "cached");
                    cb.call(s.freeBlocks(), "free");
                    cb.call(s.capacityBlocks(), "capacity");
                }).register(registry);
        GaugeWithCallback.builder().name("headroom_kv_block_bytes").help("Bytes of one KV cache block").unit(Unit.BYTES)
                .callback(cb -> cb.call(engine.cacheStats().blockBytes())).register(registry);
        CounterWithCallback.builder().name("headroom_completion_requests").help("Completion sequences by outcome")
                .labelNames("outcome").callback(cb -> {
                    Engine.Snapshot s = engine.snapshot();
                    cb.call(s.submitted(), "submitted");
                    cb.call(s.finished(), "finished");
                    cb.call(s.cancelled(), "cancelled");
                    cb.call(s.failed(), "failed");
                    cb.call(s.refused(), "refused");
                }).register(registry);
        CounterWithCallback.builder().name("headroom_generated_tokens").help("Tokens sampled")
                .callback(cb -> cb.call(engine.snapshot().generatedTokens())).register(registry);
        CounterWithCallback.builder().name("headroom_computed_tokens")
                .help("Tokens put through the model: prompts, recomputation after preemption, and decode")
                .callback(cb -> cb.call(engine.snapshot().computedTokens())).register(registry);
        CounterWithCallback.builder().name("headroom_prefix_reused_tokens").help("Prompt tokens found in the KV cache at admission")
                .callback(cb -> cb.call(engine.snapshot().reusedTokens())).register(registry);
        CounterWithCallback.builder().name("headroom_preemptions").help("Sequences preempted for memory (recomputed later)")
                .callback(cb -> cb.call(engine.snapshot().preemptions())).register(registry);
        CounterWithCallback.builder().name("headroom_engine_steps").help("Engine steps run")
                .callback(cb -> cb.call(engine.snapshot().steps())).register(registry);
        CounterWithCallback.builder().name("headroom_embedding_inputs").help("Inputs embedded")
                .callback(cb -> cb.call(embeddings.stats().sentences())).register(registry);
        CounterWithCallback.builder().name("headroom_embedding_batches").help("Encoder calls of the dynamic batcher")
                .callback(cb -> cb.call(embeddings.stats().batches())).register(registry);
        GaugeWithCallback.builder().name("headroom_embedding_pending_inputs").help("Inputs waiting for the embedding batcher")
                .callback(cb -> cb.call(embeddings.stats().pendingSentences())).register(registry);
    }

    /** Called on the engine thread after each step. */
    void step(Engine.StepInfo s) {
        stepDuration.observe(s.nanos() / 1e9);
        stepTokens.observe(s.decodeRows() + s.prefillTokens());
        count(s.sampled());
    }

    private void count(int tokens) {
        long second = System.currentTimeMillis() / 1000;
        int slot = (int) (second % rateSeconds.length());
        if (rateSeconds.get(slot) != second) { // a new second: restart its slot (one writer: the engine thread)
            rateCounts.set(slot, 0);
            rateSeconds.set(slot, second);
        }
        rateCounts.addAndGet(slot, tokens);
    }

    /** Tokens per second over the last RATE_WINDOW whole seconds (the current one is still filling). */
    double tokensPerSecond() {
        long now = System.currentTimeMillis() / 1000, sum = 0;
        for (int i = 0; i < rateSeconds.length(); i++) {
            long s = rateSeconds.get(i);
            if (s < now && s >= now - RATE_WINDOW) sum += rateCounts.get(i);
        }
        return (double) sum / RATE_WINDOW;
    }

    String contentType() {
        return writer.getContentType();
    }

    void write(OutputStream out) throws IOException {
        writer.write(out, registry.scrape());
    }
}
