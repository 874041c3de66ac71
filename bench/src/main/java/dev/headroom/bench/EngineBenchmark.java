package dev.headroom.bench;

import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.generate.Generator;
import dev.headroom.generate.Sampling;
import dev.headroom.model.Models;
import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.LlamaConfig;
import dev.headroom.model.llama.LlamaModel;
import dev.headroom.model.llama.RandomLlama;
import dev.headroom.runtime.WorkerPool;
import dev.headroom.serve.Engine;
import org.openjdk.jmh.annotations.AuxCounters;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The serving engine under serve-bench's completion load, without HTTP: {@code streams} requests
 * kept in flight on one {@link Engine} over the tiny decoder or a dummy model of a config's shape (each that ends is replaced by a new
 * one at once, through every iteration), prompts of 16–96 bytes of the built-in Brown sentences,
 * 128 tokens each, temperature 0.8 and top-k 40, serve's engine settings (its 2 GiB cache
 * included) and yielding workers. One operation lasts until {@code streams} requests have ended; the {@code tokens}
 * counter is generated tokens per second.
 * Set against serve-bench's rate at the same concurrency, it says what the HTTP layer and the
 * clients cost the server; the decode-only steps' forward time (printed at the end of each
 * iteration, p50) against serve-bench's {@code step_decode_forward_p50_ms} says how much of that
 * is the model's forward slowed by the threads that share its cores.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 4, time = 3)
@Measurement(iterations = 5, time = 3)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@State(Scope.Benchmark)
public class EngineBenchmark {
    @Param({"1", "32"})
    public int streams;

    @Param({"2"})
    public int threads;

    /**
     * The model: {@code tiny} (the trained decoder) or the path of a Llama {@code config.json} with a
     * byte vocabulary, served with random weights (serve's {@code --dummy-weights --config}).
     */
    @Param({"tiny"})
    public String config;

    /** How the model's workers wait between tasks: yield (the server's) or spin (the library's default). */
    @Param({"yield"})
    public String wait;

    private LlamaModel model;
    private Engine engine;
    private ByteTokenizer tokenizer;
    private String corpus;
    private final SplittableRandom rnd = new SplittableRandom(17);
    /** Decode-only steps of the current iteration: their forward's nanoseconds (written by the engine thread). */
    private long[] forwards = new long[1 << 16];
    private final AtomicInteger steps = new AtomicInteger();

    /** Generated tokens, reported per second. */
    @State(Scope.Thread)
    @AuxCounters(AuxCounters.Type.OPERATIONS)
    public static class Tokens {
        public long tokens;

        @Setup(Level.Iteration)
        public void clear() {
            tokens = 0;
        }
    }

    @Setup(Level.Trial)
    public void setUp() throws IOException {
        MultiHeadAttention.Options options = MultiHeadAttention.Options.defaults().withThreads(threads);
        model = config.equals("tiny") ? Models.tiny(options) : RandomLlama.model(LlamaConfig.read(Path.of(config)), 1, options);
        model.setWaiting(WorkerPool.Waiting.valueOf(wait.toUpperCase(Locale.ROOT)));
        tokenizer = ByteTokenizer.of(model.config());
        engine = Engine.start(model, tokenizer, Engine.Config.defaults()); // serve's defaults: a 2 GiB cache, allocated here
        engine.setStepObserver(info -> { // on the engine thread; read after the iteration (its count published last)
            if (info.prefillTokens() == 0 && info.decodeRows() == streams) {
                int k = steps.get();
                if (k < forwards.length) forwards[k] = info.forwardNanos();
                steps.set(k + 1);
            }
        });
        try (InputStream in = EngineBenchmark.class.getResourceAsStream("/dev/headroom/model/sentences.txt")) {
            corpus = new String(in.readAllBytes(), StandardCharsets.UTF_8).replace('\n', ' ');
        }
        // the closed loop starts once, before the first warm-up iteration, and runs through every iteration
        loading = true;
        for (int s = 0; s < streams; s++) engine.submit(request(), new Stream());
    }

    @Setup(Level.Iteration)
    public void clearSteps() {
        steps.set(0);
    }

    @TearDown(Level.Iteration)
    public void printSteps() {
        int n = Math.min(steps.get(), forwards.length);
        if (n == 0) return;
        long[] f = Arrays.copyOf(forwards, n);
        Arrays.sort(f);
        System.out.printf(Locale.ROOT, "  (%d decode-only steps of %d rows: forward p50 %.3f ms, p99 %.3f ms)%n", n, streams,
                f[n / 2] / 1e6, f[Math.min(n - 1, (int) (0.99 * n))] / 1e6);
    }

    @TearDown(Level.Trial)
    public void tearDown() throws InterruptedException {
        loading = false;
        boolean idle = engine.awaitIdle(java.time.Duration.ofSeconds(60));
        engine.close();
        model.close();
        if (!idle) throw new IllegalStateException("the engine did not drain its last requests within 60 s");
    }

    private synchronized Generator.Request request() {
        int length = 16 + rnd.nextInt(81), start = rnd.nextInt(corpus.length() - length);
        return new Generator.Request(tokenizer.encode(corpus.substring(start, start + length)), 128,
                new Sampling(0.8, 40, 1.0, rnd.nextLong()), List.of());
    }

    /** Generated tokens and ended requests since the load started; whether ended requests are replaced. */
    private final AtomicLong generated = new AtomicLong(), ended = new AtomicLong();
    private volatile boolean loading;
    /** The first failure of a stream (a failed request, or a replacement the engine refused): it ends the run. */
    private volatile RuntimeException failure;

    /** Each stream's listener: counts tokens and, when its request ends, submits the next (on the engine thread). */
    private final class Stream implements Engine.Listener {
        @Override
        public void token(int token, String text) {
            if (token >= 0) generated.incrementAndGet();
        }

        @Override
        public void finished(Generator.Output output, Engine.Usage usage) {
            try {
                if (loading) engine.submit(request(), this);
            } catch (RuntimeException e) { // the engine swallows a listener's exception: keep it for the benchmark thread
                failure = e;
            }
            ended.incrementAndGet();
        }

        @Override
        public void failed(RuntimeException error) {
            failure = error;
            ended.incrementAndGet();
        }
    }


    /** Waits for {@code streams} requests to end while the others keep running; counts the tokens generated meanwhile. */
    @Benchmark
    public long requests(Tokens counter) throws InterruptedException {
        long t0 = generated.get(), target = ended.get() + streams;
        while (ended.get() < target) {
            if (failure != null) throw new IllegalStateException("a stream failed", failure);
            if (!engine.isRunning()) throw new IllegalStateException("the engine stopped");
            Thread.sleep(0, 200_000);
        }
        if (failure != null) throw new IllegalStateException("a stream failed", failure);
        long t = generated.get() - t0;
        counter.tokens += t;
        return t;
    }
}
