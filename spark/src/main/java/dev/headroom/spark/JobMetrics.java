package dev.headroom.spark;

import org.apache.spark.SparkContext;
import org.apache.spark.util.LongAccumulator;

import java.io.Serializable;
import java.util.Locale;

/**
 * What a job's tasks measured, summed over every task by accumulators: records processed, the
 * time spent in Headroom's own work and in loading models and reading inputs, and Headroom's
 * off-heap memory left behind by tasks (bytes beyond the loaded models when a task ended alone in
 * its JVM; 0 unless a task leaked). Times are task time, summed over tasks that may run at once.
 */
final class JobMetrics implements Serializable {
    final LongAccumulator records, workNanos, loadNanos, readNanos, leftoverBytes, measuredTasks;

    JobMetrics(SparkContext sc, String job) {
        records = sc.longAccumulator(job + ": records");
        workNanos = sc.longAccumulator(job + ": Headroom work ns");
        loadNanos = sc.longAccumulator(job + ": model load ns");
        readNanos = sc.longAccumulator(job + ": input read ns");
        leftoverBytes = sc.longAccumulator(job + ": off-heap left by tasks, bytes");
        measuredTasks = sc.longAccumulator(job + ": tasks measured alone");
    }

    /** One line: records, their rate over {@code wallNanos}, and where the task time went. */
    String describe(long wallNanos, int slots) {
        double wall = wallNanos / 1e9, work = workNanos.sum() / 1e9, load = loadNanos.sum() / 1e9, read = readNanos.sum() / 1e9;
        return String.format(Locale.ROOT, "%d records in %.2f s (%.1f records/s) on %d task slots; task time: Headroom %.2f s, "
                        + "model loads %.2f s, reading inputs %.2f s (slot time available %.2f s); "
                        + "off-heap left by tasks: %d bytes (%d tasks measured alone)",
                records.sum(), wall, records.sum() / Math.max(wall, 1e-9), slots, work, load, read, wall * slots,
                leftoverBytes.sum(), measuredTasks.sum());
    }
}
