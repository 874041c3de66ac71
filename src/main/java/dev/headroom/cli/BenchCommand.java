package dev.headroom.cli;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.CallOptions;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Profile;
import dev.headroom.attention.Workspace;
import dev.headroom.blas.OpenBlas;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code headroom bench}: forward time over sequence lengths, set against OpenBLAS's own sgemm
 * rate measured in the same run.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = {"Time the forward pass over a range of sequence lengths (random weights).",
                "Each length is timed once its speed is steady: " + SteadyTiming.DEFAULT_RULE + "; a length that never "
                        + "settles is marked. Then --repeats calls are timed; their median, minimum and maximum are reported."})
final class BenchCommand implements Callable<Integer> {
    @Option(names = "--d-model", defaultValue = "768", description = "Model width E (default ${DEFAULT-VALUE}).")
    int dModel;

    @Option(names = "--heads", defaultValue = "12", description = "Heads (default ${DEFAULT-VALUE}).")
    int heads;

    @Option(names = "--kv-heads", description = "Key/value heads (default: heads).")
    Integer kvHeads;

    @Option(names = "--lengths", split = ",", defaultValue = "512,1024,2048,4096",
            description = "Sequence lengths (default ${DEFAULT-VALUE}).")
    int[] lengths;

    @Option(names = "--batch", defaultValue = "1", description = "Batch size (default ${DEFAULT-VALUE}).")
    int batch;

    @Option(names = "--threads", description = "Threads (default: all processors; more are clamped to that, with a warning).")
    Integer threads;

    @Option(names = "--repeats", defaultValue = "10", description = "Timed runs per length, after warm-up; median, min and max are reported (default ${DEFAULT-VALUE}).")
    int repeats;

    @Option(names = "--causal", description = "Causal mask (FLOPs are still counted as dense).")
    boolean causal;

    @Option(names = "--query-block", defaultValue = "256", description = "Query rows per task (default ${DEFAULT-VALUE}).")
    int queryBlock;

    @Option(names = "--breakdown", description = "Also report where the time goes (projections, scores, softmax, weighted sum, output).")
    boolean breakdown;

    @Option(names = "--csv", description = "Also write the results as CSV here.")
    Path csv;

    @Option(names = "--long", description = "Long-sequence sweep: n = 1,024 … 131,072 (doubling) for dense, tiled exact, "
            + "sliding window 512 and BigBird; writes long.csv and long.png to --out.")
    boolean longSweep;

    @Option(names = "--max-length", defaultValue = "131072", description = "Longest n of the --long sweep (default ${DEFAULT-VALUE}).")
    int maxLength;

    @Option(names = "--budget", defaultValue = "8g", converter = ByteSizeConverter.class,
            description = "Memory budget of the --long and --decode sweeps: a configuration stops at the first n whose estimate "
                    + "exceeds it; a decode cell whose cache would exceed it is skipped (default ${DEFAULT-VALUE}).")
    long budget;

    @Option(names = "--max-seconds", defaultValue = "120", description = "In --long, stop a configuration when its next run is predicted to take longer (default ${DEFAULT-VALUE}).")
    double maxSeconds;

    @Option(names = "--configs", split = ",", description = "In --long, only these configurations (dense, tiled, window, bigbird).")
    List<String> configs;

    @Option(names = "--out", defaultValue = "results", description = "Directory for --long outputs (default ${DEFAULT-VALUE}).")
    Path outDir;

    @Option(names = "--decode", description = "Decode attention over a paged KV cache: one new token per sequence against its "
            + "cached context, for every --kv-dtype × --contexts × --sequences, set against the streaming read bandwidth "
            + "measured in the same run.")
    boolean decodeSweep;

    @Option(names = "--contexts", split = ",", defaultValue = "1024,4096,16384", description = "With --decode: cached tokens per sequence (default ${DEFAULT-VALUE}).")
    int[] contexts;

    @Option(names = "--sequences", split = ",", defaultValue = "1,16,64", description = "With --decode: sequences per step (default ${DEFAULT-VALUE}).")
    int[] sequences;

    @Option(names = "--kv-dtype", split = ",", defaultValue = "f32,int8", description = "With --decode: cache dtypes (f32, f16, int8; default ${DEFAULT-VALUE}).")
    List<String> kvDtypes;

