package dev.headroom.server;

import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import dev.headroom.blas.OpenBlas;
import dev.headroom.cli.DecoderOptions;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.minilm.EncoderWorkspace;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.report.Charts;
import dev.headroom.serve.Engine;
import dev.headroom.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintStream;
import java.lang.reflect.Field;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;

/**
 * {@code headroom serve-bench}: a closed-loop load on the server over loopback, the table of
 * throughput and latency against concurrency, a CSV and two PNG plots.
 * <ul>
 *   <li>completions: C clients each send streaming requests back to back (a random stretch of the
 *       built-in Brown sentences as prompt, {@code --prompt-chars} long; {@code --max-tokens};
 *       temperature 0.8, top-k 40, a seed per request), for {@code --duration} after a warm-up.
 *       Throughput is the completion tokens of every request sent in the window (from the usage
 *       chunk) over the time until the last of them ended. Time to first token is from sending
 *       to the first chunk with text; inter-token latency the gaps between chunks with text
 *       (one token each, but for characters of several bytes and text held for stop strings);</li>
 *   <li>embeddings: {@code --embedding-clients} clients each send one input of 128 tokens at a
 *       time (as EmbeddingBenchmark's length 128) back to back; requests per second and latency.
 *       The reference is measured in the same process before the load: MiniLmEncoder.embed of 32
 *       such inputs (EmbeddingBenchmark's batch 32, through the same call the server makes).</li>
 * </ul>
 * Without {@code --url} the server runs in this JVM on 127.0.0.1 (its default settings, or the
 * engine options given); the load shares the machine with it either way, so the completion
 * clients are lean: a platform thread each, reading over a plain socket ({@link StreamingClient}).
 */
@Command(name = "serve-bench", mixinStandardHelpOptions = true,
        description = {"Load the OpenAI-compatible server over loopback and report generated tokens per second and p50/p99 time to "
                + "first token and inter-token latency at each concurrency, and requests per second and p99 latency of "
                + "/v1/embeddings, against the targets of issue 12. Writes serve-bench.csv, serve-throughput.png and serve-latency.png.",
                "Starts the server in this process unless --url names a running one (the engine and model options, --kv-budget to "
                        + "--dummy-weights, are that server's, refused with --url; the requests then name the first model the server "
                        + "lists). Measure on a quiet machine: every client and the server share its cores."})
final class ServeBench implements Callable<Integer> {
    @Option(names = "--url", description = "A running server's base URL (e.g. http://127.0.0.1:8080); default: start one here.")
    URI url;

    @Option(names = "--concurrency", split = ",", defaultValue = "1,8,32,64", description = "Concurrent streams, one level after another "
            + "(default ${DEFAULT-VALUE}).")
    List<Integer> concurrency;

    @Option(names = "--duration", defaultValue = "30", description = "Seconds of load per level (default ${DEFAULT-VALUE}).")
    double duration;

    @Option(names = "--warmup", defaultValue = "5", description = "Seconds of load at least before each level's window; then more, "
            + "until the level is steady (default ${DEFAULT-VALUE}; 0: none). Steady: " + WarmUp.RULE + ".")
    double warmup;

    @Option(names = "--max-warmup", defaultValue = "90", description = "Seconds of warm-up at most per level; a level that never settles is "
            + "measured anyway and marked so (default ${DEFAULT-VALUE}).")
    double maxWarmup;

    @Option(names = "--max-tokens", defaultValue = "128", description = "max_tokens of each completion (default ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--prompt-chars", defaultValue = "16-96",
            description = "Prompt length in characters (= tokens - 1 for the byte model), a range MIN-MAX (default ${DEFAULT-VALUE}).")
    String promptChars;

    @Option(names = "--embedding-clients", defaultValue = "32", description = "Concurrent embedding clients (default ${DEFAULT-VALUE}; 0: skip).")
    int embeddingClients;

    @Option(names = "--embedding-duration", defaultValue = "30", description = "Seconds of embedding load (default ${DEFAULT-VALUE}).")
    double embeddingDuration;

    @Option(names = "--out", defaultValue = "serve-bench", description = "Directory of the CSV and the plots (default ${DEFAULT-VALUE}).")
    Path out;

