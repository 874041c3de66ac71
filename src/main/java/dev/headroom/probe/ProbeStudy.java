package dev.headroom.probe;

import dev.headroom.corpus.BrownCorpus.Part;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Probes every representation of one model for one or more tasks over the same sentences: extract
 * the features of train, dev and test once ({@link Extraction}), then for each (representation,
 * task) train a {@link LinearProbe} for every λ of the grid on train, keep the λ with the best dev
 * accuracy (ties: the larger λ), and report that probe's accuracy on test. {@link #run} does both
 * halves on this machine; {@link #train} is the second alone, over stores extracted elsewhere.
 */
public final class ProbeStudy {
    /**
     * @param l2Grid       the λ values tried per probe
     * @param probe        the probes' optimisation settings
     * @param seed         the probes' seed (each probe derives its own from it) and the extraction order's
     * @param threads      probes trained at once (each on one thread)
     * @param workDirectory where the feature stores are written (a subdirectory per model and part)
     * @param keepFeatures leave the stores on disk instead of deleting them at the end
     * @param only         which representations (by index) to probe; null for all
     */
    public record Options(double[] l2Grid, LinearProbe.Options probe, long seed, int threads, Path workDirectory,
                          boolean keepFeatures, java.util.function.IntPredicate only) {
        public Options {
            if (l2Grid.length == 0) throw new IllegalArgumentException("the λ grid is empty");
            for (double l : l2Grid) if (!(l >= 0)) throw new IllegalArgumentException("λ must be >= 0, got " + l);
            if (threads < 1) throw new IllegalArgumentException("threads must be >= 1, got " + threads);
            l2Grid = l2Grid.clone();
        }

        /**
         * λ ∈ {1e-5, 1e-4, 1e-3}: on a 6,000-sentence sample of Brown, 1e-2 was never the best λ of a
         * residual-stream probe and 1e-5 tied 1e-4 (README, "Probing"); 3 epochs, at least 2,000 steps;
         * seed 1; all processors.
         */
        public static Options defaults(Path workDirectory) {
            return new Options(new double[]{1e-5, 1e-4, 1e-3}, LinearProbe.Options.defaults(), 1, Runtime.getRuntime().availableProcessors(),
                    workDirectory, false, null);
        }

        public Options withSeed(long s) {
            return new Options(l2Grid, probe, s, threads, workDirectory, keepFeatures, only);
        }

        public Options withThreads(int t) {
            return new Options(l2Grid, probe, seed, t, workDirectory, keepFeatures, only);
        }

        public Options withL2Grid(double... grid) {
            return new Options(grid, probe, seed, threads, workDirectory, keepFeatures, only);
        }

        public Options withProbe(LinearProbe.Options p) {
            return new Options(l2Grid, p, seed, threads, workDirectory, keepFeatures, only);
        }

        public Options withKeepFeatures(boolean keep) {
            return new Options(l2Grid, probe, seed, threads, workDirectory, keep, only);
        }

        /** Probes only the representations whose index passes {@code filter} (all are still extracted). */
        public Options withRepresentations(java.util.function.IntPredicate filter) {
            return new Options(l2Grid, probe, seed, threads, workDirectory, keepFeatures, filter);
        }
    }

    /** Told how far the study is; called from the extracting thread and from the probes' threads. */
    public interface Progress {
        default void extracting(String model, Part part, long sentencesDone, long sentences) {}

        default void trained(String model, int probesDone, int probes) {}
    }

    /**
     * One probed (representation, task): the λ chosen on dev, the dev accuracy of every λ tried (in
     * grid order), and the chosen probe's accuracy and confusion on dev and test.
     */
    public record Result(String model, String task, Representation representation, double l2, double[] devByL2,
                         Confusion dev, Confusion test) {
        public double devAccuracy() {
            return dev.accuracy();
        }

        public double testAccuracy() {
            return test.accuracy();
        }
    }

    /**
     * Everything a study produced: results in (representation, task) order, extraction statistics
     * per part, the peak off-heap bytes of the extraction, and the seconds each phase took.
     */
    public record Outcome(String model, List<Result> results, Map<Part, Extraction.Stats> extraction, long extractionPeakOffHeap,
                          double extractionSeconds, double trainingSeconds) {
        public Result result(String task, int representation) {
            for (Result r : results) if (r.task().equals(task) && r.representation().index() == representation) return r;
            throw new IllegalArgumentException("no result for task " + task + ", representation " + representation);
        }
    }

    private ProbeStudy() {}

    /** Runs the study of {@code model} on {@code tasks}, which must label the same sentences. */
    public static Outcome run(ProbedModel model, List<ProbeTask> tasks, Options options, Progress progress)
            throws IOException, InterruptedException {
        checkSameSentences(tasks);
        ProbeTask first = tasks.getFirst();
        Progress report = progress == null ? new Progress() {} : progress;
        Map<Part, FeatureStore> stores = new EnumMap<>(Part.class);
        Map<Part, Extraction.Stats> stats = new EnumMap<>(Part.class);
        long extractionStart = System.nanoTime();
        OffHeap.resetPeak();
        long before = OffHeap.currentBytes();
        try {
            for (Part p : Part.values()) {
                List<ProbeTask.Sentence> sentences = first.parts().get(p);
                Path dir = options.workDirectory().resolve(model.name()).resolve(p.label());
                Extraction.Result r = Extraction.run(model, sentences, dir, options.seed() + p.ordinal(),
                        done -> report.extracting(model.name(), p, done, sentences.size()));
                stores.put(p, r.store());
                stats.put(p, r.stats());
            }
            long extractionPeak = OffHeap.peakBytes() - before;
            double extractionSeconds = (System.nanoTime() - extractionStart) / 1e9;
            long trainingStart = System.nanoTime();
            List<Result> results = train(model.name(), tasks, stores, options, report);
            return new Outcome(model.name(), results, stats, extractionPeak, extractionSeconds, (System.nanoTime() - trainingStart) / 1e9);
        } finally {
            for (FeatureStore s : stores.values()) {
                if (options.keepFeatures()) s.close();
                else s.delete();
            }
            if (!options.keepFeatures()) {
                deleteIfEmpty(options.workDirectory().resolve(model.name()));
                deleteIfEmpty(options.workDirectory());
            }
        }
    }

    /** Refuses tasks that do not label the same sentences in every part: a study extracts one set of sentences. */
    public static void checkSameSentences(List<ProbeTask> tasks) {
        if (tasks.isEmpty()) throw new IllegalArgumentException("no task to probe");
        ProbeTask first = tasks.getFirst();
        for (ProbeTask t : tasks) {
            for (Part p : Part.values()) {
                List<ProbeTask.Sentence> a = first.parts().get(p), b = t.parts().get(p);
                boolean same = a.size() == b.size();
                for (int i = 0; same && i < a.size(); i++) same = a.get(i).words().equals(b.get(i).words());
                if (!same) throw new IllegalArgumentException("tasks " + first.name() + " and " + t.name() + " label different "
                        + p.label() + " sentences; a study extracts one set of sentences");
            }
        }
    }

    private static void deleteIfEmpty(Path dir) throws IOException {
        if (!java.nio.file.Files.isDirectory(dir)) return;
        try (var left = java.nio.file.Files.list(dir)) {
            if (left.findAny().isPresent()) return;
        }
        java.nio.file.Files.delete(dir);
    }

    /** Labels of a store's rows for one task: row r holds word store.word(r) of the part. */
    static int[] rowLabels(FeatureStore store, List<ProbeTask.Sentence> sentences) {
        int words = 0;
        for (ProbeTask.Sentence s : sentences) words += s.labels().length;
        int[] flat = new int[words];
        int k = 0;
        for (ProbeTask.Sentence s : sentences) for (int l : s.labels()) flat[k++] = l;
        int[] labels = new int[store.rows()];
        for (int r = 0; r < labels.length; r++) labels[r] = flat[store.word(r)];
        return labels;
    }

    /**
     * The training half of {@link #run}: for each representation (those {@code options.only()}
     * lets through) and task, the probes of the λ grid on {@code stores}' train part, the best on
     * dev, its test accuracy; results in (representation, task) order. The stores, one per part,
     * may come from anywhere (e.g. assembled from parts extracted elsewhere); their {@link FeatureStore#word} maps must index the tasks' sentences of that
     * part. They are read, neither closed nor deleted. Uses {@code options}' grid, probe settings,
     * seed and threads; not its work directory.
     */
    public static List<Result> train(String modelName, List<ProbeTask> tasks, Map<Part, FeatureStore> stores, Options options,
                                     Progress progress) throws InterruptedException, IOException {
        checkSameSentences(tasks);
        for (Part p : Part.values()) {
            if (stores.get(p) == null) throw new IllegalArgumentException("no " + p.label() + " store among " + stores.keySet());
        }
        Progress report = progress == null ? new Progress() {} : progress;
        List<Representation> reps = stores.get(Part.TRAIN).representations().stream()
                .filter(r -> options.only() == null || options.only().test(r.index())).toList();
        // Labels per task and part, in each store's row order: 4 bytes per word.
        List<Map<Part, int[]>> labels = new ArrayList<>();
        for (ProbeTask t : tasks) {
            Map<Part, int[]> byPart = new EnumMap<>(Part.class);
            for (Part p : Part.values()) byPart.put(p, rowLabels(stores.get(p), t.parts().get(p)));
            labels.add(byPart);
        }
        int jobs = reps.size() * tasks.size();
        AtomicInteger done = new AtomicInteger();
        ExecutorService pool = Executors.newFixedThreadPool(options.threads(), r -> {
            Thread t = new Thread(r, "headroom-probe");
            t.setDaemon(true);
            return t;
        });
        try {
            List<Future<Result>> futures = new ArrayList<>();
            for (Representation rep : reps) {
                for (int t = 0; t < tasks.size(); t++) {
                    ProbeTask task = tasks.get(t);
                    Map<Part, int[]> taskLabels = labels.get(t);
                    long seed = options.seed() * 1_000_003L + rep.index() * 31L + t;
                    futures.add(pool.submit(() -> {
                        Result r = probe(modelName, task, rep, stores, taskLabels, options, seed, () ->
                                report.trained(modelName, done.incrementAndGet(), jobs * options.l2Grid().length));
                        return r;
                    }));
                }
            }
            List<Result> results = new ArrayList<>();
            for (Future<Result> f : futures) {
                try {
                    results.add(f.get());
                } catch (ExecutionException e) {
                    if (e.getCause() instanceof RuntimeException re) throw re;
                    if (e.getCause() instanceof Error err) throw err;
                    throw new IOException("a probe failed", e.getCause());
                }
            }
            return results;
        } finally {
            pool.shutdownNow();
        }
    }

    private static Result probe(String modelName, ProbeTask task, Representation rep, Map<Part, FeatureStore> stores,
                                Map<Part, int[]> labels, Options options, long seed, Runnable fitted) {
        int blockRows = options.probe().blockRows();
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            Features train = Features.of(stores.get(Part.TRAIN), rep, arena, blockRows);
            Features dev = Features.of(stores.get(Part.DEV), rep, arena, blockRows);
            double[] devByL2 = new double[options.l2Grid().length];
            LinearProbe.Model best = null;
            Confusion bestDev = null;
            for (int i = 0; i < devByL2.length; i++) {
                double l2 = options.l2Grid()[i];
                LinearProbe.Model m = LinearProbe.train(train, labels.get(Part.TRAIN), task.classes().size(), l2, options.probe(), seed);
                Confusion c = LinearProbe.evaluate(dev, labels.get(Part.DEV), m, blockRows);
                devByL2[i] = c.accuracy();
                if (best == null || c.accuracy() > bestDev.accuracy() || (c.accuracy() == bestDev.accuracy() && l2 > best.l2())) {
                    best = m;
                    bestDev = c;
                }
                fitted.run();
            }
            Features test = Features.of(stores.get(Part.TEST), rep, arena, blockRows);
            Confusion testConfusion = LinearProbe.evaluate(test, labels.get(Part.TEST), best, blockRows);
            return new Result(modelName, task.name(), rep, best.l2(), devByL2, bestDev, testConfusion);
        }
    }

    /** The results of one task, in representation order. */
    public static List<Result> of(List<Result> results, String task) {
        return results.stream().filter(r -> r.task().equals(task)).toList();
    }
}
