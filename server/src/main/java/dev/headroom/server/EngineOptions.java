package dev.headroom.server;

import dev.headroom.cache.KvDtype;
import dev.headroom.runtime.WorkerPool;
import dev.headroom.serve.Engine;
import picocli.CommandLine;
import picocli.CommandLine.Option;

/**
 * The engine and model options that {@code serve} and {@code serve-bench} (for the server it
 * starts in its process) share: one declaration, one set of defaults.
 */
final class EngineOptions {
    @Option(names = "--kv-budget", defaultValue = "2g", converter = ServerMain.ByteSize.class, paramLabel = "SIZE",
            description = "KV cache memory, e.g. 512m or 2g (default ${DEFAULT-VALUE}); requests wait for it, never over-commit it.")
    long kvBudget;

    @Option(names = "--kv-dtype", defaultValue = "f32", converter = DtypeConverter.class, paramLabel = "f32|f16|int8",
            description = "How the KV cache stores keys and values (default ${DEFAULT-VALUE}): f32 exact; f16 or int8 (one scale per "
                    + "token and head) hold 2 or nearly 4 times the tokens in the same --kv-budget, with slightly different numbers "
                    + "(what generate --kv-dtype gives).")
    KvDtype kvDtype;

    @Option(names = "--block-size", defaultValue = "16", description = "Tokens per KV cache block, the unit of allocation and prefix "
            + "sharing (default ${DEFAULT-VALUE}).")
    int blockSize;

    @Option(names = "--max-running", defaultValue = "64", description = "Sequences in the running batch at most (default ${DEFAULT-VALUE}).")
    int maxRunning;

    @Option(names = "--max-step-tokens", defaultValue = "128",
            description = "Tokens per engine step at most, decode and prefill chunks together (default ${DEFAULT-VALUE}): lower keeps "
                    + "the time between tokens of running streams short, higher takes new prompts in faster.")
    int maxStepTokens;

    @Option(names = "--max-prefill-tokens", defaultValue = "32",
            description = "Prompt tokens per step at most while streams are decoding (default ${DEFAULT-VALUE}): each new prompt is "
                    + "prefilled in chunks this size beside the running streams' tokens, so it delays each of their next tokens by "
                    + "one chunk's time at most.")
    int maxPrefillTokens;

    @Option(names = "--worker-wait", defaultValue = "yield", converter = WaitingConverter.class, paramLabel = "yield|spin",
            description = "How the models' worker threads wait between tasks (default ${DEFAULT-VALUE}): yield gives the core to the "
                    + "server's HTTP threads at once; spin keeps it (lower hand-off latency when nothing else runs, but a woken HTTP "
                    + "thread may wait a scheduler slice, milliseconds, to send a token).")
    WorkerPool.Waiting workerWait;

    @Option(names = "--threads", description = "Worker threads of each model (default: all processors).")
    Integer threads;

    /** The worker threads per model: --threads, or every processor. */
    int threads() {
        int t = threads != null ? threads : Runtime.getRuntime().availableProcessors();
        if (t < 1) throw new IllegalArgumentException("--threads must be >= 1, got " + t);
        return t;
    }

    /** The engine's defaults with these options, and a queue of {@code maxQueue}. */
    Engine.Config config(int maxQueue) {
        return Engine.Config.defaults().withKvBudget(kvBudget).withMaxQueue(maxQueue).withMaxRunning(maxRunning)
                .withMaxStepTokens(maxStepTokens).withMaxPrefillTokens(maxPrefillTokens).withKvDtype(kvDtype).withBlockSize(blockSize);
    }

    /** f32, f16 or int8 (and KvDtype.parse's other spellings). */
    static final class DtypeConverter implements CommandLine.ITypeConverter<KvDtype> {
        @Override
        public KvDtype convert(String value) {
            try {
                return KvDtype.parse(value);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }

    /** {@code yield} or {@code spin}, any case. */
    static final class WaitingConverter implements CommandLine.ITypeConverter<WorkerPool.Waiting> {
        @Override
        public WorkerPool.Waiting convert(String value) {
            for (WorkerPool.Waiting w : WorkerPool.Waiting.values()) if (w.name().equalsIgnoreCase(value.trim())) return w;
            throw new CommandLine.TypeConversionException("expected yield or spin, got '" + value + "'");
        }
    }
}