    /** The server started in this process (without --url): its engine and models. */
    @Mixin
    EngineOptions engine;

    @Spec
    CommandSpec spec;

    /** The completion model of the server started in this process (without --url). */
    @Mixin
    DecoderOptions decoder;

    /** The completion model's name in requests: the in-process server's, or the first model a --url server lists. */
    private String completionModel;

    /** One level's figures; {@code warm}: how its warm-up ended (null: none). */
    record Level(int concurrency, int requests, long tokens, double seconds, double[] ttftMs, double[] itlMs, int rejected, int errors,
                 Warm warm, Steps steps) {
        double tokensPerSecond() {
            return tokens / seconds;
        }

        Level with(Warm warm, Steps steps) {
            return new Level(concurrency, requests, tokens, seconds, ttftMs, itlMs, rejected, errors, warm, steps);
        }
    }

    /**
     * The engine's steps during a level's window (a server in this process only): what the
     * inter-token latency is made of. A step that carries prompt tokens (prefill chunks of newly
     * admitted requests) delays every running stream by its whole time.
     *
     * @param decodeOnlyMs  wall times of steps with decode rows only, sorted
     * @param decodeForwardMs the forward's part of each of those, sorted (the rest: planning,
     *                      sampling, handing the tokens to the HTTP handlers, on the engine thread
     *                      while the model's other workers wait)
     * @param withPrefillMs wall times of steps that also carried prompt tokens, sorted
     * @param prefillTokens prompt tokens those steps carried, in all
     */
    record Steps(double[] decodeOnlyMs, double[] decodeForwardMs, double[] withPrefillMs, long prefillTokens) {
        int count() {
            return decodeOnlyMs.length + withPrefillMs.length;
        }

        double prefillShare() {
            return count() == 0 ? Double.NaN : (double) withPrefillMs.length / count();
        }

        String describe() {
            return String.format(Locale.ROOT, "%d steps: decode only p50 %.2f ms (forward %.2f), p99 %.2f ms; %.0f %% carried prompt tokens "
                            + "(%.0f on average): p50 %.2f ms, p99 %.2f ms", count(), quantile(decodeOnlyMs, 0.5), quantile(decodeForwardMs, 0.5),
                    quantile(decodeOnlyMs, 0.99), 100 * prefillShare(),
                    withPrefillMs.length == 0 ? 0.0 : (double) prefillTokens / withPrefillMs.length, quantile(withPrefillMs, 0.5),
                    quantile(withPrefillMs, 0.99));
        }

        /** Starts recording the steps of {@code server} (null: a server elsewhere, nothing recorded). */
        static Recorder record(HeadroomServer server) {
            Recorder r = new Recorder(server);
            if (server != null) server.tapSteps(r.seen::add);
            return r;
        }

        /** The steps seen since {@link #record}. */
        static final class Recorder {
            private final HeadroomServer server;
            private final ConcurrentLinkedQueue<Engine.StepInfo> seen = new ConcurrentLinkedQueue<>();

            private Recorder(HeadroomServer server) {
                this.server = server;
            }

            /** Stops recording; the steps seen, or null when there was no server to watch. */
            Steps stop() {
                if (server == null) return null;
                server.tapSteps(null);
                return of(seen);
            }
        }

        static Steps of(Iterable<Engine.StepInfo> seen) {
            List<Double> decodeOnly = new ArrayList<>(), forward = new ArrayList<>(), withPrefill = new ArrayList<>();
            long prompt = 0;
            for (Engine.StepInfo s : seen) {
                if (s.prefillTokens() == 0) {
                    decodeOnly.add(s.nanos() / 1e6);
                    forward.add(s.forwardNanos() / 1e6);
                } else {
                    withPrefill.add(s.nanos() / 1e6);
                    prompt += s.prefillTokens();
                }
            }
            return new Steps(sorted(decodeOnly), sorted(forward), sorted(withPrefill), prompt);
        }
    }

