package dev.headroom.cli;

import dev.headroom.attention.DecodeWorkload;
import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.memory.OffHeap;
import dev.headroom.runtime.ReadBandwidth;
import me.tongfei.progressbar.ProgressBar;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * {@code bench --decode}: decode attention over a paged KV cache ({@link DecodeWorkload}: one new
 * token per sequence against its cached context, attend stage only), for every combination of
 * dtype, context and number of sequences, set against the machine's streaming read bandwidth
 * measured in the same run ({@link ReadBandwidth}, 1 GiB, same threads). Each cell is warmed up
 * until steady ({@link SteadyTiming}); cells whose cache would exceed the budget are skipped.
 */
final class DecodeBench {
    /** One measured cell. */
    record Cell(String dtype, int context, int sequences, SteadyTiming.Result timing, long bytesRead, long cacheBytes) {
        double tokensPerSecond() {
            return sequences / (timing.median() / 1e3);
        }

        double gbPerSecond() {
            return bytesRead / (timing.median() * 1e6);
        }
    }

    private DecodeBench() {}

    static void run(String shapeName, int[] contexts, int[] sequences, List<String> dtypes, int blockSize, int threads, int repeats,
                    long budget, Path csv, PrintStream out) throws IOException {
        int[] shape = DecodeWorkload.shape(shapeName);
        double bandwidth;
        try (ReadBandwidth rb = new ReadBandwidth(ReadBandwidth.DEFAULT_BYTES, threads)) {
            bandwidth = rb.measure(9);
        }
        out.printf(Locale.ROOT, "Headroom decode bench: %s shape (%d query heads, %d key/value heads of %d), blocks of %d, %d threads; "
                + "streaming read bandwidth on %d threads, measured now: %.1f GB/s%n", shapeName, shape[0], shape[1], shape[2],
                blockSize, threads, threads, bandwidth);
        out.println("Each cell: " + SteadyTiming.DEFAULT_RULE + "; then " + repeats + " timed steps (median).");
        List<Cell> cells = new ArrayList<>();
        List<String> skipped = new ArrayList<>();
        try (ProgressBar bar = BenchCommand.progressBar("decode", (long) dtypes.size() * contexts.length * sequences.length)) {
            for (String dtype : dtypes) {
                KvDtype kv = KvDtype.parse(dtype);
                for (int context : contexts) {
                    for (int s : sequences) {
                        KvCache.Shape cacheShape = new KvCache.Shape(1, shape[1], shape[2], blockSize, kv);
                        long cacheBytes = KvCache.bytesFor(cacheShape, s, context + blockSize);
                        if (cacheBytes > budget) {
                            skipped.add(dtype + " " + context + "×" + s + " (" + OffHeap.format(cacheBytes) + ")");
                            bar.step();
                            continue;
                        }
                        try (DecodeWorkload w = new DecodeWorkload(shape[0], shape[1], shape[2], context, s, kv, blockSize, threads)) {
                            SteadyTiming.Result timing = SteadyTiming.measure(BenchCommand.WARMUP, repeats, w::step, () -> {});
                            cells.add(new Cell(dtype, context, s, timing, w.bytesRead(), w.cacheStats().usedBytes()));
                        }
                        bar.step();
                    }
                }
            }
        }
        out.printf(Locale.ROOT, "%6s %8s %9s %10s %12s %10s %9s %12s %s%n", "dtype", "context", "sequences", "ms/step", "tokens/s",
                "GB/s", "% of read", "cache", "");
        for (Cell c : cells) {
            out.printf(Locale.ROOT, "%6s %8d %9d %10.3f %12.1f %10.2f %8.1f%% %12s %s%n", c.dtype, c.context, c.sequences,
                    c.timing.median(), c.tokensPerSecond(), c.gbPerSecond(), 100 * c.gbPerSecond() / bandwidth,
                    OffHeap.format(c.cacheBytes), c.timing.steady() ? "" : "(not steady)");
        }
        if (!skipped.isEmpty()) out.println("skipped (cache over the --budget of " + OffHeap.format(budget) + "): " + String.join(", ", skipped));
        out.println("GB/s: keys and values read per step (every cached token of every sequence) over the median step time.");
        if (csv != null) {
            StringBuilder b = new StringBuilder("shape,threads,block_size,dtype,context,sequences,ms_per_step,tokens_per_s,gb_per_s,"
                    + "read_bandwidth_gb_per_s,share_of_read,cache_bytes,steady\n");
            for (Cell c : cells) {
                b.append(String.format(Locale.ROOT, "%s,%d,%d,%s,%d,%d,%.4f,%.2f,%.3f,%.3f,%.4f,%d,%b%n", shapeName, threads, blockSize,
                        c.dtype, c.context, c.sequences, c.timing.median(), c.tokensPerSecond(), c.gbPerSecond(), bandwidth,
                        c.gbPerSecond() / bandwidth, c.cacheBytes, c.timing.steady()));
            }
            CliFiles.write(csv, "the CSV", () -> Files.writeString(csv, b));
        }
    }
}
