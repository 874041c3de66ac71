package dev.headroom.cli;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionKernel;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.DenseKernel;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MemoryEstimate;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.TiledKernel;
import dev.headroom.attention.Workspace;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.report.Charts;
import dev.headroom.sparse.AttentionPattern;
import dev.headroom.sparse.BlockLayout;
import dev.headroom.tensor.Tensor;
import me.tongfei.progressbar.ProgressBar;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code headroom bench --long}: attention from 1,024 to 131,072 tokens for dense, tiled exact,
 * sliding window and BigBird, with time, useful GFLOP/s, peak off-heap bytes and process RSS;
 * writes a CSV and a log-log PNG. A configuration stops cleanly at the first length whose memory
 * estimate exceeds the budget or whose predicted time exceeds the time limit.
 */
final class LongBench {
    /** One configuration of the sweep. */
    record Config(String name, AttentionKernel kernel, AttentionPattern pattern, double growth) {}

    /** One measured (or skipped) point. */
    record Point(String config, int n, double seconds, double usefulGflop, double density, long peakOffHeap,
                 long peakRss, long rssBefore, MemoryEstimate estimate, String status) {}

    private final AttentionConfig layer;
    private final int threads;
    private final long budget;
    private final double maxSeconds;
    private final PrintStream out = System.out;

    LongBench(AttentionConfig layer, int threads, long budget, double maxSeconds) {
        this.layer = layer;
        this.threads = threads;
        this.budget = budget;
        this.maxSeconds = maxSeconds;
    }

    static List<Config> configs() {
        return List.of(
                new Config("dense", DenseKernel.INSTANCE, null, 4),
                new Config("tiled exact", new TiledKernel(1024), null, 4),
                new Config("window 512", null, AttentionPattern.slidingWindow(512), 2),
                new Config("bigbird", null, AttentionPattern.bigBird(192, 128, 3, 64, 1), 2));
    }

    List<Point> run(int[] lengths, List<Config> configs, Path csv, Path png, double sgemmRate) throws IOException {
        List<Point> points = new ArrayList<>();
        try (TrackedArena weightsArena = TrackedArena.ofShared();
             ProgressBar bar = BenchCommand.progressBar("long bench", (long) lengths.length * configs.size())) {
            AttentionWeights w = AttentionWeights.random(layer, true, 42, weightsArena);
            for (Config c : configs) {
                MultiHeadAttention.Options options = MultiHeadAttention.Options.defaults().withThreads(threads)
                        .withKernel(c.kernel).withMemoryBudget(budget);
                try (MultiHeadAttention mha = new MultiHeadAttention(w, options)) {
                    warmUp(mha, c);
                    double lastSeconds = 0;
                    boolean stopped = false;
                    for (int n : lengths) {
                        bar.step();
                        Mask mask = c.pattern == null ? Mask.none() : Mask.pattern(c.pattern);
                        MemoryEstimate e = mha.estimate(1, n, n, false, mask);
                        double predicted = lastSeconds * c.growth;
                        if (stopped) continue;
                        if (e.total() > budget) {
                            points.add(new Point(c.name, n, 0, 0, 0, 0, 0, 0, e, "estimate over budget"));
                            stopped = true;
                            continue;
                        }
                        if (predicted > maxSeconds) {
                            points.add(new Point(c.name, n, 0, 0, 0, 0, 0, 0, e,
                                    String.format("predicted %.0f s over the %.0f s limit", predicted, maxSeconds)));
                            stopped = true;
                            continue;
                        }
                        Point p = measure(mha, c, n, e);
                        points.add(p);
                        lastSeconds = p.seconds;
                    }
                }
            }
        }
        print(points, sgemmRate);
        writeCsv(csv, points);
        plot(png, points);
        out.println("wrote " + csv + " and " + png);
        return points;
    }

    private void warmUp(MultiHeadAttention mha, Config c) {
        try (TrackedArena arena = TrackedArena.ofShared(); Workspace ws = new Workspace()) {
            Tensor x = input(arena, 1024), y = Tensor.allocate(arena, 1, 1024, layer.dModel());
            Mask mask = c.pattern == null ? Mask.none() : Mask.pattern(c.pattern);
            for (int i = 0; i < 3; i++) mha.forward(x, null, mask, y, ws);
        }
    }

    private Tensor input(TrackedArena arena, int n) {
        return Tensor.uniform(arena, n, 1, 1, n, layer.dModel());
    }

    private Point measure(MultiHeadAttention mha, Config c, int n, MemoryEstimate e) {
        try (TrackedArena arena = TrackedArena.ofShared(); Workspace ws = new Workspace()) {
            Tensor x = input(arena, n), y = Tensor.allocate(arena, 1, n, layer.dModel());
            Mask mask = c.pattern == null ? Mask.none() : Mask.pattern(c.pattern);
            double density = c.pattern == null ? 1.0
                    : BlockLayout.compile(c.pattern, layer.heads(), n, n, 0, 256, 64).density();
            long inputsRss = Rss.current();
            Rss.resetPeak();
            OffHeap.resetPeak();
            mha.prepare(x, null, mask, ws); // workspace and sparse layout outside the timing, as a server would
            int reps = n <= 8192 ? 3 : 1;
            double best = Double.MAX_VALUE;
            for (int r = 0; r < reps; r++) {
                long t0 = System.nanoTime();
                mha.forward(x, null, mask, y, ws);
                best = Math.min(best, (System.nanoTime() - t0) / 1e9);
            }
            double d = layer.dModel();
            double useful = 8.0 * n * d * d + 4.0 * n * (double) n * d * density;
            return new Point(c.name, n, best, useful / 1e9, density, OffHeap.peakBytes(), Rss.peak(), inputsRss, e, "ok");
        }
    }