    @Option(names = "--shape", defaultValue = "llama", description = "With --decode: llama (32 query heads over 8 key/value heads of 128) "
            + ", small (12 over 4 of 64) or tiny (4 over 2 of 64, the tiny decoder's) (default ${DEFAULT-VALUE}).")
    String shape;

    @Option(names = "--block-size", defaultValue = "16", description = "With --decode: tokens per cache block (default ${DEFAULT-VALUE}).")
    int blockSize;

    /** How each length is warmed up (printed in --help, in the output and in the README). */
    static final SteadyTiming.Rule WARMUP = SteadyTiming.Rule.DEFAULT;

    /** One measured length. */
    record Result(int n, SteadyTiming.Result timing, double gflops, double shareOfSgemm, double boundMs,
                  long peakBytes, String breakdown) {
        double medianMs() {
            return timing.median();
        }
    }

    @Override
    public Integer call() throws IOException {
        int t = Threads.resolve(threads, System.err);
        AttentionConfig config = AttentionConfig.of(dModel, heads);
        if (kvHeads != null) config = config.withKvHeads(kvHeads);
        PrintStream out = System.out;
        if (csv != null && !longSweep && !decodeSweep) CliFiles.checkOutputFile(csv, "--csv");
        if (longSweep) CliFiles.checkOutputDirectory(outDir, "--out");
        if (decodeSweep) {
            if (csv != null) CliFiles.checkOutputFile(csv, "--csv");
            DecodeBench.run(shape, contexts, sequences, kvDtypes, blockSize, t, repeats, budget, csv, out);
            return 0;
        }
        if (longSweep) {
            double rate = SgemmRate.measure(t, 2048, 5);
            out.printf("Headroom long-sequence bench: %s, %d threads, budget %s, time limit %.0f s per run; "
                    + "OpenBLAS sgemm on %d threads: %.1f GFLOP/s, kernel %s%n", RunCommand.describe(config), t,
                    OffHeap.format(budget), maxSeconds, t, rate, OpenBlas.coreChoice());
            List<Integer> ns = new ArrayList<>();
            for (int n = 1024; n <= maxLength; n *= 2) ns.add(n);
            List<LongBench.Config> chosen = LongBench.configs().stream()
                    .filter(c -> configs == null || configs.stream().anyMatch(f -> c.name().startsWith(f.trim())))
                    .toList();
            new LongBench(config, t, budget, maxSeconds).run(ns.stream().mapToInt(Integer::intValue).toArray(), chosen,
                    outDir.resolve("long.csv"), outDir.resolve("long.png"), rate);
            return 0;
        }
        out.printf("Headroom bench: %s, batch %d, %d threads, %s, query block %d%n", RunCommand.describe(config),
                batch, t, causal ? "causal" : "no mask", queryBlock);
        double sgemm = SgemmRate.measure(t, 2048, 5);
        out.printf("OpenBLAS sgemm 2048×2048×2048 on %d threads: %.1f GFLOP/s (the limit the figures below are set against), kernel %s%n",
                t, sgemm, OpenBlas.coreChoice());
        List<Result> results = new ArrayList<>();
        try (TrackedArena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(config, true, 42, arena);
            Profile profile = breakdown ? new Profile() : null;
            MultiHeadAttention.Options options = MultiHeadAttention.Options.defaults().withThreads(t)
                    .withQueryBlock(queryBlock);
            try (MultiHeadAttention mha = new MultiHeadAttention(w, options);
                 ProgressBar bar = progressBar("bench", (long) lengths.length * (repeats + 1))) {
                for (int n : lengths) {
                    results.add(measure(mha, config, n, t, sgemm, profile, bar));
                }
            }
        }
        out.printf("%8s %11s %9s %9s %9s %11s %10s %8s %14s  %s%n", "n", "median ms", "min ms", "max ms", "GFLOP/s",
                "% of sgemm", "bound ms", "× bound", "peak off-heap", "warm-up");
        for (Result r : results) {
            out.printf("%8d %11.2f %9.2f %9.2f %9.1f %10.1f%% %10.2f %8.2f %14s  %s%n", r.n, r.medianMs(), r.timing.min(),
                    r.timing.max(), r.gflops, 100 * r.shareOfSgemm, r.boundMs, r.medianMs() / r.boundMs,
                    OffHeap.format(r.peakBytes), r.timing.describeWarmup());
            if (r.breakdown != null) out.printf("%8s time per phase: %s%n", "", r.breakdown);
        }
        out.printf("Timing: %s; then %d timed calls per length (median, min, max of those).%n", WARMUP.describe(), repeats);
        out.println("FLOPs counted as batch·(8·n·E² + 4·n²·E); bound = FLOPs ÷ sgemm rate; peak off-heap includes weights, input, output and scratch.");
        if (csv != null) writeCsv(results, t, sgemm);
        return 0;
    }

