package dev.headroom.spark;

import dev.headroom.attention.Workspace;
import dev.headroom.inspect.HeadRole;
import dev.headroom.inspect.HeadStatistics;
import dev.headroom.inspect.HeadSummary;
import dev.headroom.inspect.Inspection;
import dev.headroom.inspect.LayerInspection;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.minilm.EncoderWorkspace;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.model.tokenizer.TokenBatch;
import dev.headroom.report.AttentionReport;
import dev.headroom.tensor.Tensor;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.util.TaskCompletionListener;
import scala.Tuple2;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * Per-head statistics of all-MiniLM-L6-v2 over a corpus, as {@code bin/headroom inspect --model
 * minilm} computes them over its sentences, and the same report files.
 *
 * <p>Each task runs its partition through the model in batches of sentences sorted by length,
 * each layer's attention observed by {@link HeadStatistics}; after every batch the statistics
 * become {@link HeadStatistics.Totals}, summed per layer over the partition. The driver collects
 * one {@code Totals} per layer and partition and merges them in partition order (so a run is
 * reproducible bit for bit whatever order tasks finish in; any order would agree within
 * rounding). The summaries equal the command line's over the same sentences within float
 * rounding: the command line runs every sentence in one batch padded to the longest, which
 * changes the hidden states' last bits, not what is measured (padding rows and keys are left out
 * of every statistic).
 *
 * <p>The pictures (heatmaps, grid, HTML, BertViz JSON) need every attention probability and so
 * show one sentence, the corpus's first, computed on the driver; the command line draws its first
 * sentence too, but padded to its batch's longest sentence, with [PAD] columns.
 */
final class InspectJob {
    /**
     * @param batch      sentences per forward pass (sorted by length within a chunk)
     * @param chunk      sentences a task sorts at a time
     * @param partitions at least this many partitions of text input
     */
    record Settings(int batch, int chunk, int partitions) {
        Settings {
            if (batch < 1 || chunk < 1 || partitions < 1) {
                throw new IllegalArgumentException("--batch, --chunk and --partitions must be >= 1, got " + batch + ", " + chunk + ", "
                        + partitions);
            }
        }
    }

    /** Per layer, every head's summary over the corpus; and where the time went. */
    record Result(long sentences, HeadSummary[][] summaries, long wallNanos, String metrics) {}

    private InspectJob() {}

    static Result run(SparkSession spark, Corpus corpus, Path out, Settings settings, PrintStream log) throws IOException {
        JobMetrics metrics = new JobMetrics(spark.sparkContext(), "inspect");
        long t0 = System.nanoTime();
        JavaPairRDD<Long, String> docs = corpus.read(spark, settings.partitions());
        int batch = settings.batch(), chunk = settings.chunk();
        List<HeadStatistics.Totals[]> parts = docs.mapPartitions(d -> statistics(d, batch, chunk, metrics)).collect();
        HeadStatistics.Totals[] merged = null;
        for (HeadStatistics.Totals[] part : parts) { // in partition order: the same bits on every run
            if (part.length == 0) continue;        // an empty partition
            if (merged == null) {
                merged = part.clone();
            } else {
                for (int l = 0; l < merged.length; l++) merged[l] = merged[l].plus(part[l]);
            }
        }
        if (merged == null) throw new IllegalArgumentException("the corpus " + corpus.paths() + " holds no sentences");
        HeadSummary[][] summaries = new HeadSummary[merged.length][];
        for (int l = 0; l < merged.length; l++) summaries[l] = merged[l].summaries();
        String first = docs.first()._2;
        long wall = System.nanoTime() - t0;
        writeReport(first, summaries, out, log);
        return new Result(metrics.records.sum(), summaries, wall, metrics.describe(wall, JobMetrics.localSlots(spark.sparkContext())));
    }