    private void print(List<Point> points, double sgemmRate) {
        out.printf("%-12s %8s %10s %10s %9s %14s %14s %14s %16s%n", "config", "n", "seconds", "GFLOP/s", "density",
                "peak off-heap", "peak RSS", "RSS − inputs", "naive n×n scores");
        for (Point p : points) {
            long naive = 4L * layer.heads() * p.n * (long) p.n;
            if (!p.status.equals("ok")) {
                out.printf("%-12s %8d   skipped: %s (estimate %s)%n", p.config, p.n, p.status, p.estimate);
                continue;
            }
            out.printf("%-12s %8d %10.3f %10.1f %8.4f %14s %14s %14s %16s%n", p.config, p.n, p.seconds,
                    p.usefulGflop / p.seconds, p.density, OffHeap.format(p.peakOffHeap), OffHeap.format(p.peakRss),
                    OffHeap.format(p.peakRss - p.rssBefore), OffHeap.format(naive));
        }
        out.printf("GFLOP/s counts useful work, 8·n·E² + 4·n²·E·density; OpenBLAS sgemm on %d threads ran at %.1f GFLOP/s "
                + "in this run. 'RSS − inputs' is the peak RSS during the call minus the RSS once inputs and output "
                + "existed; 'naive n×n scores' is what one fp32 score matrix per head would take (PyTorch materialises it).%n",
                threads, sgemmRate);
    }

    private void writeCsv(Path csv, List<Point> points) throws IOException {
        StringBuilder s = new StringBuilder("config,n,seconds,useful_gflop,gflops_per_s,density,peak_offheap_bytes,"
                + "peak_rss_bytes,rss_with_inputs_bytes,estimate_bytes,status\n");
        for (Point p : points) {
            s.append(String.format("%s,%d,%.4f,%.2f,%.2f,%.6f,%d,%d,%d,%d,%s%n", p.config, p.n, p.seconds, p.usefulGflop,
                    p.seconds > 0 ? p.usefulGflop / p.seconds : 0, p.density, p.peakOffHeap, p.peakRss, p.rssBefore,
                    p.estimate.total(), p.status));
        }
        CliFiles.write(csv, "the long-sequence results", () -> {
            Path parent = csv.toAbsolutePath().getParent();
            if (parent != null) Files.createDirectories(parent);
            Files.writeString(csv, s.toString());
        });
    }

    private void plot(Path png, List<Point> points) throws IOException {
        Map<String, List<double[]>> time = new LinkedHashMap<>(), memory = new LinkedHashMap<>();
        for (Point p : points) {
            if (!p.status.equals("ok")) continue;
            time.computeIfAbsent(p.config, k -> new ArrayList<>()).add(new double[]{p.n, p.seconds});
            memory.computeIfAbsent(p.config, k -> new ArrayList<>()).add(new double[]{p.n, p.peakOffHeap / 1048576.0});
        }
        List<double[]> naive = new ArrayList<>();
        points.stream().mapToInt(Point::n).distinct().sorted()
                .forEach(n -> naive.add(new double[]{n, 4.0 * layer.heads() * n * (double) n / 1048576.0}));
        memory.put("n×n scores (naive)", naive);
        String sub = " (d_model " + layer.dModel() + ", " + layer.heads() + " heads, " + threads + " threads)";
        CliFiles.write(png, "the long-sequence plot", () -> Charts.write(png, 720, 520, List.of(
                new Charts.Panel("Forward time" + sub, "sequence length n", "seconds", true, true, time, List.of()),
                new Charts.Panel("Peak off-heap memory", "sequence length n", "MiB", true, true, memory,
                        List.of("n×n scores (naive)")))));
    }

    /** Resident set size of this process, from /proc (Linux). */
    static final class Rss {
        static long current() {
            return field("VmRSS:");
        }

        static long peak() {
            return field("VmHWM:");
        }

        /** Resets VmHWM to the current RSS (Linux ≥ 4.0: "5" into clear_refs); best effort. */
        static void resetPeak() {
            try {
                Files.writeString(Path.of("/proc/self/clear_refs"), "5");
            } catch (IOException | UnsupportedOperationException ignored) {
                // not Linux, or not permitted: the peak then covers the whole process life
            }
        }

        private static long field(String name) {
            try {
                for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                    if (line.startsWith(name)) return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
                }
            } catch (IOException | NumberFormatException ignored) {
                // not Linux
            }
            return -1;
        }
    }
}
