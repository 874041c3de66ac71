package dev.headroom.cli;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.inspect.HeadSummary;
import dev.headroom.inspect.LayerInspection;
import dev.headroom.inspect.Redundancy;
import dev.headroom.memory.TrackedArena;
import dev.headroom.report.AttentionReport;
import dev.headroom.sparse.AttentionPattern;
import dev.headroom.tensor.Tensor;
import me.tongfei.progressbar.ProgressBar;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code headroom inspect}: what every head of a layer does, as numbers and pictures. */
@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = "Per-head statistics, roles, heatmaps and an HTML report for one attention layer.")
final class InspectCommand implements Callable<Integer> {
    @Mixin
    LayerOptions layer;

    @Option(names = "--input", description = "X, float32 .npy of shape (n, E) or (B, n, E), or '-' for standard input; pictures show batch element 0.")
    Path input;

    @Option(names = "--model", description = "Inspect a built-in model instead of one layer: 'minilm' (all-MiniLM-L6-v2, 6 layers × 12 heads) "
            + "or 'tiny' (the byte-level decoder, 4 layers × 4 causal heads) on the texts given.")
    String model;

    @Option(names = "--induction", description = "With --model tiny: find induction heads on random strings repeated twice "
            + "(induction, prefix-matching, duplicate- and previous-token scores, ablation, loss on each copy) instead of texts.")
    boolean induction;

    @picocli.CommandLine.Parameters(description = "With --model: the sentences to run (batched; pictures show the first).")
    List<String> sentences = new ArrayList<>();

    @Option(names = "--tokens", description = "A text file with one token per line (n lines): labels, delimiters ([CLS], [SEP], punctuation) and token identity for duplicate/induction scores.")
    Path tokensFile;

    @Option(names = "--causal", description = "Causal mask.")
    boolean causal;

    @Option(names = "--window", description = "Sliding-window pattern of this width (sparse kernel).")
    Integer window;

    @Option(names = "--rows", split = ",", description = "Query rows to capture for pictures (default: all when n <= 512, else 64 evenly spaced).")
    int[] rows;

    @Option(names = "--out", defaultValue = "inspect-output", description = "Output directory (default ${DEFAULT-VALUE}).")
    Path out;

    @Override
    public Integer call() throws IOException {
        CliFiles.checkOutputDirectory(out, "--out");
        if (model != null) return ModelInspection.run(model, sentences, induction, out, System.out);
        if (induction) throw new IllegalArgumentException("--induction needs --model tiny");
        if (input == null) throw new IllegalArgumentException("--input is required (or --model minilm with sentences)");
        try (TrackedArena arena = TrackedArena.ofShared()) {
            Tensor x = CliFiles.read(input, "--input", () -> NpyInput.read(input, arena));
            if (x.rank() == 2) x = x.reshape(1, x.dim(0), x.dim(1));
            int E = x.dim(-1), n = x.dim(-2);
            AttentionConfig config = layer.config(E);
            AttentionWeights w = layer.load(config, arena);
            List<String> tokens = tokensFile == null ? positions(n) : readTokens(tokensFile);
            if (tokens.size() != n) {
                throw new IllegalArgumentException(tokensFile + " has " + tokens.size() + " lines, the input has " + n + " tokens");
            }
            List<List<String>> perBatch = new ArrayList<>();
            for (int b = 0; b < x.dim(0); b++) perBatch.add(tokens);
            Mask mask = causal ? Mask.causal() : Mask.none();
            if (window != null) mask = mask.withPattern(AttentionPattern.slidingWindow(window));
            int[] captured = rows != null ? rows : n <= 512 ? null : evenlySpaced(n, 64);
            MultiHeadAttention.Options options = layer.options();
            LayerInspection.Result result;
            try (MultiHeadAttention mha = new MultiHeadAttention(w, options);
                 ProgressBar bar = BenchCommand.progressBar("inspect", (long) x.dim(0) * config.heads() * n)) {
                result = LayerInspection.run(mha, x, mask, tokensFile == null ? null : perBatch, captured, null, arena, bar::stepBy);
            }
            HeadSummary[] summaries = result.statistics().summaries();
            write(out, "layer (" + RunCommand.describe(config) + ")", tokens, List.of(new AttentionReport.Layer(result.capture(), summaries)),
                    System.out);
            double[][] jsd = Redundancy.jensenShannon(result.capture());
            StringBuilder s = new StringBuilder("head");
            for (int h = 0; h < jsd.length; h++) s.append(",h").append(h);
            s.append('\n');
            for (int a = 0; a < jsd.length; a++) {
                s.append('h').append(a);
                for (double v : jsd[a]) s.append(String.format(Locale.ROOT, ",%.5f", v));
                s.append('\n');
            }
            Path jsdFile = out.resolve("redundancy_jsd.csv");
            CliFiles.write(jsdFile, "the head redundancy table", () -> Files.writeString(jsdFile, s.toString()));
            System.out.println("wrote redundancy_jsd.csv (Jensen–Shannon divergence of attention rows between heads, nats)");
        }
        return 0;
    }

    static List<String> readTokens(Path file) throws IOException {
        return CliFiles.readUtf8Lines(file, "--tokens");
    }

    static List<String> positions(int n) {
        List<String> t = new ArrayList<>(n);
        for (int i = 0; i < n; i++) t.add(Integer.toString(i));
        return t;
    }

    static int[] evenlySpaced(int n, int count) {
        return java.util.stream.IntStream.range(0, count).map(k -> (int) ((long) k * (n - 1) / (count - 1))).distinct().toArray();
    }

    /** Writes statistics (CSV, JSON), roles, PNGs, the HTML report and (for short inputs) BertViz JSON. */
    static void write(Path out, String title, List<String> tokens, List<AttentionReport.Layer> layers, PrintStream log) throws IOException {
        CliFiles.write(out, "the inspection report", () -> new AttentionReport(title, tokens, layers).writeAll(out, log));
    }
}
