package dev.headroom.attention;

import dev.headroom.memory.MemoryLimits;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.CancellationException;
import java.util.concurrent.atomic.AtomicReference;

import static dev.headroom.attention.MultiHeadAttentionTest.randomInput;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Refusal before allocation, cancellation, and numbers that are silently wrong no more. */
class HardeningTest {

    @Test
    void aForwardTheMachineCannotHoldIsRefusedUpFrontByDefault() {
        AttentionConfig c = AttentionConfig.of(768, 12);
        int n = 2_500_000; // ~48 GB of activations: more than the 24 GiB machines this runs on hold
        try (Arena arena = TrackedArena.ofShared(); MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena))) {
            // an input of 2.5·10⁶ tokens that is never read: the refusal must come before anything touches it
            Tensor x = Tensor.wrap(MemorySegment.NULL.reinterpret((long) n * 768 * Float.BYTES), n, 768);
            long before = OffHeap.currentBytes();
            MemoryBudgetExceededException e = assertThrows(MemoryBudgetExceededException.class, () -> mha.forward(x, arena));
            assertTrue(e.getMessage().contains("needs an estimated") && e.getMessage().contains("default memory budget"), e.getMessage());
            assertTrue(e.estimate().total() > MemoryLimits.defaultBudget());
            assertEquals(before, OffHeap.currentBytes(), "nothing allocated");
            assertTrue(MemoryLimits.defaultBudget() > 0 && MemoryLimits.defaultBudget() < Long.MAX_VALUE, MemoryLimits.explain());
        }
    }

    /**
     * An interrupt stops a long forward at the workers' next checkpoint (a span of ≤ 1,024 keys of a
     * 256-row block, or a projection piece of ≤ 16,384 tokens); the call throws
     * CancellationException, keeps the interrupt status, leaves nothing in the caller's arena and
     * returns every byte of scratch. The time from interrupt to exception is printed, not asserted.
     */
    @Test
    void anInterruptCancelsAForwardAndLeavesNothingAllocated() throws Exception {
        AttentionConfig c = AttentionConfig.of(64, 4);
        int n = 65_536;
        try (TrackedArena arena = TrackedArena.ofShared();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena),
                     MultiHeadAttention.Options.defaults().withThreads(2))) {
            Tensor x = randomInput(arena, 2, n, c.dModel());
            long arenaBefore = arena.allocatedBytes(), offHeapBefore = OffHeap.currentBytes();
            AtomicReference<Throwable> thrown = new AtomicReference<>();
            AtomicReference<Boolean> stillInterrupted = new AtomicReference<>();
            long[] stoppedAt = new long[1];
            Thread caller = new Thread(() -> {
                try {
                    mha.forward(x, Mask.causal(), arena);
                } catch (Throwable t) {
                    stoppedAt[0] = System.nanoTime();
                    thrown.set(t);
                    stillInterrupted.set(Thread.currentThread().isInterrupted());
                }
            });
            caller.start();
            Thread.sleep(1500);
            long interruptedAt = System.nanoTime();
            caller.interrupt();
            caller.join(60_000);
            assertInstanceOf(CancellationException.class, thrown.get(), "the forward of 65,536 tokens must not finish in 1.5 s here");
            assertTrue(stillInterrupted.get(), "the interrupt status is kept");
            System.out.printf("cancelled %.1f ms after the interrupt%n", (stoppedAt[0] - interruptedAt) / 1e6);
            assertEquals(arenaBefore, arena.allocatedBytes(), "nothing allocated in the caller's arena");
            assertEquals(offHeapBefore, OffHeap.currentBytes(), "all scratch returned");
            // the layer still works afterwards
            Tensor small = randomInput(arena, 3, 9, c.dModel());
            assertEquals(9 * 64, mha.forward(small, Mask.causal(), arena).size());
        }
    }

    @Test
    void aWorkspaceCallThatIsCancelledLeavesTheWorkspaceUsable() {
        AttentionConfig c = AttentionConfig.of(32, 2);
        try (TrackedArena arena = TrackedArena.ofShared(); Workspace ws = new Workspace();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, false, 1, arena))) {
            Tensor x = randomInput(arena, 1, 300, 32), y = Tensor.allocate(arena, x.shape());
            Thread.currentThread().interrupt();
            assertThrows(CancellationException.class, () -> mha.forward(x, null, Mask.none(), y, ws));
            assertTrue(Thread.interrupted(), "still interrupted (and now cleared)");
            mha.forward(x, null, Mask.none(), y, ws); // not left "in use"
        }
    }

    @Test
    void finiteInputsThatOverflowAreReportedWithWhereTheyFirstAppeared() {
        AttentionConfig c = AttentionConfig.of(16, 2);
        try (TrackedArena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 4, arena);
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withCheckFinite(true))) {
                // x · 1e30: Q and K are finite (~1e30) but their products overflow in every head's scores
                Tensor x = randomInput(arena, 5, 10, 16);
                for (long i = 0; i < x.size(); i++) x.set(i, x.get(i) * 1e30f);
                long before = arena.allocatedBytes();
                NonFiniteException e = assertThrows(NonFiniteException.class, () -> mha.forward(x, Mask.causal(), arena));
                assertTrue(e.getMessage().contains("Q, K and V are finite; it first appears in the attention of head"), e.getMessage());
                assertEquals(before, arena.allocatedBytes(), "a failed allocating call leaves nothing in the caller's arena");
                // token 2's features at ±3e38, each with the sign of its weight in Q's first output: that output is a sum of
                // positive terms past Float.MAX_VALUE, +∞ in any order of summation (one value of 3e38 alone overflowed or not
                // depending on the sgemm kernel's order: its products could meet as −∞ scores, which softmax takes as 0)
                Tensor y = randomInput(arena, 6, 10, 16);
                double reach = 0;
                for (int f = 0; f < 16; f++) {
                    float wf = w.wq.get(0, f);
                    y.set(2 * 16 + f, Math.copySign(3e38f, wf));
                    reach += 3e38 * Math.abs(wf);
                }
                assertTrue(reach > 2.0 * Float.MAX_VALUE, "the sum overflows: " + reach);
                e = assertThrows(NonFiniteException.class, () -> mha.forward(y, Mask.causal(), arena));
                assertTrue(e.getMessage().contains("first appears in the") && (e.getMessage().contains("token 2")
                        || e.getMessage().contains("query 2")), e.getMessage());
            }
        }
    }

    @Test
    void nonFiniteWeightsAreRefusedWhenTheLayerIsMade() {
        AttentionConfig c = AttentionConfig.of(16, 2);
        try (TrackedArena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 4, arena);
            w.wv.set(3, 5, Float.NaN);
            NonFiniteException e = assertThrows(NonFiniteException.class,
                    () -> new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withCheckFinite(true)));
            assertEquals("W_V (16, 16) holds NaN at (3, 5) (checkFinite is on)", e.getMessage());
        }
    }

    /**
     * The determinism contract: for a given thread count, bitwise the same results every time; across
     * thread counts, the same within float32 rounding (the row blocks of the projections differ).
     */
    @Test
    void resultsAreIdenticalForAGivenThreadCountAndCloseAcrossThem() {
        AttentionConfig c = AttentionConfig.of(64, 4);
        try (TrackedArena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 8, arena);
            for (Tensor x : new Tensor[]{randomInput(arena, 1, 2, 33, 64), randomInput(arena, 2, 66, 64)}) {
                Mask mask = x.rank() == 2 ? Mask.causal() : Mask.none();
                float[] one = null;
                for (int threads = 1; threads <= 3; threads++) {
                    try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(threads))) {
                        float[] a = mha.forward(x, mask, arena).toArray(), b = mha.forward(x, mask, arena).toArray();
                        org.junit.jupiter.api.Assertions.assertArrayEquals(a, b, threads + " threads, run to run");
                        if (one == null) one = a;
                        for (int i = 0; i < a.length; i++) assertEquals(one[i], a[i], 2e-6f * (1 + Math.abs(one[i])), "1 vs " + threads);
                    }
                }
            }
        }
    }

    @Test
    void closedArenasAreNamed() {
        AttentionConfig c = AttentionConfig.of(16, 2);
        TrackedArena weights = TrackedArena.ofShared();
        try (TrackedArena arena = TrackedArena.ofShared(); MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 4, weights))) {
            Tensor x = randomInput(arena, 5, 10, 16);
            weights.close();
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> mha.forward(x, arena));
            assertTrue(e.getMessage().contains("weights of this MultiHeadAttention") && e.getMessage().contains("closed"), e.getMessage());
        }
        Tensor t;
        try (TrackedArena arena = TrackedArena.ofShared()) {
            t = Tensor.allocate(arena, 2, 3);
        }
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> t.get(1));
        assertEquals("tensor (2, 3) cannot be used: its arena is closed", e.getMessage());
    }
}
