package dev.headroom.cli;

import dev.headroom.memory.TrackedArena;
import dev.headroom.model.minilm.EncoderWorkspace;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.model.Models;
import dev.headroom.report.Charts;
import dev.headroom.tensor.Tensor;
import me.tongfei.progressbar.ProgressBar;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code headroom prune-study}: how much of all-MiniLM-L6-v2's attention can go. Heads are ranked
 * by importance (how far the sentence embeddings move when that head alone is removed), then the
 * least important 0 %, 10 %, … 70 % are pruned, and each pruned model is measured against the
 * full one: cosine similarity of sentence embeddings, and encoder time per sentence.
 */
@Command(name = "prune-study", mixinStandardHelpOptions = true,
        description = "Rank MiniLM's 72 heads by importance, prune 0-70%% of them, report embedding cosine and latency (CSV + PNG).")
final class PruneStudyCommand implements Callable<Integer> {
    static final String BUILT_IN = "/dev/headroom/model/sentences.txt";

    @Option(names = "--sentences", description = "A text file, one sentence per line (default: the built-in set of 300).")
    Path sentencesFile;

    @Option(names = "--importance-sentences", defaultValue = "64",
            description = "Sentences used to rank heads, the first of the set (default ${DEFAULT-VALUE}); all are used to evaluate.")
    int importanceSentences;

    @Option(names = "--steps", split = ",", defaultValue = "0,10,20,30,40,50,60,70", description = "Percent of heads to prune (default ${DEFAULT-VALUE}).")
    int[] steps;

    @Option(names = "--threads", description = "Worker threads (default: all processors; more are clamped to that, with a warning).")
    Integer threads;

    @Option(names = "--out", defaultValue = "prune-study", description = "Output directory (default ${DEFAULT-VALUE}).")
    Path out;

    /** One pruning level. */
    record Step(int percent, int pruned, double meanCosine, double minCosine, double msPerSentence) {}

    @Override
    public Integer call() throws IOException {
        CliFiles.checkOutputDirectory(out, "--out");
        List<String> sentences = sentencesFile == null ? builtIn()
                : CliFiles.readUtf8Lines(sentencesFile, "--sentences").stream().filter(s -> !s.isBlank()).toList();
        if (sentences.isEmpty()) throw new IllegalArgumentException("no sentences");
        int t = Threads.resolve(threads, System.err);
        List<Step> result;
        double[] importance;
        try (TrackedArena arena = TrackedArena.ofShared(); MiniLmEncoder full = Models.minilm(arena, t)) {
            int layers = full.config().layers(), heads = full.config().heads();
            List<String> rankSet = sentences.subList(0, Math.min(importanceSentences, sentences.size()));
            Tensor reference = embed(full, sentences, arena, null);
            Tensor rankReference = embed(full, rankSet, arena, null);
            importance = new double[layers * heads];
            try (ProgressBar bar = BenchCommand.progressBar("head importance", (long) layers * heads)) {
                for (int l = 0; l < layers; l++) {
                    for (int h = 0; h < heads; h++) {
                        int[][] prune = new int[layers][0];
                        prune[l] = new int[]{h};
                        try (MiniLmEncoder pruned = full.pruned(arena, prune)) {
                            importance[l * heads + h] = 1 - meanCosine(embed(pruned, rankSet, arena, null), rankReference)[0];
                        }
                        bar.step();
                    }
                }
            }
            Integer[] order = new Integer[layers * heads];
            for (int i = 0; i < order.length; i++) order[i] = i;
            Arrays.sort(order, Comparator.comparingDouble(i -> importance[i]));
            result = new ArrayList<>();
            try (ProgressBar bar = BenchCommand.progressBar("pruning", steps.length)) {
                for (int percent : steps) {
                    int k = (int) Math.round(percent / 100.0 * order.length);
                    List<List<Integer>> perLayer = new ArrayList<>();
                    for (int l = 0; l < layers; l++) perLayer.add(new ArrayList<>());
                    for (int i = 0; i < k; i++) perLayer.get(order[i] / heads).add(order[i] % heads);
                    int[][] prune = perLayer.stream().map(x -> x.stream().mapToInt(Integer::intValue).toArray()).toArray(int[][]::new);
                    try (MiniLmEncoder pruned = full.pruned(arena, prune)) {
                        long[] first = new long[1], second = new long[1];
                        embed(pruned, sentences, arena, first);     // the first run also warms the new layers up
                        Tensor e = embed(pruned, sentences, arena, second);
                        long[] nanos = {Math.min(first[0], second[0])};
                        double[] cos = meanCosine(e, reference);
                        result.add(new Step(percent, k, cos[0], cos[1], nanos[0] / 1e6 / sentences.size()));
                    }
                    bar.step();
                }
            }
            writeOutputs(sentences.size(), rankSet.size(), importance, heads, result, t);
        }
        return 0;
    }

