package dev.headroom.cli;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.io.SafeTensors;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Path;

/** The options that describe one attention layer and how to run it (a picocli mixin of `run` and `inspect`). */
final class LayerOptions {
    @Option(names = "--weights",
            description = "A directory of .npy files or a .safetensors file with PyTorch keys "
                    + "(in_proj_weight/in_proj_bias/out_proj.*, or q_proj/k_proj/v_proj/o_proj .weight/.bias).")
    Path weights;

    @Option(names = "--mmap",
            description = "Map a .safetensors weights file instead of copying it into memory (the default): starts faster "
                    + "and shares the page cache, but if the file is truncated or rewritten in place while the command runs, "
                    + "the process can crash (SIGBUS).")
    boolean mmap;

    @Option(names = "--prefix", defaultValue = "", description = "Key prefix in the weights, e.g. 'layers.0.self_attn.'.")
    String prefix;

    @Option(names = "--heads", description = "Query heads H.")
    Integer heads;

    @Option(names = "--kv-heads", description = "Key/value heads G (divides H; default H).")
    Integer kvHeads;

    @Option(names = "--head-dim", description = "Head width d (default E / H).")
    Integer headDim;

    @Option(names = "--threads", description = "Worker threads (default: all processors; more are clamped to that, with a warning).")
    Integer threads;

    @Option(names = "--budget", converter = BenchCommand.ByteSizeConverter.class, paramLabel = "SIZE",
            description = "Most off-heap memory a forward may hold (weights, activations, scratch), e.g. 8g; a forward whose "
                    + "estimate exceeds it is refused before it allocates anything. Default: 90 %% of what this machine and the "
                    + "limits the process runs under (cgroup, ulimit -v) leave beside the Java heap; 0: no limit.")
    Long budget;

    @Option(names = "--check-finite", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "Check for NaN and infinities: weights once, inputs before the forward, the output after it, "
                    + "naming where a non-finite value first appeared (default: on; --no-check-finite turns it off).")
    boolean checkFinite;

    /** The layer's shape for model width E; --weights and --heads must have been given. */
    AttentionConfig config(int dModel) {
        if (weights == null || heads == null) {
            throw new IllegalArgumentException("--weights and --heads are required (or, for inspect, --model minilm)");
        }
        int d = headDim != null ? headDim : AttentionConfig.of(dModel, heads).headDim();
        return AttentionConfig.of(dModel, heads, kvHeads == null ? heads : kvHeads, d);
    }

    AttentionWeights load(AttentionConfig config, Arena arena) throws IOException {
        return CliFiles.read(weights, "--weights", () -> AttentionWeights.load(weights, config, prefix, arena,
                mmap ? SafeTensors.Load.MAP : SafeTensors.Load.COPY));
    }

    MultiHeadAttention.Options options() {
        MultiHeadAttention.Options o = MultiHeadAttention.Options.defaults().withThreads(Threads.resolve(threads, System.err))
                .withCheckFinite(checkFinite);
        return budget == null ? o : o.withMemoryBudget(budget);
    }
}
