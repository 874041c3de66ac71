package dev.headroom.spark;

import org.apache.spark.SparkContext;
import org.apache.spark.executor.TaskMetrics;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerJobEnd;
import org.apache.spark.scheduler.SparkListenerJobStart;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.scheduler.TaskInfo;
import org.apache.spark.util.LongAccumulator;

import java.io.Serializable;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Where a job's time went. Tasks measure their own parts in accumulators (records, Headroom's
 * work, model loads, input reads, and Headroom's off-heap memory left behind by a task: bytes
 * beyond the loaded models when it ended alone in its JVM, 0 unless a task leaked); a listener on
 * the driver adds Spark's own account of every task (run time, deserialisation, garbage
 * collection, result serialisation, and the rest of its time from launch to end: scheduling and
 * fetching results). Task times are summed over tasks that may run at once; against the wall time
 * × task slots they say how much of the slots' time held work.
 */
final class JobMetrics implements Serializable {
    final LongAccumulator records, workNanos, loadNanos, readNanos, leftoverBytes, measuredTasks;
    /** On the driver only: Spark's sums over the job's tasks, in ms. */
    private final transient Listener spark;
    private final transient SparkContext sc;

    JobMetrics(SparkContext sc, String job) {
        this.sc = sc;
        records = sc.longAccumulator(job + ": records");
        workNanos = sc.longAccumulator(job + ": Headroom work ns");
        loadNanos = sc.longAccumulator(job + ": model load ns");
        readNanos = sc.longAccumulator(job + ": input read ns");
        leftoverBytes = sc.longAccumulator(job + ": off-heap left by tasks, bytes");
        measuredTasks = sc.longAccumulator(job + ": tasks measured alone");
        spark = new Listener();
        sc.addSparkListener(spark);
    }

    /** Spark's account of the tasks, summed (ms), from the listener bus. */
    private static final class Listener extends SparkListener {
        /** Task run time (ms) by stage, "name (tasks)" in the order stages completed. */
        final java.util.Map<String, Long> stages = java.util.Collections.synchronizedMap(new java.util.LinkedHashMap<>());
        final java.util.Map<Integer, long[]> stageRun = new java.util.concurrent.ConcurrentHashMap<>();
        final java.util.Set<String> executors = java.util.concurrent.ConcurrentHashMap.newKeySet();
        final AtomicLong jobs = new AtomicLong(), jobsEnded = new AtomicLong(), tasks = new AtomicLong(), failed = new AtomicLong(), run = new AtomicLong(),
                deserialize = new AtomicLong(), gc = new AtomicLong(), serialize = new AtomicLong(), span = new AtomicLong();

        @Override
        public void onJobStart(SparkListenerJobStart start) {
            jobs.incrementAndGet();
        }

        @Override
        public void onStageCompleted(org.apache.spark.scheduler.SparkListenerStageCompleted done) {
            long[] r = stageRun.getOrDefault(done.stageInfo().stageId(), new long[2]);
            String name = done.stageInfo().name();
            stages.put(done.stageInfo().stageId() + " " + name.replaceAll(" at .*", "") + " (" + r[1] + " tasks)", r[0]);
        }

        @Override
        public void onJobEnd(SparkListenerJobEnd end) {
            jobsEnded.incrementAndGet();
        }

        @Override
        public void onTaskEnd(SparkListenerTaskEnd end) {
            TaskInfo info = end.taskInfo();
            tasks.incrementAndGet();
            executors.add(info.executorId());
            if (!info.successful()) failed.incrementAndGet();
            span.addAndGet(info.finishTime() - info.launchTime());
            TaskMetrics m = end.taskMetrics();
            if (m == null) return;
            long[] r = stageRun.computeIfAbsent(end.stageId(), k -> new long[2]);
            synchronized (r) {
                r[0] += m.executorRunTime();
                r[1]++;
            }
            run.addAndGet(m.executorRunTime());
            deserialize.addAndGet(m.executorDeserializeTime());
            gc.addAndGet(m.jvmGCTime());
            serialize.addAndGet(m.resultSerializationTime());
        }
    }

    /**
     * One paragraph: records and their rate over {@code wallNanos}, on {@code slots} task slots
     * (0: not known, a cluster's); the tasks' time by part; and Spark's account of it. Waits (at most 10 s) for the listener to see the end of every job it
     * saw start (Spark delivers events asynchronously, a task's end before its job's), then stops
     * listening.
     */
    String describe(long wallNanos, int slots) {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (spark.jobsEnded.get() < spark.jobs.get() && System.nanoTime() < deadline) {
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        sc.removeSparkListener(spark);
        double wall = wallNanos / 1e9, work = workNanos.sum() / 1e9, load = loadNanos.sum() / 1e9, read = readNanos.sum() / 1e9;
        double run = spark.run.get() / 1e3, span = spark.span.get() / 1e3;
        String where = slots > 0 ? String.format(Locale.ROOT, "%d task slots (%.2f slot-s)", slots, wall * slots)
                : spark.executors.size() + " executors";
        return String.format(Locale.ROOT, "%d records in %.2f s (%.1f records/s) on %s; "
                        + "in tasks: Headroom %.2f s, model loads %.2f s, reading inputs %.2f s, the rest of the tasks' run time "
                        + "%.2f s (writing outputs, other Spark work in tasks); Spark: %d jobs, %d tasks (%d failed), run %.2f s, "
                        + "deserialising %.2f s, GC %.2f s, result serialisation %.2f s, launch to end %.2f s; "
                        + "task run time by stage: %s; off-heap left by tasks: %d bytes (%d tasks measured alone)",
                records.sum(), wall, records.sum() / Math.max(wall, 1e-9), where, work, load, read,
                Math.max(0, run - work - load - read), spark.jobs.get(), spark.tasks.get(), spark.failed.get(), run,
                spark.deserialize.get() / 1e3, spark.gc.get() / 1e3, spark.serialize.get() / 1e3, span, stages(),
                leftoverBytes.sum(), measuredTasks.sum());
    }

    private String stages() {
        StringBuilder b = new StringBuilder();
        synchronized (spark.stages) {
            spark.stages.forEach((name, ms) -> b.append(b.isEmpty() ? "" : ", ").append(name).append(" ")
                    .append(String.format(Locale.ROOT, "%.2f s", ms / 1e3)));
        }
        return b.toString();
    }

    /** Task slots of a local-mode session (its cores), or 0 on a cluster, where executors come and go. */
    static int localSlots(SparkContext sc) {
        return sc.isLocal() ? sc.defaultParallelism() : 0;
    }
}