    static List<String> builtIn() throws IOException {
        try (InputStream in = PruneStudyCommand.class.getResourceAsStream(BUILT_IN)) {
            if (in == null) throw new IllegalStateException(BUILT_IN + " missing from the jar");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8).lines().filter(s -> !s.isBlank()).toList();
        }
    }

    /** Embeddings of the sentences, (count, 384); the time taken is added to nanos[0] when given. */
    static Tensor embed(MiniLmEncoder encoder, List<String> sentences, TrackedArena arena, long[] nanos) {
        Tensor e = Tensor.allocate(arena, sentences.size(), encoder.config().hidden());
        try (EncoderWorkspace ws = new EncoderWorkspace()) {
            long t0 = System.nanoTime();
            encoder.embed(sentences, e, ws, MiniLmEncoder.DEFAULT_BATCH);
            if (nanos != null) nanos[0] += System.nanoTime() - t0;
        }
        return e;
    }

    /** {mean, min} over rows of cos(a_i, b_i); rows are unit vectors already. */
    static double[] meanCosine(Tensor a, Tensor b) {
        int rows = a.dim(0), E = a.dim(1);
        double sum = 0, min = 1;
        for (int i = 0; i < rows; i++) {
            double dot = 0;
            for (int j = 0; j < E; j++) dot += (double) a.get((long) i * E + j) * b.get((long) i * E + j);
            sum += dot;
            min = Math.min(min, dot);
        }
        return new double[]{sum / rows, min};
    }

    private void writeOutputs(int count, int rankCount, double[] importance, int heads, List<Step> steps, int threads) throws IOException {
        CliFiles.write(out, "the pruning study", () -> writeFiles(count, rankCount, importance, heads, steps, threads));
    }

    private void writeFiles(int count, int rankCount, double[] importance, int heads, List<Step> steps, int threads) throws IOException {
        Files.createDirectories(out);
        StringBuilder csv = new StringBuilder("percent_pruned,heads_pruned,heads_left,mean_cosine,min_cosine,ms_per_sentence,speedup\n");
        double base = steps.getFirst().msPerSentence;
        System.out.printf("%d sentences (heads ranked on the first %d), %d threads, batch %d%n", count, rankCount, threads, MiniLmEncoder.DEFAULT_BATCH);
        System.out.printf("%8s %8s %12s %12s %14s %9s%n", "pruned", "heads", "mean cos", "min cos", "ms/sentence", "speedup");
        for (Step s : steps) {
            csv.append(String.format(Locale.ROOT, "%d,%d,%d,%.6f,%.6f,%.3f,%.3f%n", s.percent, s.pruned, importance.length - s.pruned,
                    s.meanCosine, s.minCosine, s.msPerSentence, base / s.msPerSentence));
            System.out.printf(Locale.ROOT, "%7d%% %8d %12.5f %12.5f %14.3f %8.2fx%n", s.percent, s.pruned, s.meanCosine, s.minCosine,
                    s.msPerSentence, base / s.msPerSentence);
        }
        Files.writeString(out.resolve("pruning.csv"), csv.toString());
        StringBuilder imp = new StringBuilder("layer,head,importance\n");
        for (int i = 0; i < importance.length; i++) imp.append(String.format(Locale.ROOT, "%d,%d,%.8f%n", i / heads, i % heads, importance[i]));
        Files.writeString(out.resolve("head_importance.csv"), imp.toString());
        Map<String, List<double[]>> cos = new LinkedHashMap<>(), time = new LinkedHashMap<>();
        cos.put("mean cosine", steps.stream().map(s -> new double[]{s.percent, s.meanCosine}).toList());
        cos.put("min cosine", steps.stream().map(s -> new double[]{s.percent, s.minCosine}).toList());
        time.put("ms per sentence", steps.stream().map(s -> new double[]{s.percent, s.msPerSentence}).toList());
        Charts.write(out.resolve("pruning.png"), 620, 460, List.of(
                new Charts.Panel("Pruned vs full sentence embeddings", "% of heads pruned (least important first)", "cosine similarity",
                        false, false, cos, List.of("min cosine")),
                new Charts.Panel("Encoder latency (" + threads + " threads, batch " + MiniLmEncoder.DEFAULT_BATCH + ")",
                        "% of heads pruned", "ms per sentence", false, false, time, List.of())));
        System.out.println("wrote pruning.csv, head_importance.csv and pruning.png to " + out);
    }
}
