package dev.headroom.spark;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.PartialAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.io.Npy;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;
import org.apache.spark.HashPartitioner;
import org.apache.spark.SparkContext;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.SparkSession;
import scala.Function2;
import scala.Tuple2;
import scala.reflect.ClassTag;
import scala.reflect.ClassTag$;
import scala.runtime.BoxedUnit;

import java.io.IOException;
import java.io.PrintStream;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;

/**
 * Exact multi-head attention of one long sequence with its work split over a cluster: what
 * {@code bin/headroom run} computes with the tiled kernel, within float32 rounding.
 * <pre>
 *   driver:   Q, K, V = project(X)          O(n·E²): a few % of the work; written as .npy files
 *             that every executor reads (shipped with addFile, or read in place in local mode)
 *   tasks:    one per (query block, key part): the part's state (O, M, L) of the block's queries,
 *             {@link PartialAttention#attend}, at whole-sequence positions (causal: parts after
 *             the block are not computed at all)
 *   merge:    one key part per block (the default): the state is normalised in the same task;
 *             several: states go to one task per query block (a shuffle by block), which merges
 *             them in key order, exactly, and normalises
 *   output:   Y rows = O W_Oᵀ + b_O per block, on the executor; each block is written into the
 *             output .npy at its rows as it arrives at the driver
 * </pre>
 * Query blocks start at multiples of 256 rows and key parts at multiples of 1,024 keys, the query
 * block and key tile of the single-machine tiled kernel, so that with one key part each block's
 * attention is bitwise the single machine's; several key parts differ from it by the rounding of
 * the merge. Tasks are submitted largest first (causal blocks late in the sequence see more keys),
 * so that the last tasks to start are short.
 */
final class AttentionJob {
    /** Query blocks start at multiples of this: the kernel's query block. */
    static final int QUERY_ALIGN = 256;
    /** Key parts start at multiples of this: the tiled kernel's key tile. */
    static final int KEY_ALIGN = 1024;

    /**
     * The layer and how to split it.
     *
     * @param weights     a .safetensors file or a directory of .npy files, PyTorch's layouts
     * @param querySplits query blocks (0: four per task slot)
     * @param keySplits   key parts per block (1: each task attends its block over all its keys)
     */
    record Settings(Path weights, String prefix, int heads, Integer kvHeads, Integer headDim, boolean causal, int querySplits,
                    int keySplits, boolean overwrite) {
        Settings {
            if (heads < 1) throw new IllegalArgumentException("--heads must be >= 1, got " + heads);
            if (querySplits < 0 || keySplits < 1) {
                throw new IllegalArgumentException("--query-splits must be >= 0 (0: automatic) and --key-splits >= 1, got "
                        + querySplits + " and " + keySplits);
            }
        }

        AttentionConfig config(int dModel) {
            int d = headDim != null ? headDim : AttentionConfig.of(dModel, heads).headDim();
            return AttentionConfig.of(dModel, heads, kvHeads == null ? heads : kvHeads, d);
        }
    }

    /** What a task needs to know, all of it small: file handles and the layer's shape, never data. */
    record Plan(String weights, String prefix, int dModel, int heads, int kvHeads, int headDim, String queries, String keys,
                String values, int n, boolean causal) implements Serializable {
        AttentionConfig config() {
            return AttentionConfig.of(dModel, heads, kvHeads, headDim);
        }
    }

    /** Queries [q0, q1) of block {@code block} against keys [k0, k1) of part {@code part}. */
    record Task(int block, int q0, int q1, int part, int k0, int k1) implements Serializable {
        /** Score pairs this task computes at most: its work, for ordering. */
        long work() {
            return (long) (q1 - q0) * (k1 - k0);
        }
    }

    /** A part's state of a block's queries, on the heap for the shuffle: O (m, H·d), M and L (H, m). */
    record PartState(int part, float[] out, float[] max, float[] sum) implements Serializable {}

    /** Output rows [q0, q0 + rows) of Y, (rows, E) row-major. */
    record Block(int q0, float[] y) implements Serializable {}

    /** n, the splits, and where the time went on the driver and in the tasks. */
    record Result(int n, int queryBlocks, int keyParts, int tasks, long wallNanos, String breakdown, String metrics) {}

    private AttentionJob() {}