    /** One partition's statistics: per layer, the totals of all its sentences (an empty array for an empty partition). */
    static Iterator<HeadStatistics.Totals[]> statistics(Iterator<Tuple2<Long, String>> docs, int batch, int chunk, JobMetrics metrics) {
        TaskContext task = TaskContext.get();
        ExecutorModels.taskStarted(task, metrics.leftoverBytes, metrics.measuredTasks);
        long t = System.nanoTime();
        MiniLmEncoder encoder = ExecutorModels.minilm(ExecutorModels.taskThreads(task), 0);
        metrics.loadNanos.add(System.nanoTime() - t);
        EncoderWorkspace ews = new EncoderWorkspace();
        Workspace aws = new Workspace();
        task.addTaskCompletionListener((TaskCompletionListener) done -> {
            ews.close();
            aws.close();
        });
        HeadStatistics.Totals[] totals = null;
        while (docs.hasNext()) {
            long read = System.nanoTime();
            List<String> texts = new ArrayList<>(chunk);
            while (texts.size() < chunk && docs.hasNext()) texts.add(docs.next()._2);
            long start = System.nanoTime();
            metrics.readNanos.add(start - read);
            List<int[]> encoded = new ArrayList<>(texts.size());
            for (String s : texts) encoded.add(encoder.tokenizer().encode(s));
            List<Integer> order = new ArrayList<>();
            for (int i = 0; i < texts.size(); i++) order.add(i);
            order.sort(Comparator.comparingInt(i -> encoded.get(i).length)); // shortest first: little padding
            for (int b0 = 0; b0 < order.size(); b0 += batch) {
                List<String> part = new ArrayList<>();
                for (int i : order.subList(b0, Math.min(order.size(), b0 + batch))) part.add(texts.get(i));
                HeadStatistics.Totals[] b = statisticsOf(encoder, part, ews, aws);
                if (totals == null) {
                    totals = b;
                } else {
                    for (int l = 0; l < totals.length; l++) totals[l] = totals[l].plus(b[l]);
                }
            }
            metrics.workNanos.add(System.nanoTime() - start);
            metrics.records.add(texts.size());
        }
        List<HeadStatistics.Totals[]> result = new ArrayList<>(1);
        result.add(totals == null ? new HeadStatistics.Totals[0] : totals);
        return result.iterator();
    }

    /**
     * Per layer, the statistics of one batch of sentences, measured as {@code bin/headroom inspect
     * --model} measures them: delimiters and token identity from the token strings, padding rows
     * left out.
     */
    static HeadStatistics.Totals[] statisticsOf(MiniLmEncoder encoder, List<String> sentences, EncoderWorkspace ews, Workspace aws) {
        TokenBatch tokens = encoder.tokenizer().encodeBatch(sentences);
        int B = tokens.batch(), n = tokens.length(), E = encoder.config().hidden(), H = encoder.config().heads();
        List<List<String>> strings = new ArrayList<>(B);
        for (int b = 0; b < B; b++) {
            List<String> s = new ArrayList<>(n);
            for (int i = 0; i < n; i++) s.add(i < tokens.lengths()[b] ? encoder.tokenizer().token(tokens.ids()[b * n + i]) : "[PAD]");
            strings.add(s);
        }
        HeadStatistics.Options options = HeadStatistics.Options.defaults().withDelimiters(LayerInspection.delimiters(strings))
                .withTokens(LayerInspection.ids(strings)).withQueryLengths(tokens.lengths());
        int layers = encoder.attentionLayers().size();
        HeadStatistics[] stats = new HeadStatistics[layers];
        for (int l = 0; l < layers; l++) stats[l] = new HeadStatistics(H, options);
        try (TrackedArena arena = TrackedArena.ofShared()) {
            /* hidden: (B, n, E), the encoder's output; attention: (B, n, E), the observed call's output, unused. */
            Tensor hidden = Tensor.allocate(arena, B, n, E), attention = Tensor.allocate(arena, B, n, E);
            encoder.lastHiddenState(tokens, hidden, ews, (layer, mha, input, mask) ->
                    mha.forward(input, null, mask, attention, aws, Inspection.statistics(stats[layer])));
        }
        HeadStatistics.Totals[] totals = new HeadStatistics.Totals[layers];
        for (int l = 0; l < layers; l++) totals[l] = stats[l].totals();
        return totals;
    }

    /** The command line's report files: the corpus's summaries, the pictures of {@code first}. */
    static void writeReport(String first, HeadSummary[][] summaries, Path out, PrintStream log) throws IOException {
        MiniLmEncoder encoder = ExecutorModels.minilm(1, 0); // the driver's copy (in local mode, the executor's)
        TokenBatch tokens = encoder.tokenizer().encodeBatch(List.of(first));
        List<String> labels = new ArrayList<>();
        for (int id : tokens.ids()) labels.add(encoder.tokenizer().token(id));
        List<AttentionReport.Layer> layers = new ArrayList<>();
        try (TrackedArena arena = TrackedArena.ofShared(); EncoderWorkspace ws = new EncoderWorkspace()) {
            Tensor hidden = Tensor.allocate(arena, 1, tokens.length(), encoder.config().hidden());
            encoder.lastHiddenState(tokens, hidden, ws, (layer, mha, input, mask) -> {
                LayerInspection.Result r = LayerInspection.run(mha, input, mask, List.of(labels), null, tokens.lengths(), arena, null);
                layers.add(new AttentionReport.Layer(r.capture(), summaries[layer]));
            });
            new AttentionReport("all-MiniLM-L6-v2: \"" + first + "\"", labels, layers).writeAll(out, log);
        }
        Map<HeadRole, Integer> counts = new EnumMap<>(HeadRole.class);
        for (HeadSummary[] layer : summaries) for (HeadSummary s : layer) counts.merge(s.role(), 1, Integer::sum);
        log.println("primary roles: " + counts);
    }
}
