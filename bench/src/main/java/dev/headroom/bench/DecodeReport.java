package dev.headroom.bench;

import dev.headroom.runtime.ReadBandwidth;
import org.openjdk.jmh.results.Result;
import org.openjdk.jmh.results.RunResult;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * Runs {@link DecodeBenchmark} (Headroom), {@link OrtGqaBenchmark} (ONNX Runtime's
 * GroupQueryAttention) and {@link ReadBandwidthBenchmark} in one JMH run and prints one table,
 * also written to {@code decode.csv} in {@code bench/results/} (or {@code -Dheadroom.bench.results=DIR}):
 * <pre>
 *   shape context seqs threads dtype  Headroom ms  tokens/s  KV MB  GB/s  % read  ORT f32 ms  Headroom/ORT
 * </pre>
 * per Headroom cell: ms per step (mean ± JMH's 99.9 % error), tokens per second (sequences ÷ step
 * time: one new token per sequence), the keys and values a step reads
 * ({@link DecodeBenchmark#bytesRead}: every cached token once, plus the new one, int8 scales
 * included), that over the step time in GB/s (10⁹ bytes) and as a share of the streaming read
 * bandwidth measured in the same run at the same thread count; then ONNX Runtime's ms per step on
 * the same shape, context, sequences and threads (always float32: ONNX Runtime 1.23's operator has
 * no int8 cache, so an int8 row compares Headroom int8 with ONNX Runtime float32), and Headroom's
 * throughput ÷ ONNX Runtime's (= ORT ms ÷ Headroom ms). A figure not measured in the run is "-".
 *
 * <p>Before any timing, {@link OrtGqaCheck} runs in a child JVM (with Headroom's JVM flags); if
 * ONNX Runtime and Headroom disagree, nothing is timed and the report exits with status 1.
 *
 * <p>Arguments are JMH's ({@code -h} lists them), e.g. {@code -p shape=small -p context=1024
 * -p sequences=16}; without a benchmark regex the three benchmarks run. The mode is always average
 * time in milliseconds: the table is computed from it.
 */
public final class DecodeReport {
    private DecodeReport() {}

    public static void main(String[] args) throws IOException, InterruptedException {
        Collection<RunResult> results = BenchReport.runJmh(DecodeReport.class, args, OrtGqaCheck.class, "the ONNX Runtime check",
                List.of(DecodeBenchmark.class, OrtGqaBenchmark.class, ReadBandwidthBenchmark.class));
        if (results == null) return;

        List<Row> rows = tabulate(results);
        System.out.println();
        System.out.println("Decode attention, one step (append one token per sequence, write its K/V, attend over the cache); "
                + "Headroom paged cache vs ONNX Runtime GroupQueryAttention (float32, shared past/present); "
                + "read bandwidth: streaming read of " + (ReadBandwidth.DEFAULT_BYTES >> 20) + " MiB, same threads");
        System.out.println("command: java -cp bench/target/benchmarks.jar " + DecodeReport.class.getName()
                + (args.length == 0 ? "" : " " + String.join(" ", args)));
        Map<Integer, Double> bandwidth = readBandwidth(results);
        bandwidth.forEach((t, gbs) -> System.out.printf(Locale.ROOT, "read bandwidth, %d thread%s: %.1f GB/s%n", t,
                t == 1 ? "" : "s", gbs));
        System.out.print(format(rows));
        Path csv = BenchPaths.resultsDirectory().resolve("decode.csv");
        Files.createDirectories(csv.getParent());
        Files.writeString(csv, csv(rows));
        System.out.println("written to " + csv);
    }

    /**
     * One line of the table; a figure not measured in this run is NaN, an ONNX Runtime cell with
     * no Headroom cell has dtype "-".
     */
    record Row(String shape, int context, int sequences, int threads, String dtype, int blockSize,
               double headroomMs, double headroomError, double ortMs, double ortError, double readGbs) {
        double tokensPerSecond() {
            return sequences / (headroomMs / 1e3);
        }

        /** Bytes of keys and values a Headroom step reads; NaN without a Headroom cell. */
        double bytesRead() {
            return dtype.equals("-") ? Double.NaN : DecodeBenchmark.bytesRead(shape, context, sequences, dtype, blockSize);
        }

        double gbs() {
            return bytesRead() / (headroomMs * 1e6);
        }

        double shareOfRead() {
            return gbs() / readGbs;
        }

        double ortTokensPerSecond() {
            return sequences / (ortMs / 1e3);
        }

        /** Headroom's throughput ÷ ONNX Runtime's. */
        double speedup() {
            return ortMs / headroomMs;
        }
    }

    static Map<Integer, Double> readBandwidth(Collection<RunResult> results) {
        Map<Integer, Double> gbs = new TreeMap<>();
        for (RunResult r : results) {
            if (!r.getParams().getBenchmark().startsWith(ReadBandwidthBenchmark.class.getName() + ".")) continue;
            Result<?> primary = r.getPrimaryResult();
            double ms = BenchReport.toMillis(primary.getScore(), primary.getScoreUnit());
            gbs.put(Integer.parseInt(r.getParams().getParam("threads")), ReadBandwidth.DEFAULT_BYTES / (ms * 1e6));
        }
        return gbs;
    }

    static List<Row> tabulate(Collection<RunResult> results) {
        record Cell(String shape, int context, int sequences, int threads) {}
        record HeadroomCell(Cell cell, String dtype, int blockSize) {}
        Map<HeadroomCell, double[]> headroom = new TreeMap<>(Comparator.comparing((HeadroomCell k) -> k.cell.shape)
                .thenComparingInt(k -> k.cell.context).thenComparingInt(k -> k.cell.sequences).thenComparingInt(k -> k.cell.threads)
                .thenComparing(k -> k.dtype).thenComparingInt(k -> k.blockSize));
        Map<Cell, double[]> ort = new TreeMap<>(Comparator.comparing(Cell::shape).thenComparingInt(Cell::context)
                .thenComparingInt(Cell::sequences).thenComparingInt(Cell::threads));
        for (RunResult r : results) {
            String name = r.getParams().getBenchmark();
            boolean isHeadroom = name.startsWith(DecodeBenchmark.class.getName() + ".");
            if (!isHeadroom && !name.startsWith(OrtGqaBenchmark.class.getName() + ".")) continue;
            Result<?> primary = r.getPrimaryResult();
            double[] msError = {BenchReport.toMillis(primary.getScore(), primary.getScoreUnit()),
                    BenchReport.toMillis(primary.getScoreError(), primary.getScoreUnit())};
            Cell cell = new Cell(r.getParams().getParam("shape"), Integer.parseInt(r.getParams().getParam("context")),
                    Integer.parseInt(r.getParams().getParam("sequences")), Integer.parseInt(r.getParams().getParam("threads")));
            if (isHeadroom) {
                headroom.put(new HeadroomCell(cell, r.getParams().getParam("dtype"),
                        Integer.parseInt(r.getParams().getParam("blockSize"))), msError);
            } else {
                ort.put(cell, msError);
            }
        }
        Map<Integer, Double> bandwidth = readBandwidth(results);
        double[] missing = {Double.NaN, Double.NaN};
        List<Row> rows = new ArrayList<>();
        for (Map.Entry<HeadroomCell, double[]> e : headroom.entrySet()) {
            Cell c = e.getKey().cell;
            double[] o = ort.getOrDefault(c, missing);
            rows.add(new Row(c.shape, c.context, c.sequences, c.threads, e.getKey().dtype, e.getKey().blockSize,
                    e.getValue()[0], e.getValue()[1], o[0], o[1], bandwidth.getOrDefault(c.threads, Double.NaN)));
        }
        for (Map.Entry<Cell, double[]> e : ort.entrySet()) {
            Cell c = e.getKey();
            if (headroom.keySet().stream().anyMatch(h -> h.cell.equals(c))) continue;
            rows.add(new Row(c.shape, c.context, c.sequences, c.threads, "-", 0, Double.NaN, Double.NaN,
                    e.getValue()[0], e.getValue()[1], bandwidth.getOrDefault(c.threads, Double.NaN)));
        }
        return rows;
    }

    static String format(List<Row> rows) {
        StringBuilder sb = new StringBuilder();
        String columns = "%-6s %7s %4s %7s %5s %16s %10s %9s %6s %6s %16s %12s%n";
        sb.append(String.format(Locale.ROOT, columns, "shape", "context", "seqs", "threads", "dtype", "Headroom ms",
                "tokens/s", "KV MB", "GB/s", "% read", "ORT f32 ms", "Headroom/ORT"));
        for (Row r : rows) {
            sb.append(String.format(Locale.ROOT, columns, r.shape, r.context, r.sequences, r.threads, r.dtype,
                    withError(r.headroomMs, r.headroomError), number(r.tokensPerSecond(), "%.0f"), number(r.bytesRead() / 1e6, "%.1f"),
                    number(r.gbs(), "%.1f"), number(100 * r.shareOfRead(), "%.0f"), withError(r.ortMs, r.ortError),
                    number(r.speedup(), "%.2f")));
        }
        return sb.toString();
    }

    private static String withError(double ms, double error) {
        if (Double.isNaN(ms)) return "-";
        return Double.isNaN(error) ? String.format(Locale.ROOT, "%.3f", ms) : String.format(Locale.ROOT, "%.3f ± %.3f", ms, error);
    }

    private static String number(double v, String format) {
        return Double.isNaN(v) ? "-" : String.format(Locale.ROOT, format, v);
    }

    static String csv(List<Row> rows) {
        StringBuilder sb = new StringBuilder("shape,context,sequences,threads,dtype,block_size,headroom_ms,headroom_ms_error,"
                + "headroom_tokens_per_s,kv_bytes_per_step,headroom_gb_per_s,read_gb_per_s,share_of_read,ort_f32_ms,ort_f32_ms_error,"
                + "ort_tokens_per_s,headroom_over_ort_throughput\n");
        for (Row r : rows) {
            sb.append(String.join(",", r.shape, Integer.toString(r.context), Integer.toString(r.sequences),
                    Integer.toString(r.threads), r.dtype, r.dtype.equals("-") ? "" : Integer.toString(r.blockSize),
                    cell(r.headroomMs), cell(r.headroomError), cell(r.tokensPerSecond()), cell(r.bytesRead()), cell(r.gbs()),
                    cell(r.readGbs), cell(r.shareOfRead()), cell(r.ortMs), cell(r.ortError), cell(r.ortTokensPerSecond()),
                    cell(r.speedup()))).append('\n');
        }
        return sb.toString();
    }

    private static String cell(double v) {
        return Double.isNaN(v) ? "" : String.format(Locale.ROOT, "%.4f", v);
    }
}