    static Result run(SparkSession spark, Path input, Path output, Settings settings, Path workDir, PrintStream log) throws IOException {
        if (!settings.overwrite() && Files.exists(output)) {
            throw new IllegalArgumentException("--output " + output + " exists; remove it or pass --overwrite");
        }
        Path dir = Files.createTempDirectory(workDir, "headroom-attention-");
        try {
            return runIn(dir, spark, input, output, settings, log);
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(output); // a failed job leaves no partial Y behind
            throw e;
        } finally {
            deleteRecursively(dir); // the projected Q, K, V
        }
    }

    /** The job, with the driver's files in {@code dir}. */
    private static Result runIn(Path dir, SparkSession spark, Path input, Path output, Settings settings, PrintStream log)
            throws IOException {
        SparkContext sc = spark.sparkContext();
        JobMetrics metrics = new JobMetrics(sc, "attention");
        long t0 = System.nanoTime();
        int n;
        AttentionConfig config;
        int[] outShape;
        long tRead, tProject, tWrite;
        try (TrackedArena arena = TrackedArena.ofShared()) {
            // 1. X and the layer, on the driver
            Tensor x = Npy.read(input, arena);
            outShape = x.shape(); // Y has X's shape, as bin/headroom run writes it
            if (x.rank() == 3 && x.dim(0) == 1) x = x.reshape(x.dim(1), x.dim(2));
            if (x.rank() != 2) {
                throw new IllegalArgumentException("--input " + input + " has shape " + x.shapeString() + "; the attention job takes "
                        + "one sequence, (n, E) or (1, n, E)");
            }
            n = x.dim(0);
            config = settings.config(x.dim(1));
            AttentionWeights w = AttentionWeights.load(settings.weights(), config, settings.prefix(), arena);
            tRead = System.nanoTime();
            // 2. Q, K, V = project(X), features × tokens, as the single-machine forward lays them out
            Tensor qT = Tensor.allocate(arena, config.queryWidth(), n);
            Tensor kT = Tensor.allocate(arena, config.kvWidth(), n), vT = Tensor.allocate(arena, config.kvWidth(), n);
            try (MultiHeadAttention layer = new MultiHeadAttention(w)) {
                layer.project(x.matrix(), x.matrix(), qT.matrix(), kT.matrix(), vT.matrix(), null);
            }
            tProject = System.nanoTime();
            Npy.write(dir.resolve("q.npy"), qT);
            Npy.write(dir.resolve("k.npy"), kT);
            Npy.write(dir.resolve("v.npy"), vT);
            tWrite = System.nanoTime();
        }
        Plan plan = new Plan(SharedFiles.share(sc, settings.weights()), settings.prefix(), config.dModel(), config.heads(),
                config.kvHeads(), config.headDim(),
                SharedFiles.share(sc, dir.resolve("q.npy")), SharedFiles.share(sc, dir.resolve("k.npy")),
                SharedFiles.share(sc, dir.resolve("v.npy")), n, settings.causal());

        // 3. the tasks, largest first
        int slots = sc.defaultParallelism();
        int querySplits = settings.querySplits() > 0 ? settings.querySplits() : 4 * slots;
        int rowsPerBlock = roundUp(Math.max(1, (n + querySplits - 1) / querySplits), QUERY_ALIGN);
        int keysPerPart = roundUp(Math.max(1, (n + settings.keySplits() - 1) / settings.keySplits()), KEY_ALIGN);
        List<Task> tasks = new ArrayList<>();
        int blocks = 0, parts = (n + keysPerPart - 1) / keysPerPart;
        for (int q0 = 0; q0 < n; q0 += rowsPerBlock, blocks++) {
            int q1 = Math.min(n, q0 + rowsPerBlock), keyEnd = settings.causal() ? q1 : n;
            for (int k0 = 0, part = 0; k0 < keyEnd; k0 += keysPerPart, part++) {
                tasks.add(new Task(blocks, q0, q1, part, k0, Math.min(keyEnd, k0 + keysPerPart)));
            }
        }
        tasks.sort(Comparator.comparingLong(Task::work).reversed());
        JavaRDD<Task> rdd = JavaSparkContext.fromSparkContext(sc).parallelize(tasks, tasks.size());

        // 4. run them; each block's rows go into the output file as they arrive
        long dataOffset = NpyFiles.create(output, outShape);
        int E = config.dModel();
        long tStart = System.nanoTime();
        try (FileChannel out = FileChannel.open(output, StandardOpenOption.WRITE)) {
            // on the driver, as each task's block arrives
            Function2<Object, Block, BoxedUnit> write = (index, block) -> {
                try {
                    NpyFiles.write(out, dataOffset, (long) block.q0() * E, block.y());
                } catch (IOException e) {
                    throw new UncheckedIOException("cannot write rows " + block.q0() + ".. of --output " + output + ": " + e.getMessage(), e);
                }
                return BoxedUnit.UNIT;
            };
            ClassTag<Block> tag = ClassTag$.MODULE$.apply(Block.class);
            if (tasks.stream().allMatch(t -> t.k0() == 0 && t.k1() == (settings.causal() ? t.q1() : n))) {
                // one key part per block: attend, normalise and project in the same task
                Function2<TaskContext, scala.collection.Iterator<Task>, Block> attend =
                        (Function2<TaskContext, scala.collection.Iterator<Task>, Block> & Serializable) (ctx, it) ->
                                single(it.next(), plan, metrics);
                sc.runJob(rdd.rdd(), attend, write, tag);
            } else {
                // several: each part's state by block, then one task per block merges them in key order
                JavaPairRDD<Integer, Iterable<Tuple2<Integer, PartState>>> byBlock = rdd
                        .mapToPair(t -> new Tuple2<>(t.block(), new Tuple2<>(t.part(), partState(t, plan, metrics))))
                        .groupByKey(new HashPartitioner(blocks));
                int rows = rowsPerBlock;
                RDD<Tuple2<Integer, Iterable<Tuple2<Integer, PartState>>>> grouped = byBlock.rdd();
                Function2<TaskContext, scala.collection.Iterator<Tuple2<Integer, Iterable<Tuple2<Integer, PartState>>>>, Block> merge =
                        (Function2<TaskContext, scala.collection.Iterator<Tuple2<Integer, Iterable<Tuple2<Integer, PartState>>>>, Block>
                                & Serializable) (ctx, it) -> {
                            Tuple2<Integer, Iterable<Tuple2<Integer, PartState>>> g = it.next();
                            if (it.hasNext()) throw new IllegalStateException("two query blocks in one partition");
                            int q0 = g._1 * rows, q1 = Math.min(plan.n(), q0 + rows);
                            return merged(q0, q1, g._2, plan, metrics);
                        };
                sc.runJob(grouped, merge, write, tag);
            }
        }
        long tEnd = System.nanoTime();
        try (FileChannel check = FileChannel.open(output, StandardOpenOption.READ)) {
            Npy.header(check, output); // the file is whole and well formed
        }
        long wall = System.nanoTime() - t0;
        String breakdown = String.format(Locale.ROOT, "driver: read X and weights %.2f s, project Q/K/V %.2f s, write Q/K/V %.2f s, "
                        + "tasks and output %.2f s (%d tasks: %d query blocks of %d rows × %d key parts of %d keys)",
                (tRead - t0) / 1e9, (tProject - tRead) / 1e9, (tWrite - tProject) / 1e9, (tEnd - tStart) / 1e9, tasks.size(),
                blocks, rowsPerBlock, parts, keysPerPart);
        log.println("attention: n = " + n + ", E = " + config.dModel() + ", " + config.heads() + " heads (" + config.kvHeads()
                + " key/value) of " + config.headDim() + (settings.causal() ? ", causal" : "") + "; "
                + breakdown);
        return new Result(n, blocks, parts, tasks.size(), wall, breakdown, metrics.describe(wall, JobMetrics.localSlots(sc)));
    }

