package dev.headroom.runtime;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A fixed set of threads that run numbered tasks. {@link #run} hands tasks 0..count−1 out one
 * at a time (so uneven tasks, like causal blocks, balance themselves) to up to {@code threads}
 * workers: the calling thread and {@code threads − 1} pool threads. Each worker has an index
 * in [0, threads) that selects its own scratch memory. {@code run} returns only when every
 * worker has stopped, so the caller may free the memory the tasks used.
 *
 * <p>Several threads may call {@code run} at once; their tasks share the pool threads.
 */
public final class WorkerPool implements AutoCloseable {
    /** A task body: does task {@code task} on worker {@code worker}. */
    @FunctionalInterface
    public interface Body {
        void run(int task, int worker);
    }

    private final int threads;
    private final ExecutorService executor;

    public WorkerPool(int threads) {
        if (threads < 1) throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        this.threads = threads;
        AtomicInteger id = new AtomicInteger();
        ThreadFactory factory = r -> {
            Thread t = new WorkerThread(r, "headroom-worker-" + id.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
        this.executor = threads > 1 ? Executors.newFixedThreadPool(threads - 1, factory) : null;
    }

    public int threads() {
        return threads;
    }

    /** Runs tasks [0, count) and rethrows the first failure after all workers have stopped. */
    public void run(int count, Body body) {
        int workers = Math.min(threads, count);
        if (workers <= 1 || executor == null || isPoolThread()) {
            for (int t = 0; t < count; t++) body.run(t, 0);
            return;
        }
        AtomicInteger next = new AtomicInteger();
        Failure failure = new Failure();
        List<Future<?>> helpers = new ArrayList<>(workers - 1);
        for (int w = 1; w < workers; w++) {
            int worker = w;
            helpers.add(executor.submit(() -> work(count, body, worker, next, failure)));
        }
        work(count, body, 0, next, failure);
        for (Future<?> f : helpers) {
            try {
                f.get();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                // Workers still touch the caller's memory: wait for them without interruption.
                awaitUninterruptibly(helpers);
                throw new IllegalStateException("interrupted while attention workers ran", e);
            } catch (ExecutionException e) {
                failure.record(e.getCause());
            }
        }
        failure.rethrow();
    }

    private static void work(int count, Body body, int worker, AtomicInteger next, Failure failure) {
        int t;
        while (!failure.happened() && (t = next.getAndIncrement()) < count) {
            try {
                body.run(t, worker);
            } catch (RuntimeException | Error e) {
                failure.record(e);
                return;
            }
        }
    }

    private static void awaitUninterruptibly(List<Future<?>> futures) {
        for (Future<?> f : futures) {
            while (true) {
                try {
                    f.get();
                    break;
                } catch (InterruptedException ignored) {
                    // keep waiting; the interrupt flag is restored by the caller
                } catch (ExecutionException ignored) {
                    break;
                }
            }
        }
    }

    /** A task that itself calls {@code run} (nested attention) runs its tasks inline, never waits on the pool. */
    private static boolean isPoolThread() {
        return Thread.currentThread() instanceof WorkerThread;
    }

    private static final class WorkerThread extends Thread {
        WorkerThread(Runnable r, String name) {
            super(r, name);
        }
    }

    @Override
    public void close() {
        if (executor != null) executor.shutdown();
    }

    private static final class Failure {
        private volatile Throwable first;

        synchronized void record(Throwable t) {
            if (first == null) first = t;
            else if (first != t) first.addSuppressed(t);
        }

        boolean happened() {
            return first != null;
        }

        void rethrow() {
            Throwable t = first;
            if (t == null) return;
            if (t instanceof RuntimeException r) throw r;
            if (t instanceof Error e) throw e;
            throw new IllegalStateException(t);
        }
    }
}
