package dev.headroom.attention;

import dev.headroom.jfr.ForwardEvent;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.sparse.AttentionPattern;
import dev.headroom.tensor.Tensor;
import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static dev.headroom.attention.MultiHeadAttentionTest.randomInput;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class MemoryAndEventsTest {
    @TempDir
    Path dir;

    @Test
    void theEstimateIsWhatTheCallHolds() {
        AttentionConfig c = AttentionConfig.of(48, 6).withKvHeads(3);
        for (Mask mask : List.of(Mask.none(), Mask.pattern(AttentionPattern.slidingWindow(64)))) {
            for (int n : new int[]{300, 5000}) {   // dense, then tiled (beyond 4096 keys)
                try (TrackedArena arena = TrackedArena.ofShared()) {
                    long base = OffHeap.currentBytes();
                    AttentionWeights w = AttentionWeights.random(c, true, 1, arena);
                    try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(2))) {
                        Tensor x = randomInput(arena, 1, 1, n, 48);
                        OffHeap.resetPeak();
                        mha.forward(x, mask, arena);
                        MemoryEstimate e = mha.estimate(1, n, n, false, mask);
                        assertEquals(e.total(), OffHeap.peakBytes() - base, mha.kernelFor(mask, n).name() + " n=" + n + ": " + e);
                    }
                }
            }
        }
        MemoryEstimate big = MultiHeadAttention.estimate(AttentionConfig.of(768, 12), 131072, null);
        long activations = 4L * 131072 * 768 * (1 + 1 + 3 + 1);
        assertEquals(activations, big.activations(), "input, output, Q/K/V, concat");
        assertTrue(big.scratch() < 64L << 20, "tiled scratch stays small at 131072: " + big);
    }

    @Test
    void aBudgetRefusesBeforeAllocatingAndSaysWhy() {
        AttentionConfig c = AttentionConfig.of(32, 4);
        try (TrackedArena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, false, 1, arena);
            Tensor x = randomInput(arena, 1, 1000, 32);
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withMemoryBudget(1 << 20))) {
                long before = OffHeap.currentBytes();
                MemoryBudgetExceededException ex = assertThrows(MemoryBudgetExceededException.class,
                        () -> mha.forward(x, null, Mask.none(), Tensor.allocate(arena, 1000, 32), new Workspace()));
                assertEquals(before + 4L * 1000 * 32, OffHeap.currentBytes(), "only the test's output tensor was allocated");
                assertTrue(ex.getMessage().contains("n_q=1000") && ex.getMessage().contains("over the memory budget of 1.00 MiB")
                        && ex.getMessage().contains("activations"), ex.getMessage());
                assertTrue(ex.estimate().total() > 1 << 20);
            }
        }
    }

    @Test
    void forwardCallsAreFlightRecorderEvents() throws Exception {
        AttentionConfig c = AttentionConfig.of(32, 4);
        Path file = dir.resolve("headroom.jfr");
        try (Recording recording = new Recording(); TrackedArena arena = TrackedArena.ofShared()) {
            recording.enable(ForwardEvent.NAME);
            recording.start();
            try (MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena))) {
                mha.forward(randomInput(arena, 1, 2, 50, 32), Mask.causal(), arena);
                mha.forward(randomInput(arena, 2, 1, 5000, 32), Mask.pattern(AttentionPattern.slidingWindow(16)), arena);
            }
            recording.stop();
            recording.dump(file);
        }
        List<RecordedEvent> events = RecordingFile.readAllEvents(file).stream()
                .filter(e -> e.getEventType().getName().equals(ForwardEvent.NAME)).toList();
        assertEquals(2, events.size());
        RecordedEvent first = events.get(0), second = events.get(1);
        assertEquals("dense", first.getString("kernel"));
        assertEquals(2, first.getInt("batch"));
        assertEquals(50, first.getInt("queries"));
        assertEquals("causal", first.getString("mask"));
        assertTrue(first.getLong("bytesAllocated") > 0 && first.getLong("offHeapPeakBytes") >= first.getLong("workspaceBytes"));
        assertEquals("sparse(64)", second.getString("kernel"));
        assertEquals(5000, second.getInt("keys"));
        assertTrue(second.getString("mask").contains("window(16)"));
        assertTrue(second.getDuration().toNanos() > 0);
    }
}
