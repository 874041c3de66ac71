package dev.headroom.spark;

import dev.headroom.cli.Main;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerExecutorRemoved;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The embed and attention jobs on a real standalone cluster (a master and two workers, separate
 * JVMs on 127.0.0.1, executors with one core each), against the same jobs in local mode and the
 * command line; then a worker killed (with its executor) mid-job: the job still completes, with
 * the same results, and the surviving executor leaves no off-heap memory behind.
 */
@Timeout(value = 6, unit = TimeUnit.MINUTES)
class StandaloneClusterIT {
    @Test
    void jobsOnTwoWorkersEqualLocalModeAndSurviveAWorkerKilledMidJob(@TempDir Path dir) throws Exception {
        // the references: local mode and the command line, before the cluster takes the cores
        List<String> sentences = LocalSpark.sentences().subList(0, 64);
        Files.write(dir.resolve("corpus.txt"), sentences);
        Path weights = AttentionJobTest.problem(dir, 5);
        EmbedJob.Settings embed = new EmbedJob.Settings(0, 8, 8, false);
        AttentionJob.Settings attention = AttentionJobTest.settings(weights, true, 6, 2);
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        SparkSession local = LocalSpark.session();
        EmbedJob.run(local, Corpus.text(dir.resolve("corpus.txt").toString()), dir.resolve("local-embed").toString(), embed);
        AttentionJob.run(local, dir.resolve("x.npy"), dir.resolve("local-y.npy"), attention, dir, quiet);
        Map<Long, float[]> expected = embeddings(dir.resolve("local-embed"), local);
        local.stop();
        assertEquals(0, Main.execute("run", "--weights", weights.toString(), "--input", dir.resolve("x.npy").toString(), "--output",
                dir.resolve("cli-y.npy").toString(), "--heads", "4", "--kv-heads", "2", "--causal", "--threads", "2"));

        try (LoopbackCluster cluster = LoopbackCluster.start(dir.resolve("cluster"), 2, "1200m")) {
            SparkSession spark = Sessions.open("headroom cluster test", cluster.masterUrl(), Map.of(
                    "spark.driver.host", "127.0.0.1", "spark.driver.bindAddress", "127.0.0.1", "spark.ui.enabled", "false",
                    "spark.executor.cores", "1", "spark.executor.memory", "1g", "spark.cores.max", "2"));
            try {
                // 1. the same results as local mode: bitwise, since each partition is computed alike
                EmbedJob.Result e = EmbedJob.run(spark, Corpus.text(dir.resolve("corpus.txt").toString()),
                        dir.resolve("cluster-embed").toString(), embed);
                System.out.println("cluster embed: " + e.metrics());
                assertEqualEmbeddings(expected, embeddings(dir.resolve("cluster-embed"), spark));
                AttentionJob.Result a = AttentionJob.run(spark, dir.resolve("x.npy"), dir.resolve("cluster-y.npy"), attention, dir, quiet);
                System.out.println("cluster attention: " + a.breakdown() + "; " + a.metrics());
                assertArrayEquals(Files.readAllBytes(dir.resolve("local-y.npy")), Files.readAllBytes(dir.resolve("cluster-y.npy")),
                        "the cluster's Y is local mode's, bit for bit");
                double[] d = AttentionJobTest.compare(dir.resolve("cli-y.npy"), dir.resolve("cluster-y.npy"));
                assertTrue(d[0] <= 4e-6 * d[1], "cluster vs bin/headroom run: max difference " + d[0]);
                assertEquals(64, e.records());

                // 2. a worker killed mid-job: when the first task ends, the worker running the other executor dies
                AtomicBoolean killed = new AtomicBoolean();
                AtomicInteger failedTasks = new AtomicInteger(), removedExecutors = new AtomicInteger();
                Map<String, Integer> victim = new HashMap<>();
                spark.sparkContext().addSparkListener(new SparkListener() {
                    @Override
                    public void onTaskEnd(SparkListenerTaskEnd end) {
                        if (!end.taskInfo().successful()) failedTasks.incrementAndGet();
                        if (end.taskInfo().successful() && killed.compareAndSet(false, true)) {
                            String done = end.taskInfo().executorId();
                            for (String other : List.of("0", "1")) {
                                if (other.equals(done)) continue;
                                cluster.workerRunning(other).ifPresent(w -> {
                                    victim.put(other, w);
                                    cluster.killWorker(w);
                                });
                            }
                        }
                    }

                    @Override
                    public void onExecutorRemoved(SparkListenerExecutorRemoved removed) {
                        removedExecutors.incrementAndGet();
                    }
                });
                EmbedJob.Result k = EmbedJob.run(spark, Corpus.text(dir.resolve("corpus.txt").toString()),
                        dir.resolve("killed-embed").toString(), embed);
                System.out.printf(Locale.ROOT, "worker killed mid-job: %s (executor → worker); %d tasks failed, %d executors removed; %s%n",
                        victim, failedTasks.get(), removedExecutors.get(), k.metrics());
                assertEquals(1, victim.size(), "a worker was killed while its executor ran a task");
                int dead = victim.values().iterator().next();
                assertFalse(cluster.workerAlive(dead));
                assertTrue(failedTasks.get() >= 1, "the killed executor's task failed and was run again");
                assertEqualEmbeddings(expected, embeddings(dir.resolve("killed-embed"), spark));
                assertEquals(0, k.leftoverBytes(), "off-heap left by tasks: " + k.metrics());
            } finally {
                spark.stop();
            }

            // 3. the surviving executors exit with the application: each says, from its shutdown hook, that
            // Headroom holds no off-heap memory once its models are released
            List<Path> executors = new ArrayList<>();
            for (int w = 0; w < 2; w++) if (cluster.workerAlive(w)) executors.addAll(cluster.executorDirs(w));
            assertFalse(executors.isEmpty(), "the surviving worker ran executors");
            for (Path executor : executors) {
                String line = awaitLine(executor.resolve(ExecutorModels.RELEASE_LOG), "headroom-spark: executor ");
                System.out.println(line);
                assertTrue(line.contains("Headroom off-heap now 0 bytes") && !line.contains("not released"), line);
            }
        }
    }

    /** (id → vector) of an embed job's Parquet output. */
    static Map<Long, float[]> embeddings(Path parquet, SparkSession spark) {
        Map<Long, float[]> m = new HashMap<>();
        for (Row r : spark.read().parquet(parquet.toString()).collectAsList()) {
            List<Float> v = r.getList(1);
            float[] f = new float[v.size()];
            for (int i = 0; i < f.length; i++) f[i] = v.get(i);
            m.put(r.getLong(0), f);
        }
        return m;
    }

    static void assertEqualEmbeddings(Map<Long, float[]> expected, Map<Long, float[]> actual) {
        assertEquals(expected.keySet(), actual.keySet());
        for (Map.Entry<Long, float[]> e : expected.entrySet()) assertArrayEquals(e.getValue(), actual.get(e.getKey()), "id " + e.getKey());
    }

    /** The first line of {@code log} starting with {@code prefix}, waiting up to 60 s for the executor to write it. */
    static String awaitLine(Path log, String prefix) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < deadline) {
            if (Files.exists(log)) for (String line : Files.readAllLines(log)) if (line.startsWith(prefix)) return line;
            Thread.sleep(200);
        }
        throw new AssertionError("no line '" + prefix + "…' in " + log + ": " + LoopbackCluster.tail(log));
    }
}
