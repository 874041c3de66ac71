package dev.headroom.cli;

import java.lang.management.CompilationMXBean;
import java.lang.management.ManagementFactory;
import java.util.Arrays;
import java.util.Locale;
import java.util.function.LongSupplier;

/**
 * Times a call once it runs at a steady speed, for {@code headroom bench}. Three warm-up calls
 * were not enough: the JIT had not compiled the kernels yet, and the bench reported 36 ms at
 * n = 512 on 2 threads where JMH (3 × 1 s of warm-up) measured 17.8 ± 0.9 ms. The rule:
 * <ol>
 *   <li>warm up for at least {@code minCalls} calls and {@code minSeconds};</li>
 *   <li>then, after every further {@code window} calls, compare the median of the last window with
 *       the median of the window before it; stop when they differ by less than {@code tolerance}
 *       (a fraction of the earlier one), no JIT compilation finished during the two windows and
 *       none for {@code jitQuietSeconds};</li>
 *   <li>or stop when warm-up has taken {@code maxSeconds}, and say that the timing never settled;</li>
 *   <li>then time {@code repeats} calls and report their median, minimum and maximum.</li>
 * </ol>
 * Windows are consecutive and do not overlap, and are counted from the first call. The JIT
 * conditions are there because equal medians alone also come from code that is still being
 * compiled: a tiny forward ran two windows at 8.8 ms each, then 0.07 ms once compiled; with only
 * "no compilation finished during the two windows", windows of tiny calls last milliseconds and
 * slipped between the compilations of a loaded machine (0.93 ms against 0.045 after a long
 * warm-up; SteadyTimingTest found both). Compilation is seen through the JVM's total compilation
 * time ({@link CompilationMXBean}), which moves when a compilation finishes.
 */
final class SteadyTiming {
    private SteadyTiming() {}

    /** The default rule's numbers, as constants so that the bench's --help can quote them. */
    static final int DEFAULT_MIN_CALLS = 10, DEFAULT_MIN_SECONDS = 3, DEFAULT_WINDOW = 5, DEFAULT_TOLERANCE_PERCENT = 5,
            DEFAULT_JIT_QUIET_SECONDS = 1, DEFAULT_MAX_SECONDS = 30;

    /** {@link Rule#DEFAULT} in words, for --help (so "percent", not a bare % sign: picocli formats help text, {@link HelpText}). */
    static final String DEFAULT_RULE = "warm up for at least " + DEFAULT_MIN_CALLS + " calls and " + DEFAULT_MIN_SECONDS
            + " s, then until the median of the last " + DEFAULT_WINDOW + " calls is within " + DEFAULT_TOLERANCE_PERCENT
            + " percent of the median of the " + DEFAULT_WINDOW + " before and the JIT has finished no compilation during those "
            + 2 * DEFAULT_WINDOW + " calls and the last " + DEFAULT_JIT_QUIET_SECONDS + " s (at most " + DEFAULT_MAX_SECONDS + " s)";

    /** The warm-up rule; see the class comment. */
    record Rule(int minCalls, double minSeconds, int window, double tolerance, double jitQuietSeconds, double maxSeconds) {
        /** JMH's warm-up here is 3 × 1 s; windows of 5 calls; 5 % is about this machine's run-to-run noise. */
        static final Rule DEFAULT = new Rule(DEFAULT_MIN_CALLS, DEFAULT_MIN_SECONDS, DEFAULT_WINDOW,
                DEFAULT_TOLERANCE_PERCENT / 100.0, DEFAULT_JIT_QUIET_SECONDS, DEFAULT_MAX_SECONDS);

        Rule {
            if (minCalls < 1 || window < 1 || !(tolerance > 0) || !(jitQuietSeconds >= 0) || !(minSeconds >= 0)
                    || !(maxSeconds >= minSeconds)) {
                throw new IllegalArgumentException("warm-up rule needs minCalls >= 1 (" + minCalls + "), window >= 1 (" + window
                        + "), tolerance > 0 (" + tolerance + "), jitQuietSeconds >= 0 (" + jitQuietSeconds
                        + ") and 0 <= minSeconds (" + minSeconds + ") <= maxSeconds (" + maxSeconds + ")");
            }
        }

        String describe() {
            return "warm up for at least " + minCalls + " calls and " + plain(minSeconds) + " s, then until the median of the last "
                    + window + " calls is within " + plain(100 * tolerance) + " percent of the median of the " + window
                    + " before and the JIT has finished no compilation during those " + 2 * window + " calls and the last "
                    + plain(jitQuietSeconds) + " s (at most " + plain(maxSeconds) + " s)";
        }

        private static String plain(double v) {
            return java.math.BigDecimal.valueOf(v).round(new java.math.MathContext(6)).stripTrailingZeros().toPlainString();
        }
    }