    /** A block over all the keys it sees, in one task: attend, normalise, project. */
    static Block single(Task t, Plan plan, JobMetrics metrics) {
        TaskContext task = TaskContext.get();
        ExecutorModels.taskStarted(task, metrics.leftoverBytes, metrics.measuredTasks);
        MultiHeadAttention layer = layer(task, plan, metrics);
        AttentionConfig c = plan.config();
        try (TrackedArena arena = TrackedArena.ofShared(); Workspace ws = new Workspace()) {
            PartialAttention.State s = attend(layer, t, plan, arena, ws, metrics);
            return output(layer, t.q0(), s, arena, metrics, c);
        }
    }

    /** One part's state of a block, on the heap for the shuffle. */
    static PartState partState(Task t, Plan plan, JobMetrics metrics) {
        TaskContext task = TaskContext.get();
        ExecutorModels.taskStarted(task, metrics.leftoverBytes, metrics.measuredTasks);
        MultiHeadAttention layer = layer(task, plan, metrics);
        try (TrackedArena arena = TrackedArena.ofShared(); Workspace ws = new Workspace()) {
            PartialAttention.State s = attend(layer, t, plan, arena, ws, metrics);
            int m = t.q1() - t.q0(), H = plan.config().heads(), d = plan.config().headDim();
            return new PartState(t.part(), s.out().asSlice(0, (long) m * H * d * Float.BYTES).toArray(ValueLayout.JAVA_FLOAT),
                    s.max().asSlice(0, (long) H * m * Float.BYTES).toArray(ValueLayout.JAVA_FLOAT),
                    s.sum().asSlice(0, (long) H * m * Float.BYTES).toArray(ValueLayout.JAVA_FLOAT));
        }
    }

