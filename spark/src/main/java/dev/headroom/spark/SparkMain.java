package dev.headroom.spark;

import org.apache.spark.sql.SparkSession;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code bin/headroom spark <job>}: Headroom's corpus jobs and sequence-parallel attention on
 * Apache Spark, in local mode by default ({@code --master local[*]}: the driver's JVM runs the
 * tasks) or on a cluster ({@code --master spark://host:7077}, the driver running here).
 */
@Command(name = "headroom spark", mixinStandardHelpOptions = true,
        description = "Headroom's jobs on Apache Spark: local mode by default, a cluster with --master spark://host:7077.",
        subcommands = {SparkMain.Embed.class, SparkMain.Inspect.class, SparkMain.Attention.class, SparkMain.Probe.class,
                SparkMain.MakeProblem.class})
public final class SparkMain implements Callable<Integer> {
    /** Where log4j2 finds this module's logging set-up (warnings only) unless the user names one. */
    static final String LOG_CONFIG = "dev/headroom/spark/log4j2.properties";

    public static void main(String[] args) {
        System.exit(execute(args));
    }

    /** Runs a job and returns the exit code: 0, or 2 with one line on stderr saying why (tests call this). */
    public static int execute(String... args) {
        if (System.getProperty("log4j2.configurationFile") == null) {
            System.setProperty("log4j2.configurationFile", "classpath:" + LOG_CONFIG);
        }
        CommandLine cli = new CommandLine(new SparkMain());
        cli.setExecutionExceptionHandler((e, command, parsed) -> {
            command.getErr().println("headroom spark: " + message(e));
            return 2;
        });
        return cli.execute(args);
    }

    /** The most specific message of an exception: Spark wraps task failures, whose cause says what happened. */
    static String message(Throwable e) {
        Throwable t = e;
        while ((t instanceof UncheckedIOException || t.getMessage() == null) && t.getCause() != null) t = t.getCause();
        String m = t.getMessage() == null ? t.toString() : t.getMessage();
        int newline = m.indexOf('\n');
        return newline < 0 ? m : m.substring(0, newline);
    }

    @Override
    public Integer call() {
        new CommandLine(this).usage(System.err);
        return 2;
    }

    /** Where the job runs. */
    static final class Cluster {
        @Option(names = "--master", defaultValue = "local[*]",
                description = "Spark master: local[*] (default: the tasks run in this JVM on every core), local[2], or spark://host:7077.")
        String master;

        @Option(names = "--conf", paramLabel = "KEY=VALUE", description = "A Spark setting, e.g. --conf spark.executor.memory=4g (repeatable).")
        Map<String, String> conf = new LinkedHashMap<>();

        SparkSession open(String job) {
            Map<String, String> c = new LinkedHashMap<>();
            if (master.startsWith("local")) { // nothing outside this JVM needs to reach the driver
                c.put("spark.driver.host", "127.0.0.1");
                c.put("spark.driver.bindAddress", "127.0.0.1");
            }
            c.putAll(conf);
            return Sessions.open("headroom " + job, master, c);
        }
    }

    /** A corpus of sentences: text files or Parquet. */
    static final class Input {
        @Option(names = "--input", required = true, split = ",",
                description = "Text files or directories (one sentence per line; blank lines skipped) or Parquet; local, hdfs://, ... (comma-separated or repeated).")
        List<String> paths;

        @Option(names = "--format", defaultValue = "auto", description = "text, parquet, or auto (Parquet for .parquet paths). Default: ${DEFAULT-VALUE}.")
        String format;

        @Option(names = "--text-column", defaultValue = "text", description = "Parquet: the column of sentences. Default: ${DEFAULT-VALUE}.")
        String textColumn;

        @Option(names = "--id-column", defaultValue = "id", description = "Parquet: the id column, used when it exists (else ids follow Spark's read order). Default: ${DEFAULT-VALUE}.")
        String idColumn;

        @Option(names = "--partitions", description = "At least this many partitions of text input (default: 4 per task slot).")
        Integer partitions;

        Corpus corpus() {
            return new Corpus(paths, format, textColumn, idColumn);
        }

        int partitions(SparkSession spark) {
            return partitions != null ? partitions : 4 * spark.sparkContext().defaultParallelism();
        }
    }

    @Command(name = "embed", mixinStandardHelpOptions = true,
            description = "Sentence embeddings (all-MiniLM-L6-v2) of a corpus, as bin/headroom embed computes them, written as Parquet (id, vector).")
    static final class Embed implements Callable<Integer> {
        @Mixin
        Cluster cluster = new Cluster();
        @Mixin
        Input input = new Input();

        @Option(names = "--output", required = true, description = "Parquet directory to write: id (long), vector (384 floats).")
        String output;

        @Option(names = "--max-tokens", defaultValue = "0", description = "Truncate each sentence to this many tokens, [CLS] and [SEP] included (default: the tokenizer's 128).")
        int maxTokens;

        @Option(names = "--chunk", defaultValue = "1024", description = "Sentences a task sorts by length and embeds at a time. Default: ${DEFAULT-VALUE}.")
        int chunk;

        @Option(names = "--overwrite", description = "Replace --output if it exists.")
        boolean overwrite;

        @Override
        public Integer call() {
            EmbedJob.refuseExisting(new org.apache.hadoop.conf.Configuration(), output, overwrite); // before Spark starts
            long t0 = System.nanoTime();
            SparkSession spark = cluster.open("embed");
            try {
                long started = System.nanoTime();
                EmbedJob.Result r = EmbedJob.run(spark, input.corpus(), output,
                        new EmbedJob.Settings(maxTokens, chunk, input.partitions(spark), overwrite));
                System.out.printf(Locale.ROOT, "%d embeddings written to %s; session started in %.2f s; %s%n", r.records(), output,
                        (started - t0) / 1e9, r.metrics());
            } finally {
                spark.stop();
            }
            return 0;
        }
    }

    @Command(name = "inspect", mixinStandardHelpOptions = true,
            description = "Per-head statistics of all-MiniLM-L6-v2 over a corpus, merged from every partition: the report files of bin/headroom inspect --model minilm.")
    static final class Inspect implements Callable<Integer> {
        @Mixin
        Cluster cluster = new Cluster();
        @Mixin
        Input input = new Input();

        @Option(names = "--out", defaultValue = "inspect-output", description = "Output directory (default ${DEFAULT-VALUE}).")
        Path out;

        @Option(names = "--batch", defaultValue = "32", description = "Sentences per forward pass, sorted by length. Default: ${DEFAULT-VALUE}.")
        int batch;

        @Option(names = "--chunk", defaultValue = "1024", description = "Sentences a task sorts by length at a time. Default: ${DEFAULT-VALUE}.")
        int chunk;

        @Override
        public Integer call() throws Exception {
            long t0 = System.nanoTime();
            SparkSession spark = cluster.open("inspect");
            try {
                long started = System.nanoTime();
                InspectJob.Result r = InspectJob.run(spark, input.corpus(), out,
                        new InspectJob.Settings(batch, chunk, input.partitions(spark)), System.out);
                System.out.printf(Locale.ROOT, "%d sentences inspected; session started in %.2f s; %s%n", r.sentences(),
                        (started - t0) / 1e9, r.metrics());
            } finally {
                spark.stop();
            }
            return 0;
        }
    }

    @Command(name = "attention", mixinStandardHelpOptions = true,
            description = "Exact attention of one long sequence split over tasks (query blocks, optionally key parts merged "
                    + "through the online-softmax state): Y as bin/headroom run writes it.")
    static final class Attention implements Callable<Integer> {
        @Mixin
        Cluster cluster = new Cluster();

        @Option(names = "--weights", required = true, description = ".safetensors file or directory of .npy files (PyTorch layouts).")
        Path weights;

        @Option(names = "--prefix", defaultValue = "", description = "Key prefix in the weights, e.g. 'layers.0.self_attn.'.")
        String prefix;

        @Option(names = "--heads", required = true, description = "Query heads H.")
        int heads;

        @Option(names = "--kv-heads", description = "Key/value heads G (divides H; default H).")
        Integer kvHeads;

        @Option(names = "--head-dim", description = "Head width d (default E / H).")
        Integer headDim;

        @Option(names = "--input", required = true, description = "X, float32 .npy of shape (n, E) or (1, n, E).")
        Path input;

        @Option(names = "--output", required = true, description = "Where to write Y (X's shape), float32 .npy.")
        Path output;

        @Option(names = "--causal", description = "Causal mask: query i sees keys j <= i.")
        boolean causal;

        @Option(names = "--query-splits", defaultValue = "0", description = "Query blocks (rounded to multiples of 256 rows; default: 4 per task slot).")
        int querySplits;

        @Option(names = "--key-splits", defaultValue = "1", description = "Key parts per query block, merged exactly through (O, M, L) (default 1: a block's task sees all its keys).")
        int keySplits;

        @Option(names = "--work-dir", description = "Where the driver writes the projected Q, K, V for the executors (default: the system's temporary directory).")
        Path workDir;

        @Option(names = "--overwrite", description = "Replace --output if it exists.")
        boolean overwrite;

        @Override
        public Integer call() throws Exception {
            if (!java.nio.file.Files.isRegularFile(input)) throw new IllegalArgumentException("--input " + input + " is not a file");
            if (!java.nio.file.Files.exists(weights)) throw new IllegalArgumentException("--weights " + weights + " does not exist");
            if (!overwrite && java.nio.file.Files.exists(output)) {
                throw new IllegalArgumentException("--output " + output + " exists; remove it or pass --overwrite");
            }
            long t0 = System.nanoTime();
            SparkSession spark = cluster.open("attention");
            try {
                long started = System.nanoTime();
                AttentionJob.Result r = AttentionJob.run(spark, input, output, new AttentionJob.Settings(weights, prefix, heads, kvHeads,
                                headDim, causal, querySplits, keySplits, overwrite),
                        workDir != null ? workDir : Path.of(System.getProperty("java.io.tmpdir")), System.out);
                System.out.printf(Locale.ROOT, "Y (n = %d) written to %s in %.2f s; session started in %.2f s; %s%n", r.n(), output,
                        r.wallNanos() / 1e9, (started - t0) / 1e9, r.metrics());
            } finally {
                spark.stop();
            }
            return 0;
        }
    }

    @Command(name = "probe", mixinStandardHelpOptions = true,
            description = "bin/headroom probe with the feature extraction on Spark: part-of-speech probes on every head and layer of "
                    + "all-MiniLM-L6-v2 (and an untrained copy) over the Brown corpus; each task extracts a partition's sentences into "
                    + "--work-dir, the driver concatenates them in order and trains the probes as the command line does. Writes "
                    + "the same CSV, JSON and PNG files to --out.")
    static final class Probe implements Callable<Integer> {
        @Mixin
        Cluster cluster = new Cluster();

        @Option(names = "--max-sentences", defaultValue = "0", description = "Sentences in all (80/10/10 %% from train/dev/test, "
                + "the same sample as bin/headroom probe); 0 = the whole corpus (57,340). Default: ${DEFAULT-VALUE}.")
        int maxSentences;

        @Option(names = "--out", defaultValue = "probe-output", description = "Output directory. Default: ${DEFAULT-VALUE}.")
        Path out;

        @Option(names = "--work-dir", description = "Where tasks write their features (float16, about 10 KB per word) and the driver "
                + "assembles them: a directory the driver and every executor reach (local mode, or NFS). Default: OUT/features.")
        Path workDir;

        @Option(names = "--keep-features", description = "Keep the assembled features instead of deleting them.")
        boolean keepFeatures;

        @Option(names = "--seed", defaultValue = "1", description = "Seed of the probes, the control task and the untrained encoder. Default: ${DEFAULT-VALUE}.")
        long seed;

        @Option(names = "--l2", split = ",", defaultValue = "1e-5,1e-4,1e-3", description = "The L2 penalties tried per probe. Default: ${DEFAULT-VALUE}.")
        double[] l2;

        @Option(names = "--epochs", defaultValue = "3", description = "Passes over the training words per probe. Default: ${DEFAULT-VALUE}.")
        int epochs;

        @Option(names = "--min-steps", defaultValue = "2000", description = "At least this many gradient steps of 256 words per probe. Default: ${DEFAULT-VALUE}.")
        int minSteps;

        @Option(names = "--no-random", description = "Skip the probes on the untrained encoder.")
        boolean noRandom;

        @Option(names = "--partitions", description = "Partitions of each part's sentences (default: 4 per task slot).")
        Integer partitions;

        @Option(names = "--threads", description = "Probes the driver trains at once (default: the driver's processors).")
        Integer threads;

        @Override
        public Integer call() throws Exception {
            if (java.nio.file.Files.isRegularFile(out)) throw new IllegalArgumentException("--out " + out + " is a file, not a directory");
            if (threads != null && threads < 1) throw new IllegalArgumentException("--threads must be >= 1, got " + threads);
            dev.headroom.corpus.BrownCorpus corpus = dev.headroom.corpus.BrownCorpus.open(); // before Spark starts: says where to get it
            dev.headroom.probe.ProbeStudy.Options study = dev.headroom.probe.ProbeStudy.Options.defaults(workDir != null ? workDir
                            : out.resolve("features")).withSeed(seed).withL2Grid(l2).withKeepFeatures(keepFeatures)
                    .withProbe(dev.headroom.probe.LinearProbe.Options.defaults().withEpochs(epochs).withMinSteps(minSteps));
            if (threads != null) study = study.withThreads(threads);
            long t0 = System.nanoTime();
            SparkSession spark = cluster.open("probe");
            try {
                long started = System.nanoTime();
                ProbeJob.Result r = ProbeJob.run(spark, corpus, out, new ProbeJob.Settings(maxSentences, study, !noRandom,
                        partitions != null ? partitions : 4 * spark.sparkContext().defaultParallelism(), 0), System.out);
                for (dev.headroom.probe.ProbeStudy.Result p : dev.headroom.probe.ProbeStudy.of(r.run().trained().results(), r.run().task())) {
                    if (p.representation().isHead()) continue;
                    System.out.printf(Locale.ROOT, "  %-11s test %6.2f %%  selectivity %6.2f%n", p.representation().name(),
                            100 * p.testAccuracy(), 100 * r.run().selectivity(true, p.representation().index()));
                }
                System.out.printf(Locale.ROOT, "wrote %s to %s; session started in %.2f s; %s%n", String.join(", ", r.files()), out,
                        (started - t0) / 1e9, r.metrics());
            } finally {
                spark.stop();
            }
            return 0;
        }
    }

    @Command(name = "make-problem", mixinStandardHelpOptions = true,
            description = "Writes a seeded random attention problem for the attention job and bin/headroom run: x.npy (n, E) "
                    + "uniform in [-1, 1) and w.safetensors (q/k/v/o_proj weights and biases, PyTorch's init scale). No Spark.")
    static final class MakeProblem implements Callable<Integer> {
        @Option(names = "--n", required = true, description = "Tokens.")
        int n;

        @Option(names = "--d-model", defaultValue = "768", description = "E. Default: ${DEFAULT-VALUE}.")
        int dModel;

        @Option(names = "--heads", defaultValue = "12", description = "H. Default: ${DEFAULT-VALUE}.")
        int heads;

        @Option(names = "--kv-heads", description = "G (default H).")
        Integer kvHeads;

        @Option(names = "--seed", defaultValue = "1", description = "Default: ${DEFAULT-VALUE}.")
        long seed;

        @Option(names = "--out", required = true, description = "Directory for x.npy and w.safetensors.")
        Path out;

        @Override
        public Integer call() throws Exception {
            dev.headroom.attention.AttentionConfig config = dev.headroom.attention.AttentionConfig.of(dModel, heads)
                    .withKvHeads(kvHeads == null ? heads : kvHeads);
            java.nio.file.Files.createDirectories(out);
            try (dev.headroom.memory.TrackedArena arena = dev.headroom.memory.TrackedArena.ofConfined()) {
                dev.headroom.io.SafeTensors.write(out.resolve("w.safetensors"),
                        dev.headroom.attention.AttentionWeights.random(config, true, seed, arena).stateDict());
                dev.headroom.io.Npy.write(out.resolve("x.npy"), dev.headroom.tensor.Tensor.uniform(arena, seed + 1, 1, n, dModel));
            }
            System.out.printf(Locale.ROOT, "wrote %s (%d, %d) and %s (E = %d, %d heads, %d key/value heads)%n", out.resolve("x.npy"), n,
                    dModel, out.resolve("w.safetensors"), dModel, heads, config.kvHeads());
            return 0;
        }
    }
}