    /**
     * When a level is warm, the way {@code headroom bench} warms a forward up (steady speed, the JIT
     * quiet), in windows of load instead of calls: a fixed 5 s left C2 compiling the server, the
     * HTTP client and the model's 32-row paths through the measured window (14 % of a 32-stream
     * profile in compiler threads, and the model's forward recompiled 10 s into it).
     */
    static final class WarmUp {
        static final double WINDOW_SECONDS = 3, TOLERANCE = 0.05, JIT_SHARE = 0.02;
        static final String RULE = "windows of " + (int) WINDOW_SECONDS + " s (" + (int) (2 * WINDOW_SECONDS) + " s for embeddings) "
                + "until the rate (generated tokens/s, embedding requests/s) of the last is within "
                + (int) (100 * TOLERANCE) + " percent of the one before and, for a server in this process, the JIT compiled for at most "
                + (int) (100 * JIT_SHARE) + " percent of the last window's time"; // words, not % signs: picocli formats help text (HelpText)

        private WarmUp() {}

        /**
         * Whether a level is steady after a window of {@code rate} tokens/s that followed one of
         * {@code previous} (NaN: none), {@code jitShare} of the window's time spent compiling
         * (NaN: unknown, a remote server), {@code elapsed} seconds of warm-up in all, at least
         * {@code minSeconds}.
         */
        static boolean steady(double previous, double rate, double jitShare, double elapsed, double minSeconds) {
            if (elapsed < minSeconds || Double.isNaN(previous) || !(previous > 0)) return false;
            boolean even = Math.abs(rate - previous) / previous <= TOLERANCE;
            return even && (Double.isNaN(jitShare) || jitShare <= JIT_SHARE);
        }
    }

    /** Milliseconds the JIT of this process has spent compiling so far, or -1 when unknown. */
    private static long jitMillis() {
        java.lang.management.CompilationMXBean jit = java.lang.management.ManagementFactory.getCompilationMXBean();
        return jit != null && jit.isCompilationTimeMonitoringSupported() ? jit.getTotalCompilationTime() : -1;
    }

    /** How a warm-up ended: its seconds, and whether it settled before --max-warmup. */
    record Warm(double seconds, boolean steady) {
        /** For the table: "none", "12 s" or "90 s, NOT steady". */
        static String describe(Warm w) {
            return w == null ? "none" : String.format(Locale.ROOT, "%.0f s%s", w.seconds, w.steady ? "" : ", NOT steady");
        }

        /** For the CSV's warmup_s and warmup_steady columns (NaN and true: none). */
        static String csv(Warm w) {
            return w == null ? "NaN,true" : String.format(Locale.ROOT, "%.1f,%b", w.seconds, w.steady);
        }
    }

    /** One window of load: its rate (tokens or requests per second). */
    @FunctionalInterface
    private interface Window {
        double rate(double seconds) throws Exception;
    }

    /**
     * Loads the server in windows of {@code windowSeconds} until {@link WarmUp#steady}, at least
     * {@code minSeconds} and at most {@code --max-warmup} seconds. The JIT is only watched when
     * the server runs in this process.
     */
    private Warm warmUp(String unit, double windowSeconds, double minSeconds, Window window) throws Exception {
        long start = System.nanoTime();
        double previous = Double.NaN;
        while (true) {
            long jit0 = url == null ? jitMillis() : -1, w0 = System.nanoTime();
            double rate = window.rate(windowSeconds);
            long jit1 = url == null ? jitMillis() : -1;
            double jitShare = jit0 < 0 || jit1 < 0 ? Double.NaN : (jit1 - jit0) / ((System.nanoTime() - w0) / 1e6);
            double elapsed = (System.nanoTime() - start) / 1e9;
            boolean steady = WarmUp.steady(previous, rate, jitShare, elapsed, minSeconds);
            log.printf(Locale.ROOT, "serve-bench:   warm-up window: %.1f %s, JIT %s of the window%s%n", rate, unit,
                    Double.isNaN(jitShare) ? "unknown" : String.format(Locale.ROOT, "%.1f %%", 100 * jitShare), steady ? ": steady" : "");
            if (steady || elapsed >= maxWarmup) {
                if (!steady) log.printf(Locale.ROOT, "serve-bench:   NOT steady after %.0f s (--max-warmup): measured anyway%n", elapsed);
                return new Warm(elapsed, steady);
            }
            previous = rate;
        }
    }

