package dev.headroom.server;

import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.blas.OpenBlas;
import dev.headroom.cli.DecoderOptions;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.model.llama.LlamaModel;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.runtime.WorkerPool;
import dev.headroom.serve.EmbeddingBatcher;
import dev.headroom.serve.Engine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicBoolean;

/** {@code headroom serve}: the OpenAI-compatible server, until interrupted. */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = {"Serve the tiny decoder, or --weights of another byte-vocabulary Llama model (POST /v1/completions, streaming or not, "
                + "with continuous batching over a paged KV cache) "
                + "and MiniLM (POST /v1/embeddings, batched dynamically) over an OpenAI-compatible HTTP API, with GET /v1/models, "
                + "/health and /metrics (Prometheus). Runs until interrupted (Ctrl-C).",
                "It listens on the loopback address only, unless --host names another: there is no authentication and no TLS, "
                        + "so expose it to a network only behind a proxy that provides them."})
final class ServeCommand implements Callable<Integer> {
    /** True once the server is up: main then leaves the JVM to the server's threads instead of exiting. */
    static final AtomicBoolean SERVING = new AtomicBoolean();

    @Option(names = "--host", defaultValue = "127.0.0.1",
            description = "Address to listen on (default ${DEFAULT-VALUE}, loopback only). Another address, e.g. 0.0.0.0 for every "
                    + "interface, must be given explicitly and exposes the unauthenticated API to that network.")
    String host;

    @Option(names = "--port", defaultValue = "8080", description = "Port (default ${DEFAULT-VALUE}; 0: any free port, printed).")
    int port;

    /** The completion model: the built-in tiny decoder, or --weights and --config of a byte-vocabulary Llama model. */
    @Mixin
    DecoderOptions decoder;

    @Option(names = "--served-model-name", paramLabel = "NAME", description = "The completion model's name in the API (/v1/models, "
            + "a request's \"model\"); default: tiny, dummy, or the --weights file's name without .safetensors.")
    String servedModelName;

    @Mixin
    EngineOptions engine;

    @Option(names = "--max-queue", defaultValue = "256",
            description = "Requests that may wait for cache memory (default ${DEFAULT-VALUE}); more get 503 with Retry-After.")
    int maxQueue;

    @Option(names = "--embedding-wait", defaultValue = "2", paramLabel = "MS",
            description = "Milliseconds an embedding request waits for others to share its batch of up to 32 (default ${DEFAULT-VALUE}).")
    int embeddingWaitMs;

    /** The completion model's name in the API: --served-model-name, or the model's own. */
    String completionName() {
        if (servedModelName == null) return decoder.name();
        if (servedModelName.isBlank() || !servedModelName.strip().equals(servedModelName)) {
            throw new IllegalArgumentException("--served-model-name must be a name without surrounding spaces, got '" + servedModelName + "'");
        }
        return servedModelName;
    }

    @Override
    public Integer call() throws IOException, InterruptedException {
        if (port < 0 || port > 65535) throw new IllegalArgumentException("--port must be in [0, 65535], got " + port);
        String name = completionName();
        int t = engine.threads();
        Engine.Config config = engine.config(maxQueue);
        InetSocketAddress address = new InetSocketAddress(InetAddress.getByName(host), port);
        Stack stack = Stack.start(address, decoder, name, config, t, engine.workerWait, Duration.ofMillis(embeddingWaitMs));
        SERVING.set(true);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stack.close();
            stopped.countDown();
        }, "headroom-serve-shutdown"));
        System.err.printf("headroom serve: listening on %s (completions: %s, embeddings: %s); KV cache %s (%d blocks of %d tokens, %s%s); "
                        + "queue %d, batch %d, %d tokens per step (%d of prompt beside decoding streams); %d threads per model, "
                        + "waiting by %s; OpenBLAS kernel %s%n", stack.server.baseUri(), stack.completionModel, EMBEDDING_MODEL,
                OffHeap.format(stack.engine.cacheStats().reservedBytes()), stack.engine.cacheStats().capacityBlocks(), config.blockSize(),
                config.kvDtype().name().toLowerCase(Locale.ROOT), TrackedArena.hugePagesAvailable() ? ", huge pages asked for" : "", maxQueue, config.maxRunning(),
                config.maxStepTokens(), Math.min(config.maxPrefillTokens(), config.maxStepTokens()), t,
                engine.workerWait.name().toLowerCase(Locale.ROOT), OpenBlas.coreChoice());
        if (!address.getAddress().isLoopbackAddress()) {
            System.err.println("headroom serve: WARNING: listening on " + host + ", not loopback: anyone who reaches it can use it "
                    + "(no authentication, no TLS)");
        }
        stopped.await();
        return 0;
    }

    /** The embedding model's name in the API. */
    static final String EMBEDDING_MODEL = "minilm";

    /** The models, the engine, the batcher and the HTTP server, closed in the reverse order. */
    static final class Stack implements AutoCloseable {
        final LlamaModel decoder;
        /** The decoder's name in the API (/v1/models, a completion request's "model"). */
        final String completionModel;
        final TrackedArena encoderArena;
        final MiniLmEncoder encoder;
        final Engine engine;
        final EmbeddingBatcher batcher;
        final HeadroomServer server;
        private final AtomicBoolean closed = new AtomicBoolean();

        private Stack(LlamaModel decoder, String completionModel, TrackedArena encoderArena, MiniLmEncoder encoder, Engine engine, EmbeddingBatcher batcher,
                      HeadroomServer server) {
            this.decoder = decoder;
            this.completionModel = completionModel;
            this.encoderArena = encoderArena;
            this.encoder = encoder;
            this.engine = engine;
            this.batcher = batcher;
            this.server = server;
        }

        /** Loads {@code model} and MiniLM and starts the engine, the batcher and the server, which calls the decoder {@code name}. */
        static Stack start(InetSocketAddress address, DecoderOptions model, String name, Engine.Config config, int threads,
                           WorkerPool.Waiting waiting, Duration embeddingWait) throws IOException {
            if (name.equals(EMBEDDING_MODEL)) {
                throw new IllegalArgumentException("the completion model would be served as '" + name + "', the embedding model's name; "
                        + "give another with --served-model-name or rename its weights file");
            }
            LlamaModel decoder = model.load(MultiHeadAttention.Options.defaults().withThreads(threads));
            TrackedArena arena = null;
            MiniLmEncoder encoder = null;
            Engine engine = null;
            EmbeddingBatcher batcher = null;
            try {
                decoder.setWaiting(waiting);
                arena = TrackedArena.ofShared();
                encoder = Models.minilm(arena, threads);
                encoder.setWaiting(waiting);
                engine = Engine.start(decoder, model.tokenizer(decoder.config()), config);
                batcher = new EmbeddingBatcher(encoder, embeddingWait, 4096);
                HeadroomServer server = HeadroomServer.start(address, engine, name, batcher, EMBEDDING_MODEL, HeadroomServer.Options.defaults());
                return new Stack(decoder, name, arena, encoder, engine, batcher, server);
            } catch (IOException | RuntimeException e) {
                if (batcher != null) batcher.close();
                if (engine != null) engine.close();
                if (encoder != null) encoder.close();
                if (arena != null) arena.close();
                decoder.close();
                throw e;
            }
        }

        @Override
        public void close() {
            if (!closed.compareAndSet(false, true)) return;
            server.close();
            batcher.close();
            engine.close();
            encoder.close();
            encoderArena.close();
            decoder.close();
        }
    }
}