    /** A block's parts merged in key order (whatever order they arrived in), normalised and projected. */
    static Block merged(int q0, int q1, Iterable<Tuple2<Integer, PartState>> parts, Plan plan, JobMetrics metrics) {
        TaskContext task = TaskContext.get();
        ExecutorModels.taskStarted(task, metrics.leftoverBytes, metrics.measuredTasks);
        MultiHeadAttention layer = layer(task, plan, metrics);
        AttentionConfig c = plan.config();
        List<PartState> sorted = new ArrayList<>();
        for (Tuple2<Integer, PartState> p : parts) sorted.add(p._2);
        sorted.sort(Comparator.comparingInt(PartState::part));
        int m = q1 - q0, H = c.heads(), d = c.headDim();
        try (TrackedArena arena = TrackedArena.ofShared()) {
            long start = System.nanoTime();
            PartialAttention.State s = PartialAttention.State.allocate(arena, m, H, d); // empty: merging the first part copies it
            for (PartState p : sorted) {
                PartialAttention.merge(s, new PartialAttention.State(m, H, d, MemorySegment.ofArray(p.out()),
                        MemorySegment.ofArray(p.max()), MemorySegment.ofArray(p.sum())));
            }
            metrics.workNanos.add(System.nanoTime() - start);
            return output(layer, q0, s, arena, metrics, c);
        }
    }

    /** The state of task t's queries over its keys, read from the shared files. */
    private static PartialAttention.State attend(MultiHeadAttention layer, Task t, Plan plan, TrackedArena arena, Workspace ws,
                                                 JobMetrics metrics) {
        AttentionConfig c = plan.config();
        long start = System.nanoTime();
        Matrix qT, kT, vT;
        try {
            qT = NpyFiles.readColumns(SharedFiles.resolve(plan.queries()), t.q0(), t.q1(), arena);
            kT = NpyFiles.readColumns(SharedFiles.resolve(plan.keys()), t.k0(), t.k1(), arena);
            vT = NpyFiles.readColumns(SharedFiles.resolve(plan.values()), t.k0(), t.k1(), arena);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the projected queries, keys or values: " + e.getMessage(), e);
        }
        long read = System.nanoTime();
        metrics.readNanos.add(read - start);
        PartialAttention.State s = PartialAttention.State.allocate(arena, t.q1() - t.q0(), c.heads(), c.headDim());
        PartialAttention.attend(layer, qT, kT, vT, plan.causal(), t.q0(), t.k0(), s, ws);
        metrics.workNanos.add(System.nanoTime() - read);
        return s;
    }

    /** Y rows of a block: O / L, then the output projection. */
    private static Block output(MultiHeadAttention layer, int q0, PartialAttention.State s, TrackedArena arena, JobMetrics metrics,
                                AttentionConfig c) {
        long start = System.nanoTime();
        int m = s.rows();
        PartialAttention.normalise(s, s.outMatrix()); // in place: O becomes the block's concatenated heads
        Tensor y = Tensor.allocate(arena, m, c.dModel());
        layer.projectOutput(s.outMatrix(), y.matrix(), null);
        metrics.workNanos.add(System.nanoTime() - start);
        metrics.records.add(m);
        return new Block(q0, y.toArray());
    }

    private static MultiHeadAttention layer(TaskContext task, Plan plan, JobMetrics metrics) {
        long t = System.nanoTime();
        MultiHeadAttention layer = ExecutorModels.attention(SharedFiles.resolve(plan.weights()), plan.prefix(), plan.config(),
                ExecutorModels.taskThreads(task));
        metrics.loadNanos.add(System.nanoTime() - t);
        return layer;
    }

    static int roundUp(int x, int multiple) {
        return (x + multiple - 1) / multiple * multiple;
    }

    private static void deleteRecursively(Path dir) throws IOException {
        try (var files = Files.walk(dir)) {
            for (Path p : files.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
        }
    }
}
