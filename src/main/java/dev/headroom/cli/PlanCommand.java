package dev.headroom.cli;

import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.memory.OffHeap;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.Locale;
import java.util.concurrent.Callable;

/**
 * {@code headroom plan}: capacity planning for a paged KV cache: what a block and a token cost, how
 * many sequences of which length a budget holds, and the memory lost to partly filled blocks.
 */
@Command(name = "plan", mixinStandardHelpOptions = true,
        description = "How many sequences of which length a KV cache budget holds, and the waste (partly filled last blocks).")
final class PlanCommand implements Callable<Integer> {
    @Option(names = "--layers", required = true, description = "Layers of the model.")
    int layers;

    @Option(names = "--kv-heads", required = true, description = "Key/value heads per layer.")
    int kvHeads;

    @Option(names = "--head-dim", required = true, description = "Head width d.")
    int headDim;

    @Option(names = "--context", required = true, description = "The longest sequence to plan for, in tokens.")
    int context;

    @Option(names = "--budget", required = true, converter = BenchCommand.ByteSizeConverter.class, description = "Cache memory, e.g. 16g.")
    long budget;

    @Option(names = "--kv-dtype", defaultValue = "f32", description = "f32, f16 or int8 (default ${DEFAULT-VALUE}).")
    String dtype;

    @Option(names = "--block-size", defaultValue = "16", description = "Tokens per block (default ${DEFAULT-VALUE}).")
    int blockSize;

    @Override
    public Integer call() {
        if (context < 1) throw new IllegalArgumentException("--context must be >= 1, got " + context);
        KvDtype kv = KvDtype.parse(dtype);
        KvCache.Shape shape = new KvCache.Shape(layers, kvHeads, headDim, blockSize, kv);
        long block = shape.blockBytes(), blocks = budget / block;
        System.out.printf(Locale.ROOT, "KV cache of %d layers × %d key/value heads × %d, %s%s, blocks of %d tokens:%n", layers, kvHeads,
                headDim, kv.name().toLowerCase(), kv == KvDtype.INT8 ? " (a float scale per token and head)" : "", blockSize);
        System.out.printf(Locale.ROOT, "  one block %s, one token %s (K and V of every layer and head)%n", OffHeap.format(block),
                OffHeap.format(Math.round(shape.bytesPerToken())));
        System.out.printf(Locale.ROOT, "  %s holds %,d blocks = %,d tokens%n", OffHeap.format(budget), blocks, blocks * blockSize);
        if (blocks == 0) {
            System.out.println("  the budget holds no block");
            return 0;
        }
        System.out.printf(Locale.ROOT, "  %10s %12s %12s %12s%n", "length", "sequences", "per sequence", "waste");
        for (int n = context; n >= Math.max(1, blockSize); n /= 2) {
            long per = shape.blocksFor(n), seqs = blocks / per;
            long wasteTokens = per * blockSize - n;
            System.out.printf(Locale.ROOT, "  %,10d %,12d %12s %11.2f%%%n", n, seqs, OffHeap.format(per * block),
                    100.0 * wasteTokens / (per * blockSize));
            if (n == 1) break;
        }
        // lengths spread evenly over [1, context]: on average (blockSize − 1)/2 empty slots per sequence
        double meanLength = (context + 1) / 2.0, meanBlocks = meanLength / blockSize + (blockSize - 1) / (2.0 * blockSize);
        System.out.printf(Locale.ROOT, "  lengths spread evenly over 1..%,d: about %,d sequences, %.2f%% of the cache in partly filled "
                + "blocks ((block − 1)/2 = %.1f empty slots per sequence)%n", context, (long) (blocks / meanBlocks),
                100.0 * (blockSize - 1) / 2.0 / (meanBlocks * blockSize), (blockSize - 1) / 2.0);
        return 0;
    }
}
