package dev.headroom.cli;

import me.tongfei.progressbar.ConsoleProgressBarConsumer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

import java.io.PrintStream;
import java.time.Duration;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.IntConsumer;

/**
 * A progress bar on stderr for one forward call, shown only once the call has run for a while:
 * a short call prints nothing, a long one says how far it is and when it should end. Decided by
 * elapsed time rather than by a FLOP prediction, which would need the machine's sgemm rate (a
 * probe of its own on every run) and would still be wrong on a loaded machine. Progress counts
 * (batch, head, query row) triples of the attention step, as the kernels report them through
 * {@link dev.headroom.inspect.Inspection#progress()}; the projections before it and the output
 * projection after it are not counted.
 */
final class ForwardProgress implements IntConsumer, AutoCloseable {
    private final String task;
    private final long total;
    private final PrintStream err;
    private final long started = System.nanoTime(), showAfterNanos;
    /** Rows finished so far, added by the worker threads. */
    private final AtomicLong done = new AtomicLong();
    /** Shows the bar after the delay; a daemon thread, so it never keeps the JVM alive. */
    private final ScheduledExecutorService timer;
    private volatile ProgressBar bar;
    private boolean closed;

    /** Counts to {@code total}; shows a bar named {@code task} on {@code err} after {@code showAfter} (negative: never). */
    ForwardProgress(String task, long total, Duration showAfter, PrintStream err) {
        this.task = task;
        this.total = total;
        this.err = err;
        this.showAfterNanos = showAfter.isNegative() ? -1 : showAfter.toNanos();
        this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "headroom-progress");
            t.setDaemon(true);
            return t;
        });
        if (showAfterNanos >= 0) timer.schedule(this::show, showAfterNanos, TimeUnit.NANOSECONDS);
    }

    private synchronized void show() {
        if (closed || bar != null) return;
        bar = new ProgressBarBuilder().setTaskName(task).setInitialMax(total).setStyle(ProgressBarStyle.ASCII)
                .setConsumer(new ConsoleProgressBarConsumer(err))
                .startsFrom(done.get(), Duration.ofNanos(System.nanoTime() - started)).build();
    }

    @Override
    public void accept(int rows) {
        long now = done.addAndGet(rows);
        ProgressBar b = bar;
        if (b != null) b.stepTo(now);
    }

    /** Whether the bar was shown. */
    synchronized boolean shown() {
        return bar != null;
    }

    @Override
    public synchronized void close() {
        // A call that lasted the delay gets its bar even if the timer thread has not run yet (a busy machine).
        if (showAfterNanos >= 0 && System.nanoTime() - started >= showAfterNanos) show();
        closed = true;
        timer.shutdownNow();
        if (bar != null) {
            bar.stepTo(done.get());
            bar.close();
        }
    }
}
