package dev.headroom.cli;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.function.IntToLongFunction;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The bench's warm-up rule, on a scripted clock (exact counts) and on a real tiny forward (against a plain timing). */
class SteadyTimingTest {
    /** A clock that only moves when a call runs: call k (from 0) takes {@code durationNanos(k)}. */
    private static final class ScriptedCalls {
        long now;
        int calls;
        final IntToLongFunction durationNanos;

        ScriptedCalls(IntToLongFunction durationNanos) {
            this.durationNanos = durationNanos;
        }

        void call() {
            now += durationNanos.applyAsLong(calls++);
        }
    }

    private static final long MS = 1_000_000;

    @Test
    void warmUpStopsAtTheFirstWindowWhoseMedianMatchesThePreviousOne() {
        // 40, 30, 20, then 10 ms: windows of 2 compare (40,30)|(20,10) at call 4: 35 vs 15; (20,10)|(10,10) at call 6:
        // 15 vs 10; (10,10)|(10,10) at call 8: equal, so warm-up is 8 calls, 40+30+20+5·10 = 140 ms.
        ScriptedCalls s = new ScriptedCalls(k -> (k < 3 ? 40 - 10 * k : 10) * MS);
        SteadyTiming.Result r = SteadyTiming.measure(new SteadyTiming.Rule(2, 0, 2, 0.05, 0, 100), 3, s::call, () -> {}, () -> s.now, () -> 0);
        assertEquals(8, r.warmupCalls());
        assertEquals(0.140, r.warmupSeconds(), 1e-12);
        assertTrue(r.steady());
        assertEquals(0.0, r.lastChange());
        assertEquals(11, s.calls, "8 warm-up calls and 3 timed ones");
        assertArrayEquals(new double[]{10, 10, 10}, r.sortedMs());
        assertEquals("8 calls, 0.1 s", r.describeWarmup());
    }

    @Test
    void aJitCompilationDuringTheLastTwoWindowsDelaysTheStop() {
        // Steady 10 ms calls, but compilations finish until call 12: the windows (9,10)|(11,12) and (11,12)|(13,14)
        // saw one, so warm-up ends at call 16, the first boundary with two quiet windows.
        ScriptedCalls s = new ScriptedCalls(k -> 10 * MS);
        SteadyTiming.Result r = SteadyTiming.measure(new SteadyTiming.Rule(2, 0, 2, 0.05, 0, 100), 1, s::call, () -> {},
                () -> s.now, () -> Math.min(s.calls, 12));
        assertEquals(16, r.warmupCalls());
        assertTrue(r.steady());
    }

    @Test
    void theJitMustHaveBeenQuietForTheGivenTime() {
        // 10 ms calls, the last compilation finishes at call 12 (120 ms); windows of 2 would allow a stop at call 16,
        // but 0.1 s of quiet lasts until 220 ms: call 22 is the first boundary at or after it.
        ScriptedCalls s = new ScriptedCalls(k -> 10 * MS);
        SteadyTiming.Result r = SteadyTiming.measure(new SteadyTiming.Rule(2, 0, 2, 0.05, 0.1, 100), 1, s::call, () -> {},
                () -> s.now, () -> Math.min(s.calls, 12));
        assertEquals(22, r.warmupCalls());
    }

    @Test
    void theMinimumCallsAndSecondsComeFirst() {
        // Steady from the start, but at least 0.1 s: 10 calls of 10 ms, then the window boundary at call 10.
        ScriptedCalls s = new ScriptedCalls(k -> 10 * MS);
        SteadyTiming.Result r = SteadyTiming.measure(new SteadyTiming.Rule(1, 0.1, 2, 0.05, 0, 1), 1, s::call, () -> {}, () -> s.now, () -> 0);
        assertEquals(10, r.warmupCalls());
        // At least 25 calls, windows of 4: the first boundary at or after call 25 is call 28.
        s.calls = 0;
        r = SteadyTiming.measure(new SteadyTiming.Rule(25, 0, 4, 0.05, 0, 1), 1, s::call, () -> {}, () -> s.now, () -> 0);
        assertEquals(28, r.warmupCalls());
    }

    @Test
    void aTimingThatNeverSettlesStopsAtTheCapAndSaysSo() {
        // Each call 10 % slower than the one before: consecutive windows always differ by about 21 %.
        ScriptedCalls s = new ScriptedCalls(k -> Math.round(MS * Math.pow(1.1, k)));
        SteadyTiming.Result r = SteadyTiming.measure(new SteadyTiming.Rule(2, 0, 2, 0.05, 0, 0.5), 1, s::call, () -> {}, () -> s.now, () -> 0);
        assertFalse(r.steady());
        assertTrue(r.warmupSeconds() >= 0.5, String.valueOf(r.warmupSeconds()));
        // The cap is checked after each call: (1.1^K − 1) / 0.1 ms first reaches 500 ms at K = 42 calls.
        assertEquals(42, r.warmupCalls());
        assertEquals(0.21, r.lastChange(), 0.01);
        assertTrue(r.describeWarmup().endsWith("(never steady: stopped at the cap)"), r.describeWarmup());
    }

    @Test
    void theRuleInHelpIsTheRuleInForce() {
        assertEquals(SteadyTiming.DEFAULT_RULE, SteadyTiming.Rule.DEFAULT.describe());
        assertEquals(SteadyTiming.Rule.DEFAULT, BenchCommand.WARMUP);
        Object[] res = CliTest.run("bench", "--help");
        assertEquals(0, res[0]);
        String help = ((String) res[1]).replaceAll("\\s+", " ");
        assertTrue(help.contains(SteadyTiming.DEFAULT_RULE), help);
    }

    /**
     * The bench's routine on a tiny real forward agrees within an order of magnitude with a plain
     * timing of the same call after a long warm-up (the median of 400 calls after 400): no absolute
     * time is asserted, only that the two ways of measuring see the same speed.
     */
    @Test
    void itsMedianAgreesWithAPlainTimingAfterALongWarmUp() {
        AttentionConfig c = AttentionConfig.of(32, 4);
        try (TrackedArena arena = TrackedArena.ofShared();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena),
                     MultiHeadAttention.Options.defaults().withThreads(1));
             Workspace ws = new Workspace()) {
            Tensor x = Tensor.uniform(arena, 2, 1, 1, 24, 32), y = Tensor.allocate(arena, 1, 24, 32);
            Runnable call = () -> mha.forward(x, null, Mask.none(), y, ws);
            SteadyTiming.Rule rule = new SteadyTiming.Rule(20, 0.5, 10, 0.10, 0.5, 6);
            SteadyTiming.Result r = SteadyTiming.measure(rule, 21, call, () -> {});
            assertTrue(r.warmupCalls() >= 20 && r.warmupSeconds() >= 0.5 && r.warmupSeconds() < 7, r.describeWarmup());
            assertTrue(r.steady() || r.warmupSeconds() >= 6, r.describeWarmup());
            for (int i = 0; i < 400; i++) call.run();
            double[] plain = new double[400];
            for (int i = 0; i < plain.length; i++) {
                long t0 = System.nanoTime();
                call.run();
                plain[i] = (System.nanoTime() - t0) / 1e6;
            }
            Arrays.sort(plain);
            double ratio = r.median() / plain[plain.length / 2];
            assertTrue(ratio > 0.1 && ratio < 10, "bench median " + r.median() + " ms vs plain " + plain[200] + " ms");
        }
    }
}