    record EmbeddingResult(int clients, int requests, double seconds, double[] latencyMs, int rejected, int errors, double referencePerSecond,
                           Warm warm) {
        double requestsPerSecond() {
            return requests / seconds;
        }

        EmbeddingResult with(double referencePerSecond, Warm warm) {
            return new EmbeddingResult(clients, requests, seconds, latencyMs, rejected, errors, referencePerSecond, warm);
        }
    }

    private final HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build();
    private final PrintStream log = System.err;
    /** The OpenBLAS kernel and why (OpenBlas.coreChoice), when the server runs in this process; else null. */
    private String kernel;

    @Override
    public Integer call() throws Exception {
        int[] range = range(promptChars);
        if (duration <= 0 || warmup < 0 || maxWarmup < warmup || maxTokens < 1) {
            throw new IllegalArgumentException("--duration > 0, 0 <= --warmup <= --max-warmup, --max-tokens >= 1");
        }
        for (int c : concurrency) if (c < 1) throw new IllegalArgumentException("--concurrency levels must be >= 1, got " + c);
        if (url != null && !"http".equalsIgnoreCase(url.getScheme())) {
            throw new IllegalArgumentException("--url must be an http:// URL (the clients speak plain HTTP/1.1), got " + url);
        }
        if (url != null) { // the engine and model options given belong to a server started here
            List<String> local = spec.commandLine().getParseResult().matchedOptions().stream()
                    .filter(o -> o.userObject() instanceof Field f
                            && (f.getDeclaringClass() == EngineOptions.class || f.getDeclaringClass() == DecoderOptions.class))
                    .map(OptionSpec::longestName).toList();
            if (!local.isEmpty()) {
                throw new IllegalArgumentException(String.join(", ", local) + " set" + (local.size() == 1 ? "s" : "")
                        + " up a server started here; with --url the server at " + url + " has its own settings");
            }
        }
        String corpus = new String(ServeBench.class.getResourceAsStream("/dev/headroom/model/sentences.txt").readAllBytes(),
                StandardCharsets.UTF_8).replace('\n', ' ');
        ServeCommand.Stack stack = null;
        URI base = url;
        try {
            double reference = Double.NaN;
            if (base == null) {
                int t = engine.threads();
                Engine.Config config = engine.config(Math.max(256, 2 * concurrency.stream().mapToInt(Integer::intValue).max().orElse(1)));
                stack = ServeCommand.Stack.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), decoder, decoder.name(), config,
                        t, engine.workerWait, Duration.ofMillis(2));
                completionModel = stack.completionModel;
                int context = stack.decoder.config().maxPositions();
                if (range[1] + 1 >= context) {
                    throw new IllegalArgumentException("--prompt-chars up to " + range[1] + " leaves no room in the model's context of "
                            + context + " tokens (<bos> and the prompt's bytes come first)");
                }
                base = URI.create("http://127.0.0.1:" + stack.server.address().getPort());
                log.printf("serve-bench: server started in this process at %s (completion model %s; %s; %d threads per model, waiting by %s)%n",
                        base, completionModel, config, t,
                        engine.workerWait.name().toLowerCase(Locale.ROOT));
                kernel = OpenBlas.coreChoice();
                log.printf("serve-bench: OpenBLAS kernel %s%n", kernel);
                if (embeddingClients > 0) reference = referenceSentencesPerSecond(stack.encoder, corpus);
            } else {
                base = URI.create(base.toString().replaceAll("/+$", "").replaceAll("/v1$", ""));
                completionModel = firstModel(base);
            }
            List<Level> levels = new ArrayList<>();
            if (warmup > 0) { // every shape of step once before any level: the JIT compiles the prefill paths on first use (seconds)
                int most = concurrency.stream().mapToInt(Integer::intValue).max().orElse(1);
                log.printf("serve-bench: warm-up, %d streams for %.0f s%n", most, 2 * warmup);
                completions(base, corpus, range, most, 2 * warmup);
            }
            for (int c : concurrency) {
                log.printf("serve-bench: %d stream%s, warm-up until steady (at least %.0f s), %.0f s measured%n", c, c == 1 ? "" : "s", warmup,
                        duration);
                URI at = base;
                Warm warm = warmup > 0 ? warmUp("tokens/s", WarmUp.WINDOW_SECONDS, warmup,
                        seconds -> completions(at, corpus, range, c, seconds).tokensPerSecond()) : null;
                Steps.Recorder steps = Steps.record(stack == null ? null : stack.server);
                Level level = completions(base, corpus, range, c, duration);
                levels.add(level.with(warm, steps.stop()));
            }
            EmbeddingResult emb = null;
            if (embeddingClients > 0) {
                log.printf("serve-bench: %d embedding clients, %.0f s%n", embeddingClients, embeddingDuration);
                URI server = base;
                Warm warm = warmup > 0 ? warmUp("requests/s", 2 * WarmUp.WINDOW_SECONDS, warmup, // a batch of 32 takes ~0.6 s
                        seconds -> embeddings(server, corpus, embeddingClients, seconds).requestsPerSecond()) : null;
                emb = embeddings(base, corpus, embeddingClients, embeddingDuration).with(reference, warm);
            }
            report(levels, emb, System.out);
            write(levels, emb);
            return 0;
        } finally {
            if (stack != null) stack.close();
            client.close();
        }
    }

    /** The id of the first model GET /v1/models lists (headroom serve lists its completion model first). */
    private String firstModel(URI base) throws IOException, InterruptedException {
        HttpResponse<String> r = client.send(HttpRequest.newBuilder(base.resolve("/v1/models")).timeout(Duration.ofSeconds(30)).build(),
                HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() != 200) throw new IOException("GET " + base.resolve("/v1/models") + " answered " + r.statusCode() + ": " + r.body());
        try {
            return JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonArray("data").get(0).getAsJsonObject().get("id").getAsString();
        } catch (RuntimeException e) {
            throw new IOException("GET " + base.resolve("/v1/models") + " did not list a model: " + r.body(), e);
        }
    }

    private static int[] range(String s) {
        String[] p = s.split("-");
        try {
            int lo = Integer.parseInt(p[0].trim()), hi = p.length > 1 ? Integer.parseInt(p[1].trim()) : lo;
            if (lo < 1 || hi < lo || hi > 250) throw new NumberFormatException();
            return new int[]{lo, hi};
        } catch (NumberFormatException | ArrayIndexOutOfBoundsException e) {
            throw new IllegalArgumentException("--prompt-chars must be MIN-MAX with 1 <= MIN <= MAX <= 250 (the context is 256), got " + s);
        }
    }

    // ---- completions ----------------------------------------------------------------------

    private Level completions(URI base, String corpus, int[] range, int clients, double seconds) throws Exception {
        ConcurrentLinkedQueue<StreamingClient.Sample> samples = new ConcurrentLinkedQueue<>();
        AtomicLong rejected = new AtomicLong(), errors = new AtomicLong();
        long t0 = System.nanoTime(), stopSending = t0 + (long) (seconds * 1e9);
        AtomicLong lastEnd = new AtomicLong(t0);
        List<Future<?>> running = new ArrayList<>();
        // a platform thread per client: its blocking reads wait in the kernel, woken by the data itself (a virtual thread's
        // read is handed on by the JDK's poller thread, one more wake-up per chunk on cores the server needs)
        try (ExecutorService pool = Executors.newThreadPerTaskExecutor(Thread.ofPlatform().name("serve-bench-client-", 0).daemon(true)
                .factory())) {
            for (int c = 0; c < clients; c++) {
                SplittableRandom rnd = new SplittableRandom(17 + c * 7919L + t0);
                running.add(pool.submit(() -> {
                    while (System.nanoTime() < stopSending) {
                        int start = rnd.nextInt(corpus.length() - range[1] - 1);
                        String prompt = corpus.substring(start, start + range[0] + rnd.nextInt(range[1] - range[0] + 1));
                        String body = "{\"model\": " + new JsonPrimitive(completionModel) + ", \"prompt\": " + new JsonPrimitive(prompt) + ", \"max_tokens\": " + maxTokens
                                + ", \"temperature\": 0.8, \"top_k\": 40, \"seed\": " + rnd.nextInt(1 << 30)
                                + ", \"stream\": true, \"stream_options\": {\"include_usage\": true}}";
                        try {
                            StreamingClient.Sample s = StreamingClient.stream(base, body, 120_000);
                            if (s == null) {
                                rejected.incrementAndGet();
                                Thread.sleep(100);
                            } else {
                                samples.add(s);
                            }
                        } catch (IOException | RuntimeException e) {
                            errors.incrementAndGet();
                        }
                        lastEnd.accumulateAndGet(System.nanoTime(), Math::max);
                    }
                    return null;
                }));
            }
            for (Future<?> f : running) f.get();
        }
        long tokens = 0;
        List<Double> ttft = new ArrayList<>(), itl = new ArrayList<>();
        for (StreamingClient.Sample s : samples) {
            tokens += s.tokens();
            if (!Double.isNaN(s.ttftMs())) ttft.add(s.ttftMs());
            for (double v : s.itlMs()) itl.add(v);
        }
        return new Level(clients, samples.size(), tokens, (lastEnd.get() - t0) / 1e9, sorted(ttft), sorted(itl), (int) rejected.get(),
                (int) errors.get(), null, null);
    }

    // ---- embeddings -----------------------------------------------------------------------

    /** An input of at least 128 WordPiece tokens (truncated to 128 by the tokenizer), different for each seed. */
    private static String longInput(String corpus, SplittableRandom rnd) {
        int start = rnd.nextInt(corpus.length() - 1200);
        return corpus.substring(start, start + 1100);
    }

    /** Sentences per second of MiniLmEncoder.embed over batches of 32 inputs of 128 tokens, this process, after a warm-up. */
    private double referenceSentencesPerSecond(MiniLmEncoder encoder, String corpus) {
        SplittableRandom rnd = new SplittableRandom(3);
        List<String> batch = new ArrayList<>();
        for (int i = 0; i < 32; i++) batch.add(longInput(corpus, rnd));
        try (TrackedArena arena = TrackedArena.ofShared(); EncoderWorkspace ws = new EncoderWorkspace()) {
            Tensor out = Tensor.allocate(arena, 32, encoder.config().hidden());
            for (int i = 0; i < 3; i++) encoder.embed(batch, out, ws, 32);
            int n = 0;
            long t0 = System.nanoTime();
            while (System.nanoTime() - t0 < 5e9 || n < 3) {
                encoder.embed(batch, out, ws, 32);
                n++;
            }
            double perSecond = 32.0 * n / ((System.nanoTime() - t0) / 1e9);
            log.printf(Locale.ROOT, "serve-bench: reference, MiniLmEncoder.embed of 32 inputs of 128 tokens in this process: %.1f sentences/s%n",
                    perSecond);
            return perSecond;
        }
    }

    private EmbeddingResult embeddings(URI base, String corpus, int clients, double seconds) throws Exception {
        ConcurrentLinkedQueue<Double> latencies = new ConcurrentLinkedQueue<>();
        AtomicLong rejected = new AtomicLong(), errors = new AtomicLong();
        long t0 = System.nanoTime(), stop = t0 + (long) (seconds * 1e9);
        AtomicLong lastEnd = new AtomicLong(t0);
        List<Future<?>> running = new ArrayList<>();
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int c = 0; c < clients; c++) {
                SplittableRandom rnd = new SplittableRandom(101 + c);
                running.add(pool.submit(() -> {
                    while (System.nanoTime() < stop) {
                        String body = "{\"model\": \"minilm\", \"input\": " + new JsonPrimitive(longInput(corpus, rnd)) + "}";
                        long sent = System.nanoTime();
                        try {
                            HttpResponse<String> r = client.send(HttpRequest.newBuilder(base.resolve("/v1/embeddings"))
                                    .POST(HttpRequest.BodyPublishers.ofString(body)).header("Content-Type", "application/json").build(),
                                    HttpResponse.BodyHandlers.ofString());
                            if (r.statusCode() == 503) rejected.incrementAndGet();
                            else if (r.statusCode() != 200) errors.incrementAndGet();
                            else latencies.add((System.nanoTime() - sent) / 1e6);
                        } catch (IOException | RuntimeException e) {
                            errors.incrementAndGet();
                        }
                        lastEnd.accumulateAndGet(System.nanoTime(), Math::max);
                    }
                    return null;
                }));
            }
            for (Future<?> f : running) f.get();
        }
        return new EmbeddingResult(clients, latencies.size(), (lastEnd.get() - t0) / 1e9, sorted(new ArrayList<>(latencies)),
                (int) rejected.get(), (int) errors.get(), Double.NaN, null);
    }

    // ---- report ---------------------------------------------------------------------------

    private static double[] sorted(List<Double> v) {
        double[] a = v.stream().mapToDouble(Double::doubleValue).toArray();
        Arrays.sort(a);
        return a;
    }

    /** The q-quantile (nearest rank) of sorted values, NaN when there are none. */
    static double quantile(double[] sorted, double q) {
        if (sorted.length == 0) return Double.NaN;
        int i = (int) Math.ceil(q * sorted.length) - 1;
        return sorted[Math.clamp(i, 0, sorted.length - 1)];
    }

    private void report(List<Level> levels, EmbeddingResult emb, PrintStream o) {
        if (kernel != null) o.printf(Locale.ROOT, "%nserver in this process; OpenBLAS kernel %s%n", kernel);
        o.printf(Locale.ROOT, "%n%-8s %8s %8s %12s %10s %10s %10s %10s %8s %6s  %s%n", "streams", "requests", "tokens", "tokens/s",
                "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "503s", "errors", "warm-up");
        for (Level l : levels) {
            o.printf(Locale.ROOT, "%-8d %8d %8d %12.1f %8.1fms %8.1fms %8.2fms %8.2fms %8d %6d  %s%n", l.concurrency(), l.requests(), l.tokens(),
                    l.tokensPerSecond(), quantile(l.ttftMs(), 0.5), quantile(l.ttftMs(), 0.99), quantile(l.itlMs(), 0.5),
                    quantile(l.itlMs(), 0.99), l.rejected(), l.errors(), Warm.describe(l.warm()));
        }
        for (Level l : levels) if (l.steps() != null) o.printf(Locale.ROOT, "  engine at %d stream%s: %s%n", l.concurrency(),
                l.concurrency() == 1 ? "" : "s", l.steps().describe());
        Level one = levels.stream().filter(l -> l.concurrency() == 1).findFirst().orElse(null);
        Level at32 = levels.stream().filter(l -> l.concurrency() == 32).findFirst().orElse(null);
        if (one != null && at32 != null) {
            double speedup = at32.tokensPerSecond() / one.tokensPerSecond();
            double itl = quantile(at32.itlMs(), 0.99) / quantile(one.itlMs(), 0.99);
            if ("tiny".equals(completionModel)) {
                o.printf(Locale.ROOT, "%nthroughput at 32 streams / 1 stream: %.1f× (target ≥ 8×: %s)%n", speedup, speedup >= 8 ? "met" : "NOT met");
                o.printf(Locale.ROOT, "p99 inter-token latency at 32 streams / 1 stream: %.2f× (target ≤ 3×: %s)%n", itl, itl <= 3 ? "met" : "NOT met");
            } else { // issue 12's targets are the tiny model's
                o.printf(Locale.ROOT, "%nthroughput at 32 streams / 1 stream: %.1f×; p99 inter-token latency: %.2f× (model %s)%n", speedup, itl,
                        completionModel);
            }
        }
        if (emb != null) {
            o.printf(Locale.ROOT, "%nembeddings, %d clients, one 128-token input per request: %d requests in %.1f s = %.1f requests/s; "
                            + "latency p50 %.1f ms, p99 %.1f ms; %d × 503, %d errors; warm-up %s%n", emb.clients(), emb.requests(), emb.seconds(),
                    emb.requestsPerSecond(), quantile(emb.latencyMs(), 0.5), quantile(emb.latencyMs(), 0.99), emb.rejected(), emb.errors(),
                    Warm.describe(emb.warm()));
            if (!Double.isNaN(emb.referencePerSecond())) {
                double share = emb.requestsPerSecond() / emb.referencePerSecond();
                o.printf(Locale.ROOT, "  = %.0f %% of MiniLmEncoder.embed's batch-32 rate measured in this process (%.1f sentences/s; "
                        + "target ≥ 90 %% of EmbeddingBenchmark's batch 32: %s)%n", 100 * share, emb.referencePerSecond(),
                        share >= 0.9 ? "met" : "NOT met");
            }
        }
    }

    private void write(List<Level> levels, EmbeddingResult emb) throws IOException {
        Files.createDirectories(out);
        StringBuilder csv = new StringBuilder("kind,concurrency,requests,tokens,seconds,tokens_per_s,requests_per_s,ttft_p50_ms,ttft_p99_ms,"
                + "itl_p50_ms,itl_p99_ms,latency_p50_ms,latency_p99_ms,rejected,errors,reference_per_s,warmup_s,warmup_steady,"
                + "step_decode_p50_ms,step_decode_p99_ms,prefill_step_share,step_prefill_p50_ms,step_prefill_p99_ms,step_decode_forward_p50_ms,model\n");
        for (Level l : levels) {
            Steps st = l.steps();
            csv.append(String.format(Locale.ROOT, "completions,%d,%d,%d,%.3f,%.2f,%.3f,%.2f,%.2f,%.3f,%.3f,,,%d,%d,,%s,%s,%s%n", l.concurrency(),
                    l.requests(), l.tokens(), l.seconds(), l.tokensPerSecond(), l.requests() / l.seconds(), quantile(l.ttftMs(), 0.5),
                    quantile(l.ttftMs(), 0.99), quantile(l.itlMs(), 0.5), quantile(l.itlMs(), 0.99), l.rejected(), l.errors(),
                    Warm.csv(l.warm()), st == null ? ",,,,," : String.format(Locale.ROOT, "%.3f,%.3f,%.3f,%.3f,%.3f,%.3f",
                            quantile(st.decodeOnlyMs(), 0.5), quantile(st.decodeOnlyMs(), 0.99), st.prefillShare(),
                            quantile(st.withPrefillMs(), 0.5), quantile(st.withPrefillMs(), 0.99), quantile(st.decodeForwardMs(), 0.5)),
                    completionModel));
        }
        if (emb != null) {
            csv.append(String.format(Locale.ROOT, "embeddings,%d,%d,,%.3f,,%.2f,,,,,%.2f,%.2f,%d,%d,%.2f,%s%n", emb.clients(), emb.requests(),
                    emb.seconds(), emb.requestsPerSecond(), quantile(emb.latencyMs(), 0.5), quantile(emb.latencyMs(), 0.99), emb.rejected(),
                    emb.errors(), emb.referencePerSecond(), Warm.csv(emb.warm()) + ",,,,,," + ServeCommand.EMBEDDING_MODEL));
        }
        Files.writeString(out.resolve("serve-bench.csv"), csv);
        Map<String, List<double[]>> tput = new LinkedHashMap<>();
        List<double[]> measured = new ArrayList<>(), linear = new ArrayList<>();
        double single = levels.stream().filter(l -> l.concurrency() == 1).mapToDouble(Level::tokensPerSecond).findFirst().orElse(Double.NaN);
        for (Level l : levels) {
            measured.add(new double[]{l.concurrency(), l.tokensPerSecond()});
            if (!Double.isNaN(single)) linear.add(new double[]{l.concurrency(), single * l.concurrency()});
        }
        tput.put("generated tokens/s", measured);
        if (!linear.isEmpty()) tput.put("1 stream × streams (linear)", linear);
        Map<String, List<double[]>> lat = new LinkedHashMap<>();
        String[] names = {"TTFT p50", "TTFT p99", "ITL p50", "ITL p99"};
        for (String n : names) lat.put(n, new ArrayList<>());
        for (Level l : levels) {
            double[] v = {quantile(l.ttftMs(), 0.5), quantile(l.ttftMs(), 0.99), quantile(l.itlMs(), 0.5), quantile(l.itlMs(), 0.99)};
            for (int i = 0; i < names.length; i++) if (!Double.isNaN(v[i])) lat.get(names[i]).add(new double[]{l.concurrency(), v[i]});
        }
        Charts.write(out.resolve("serve-throughput.png"), 720, 480, List.of(new Charts.Panel("Throughput against concurrency",
                "concurrent streams", "generated tokens per second", true, true, tput, List.of("1 stream × streams (linear)"))));
        Charts.write(out.resolve("serve-latency.png"), 720, 480, List.of(new Charts.Panel("Latency against concurrency",
                "concurrent streams", "milliseconds", true, true, lat, List.of())));
        log.printf("serve-bench: wrote %s, %s, %s%n", out.resolve("serve-bench.csv"), out.resolve("serve-throughput.png"),
                out.resolve("serve-latency.png"));
    }
}
