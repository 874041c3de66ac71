package dev.headroom.runtime;

import java.util.concurrent.CancellationException;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * A fixed set of threads that run numbered tasks. {@link #run} hands tasks 0..count−1 out one
 * at a time (so uneven tasks, like causal blocks, balance themselves) to up to {@code threads}
 * workers: the calling thread and {@code threads − 1} pool threads. Each worker has an index
 * in [0, threads) that selects its own scratch memory. {@code run} returns only when every
 * worker of the call has stopped, so the caller may free the memory the tasks used.
 *
 * <p>Why not an {@code ExecutorService}: a forward pass calls {@code run} three times and each
 * call lasts milliseconds, while waking a parked thread on this kind of virtual machine takes
 * ~10 µs typically, ~90 µs at p90 and now and then milliseconds. Pool threads here spin for
 * {@value #SPIN_NANOS} ns looking for work before they park, as OpenMP runtimes do, so
 * back-to-back calls find them awake. A helper that has not started when the caller has run out
 * of tasks is withdrawn instead of waited for.
 *
 * <p><b>Waiting.</b> How the spin window is spent is the pool's {@link Waiting} policy. With
 * {@link Waiting#SPIN} (the default) a waiting thread keeps its core: right when the pool's
 * threads are all the process runs (a forward, a benchmark, a batch job). A server's own threads
 * (HTTP handlers writing tokens, clients on loopback) need the same cores between steps: with
 * every core held by a spinning worker, a woken handler waited for the scheduler's next slice
 * (single-stream inter-token latency p99 4.1 ms against 0.3 ms steps), and a helper preempted by
 * a handler left its caller spinning on the other core. {@link Waiting#YIELD} gives the core up on
 * every turn of the window ({@code Thread.yield}, which returns at once when nothing else is
 * runnable), as Intel's OpenMP runtime does when oversubscribed ({@code KMP_USE_YIELD}).
 *
 * <p>Several threads may call {@code run} at once; their helpers share the pool threads.
 *
 * <p><b>Cancellation.</b> Interrupting the thread that called {@code run} cancels the call: no
 * worker starts another task, and tasks that call {@link #checkCancelled()} at their own
 * checkpoints (the attention kernels do, between spans of keys) stop there, so a call ends within
 * one checkpoint interval of the interrupt. {@code run} then throws {@link CancellationException}
 * once every worker has stopped, with the caller's interrupt status still set.
 */
public final class WorkerPool implements AutoCloseable {
    /** A task body: does task {@code task} on worker {@code worker}. */
    @FunctionalInterface
    public interface Body {
        void run(int task, int worker);
    }

    /** How long an idle pool thread (or a caller waiting for helpers) spins before it parks. */
    static final long SPIN_NANOS = 200_000;

    /** How a thread waits in the spin window (see the class comment). */
    public enum Waiting {
        /** Busy-waits: the lowest hand-off latency, when nothing else needs the cores. */
        SPIN,
        /** Yields the core on every turn: other threads of the process (a server's I/O) run at once. */
        YIELD
    }

    private final int threads;
    private final Worker[] workers;
    private final ConcurrentLinkedQueue<Helper> queue = new ConcurrentLinkedQueue<>();
    private volatile boolean closed;
    private volatile Waiting waiting = Waiting.SPIN;

    public WorkerPool(int threads) {
        if (threads < 1) throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        this.threads = threads;
        this.workers = new Worker[threads - 1];
        for (int i = 0; i < workers.length; i++) {
            workers[i] = new Worker("headroom-worker-" + (i + 1));
            workers[i].start();
        }
    }

    public int threads() {
        return threads;
    }

    public Waiting waiting() {
        return waiting;
    }

    /** Sets how this pool's threads and its callers wait from now on; any time, from any thread. */
    public void setWaiting(Waiting waiting) {
        if (waiting == null) throw new IllegalArgumentException("the waiting policy must be given");
        this.waiting = waiting;
    }

    /** One turn of a spin window. */
    private static void spinTurn(Waiting waiting) {
        if (waiting == Waiting.YIELD) Thread.yield();
        else Thread.onSpinWait();
    }

    /** A thread that is not the caller's: what a segment must be accessible from for pool threads. */
    private static final Thread OTHER_THREAD = new Thread(() -> {});

    /**
     * Whether other threads may touch {@code segment}: segments of shared, global or automatic
     * arenas, not of a confined one (which only its owner thread may use).
     */
    public static boolean shareable(java.lang.foreign.MemorySegment segment) {
        return segment.isAccessibleBy(OTHER_THREAD);
    }

    /** Whether {@link #close()} was called. */
    public boolean isClosed() {
        return closed;
    }

    /** The call whose tasks the current thread is running, if any. */
    private static final ThreadLocal<Call> CURRENT = new ThreadLocal<>();

    /**
     * Throws {@link CancellationException} when the call the current thread works for was
     * cancelled (its caller interrupted), or, outside any call, when the current thread is
     * interrupted. Long tasks call this at regular points.
     */
    public static void checkCancelled() {
        Call call = CURRENT.get();
        if (call != null ? call.cancelled() : Thread.currentThread().isInterrupted()) throw cancellation();
    }

    private static CancellationException cancellation() {
        return new CancellationException("cancelled: the thread that started this call was interrupted");
    }

    /** Runs tasks [0, count) and rethrows the first failure after all workers have stopped. */
    public void run(int count, Body body) {
        if (closed) throw new IllegalStateException("worker pool is closed");
        if (Thread.currentThread().isInterrupted()) throw cancellation();
        int helpers = Math.min(threads, count) - 1;
        if (helpers <= 0 || Thread.currentThread() instanceof Worker) {
            // One worker, or a task that itself runs tasks (nested): inline, never wait on the pool.
            for (int t = 0; t < count; t++) {
                if (Thread.currentThread() instanceof Worker) {
                    Call outer = CURRENT.get();
                    if (outer != null && outer.cancelled()) throw cancellation();
                } else if (Thread.currentThread().isInterrupted()) {
                    throw cancellation();
                }
                body.run(t, 0);
            }
            return;
        }
        Call call = new Call(count, body, helpers, waiting);
        for (int w = 1; w <= helpers; w++) queue.add(new Helper(call, w));
        for (Worker w : workers) if (w.parked) LockSupport.unpark(w);
        try {
            call.work(0);
        } finally {
            call.finishAndAwait(); // whatever the caller's own tasks threw, helpers must be done with its memory
        }
        call.rethrow();
    }

    @Override
    public void close() {
        closed = true;
        for (Worker w : workers) LockSupport.unpark(w);
    }

    private record Helper(Call call, int worker) {}

    /** The state of one {@link #run}. */
    private static final class Call {
        final int count;
        final Body body;
        final int helpers;
        /** How the caller waits for its helpers at the end. */
        final Waiting waiting;
        final Thread caller = Thread.currentThread();
        final AtomicInteger next = new AtomicInteger();
        /** Helpers not yet started; a helper or the caller (withdrawing) takes each one exactly once. */
        final AtomicInteger unstarted;
        final AtomicInteger finished = new AtomicInteger();
        volatile boolean callerParked;
        volatile Throwable failure;
        /** Set when the caller was seen interrupted (its flag is cleared while it parks, so it is kept here too). */
        volatile boolean interrupted;

        Call(int count, Body body, int helpers, Waiting waiting) {
            this.count = count;
            this.body = body;
            this.helpers = helpers;
            this.waiting = waiting;
            this.unstarted = new AtomicInteger(helpers);
        }

        boolean cancelled() {
            return interrupted || caller.isInterrupted();
        }

        void work(int worker) {
            Call outer = CURRENT.get();
            CURRENT.set(this);
            try {
                int t;
                while (failure == null && (t = next.getAndIncrement()) < count) {
                    if (cancelled()) {
                        fail(cancellation());
                        return;
                    }
                    try {
                        body.run(t, worker);
                    } catch (RuntimeException | Error e) {
                        fail(e);
                        return;
                    }
                }
            } finally {
                CURRENT.set(outer);
            }
        }

        synchronized void fail(Throwable t) {
            if (failure == null) failure = t;
            else if (failure != t) failure.addSuppressed(t);
        }

        /** Called by a pool thread: runs the helper unless the caller withdrew it. */
        void help(int worker) {
            if (unstarted.getAndDecrement() <= 0) return;
            try {
                work(worker);
            } finally {
                finished.incrementAndGet();
                if (callerParked) LockSupport.unpark(caller);
            }
        }

        /**
         * Withdraws helpers that have not started, then waits for the ones that did. The caller
         * never returns while they run (they still use its memory); an interrupt seen while waiting
         * cancels the call (the helpers stop at their next checkpoint) and is kept: it is cleared so
         * that parking keeps working, and set again before returning.
         */
        void finishAndAwait() {
            int started = helpers - Math.max(0, unstarted.getAndSet(0));
            long deadline = System.nanoTime() + SPIN_NANOS;
            boolean interrupted = false;
            while (finished.get() < started) {
                if (System.nanoTime() < deadline) {
                    spinTurn(waiting);
                    continue;
                }
                callerParked = true;
                if (finished.get() < started) LockSupport.parkNanos(this, 1_000_000);
                callerParked = false;
                if (Thread.interrupted()) {
                    interrupted = true;
                    this.interrupted = true;
                }
            }
            if (interrupted) Thread.currentThread().interrupt();
        }

        void rethrow() {
            Throwable t = failure;
            if (t == null) return;
            if (t instanceof RuntimeException r) throw r;
            if (t instanceof Error e) throw e;
            throw new IllegalStateException(t);
        }
    }

    private final class Worker extends Thread {
        volatile boolean parked;

        Worker(String name) {
            super(name);
            setDaemon(true);
        }

        @Override
        public void run() {
            while (!closed) {
                Helper h = queue.poll();
                if (h == null) {
                    long deadline = System.nanoTime() + SPIN_NANOS;
                    while ((h = queue.poll()) == null && !closed && System.nanoTime() < deadline) spinTurn(waiting);
                }
                if (h == null) {
                    parked = true;
                    h = queue.poll(); // re-check after announcing, so a wake-up is never lost
                    if (h == null && !closed) LockSupport.park(this);
                    parked = false;
                    Thread.interrupted(); // an interrupt would make every later park return at once
                    if (h == null) continue;
                }
                h.call.help(h.worker);
            }
        }
    }
}
