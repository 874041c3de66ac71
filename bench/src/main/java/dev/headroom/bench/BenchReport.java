package dev.headroom.bench;

import dev.headroom.bench.ref.ReferenceCheck;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.results.Result;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.ChainedOptionsBuilder;
import org.openjdk.jmh.runner.options.CommandLineOptionException;
import org.openjdk.jmh.runner.options.CommandLineOptions;
import org.openjdk.jmh.runner.options.OptionsBuilder;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

/**
 * Runs {@link ForwardBenchmark}, {@link CReferenceBenchmark} and {@link SgemmBenchmark} through
 * JMH and prints one table, also written to {@code bench/results/forward.csv}:
 * <pre>
 *   n  threads  Headroom ms  C ms  Java/C  sgemm GFLOP/s  sgemm-bound ms  Headroom × bound
 * </pre>
 * where the sgemm rate is the one measured in the same run with the same thread count, the
 * bound is the forward pass's FLOPs ({@link Problem#flops}) at that rate, and "Headroom × bound"
 * how far Headroom is from it.
 *
 * <p>Before any timing, {@link ReferenceCheck} runs in a child JVM (with Headroom's JVM flags,
 * which this JVM may lack); if the C reference and Headroom disagree, nothing is timed and the
 * report exits with status 1.
 *
 * <p>Arguments are JMH's ({@code -h} lists them), e.g. {@code -p n=512,1024 -wi 1 -i 2}. Without
 * a benchmark regex the three benchmarks run. The mode is always average time in milliseconds:
 * the table is computed from it. The CSV goes to {@code bench/results/} beside the jar, or to
 * {@code -Dheadroom.bench.results=DIR}.
 */
public final class BenchReport {
    /** The flags of the JVM that runs Headroom, as in the benchmarks' {@code @Fork}. */
    static final List<String> HEADROOM_JVM_FLAGS = List.of("--add-modules=jdk.incubator.vector",
            "--enable-native-access=ALL-UNNAMED");

    private BenchReport() {}

    public static void main(String[] args) throws IOException, InterruptedException {
        // Correctness first: the comparison means nothing if the two programs differ.
        Collection<RunResult> results = runJmh(BenchReport.class, args, ReferenceCheck.class, "the reference check",
                List.of(ForwardBenchmark.class, CReferenceBenchmark.class, SgemmBenchmark.class));
        if (results == null) return;

        List<Row> rows = tabulate(results);
        String table = format(rows);
        System.out.println();
        System.out.println("Forward pass, d_model " + Problem.D_MODEL + ", " + Problem.HEADS + " heads, batch 1, "
                + "FLOPs = 8·n·E² + 4·n²·E; sgemm " + SgemmBenchmark.SIZE + "³ with OpenBLAS threads = threads");
        System.out.println("command: java -cp bench/target/benchmarks.jar " + BenchReport.class.getName()
                + (args.length == 0 ? "" : " " + String.join(" ", args)));
        System.out.print(table);
        Path csv = BenchPaths.resultsDirectory().resolve("forward.csv");
        Files.createDirectories(csv.getParent());
        Files.writeString(csv, csv(rows));
        System.out.println("written to " + csv);
    }

    /**
     * What every report's main does before its table: parses JMH's options from {@code args}
     * (a bad one exits 2; {@code -h} prints help and returns null), runs {@code check}'s main in a
     * child JVM (a failure exits 1 before anything is timed), then runs JMH in average-time mode,
     * milliseconds, with {@code benchmarks} when no regex was given (a JMH failure exits 1).
     */
    static Collection<RunResult> runJmh(Class<?> report, String[] args, Class<?> check, String checkName,
                                        List<Class<?>> benchmarks) throws IOException, InterruptedException {
        String name = report.getSimpleName();
        CommandLineOptions cmd;
        try {
            cmd = new CommandLineOptions(args);
        } catch (CommandLineOptionException e) {
            System.err.println("bad JMH option: " + e.getMessage());
            System.exit(2);
            return null;
        }
        if (cmd.shouldHelp()) {
            System.out.println("usage: java -cp bench/target/benchmarks.jar " + report.getName() + " [JMH options] [benchmark regex]");
            cmd.showHelp();
            return null;
        }
        if (!runInChildJvm(check)) {
            System.err.println(name + ": " + checkName + " failed (see above); no benchmark was run.");
            System.exit(1);
        }
        ChainedOptionsBuilder options = new OptionsBuilder().parent(cmd).mode(Mode.AverageTime).timeUnit(TimeUnit.MILLISECONDS);
        if (cmd.getIncludes().isEmpty()) {
            for (Class<?> c : benchmarks) options.include("\\." + c.getSimpleName() + "\\.");
        }
        if (!cmd.shouldFailOnError().hasValue()) options.shouldFailOnError(true);
        try {
            return new Runner(options.build()).run();
        } catch (RunnerException e) {
            System.err.println(name + ": JMH failed: " + e.getMessage());
            e.printStackTrace();
            System.exit(1);
            return null;
        }
    }

    /** Runs {@code main}'s main method in a child JVM with this JVM's arguments plus Headroom's flags; true if it exits 0. */
    static boolean runInChildJvm(Class<?> main) throws IOException, InterruptedException {
        List<String> command = new ArrayList<>();
        command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        command.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        command.addAll(HEADROOM_JVM_FLAGS);
        command.add("-cp");
        command.add(System.getProperty("java.class.path"));
        command.add(main.getName());
        Process p = new ProcessBuilder(command).inheritIO().start();
        return p.waitFor() == 0;
    }

