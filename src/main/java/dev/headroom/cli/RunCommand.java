package dev.headroom.cli;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.inspect.Inspection;
import dev.headroom.io.Npy;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;

/** {@code headroom run}: one forward pass over .npy input with given weights. */
@Command(name = "run", mixinStandardHelpOptions = true,
        description = "Run multi-head attention on an .npy input and write the output as .npy.")
final class RunCommand implements Callable<Integer> {
    @Mixin
    LayerOptions layer;

    @Option(names = "--input", required = true,
            description = "Query input X, float32 .npy of shape (n, E) or (B, n, E); '-' reads standard input.")
    Path input;

    @Option(names = "--key-value", description = "Key/value input for cross-attention, (n_k, E) or (B, n_k, E); '-' reads standard input.")
    Path keyValue;

    @Option(names = "--output", required = true, description = "Where to write Y (same shape as the input).")
    Path output;

    @Option(names = "--causal", description = "Causal mask: query i sees keys j <= i + n_k - n_q.")
    boolean causal;

    @Option(names = "--key-lengths", split = ",", description = "Real keys per batch element (padding), e.g. 5,7.")
    int[] keyLengths;

    @Option(names = "--mask", description = "Boolean .npy mask (true = allowed) of shape (n_q, n_k), (B, n_q, n_k) or (B, H, n_q, n_k).")
    Path maskFile;

    @Mixin
    PositionOptions positions;

    @Option(names = "--decode", description = "Compute the same causal self-attention through a paged KV cache: prefill the "
            + "first --prefill tokens of every sequence (batch element) in one step, then decode the rest one token per step, "
            + "all sequences together. The output equals the whole forward's within float32 rounding.")
    boolean decode;

    @Option(names = "--prefill", paramLabel = "P", description = "With --decode: tokens prefilled in the first step (default: half the sequence).")
    Integer prefill;

    @Option(names = "--block-size", defaultValue = "16", description = "With --decode: tokens per cache block (default ${DEFAULT-VALUE}).")
    int blockSize;

    @Option(names = "--kv-dtype", defaultValue = "f32", paramLabel = "f32|f16|int8",
            description = "With --decode: how the cache stores keys and values (default ${DEFAULT-VALUE}).")
    String kvDtype;

    @Option(names = "--progress-after", defaultValue = "2", paramLabel = "SECONDS",
            description = "Show a progress bar on stderr once the forward pass has run this long (default ${DEFAULT-VALUE}; negative: never).")
    double progressAfter;

    @Override
    public Integer call() throws Exception {
        CliFiles.checkOutputFile(output, "--output");
        try (TrackedArena arena = TrackedArena.ofShared()) {
            if (NpyInput.isStandardInput(input) && NpyInput.isStandardInput(keyValue)) {
                throw new IllegalArgumentException("--input and --key-value cannot both be standard input ('-')");
            }
            Tensor x = CliFiles.read(input, "--input", () -> NpyInput.read(input, arena));
            Tensor kv = keyValue == null ? null : CliFiles.read(keyValue, "--key-value", () -> NpyInput.read(keyValue, arena));
            AttentionConfig config = positions.apply(layer.config(x.dim(-1)));
            AttentionWeights w = layer.load(config, arena);
            Mask mask = causal ? Mask.causal() : Mask.none();
            if (keyLengths != null) mask = mask.withKeyLengths(keyLengths);
            if (maskFile != null) {
                int[][] shape = new int[1][];
                MemorySegment bytes = CliFiles.read(maskFile, "--mask", () -> Npy.readBooleans(maskFile, arena, shape));
                mask = mask.withAllowed(bytes, shape[0]);
            }
            mask = positions.apply(mask);
            MultiHeadAttention.Options options = layer.options();
            if (decode) {
                if (!causal || kv != null || keyLengths != null || maskFile != null) {
                    throw new IllegalArgumentException("--decode computes causal self-attention: it needs --causal and takes no "
                            + "--key-value, --key-lengths or --mask");
                }
                try (MultiHeadAttention mha = new MultiHeadAttention(w, options)) {
                    Tensor y = CachedRun.run(mha, x, mask, prefill, blockSize, dev.headroom.cache.KvDtype.parse(kvDtype), arena, System.out);
                    CliFiles.write(output, "the output", () -> Npy.write(output, y));
                    System.out.printf("input %s -> output %s written to %s%n", x.shapeString(), y.shapeString(), output);
                }
                return 0;
            }
            try (MultiHeadAttention mha = new MultiHeadAttention(w, options); Workspace ws = new Workspace()) {
                Tensor y = Tensor.allocate(arena, x.shape());
                long rows = (long) (x.rank() == 3 ? x.dim(0) : 1) * config.heads() * x.dim(-2);
                OffHeap.resetPeak();
                long t0 = System.nanoTime();
                try (ForwardProgress progress = new ForwardProgress("forward", rows,
                        Duration.ofNanos(Math.round(progressAfter * 1e9)), System.err)) {
                    mha.forward(x, kv, mask, y, ws, new Inspection(null, null, null, progress));
                }
                double ms = (System.nanoTime() - t0) / 1e6;
                CliFiles.write(output, "the output", () -> Npy.write(output, y));
                System.out.printf("input %s%s -> output %s written to %s%n", x.shapeString(),
                        kv == null ? "" : " over key/value " + kv.shapeString(), y.shapeString(), output);
                System.out.printf("%s, bias=%s, %s%s%n", describe(config), w.hasBias(), mask.isNone() ? "no mask" : "masked",
                        mask.isCausal() ? " (causal)" : "");
                System.out.printf("forward %.2f ms on %d threads; off-heap now %s, peak %s, mapped %s%n", ms,
                        options.threads(), OffHeap.format(OffHeap.currentBytes()), OffHeap.format(OffHeap.peakBytes()),
                        OffHeap.format(OffHeap.mappedBytes()));
            }
        }
        return 0;
    }

    static String describe(AttentionConfig c) {
        return "d_model " + c.dModel() + ", " + c.heads() + " heads, " + c.kvHeads() + " kv heads, head dim " + c.headDim();
    }
}
