package dev.headroom.cli;

import java.io.PrintStream;

/**
 * The {@code --threads} of every command. More threads than the processors this process may use
 * are clamped to that number with a one-line warning, not refused: they only take turns on the
 * same cores (a probe with --threads 10000 ran 10× slower and took 725 MB of RSS, in thread
 * stacks and per-thread buffers), and a script that passes a fixed count keeps working on a
 * smaller machine or under a CPU quota. Fewer than one is an error.
 */
final class Threads {
    private Threads() {}

    /** The worker count for {@code requested} (null: all available processors); warns on {@code err} when clamping. */
    static int resolve(Integer requested, PrintStream err) {
        int processors = Runtime.getRuntime().availableProcessors(); // honours affinity masks and container CPU quotas
        if (requested == null) return processors;
        if (requested < 1) throw new IllegalArgumentException("--threads must be at least 1, got " + requested);
        if (requested > processors) {
            err.println("headroom: warning: --threads " + requested + " is more than the " + processors
                    + " processors available; using " + processors + " (extra threads would only take turns on them)");
            return processors;
        }
        return requested;
    }
}
