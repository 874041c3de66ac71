package dev.headroom.spark;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.blas.OpenBlas;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.model.minilm.MiniLmWeights;
import dev.headroom.probe.MiniLmProbedModel;
import org.apache.spark.TaskContext;
import org.apache.spark.util.LongAccumulator;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * What one executor JVM loads once and keeps for every task it runs: models, in off-heap memory
 * owned here (one arena per model), released by a shutdown hook when the JVM exits. Tasks never
 * carry weights in their closures: they name what they need (the built-in model, or a weights
 * file every executor can read) and take it from here, loading it on first use.
 *
 * <p>In local mode the driver is the executor, and this holder lives in the driver's JVM.
 *
 * <p>Per task, {@link #taskStarted} counts the task and, when it ends and no other task of this
 * JVM is running, adds the bytes Headroom still holds off-heap beyond the loaded models to an
 * accumulator: 0 unless a task left memory behind.
 */
final class ExecutorModels {
    /** A loaded model and the arena that owns its weights. */
    private record Loaded(String name, AutoCloseable model, TrackedArena arena) {}

    /** By key (what was asked for): the models this JVM holds. */
    private static final Map<List<Object>, Loaded> MODELS = new LinkedHashMap<>();
    private static final AtomicInteger RUNNING_TASKS = new AtomicInteger();
    /** Where a cluster executor writes what its shutdown released, in its working directory. */
    static final String RELEASE_LOG = "headroom-spark.log";
    private static boolean hookInstalled;

    private ExecutorModels() {}

    /**
     * all-MiniLM-L6-v2 with {@code threads} workers, truncating at {@code maxTokens} (0: the
     * tokenizer's own limit, 128).
     */
    static synchronized MiniLmEncoder minilm(int threads, int maxTokens) {
        List<Object> key = List.of("minilm", threads, maxTokens);
        Loaded l = MODELS.get(key);
        if (l != null) return (MiniLmEncoder) l.model;
        OpenBlas.load(); // an executor without OpenBLAS says so here, before anything is allocated
        TrackedArena arena = TrackedArena.ofShared();
        try {
            MiniLmEncoder loaded = Models.minilm(arena, threads);
            MiniLmEncoder encoder = maxTokens == 0 ? loaded
                    : new MiniLmEncoder(loaded.weights(), loaded.tokenizer().withMaxLength(maxTokens), threads);
            if (encoder != loaded) loaded.close(); // its pool only: the weights stay in the arena
            keep(key, new Loaded("all-MiniLM-L6-v2 (" + threads + " threads)", encoder, arena));
            return encoder;
        } catch (IOException e) {
            arena.close();
            throw new UncheckedIOException("cannot load all-MiniLM-L6-v2 on executor " + executorId() + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /**
     * A probed all-MiniLM-L6-v2 for one task: trained, or untrained of the same shapes
     * ({@link MiniLmProbedModel#random}'s weights for {@code seed}). The encoder (its weights) is
     * loaded once per JVM and kept like {@link #minilm}'s; what is returned is a
     * {@link MiniLmProbedModel#over} it, with its own workspace and output buffer, because a probed
     * model is for one thread at a time and the tasks of a JVM run at once. The task closes it
     * (freeing that scratch); the encoder stays.
     */
    static MiniLmProbedModel probed(boolean trained, int threads, long seed) {
        if (trained) return MiniLmProbedModel.over(ProbeJob.TRAINED, minilm(threads, 0));
        return MiniLmProbedModel.over(ProbeJob.RANDOM, randomMinilm(threads, seed));
    }

    /** The untrained encoder of all-MiniLM-L6-v2's shapes for {@code seed}, as {@link MiniLmProbedModel#random} draws it. */
    private static synchronized MiniLmEncoder randomMinilm(int threads, long seed) {
        List<Object> key = List.of("minilm-random", threads, seed);
        Loaded l = MODELS.get(key);
        if (l != null) return (MiniLmEncoder) l.model;
        OpenBlas.load();
        TrackedArena arena = TrackedArena.ofShared();
        try (TrackedArena trainedArena = TrackedArena.ofShared()) { // the trained weights give the shapes, then go
            MiniLmWeights random = MiniLmWeights.randomLike(Models.minilmWeights(trainedArena), seed, arena);
            MiniLmEncoder encoder = new MiniLmEncoder(random, Models.minilmTokenizer(), threads);
            keep(key, new Loaded("untrained all-MiniLM-L6-v2, seed " + seed + " (" + threads + " threads)", encoder, arena));
            return encoder;
        } catch (IOException e) {
            arena.close();
            throw new UncheckedIOException("cannot load all-MiniLM-L6-v2's shapes on executor " + executorId() + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** An attention layer over the weights in {@code weights} (a .safetensors file or a directory of .npy files). */
    static synchronized MultiHeadAttention attention(Path weights, String prefix, AttentionConfig config, int threads) {
        List<Object> key = List.of("attention", weights.toString(), prefix, config, threads);
        Loaded l = MODELS.get(key);
        if (l != null) return (MultiHeadAttention) l.model;
        OpenBlas.load();
        TrackedArena arena = TrackedArena.ofShared();
        try {
            AttentionWeights w = AttentionWeights.load(weights, config, prefix, arena);
            MultiHeadAttention layer = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(threads));
            keep(key, new Loaded("attention " + weights.getFileName() + " (" + threads + " threads)", layer, arena));
            return layer;
        } catch (IOException e) {
            arena.close();
            throw new UncheckedIOException("cannot read the weights " + weights + " on executor " + executorId() + ": "
                    + e.getMessage(), e);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    private static void keep(List<Object> key, Loaded loaded) {
        MODELS.put(key, loaded);
        installHook();
    }

    /** Once per JVM, from its first Headroom task or model: the release at exit. */
    private static synchronized void installHook() {
        if (hookInstalled) return;
        // Decided now, while Spark runs: whether this JVM is a cluster's executor (not the driver).
        String id = executorId();
        boolean executor = org.apache.spark.SparkEnv.get() != null && !"driver".equals(id);
        // The JVM exits when its application ends (an executor is stopped by its driver or
        // terminated by its worker): release here, and say so on stderr and, on a cluster's
        // executor, in RELEASE_LOG in its working directory (work/<app>/<executor>/ under the
        // worker's), because a standalone worker stops copying the executor's stderr to its file
        // before it terminates the process.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            String line = releaseAll(executor ? "executor " + id : "this JVM");
            System.err.println(line);
            if (!executor) return;
            try {
                java.nio.file.Files.writeString(Path.of(RELEASE_LOG), line + "\n", java.nio.file.StandardOpenOption.CREATE,
                        java.nio.file.StandardOpenOption.APPEND);
            } catch (IOException e) {
                System.err.println("headroom-spark: cannot write " + RELEASE_LOG + ": " + e.getMessage());
            }
        }, "headroom-release"));
        hookInstalled = true;
    }

    /** Off-heap bytes the loaded models hold. */
    static synchronized long residentBytes() {
        long bytes = 0;
        for (Loaded l : MODELS.values()) bytes += l.arena.allocatedBytes();
        return bytes;
    }

    /** Closes every model and its arena; returns one line saying what {@code who} released and what Headroom still holds. */
    static synchronized String releaseAll(String who) {
        long before = OffHeap.currentBytes(), resident = residentBytes();
        List<String> names = new ArrayList<>();
        List<String> problems = new ArrayList<>();
        for (Loaded l : MODELS.values()) {
            names.add(l.name);
            try {
                l.model.close();
                l.arena.close();
            } catch (Exception e) { // a task still running at exit keeps its arena open: say so, release the rest
                problems.add(l.name + ": " + e);
            }
        }
        MODELS.clear();
        return "headroom-spark: " + who + " released " + names + " (" + resident + " bytes of "
                + before + " off-heap); Headroom off-heap now " + OffHeap.currentBytes() + " bytes"
                + (problems.isEmpty() ? "" : "; not released: " + problems);
    }

    /**
     * Counts a task that runs Headroom; when it completes and no other such task of this JVM is
     * running, adds to {@code leftover} the off-heap bytes beyond the loaded models (0 when the
     * task freed everything it allocated) and 1 to {@code measured}.
     */
    static void taskStarted(TaskContext task, LongAccumulator leftover, LongAccumulator measured) {
        installHook();
        RUNNING_TASKS.incrementAndGet();
        task.addTaskCompletionListener((org.apache.spark.util.TaskCompletionListener) t -> {
            synchronized (ExecutorModels.class) {
                if (RUNNING_TASKS.decrementAndGet() == 0) {
                    leftover.add(Math.max(0, OffHeap.currentBytes() - residentBytes()));
                    measured.add(1);
                }
            }
        });
    }

    /** Headroom threads for a task: the CPUs Spark gives it (spark.task.cpus, 1 by default). */
    static int taskThreads(TaskContext task) {
        return Math.max(1, task.cpus());
    }

    private static String executorId() {
        org.apache.spark.SparkEnv env = org.apache.spark.SparkEnv.get();
        return env == null ? "(none)" : env.executorId();
    }
}
