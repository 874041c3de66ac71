package dev.headroom.runtime;

import dev.headroom.memory.TrackedArena;
import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * The machine's streaming read bandwidth, measured now: what memory-bound kernels (decode over a
 * KV cache) are set against. Each worker sums its share of a buffer far larger than the caches
 * with vector loads (four independent accumulators, so the adds never wait on each other), and
 * the rate is bytes read over wall time. The sum is returned, so the reads cannot be optimised
 * away.
 */
public final class ReadBandwidth implements AutoCloseable {
    /** Default buffer: 1 GiB, far past any last-level cache of a server CPU today. */
    public static final long DEFAULT_BYTES = 1L << 30;

    private final TrackedArena arena = TrackedArena.ofShared();
    /** The buffer read: filled once, so its pages exist before the first timing. */
    private final MemorySegment buffer;
    private final WorkerPool pool;

    public ReadBandwidth(long bytes, int threads) {
        long rounded = Math.max(1 << 20, bytes / (64L * threads * 4) * (64L * threads * 4));
        buffer = arena.allocate(rounded, 64);
        buffer.fill((byte) 1);
        pool = new WorkerPool(threads);
    }

    /** One pass over the buffer; returns the sum of what was read (to keep the reads). */
    public float readOnce() {
        int threads = pool.threads();
        long share = buffer.byteSize() / threads;
        float[] sums = new float[threads];
        pool.run(threads, (task, worker) -> sums[task] = sum(buffer, task * share, share));
        float total = 0;
        for (float s : sums) total += s;
        return total;
    }

    /** The median rate of {@code passes} passes after one warm-up, in GB/s (10⁹ bytes per second). */
    public double measure(int passes) {
        readOnce();
        double[] rates = new double[passes];
        for (int p = 0; p < passes; p++) {
            long t0 = System.nanoTime();
            readOnce();
            rates[p] = buffer.byteSize() / (double) (System.nanoTime() - t0);
        }
        java.util.Arrays.sort(rates);
        return rates[passes / 2];
    }

    /** Bytes one pass reads. */
    public long bytes() {
        return buffer.byteSize();
    }

    private static float sum(MemorySegment m, long from, long bytes) {
        int step = SPECIES.vectorByteSize();
        FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0, a2 = a0, a3 = a0;
        long end = from + bytes - bytes % (4L * step);
        for (long at = from; at < end; at += 4L * step) {
            a0 = a0.add(FloatVector.fromMemorySegment(SPECIES, m, at, ORDER));
            a1 = a1.add(FloatVector.fromMemorySegment(SPECIES, m, at + step, ORDER));
            a2 = a2.add(FloatVector.fromMemorySegment(SPECIES, m, at + 2L * step, ORDER));
            a3 = a3.add(FloatVector.fromMemorySegment(SPECIES, m, at + 3L * step, ORDER));
        }
        return a0.add(a1).add(a2).add(a3).reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
    }

    @Override
    public void close() {
        pool.close();
        arena.close();
    }
}
