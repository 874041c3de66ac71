package dev.headroom.attention;

import dev.headroom.inspect.AttentionCapture;
import dev.headroom.inspect.HeadStatistics;
import dev.headroom.inspect.Inspection;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;

import static dev.headroom.attention.MultiHeadAttentionTest.randomInput;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Refusals at the public boundary, before any work or allocation, and workspace reuse across layers. */
class BoundaryTest {
    private static final AttentionConfig C = AttentionConfig.of(16, 4);

    @Test
    void oneWorkspaceServesLayersWithDifferentThreadCountsAndSizes() {
        try (Arena arena = TrackedArena.ofShared(); Workspace shared = new Workspace()) {
            AttentionWeights w = AttentionWeights.random(C, true, 1, arena);
            Tensor small = randomInput(arena, 1, 1, 40, 16), large = randomInput(arena, 2, 1, 90, 16);
            try (MultiHeadAttention four = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(4).withQueryBlock(25));
                 MultiHeadAttention two = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(2).withQueryBlock(40))) {
                // 4 workers × (25×40 + 50) floats, then 2 × (40×90 + 80), then 4 × the first again: the
                // per-worker stride grew, so the buffer must have grown for four of them too.
                for (Object[] call : new Object[][]{{four, small}, {two, large}, {four, small}, {four, large}}) {
                    MultiHeadAttention mha = (MultiHeadAttention) call[0];
                    Tensor x = (Tensor) call[1];
                    Tensor y = Tensor.allocate(arena, x.shape());
                    mha.forward(x, null, Mask.causal(), y, shared);
                    assertArrayEquals(mha.forward(x, Mask.causal(), arena).toArray(), y.toArray());
                }
            }
        }
    }

    @Test
    void refusedCallsAllocateNothingAndSayWhy() {
        try (TrackedArena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(C, true, 1, arena);
            Tensor x = randomInput(arena, 1, 2, 30, 16);
            try (MultiHeadAttention sparse = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults()
                    .withKernel(new SparseKernel(8, 16)));
                 MultiHeadAttention budget = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withMemoryBudget(1000))) {
                long before = OffHeap.currentBytes();
                String m = assertThrows(IllegalArgumentException.class, () -> sparse.forward(x, Mask.causal(), arena)).getMessage();
                assertTrue(m.contains("needs a mask with a sparse pattern"), m);
                assertThrows(MemoryBudgetExceededException.class, () -> budget.forward(x, Mask.none(), arena));
                assertEquals(before, OffHeap.currentBytes(), "no output tensor was allocated for a refused call");

                HeadStatistics stats = new HeadStatistics(4, HeadStatistics.Options.defaults().withQueryLengths(30));
                m = assertThrows(IllegalArgumentException.class, () -> budget.forward(x, null, Mask.none(),
                        Tensor.allocate(arena, x.shape()), new Workspace(), Inspection.statistics(stats))).getMessage();
                assertTrue(m.contains("query lengths give 1 values for a batch of 2"), m);
                assertEquals(0, stats.summary(0).rows(), "nothing was accumulated");
                HeadStatistics badTokens = new HeadStatistics(4, HeadStatistics.Options.defaults().withTokens(new int[][]{{1, 2}, {3}}));
                m = assertThrows(IllegalArgumentException.class, () -> budget.forward(x, null, Mask.none(),
                        Tensor.allocate(arena, x.shape()), new Workspace(), Inspection.statistics(badTokens))).getMessage();
                assertTrue(m.contains("token ids of batch element 0 give 2 positions, the keys are 30"), m);
            }
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(2));
                 Arena confined = Arena.ofConfined()) {
                AttentionCapture cap = AttentionCapture.allRows(confined, 2, 4, new int[]{0}, 30, 30);
                String m = assertThrows(IllegalArgumentException.class, () -> mha.forward(x, null, Mask.none(),
                        Tensor.allocate(arena, x.shape()), new Workspace(), Inspection.capture(cap))).getMessage();
                assertTrue(m.contains("capture lives in a confined arena"), m);
            }
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(2));
                 TrackedArena confined = TrackedArena.ofConfined()) {
                String m = assertThrows(IllegalArgumentException.class, () -> mha.prune(confined, 1)).getMessage();
                assertTrue(m.contains("pruned weights would live in a confined arena"), m);
                assertEquals(0, confined.allocatedBytes(), "nothing was copied into the refused arena");
            }
            MultiHeadAttention closed = new MultiHeadAttention(w);
            closed.close();
            String m = assertThrows(IllegalStateException.class, () -> closed.forward(x, arena)).getMessage();
            assertTrue(m.contains("closed"), m);
        }
    }

    @Test
    void aClosedWorkspaceRefusesCallsAndClosingTwiceIsHarmless() {
        Workspace ws = new Workspace();
        ws.close();
        ws.close();
        String m = assertThrows(IllegalStateException.class, ws::acquire).getMessage();
        assertTrue(m.contains("closed"), m);
    }
}