    /**
     * What was measured.
     *
     * @param warmupCalls   calls made before timing
     * @param warmupSeconds how long they took
     * @param steady        whether the rule was met (false: stopped at maxSeconds)
     * @param lastChange    the relative change between the last two windows compared (NaN if none was)
     * @param sortedMs      the timed calls in milliseconds, ascending
     */
    record Result(int warmupCalls, double warmupSeconds, boolean steady, double lastChange, double[] sortedMs) {
        double median() {
            return median(sortedMs, 0, sortedMs.length);
        }

        double min() {
            return sortedMs[0];
        }

        double max() {
            return sortedMs[sortedMs.length - 1];
        }

        String describeWarmup() {
            return String.format(Locale.ROOT, "%d calls, %.1f s%s", warmupCalls, warmupSeconds, steady ? "" : " (never steady: stopped at the cap)");
        }

        /** The median of the already sorted {@code v[from, to)}. */
        static double median(double[] v, int from, int to) {
            int n = to - from;
            return n % 2 == 1 ? v[from + n / 2] : (v[from + n / 2 - 1] + v[from + n / 2]) / 2;
        }
    }

    /** {@link #measure(Rule, int, Runnable, Runnable, LongSupplier, LongSupplier)} on this JVM's clock and JIT. */
    static Result measure(Rule rule, int repeats, Runnable call, Runnable beforeTiming) {
        CompilationMXBean jit = ManagementFactory.getCompilationMXBean();
        LongSupplier jitMillis = jit != null && jit.isCompilationTimeMonitoringSupported() ? jit::getTotalCompilationTime : () -> 0;
        return measure(rule, repeats, call, beforeTiming, System::nanoTime, jitMillis);
    }

    /**
     * Warms {@code call} up by {@code rule}, runs {@code beforeTiming} (to reset counters the warm-up
     * moved), then times {@code call} {@code repeats} times, all on {@code nanoClock};
     * {@code jitMillis} is the JIT's total compilation time so far (it changes while code is compiled).
     */
    static Result measure(Rule rule, int repeats, Runnable call, Runnable beforeTiming, LongSupplier nanoClock,
                          LongSupplier jitMillis) {
        if (repeats < 1) throw new IllegalArgumentException("repeats must be >= 1, got " + repeats);
        int w = rule.window();
        double[] lastTwo = new double[2 * w]; // the last 2·window warm-up times (ms), a ring indexed by call number
        int calls = 0;
        boolean steady = false;
        double change = Double.NaN, elapsed;
        long start = nanoClock.getAsLong();
        long[] boundaryNanos = new long[3]; // clock at the last three window boundaries, a ring by boundary number
        boundaryNanos[0] = start;
        long jit = jitMillis.getAsLong(), lastJitChange = start; // no compilation is known to be under way at the start
        while (true) {
            long t0 = nanoClock.getAsLong();
            call.run();
            long t1 = nanoClock.getAsLong();
            lastTwo[calls % (2 * w)] = (t1 - t0) / 1e6;
            calls++;
            elapsed = (t1 - start) / 1e9;
            long jitNow = jitMillis.getAsLong();
            if (jitNow != jit) {
                jit = jitNow;
                lastJitChange = t1;
            }
            boolean jitQuiet = false;
            if (calls % w == 0) {
                int boundary = calls / w;
                boundaryNanos[boundary % 3] = t1;
                jitQuiet = boundary >= 2 && lastJitChange <= boundaryNanos[(boundary - 2) % 3]
                        && (t1 - lastJitChange) / 1e9 >= rule.jitQuietSeconds();
            }
            if (calls >= rule.minCalls() && elapsed >= rule.minSeconds() && calls >= 2 * w && calls % w == 0) {
                double[] previous = new double[w], last = new double[w];
                for (int i = 0; i < w; i++) {
                    previous[i] = lastTwo[(calls - 2 * w + i) % (2 * w)];
                    last[i] = lastTwo[(calls - w + i) % (2 * w)];
                }
                Arrays.sort(previous);
                Arrays.sort(last);
                double p = Result.median(previous, 0, w), l = Result.median(last, 0, w);
                change = Math.abs(l - p) / p;
                if (change < rule.tolerance() && jitQuiet) {
                    steady = true;
                    break;
                }
            }
            if (elapsed >= rule.maxSeconds()) break;
        }
        beforeTiming.run();
        double[] ms = new double[repeats];
        for (int r = 0; r < repeats; r++) {
            long t0 = nanoClock.getAsLong();
            call.run();
            ms[r] = (nanoClock.getAsLong() - t0) / 1e6;
        }
        Arrays.sort(ms);
        return new Result(calls, elapsed, steady, change, ms);
    }
}