    /** One line of the table; a figure that was not measured in this run is NaN. */
    record Row(int n, int threads, double headroomMs, double headroomError, double cMs, double cError,
               double sgemmGflops) {
        double javaOverC() {
            return headroomMs / cMs;
        }

        /** The forward pass's FLOPs at the sgemm rate, in ms. */
        double boundMs() {
            return Problem.flops(n, Problem.D_MODEL) / (sgemmGflops * 1e6);
        }

        double headroomOverBound() {
            return headroomMs / boundMs();
        }
    }

    static List<Row> tabulate(Collection<RunResult> results) {
        record Key(int n, int threads) implements Comparable<Key> {
            public int compareTo(Key o) {
                return n != o.n ? Integer.compare(n, o.n) : Integer.compare(threads, o.threads);
            }
        }
        Map<Key, double[]> headroom = new TreeMap<>(), c = new TreeMap<>();
        Map<Integer, Double> sgemmGflops = new TreeMap<>();
        for (RunResult r : results) {
            String name = r.getParams().getBenchmark();
            Result<?> primary = r.getPrimaryResult();
            double ms = toMillis(primary.getScore(), primary.getScoreUnit());
            double err = toMillis(primary.getScoreError(), primary.getScoreUnit());
            int threads = Integer.parseInt(r.getParams().getParam("threads"));
            if (name.startsWith(SgemmBenchmark.class.getName() + ".")) {
                sgemmGflops.put(threads, SgemmBenchmark.FLOPS / (ms * 1e6));
            } else {
                Key key = new Key(Integer.parseInt(r.getParams().getParam("n")), threads);
                if (name.startsWith(ForwardBenchmark.class.getName() + ".")) headroom.put(key, new double[]{ms, err});
                else if (name.startsWith(CReferenceBenchmark.class.getName() + ".")) c.put(key, new double[]{ms, err});
            }
        }
        TreeMap<Key, Boolean> keys = new TreeMap<>();
        headroom.keySet().forEach(k -> keys.put(k, true));
        c.keySet().forEach(k -> keys.put(k, true));
        double[] missing = {Double.NaN, Double.NaN};
        List<Row> rows = new ArrayList<>();
        for (Key k : keys.keySet()) {
            double[] h = headroom.getOrDefault(k, missing), cr = c.getOrDefault(k, missing);
            rows.add(new Row(k.n, k.threads, h[0], h[1], cr[0], cr[1], sgemmGflops.getOrDefault(k.threads, Double.NaN)));
        }
        return rows;
    }

    /** A JMH average-time score in milliseconds; the report forces ms/op, this guards against a surprise. */
    static double toMillis(double score, String unit) {
        return switch (unit) {
            case "ms/op" -> score;
            case "us/op" -> score / 1e3;
            case "ns/op" -> score / 1e6;
            case "s/op" -> score * 1e3;
            default -> throw new IllegalStateException("unexpected JMH score unit " + unit + " (need average time)");
        };
    }

    static String format(List<Row> rows) {
        StringBuilder sb = new StringBuilder();
        String header = String.format(Locale.ROOT, "%6s %7s %16s %16s %7s %13s %14s %16s%n",
                "n", "threads", "Headroom ms", "C ms", "Java/C", "sgemm GFLOP/s", "sgemm-bound ms", "Headroom × bound");
        sb.append(header);
        for (Row r : rows) {
            sb.append(String.format(Locale.ROOT, "%6d %7d %16s %16s %7s %13s %14s %16s%n",
                    r.n, r.threads, withError(r.headroomMs, r.headroomError), withError(r.cMs, r.cError),
                    number(r.javaOverC(), "%.2f"), number(r.sgemmGflops, "%.1f"), number(r.boundMs(), "%.2f"),
                    number(r.headroomOverBound(), "%.2f")));
        }
        return sb.toString();
    }

    private static String withError(double ms, double error) {
        if (Double.isNaN(ms)) return "-";
        return Double.isNaN(error) ? String.format(Locale.ROOT, "%.2f", ms)
                : String.format(Locale.ROOT, "%.2f ± %.2f", ms, error);
    }

    private static String number(double v, String format) {
        return Double.isNaN(v) ? "-" : String.format(Locale.ROOT, format, v);
    }

    static String csv(List<Row> rows) {
        StringBuilder sb = new StringBuilder("n,threads,headroom_ms,headroom_ms_error,c_ms,c_ms_error,java_over_c,"
                + "sgemm_gflops,sgemm_bound_ms,headroom_over_bound\n");
        for (Row r : rows) {
            sb.append(String.format(Locale.ROOT, "%d,%d,%s,%s,%s,%s,%s,%s,%s,%s%n", r.n, r.threads,
                    cell(r.headroomMs), cell(r.headroomError), cell(r.cMs), cell(r.cError), cell(r.javaOverC()),
                    cell(r.sgemmGflops), cell(r.boundMs()), cell(r.headroomOverBound())));
        }
        return sb.toString();
    }

    private static String cell(double v) {
        return Double.isNaN(v) ? "" : String.format(Locale.ROOT, "%.4f", v);
    }
}