    /** A progress bar on stderr, so stdout stays a clean table. */
    static ProgressBar progressBar(String task, long steps) {
        return new ProgressBarBuilder().setTaskName(task).setInitialMax(steps).setStyle(ProgressBarStyle.ASCII)
                .setConsumer(new me.tongfei.progressbar.ConsoleProgressBarConsumer(System.err)).build();
    }

    /** Parses sizes like 512m, 8g, 1048576. */
    static final class ByteSizeConverter implements picocli.CommandLine.ITypeConverter<Long> {
        @Override
        public Long convert(String v) {
            String t = v.trim().toLowerCase();
            long unit = switch (t.isEmpty() ? ' ' : t.charAt(t.length() - 1)) {
                case 'k' -> 1L << 10;
                case 'm' -> 1L << 20;
                case 'g' -> 1L << 30;
                case 't' -> 1L << 40;
                default -> 1;
            };
            String digits = unit == 1 ? t : t.substring(0, t.length() - 1);
            return Math.round(Double.parseDouble(digits) * unit);
        }
    }

    private Result measure(MultiHeadAttention mha, AttentionConfig config, int n, int t, double sgemm, Profile profile,
                           ProgressBar bar) {
        try (TrackedArena arena = TrackedArena.ofShared(); Workspace ws = new Workspace()) {
            Tensor x = Tensor.uniform(arena, n, 1, batch, n, config.dModel());
            Tensor y = Tensor.allocate(arena, batch, n, config.dModel());
            Mask mask = causal ? Mask.causal() : Mask.none();
            SteadyTiming.Result timing = SteadyTiming.measure(WARMUP, repeats, () -> mha.forward(x, null, mask, y, ws, new CallOptions(null, profile)), () -> {
                bar.step(); // warm-up done (JIT, page faults, workspace): what it moved is not counted
                if (profile != null) profile.reset();
                OffHeap.resetPeak();
            });
            bar.stepBy(repeats);
            double median = timing.median();
            double flops = batch * (8.0 * n * config.dModel() * (double) config.dModel() + 4.0 * n * (double) n * config.dModel());
            double gflops = flops / (median * 1e6);
            double boundMs = flops / (sgemm * 1e6);
            return new Result(n, timing, gflops, gflops / sgemm, boundMs, OffHeap.peakBytes(),
                    profile == null ? null : profile.shares());
        }
    }

    private void writeCsv(List<Result> results, int t, double sgemm) throws IOException {
        StringBuilder s = new StringBuilder("n,batch,d_model,heads,threads,median_ms,min_ms,max_ms,repeats,warmup_calls,"
                + "warmup_seconds,warmup_steady,gflops,sgemm_gflops,share_of_sgemm,bound_ms,peak_offheap_bytes\n");
        for (Result r : results) {
            SteadyTiming.Result m = r.timing;
            s.append(String.format(java.util.Locale.ROOT, "%d,%d,%d,%d,%d,%.3f,%.3f,%.3f,%d,%d,%.2f,%b,%.2f,%.2f,%.4f,%.3f,%d%n",
                    r.n, batch, dModel, heads, t, m.median(), m.min(), m.max(), m.sortedMs().length, m.warmupCalls(),
                    m.warmupSeconds(), m.steady(), r.gflops, sgemm, r.shareOfSgemm, r.boundMs, r.peakBytes));
        }
        CliFiles.write(csv, "the results", () -> {
            Path parent = csv.toAbsolutePath().getParent();
            if (parent != null) Files.createDirectories(parent);
            Files.writeString(csv, s.toString());
        });
        System.out.println("wrote " + csv);
    }
}
