package dev.headroom.attention;

import dev.headroom.io.TensorFormatException;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static dev.headroom.attention.MultiHeadAttentionTest.assertClose;
import static dev.headroom.attention.MultiHeadAttentionTest.randomInput;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Errors, weight files, memory accounting and concurrency. */
class RuntimeContractTest {
    @TempDir
    Path dir;

    private static String message(Class<? extends Throwable> type, org.junit.jupiter.api.function.Executable e) {
        return assertThrows(type, e).getMessage();
    }

    @Test
    void configErrorsNameTheValues() {
        String m = message(IllegalArgumentException.class, () -> AttentionConfig.of(768, 5));
        assertTrue(m.contains("heads (5) must divide d_model (768)"), m);
        m = message(IllegalArgumentException.class, () -> AttentionConfig.of(768, 12).withKvHeads(5));
        assertTrue(m.contains("kv_heads (5) must divide heads (12)"), m);
        m = message(IllegalArgumentException.class, () -> AttentionConfig.of(768, 12).withHeadDim(0));
        assertTrue(m.contains("head_dim must be >= 1, got 0"), m);
    }

    @Test
    void inputErrorsNameTheShapes() {
        AttentionConfig c = AttentionConfig.of(16, 4);
        try (Arena arena = TrackedArena.ofShared();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena),
                     MultiHeadAttention.Options.defaults().withCheckFinite(true))) {
            Tensor wrongWidth = randomInput(arena, 1, 3, 15);
            String m = message(IllegalArgumentException.class, () -> mha.forward(wrongWidth, arena));
            assertTrue(m.contains("query has shape (3, 15) but d_model is 16"), m);
            Tensor rank4 = randomInput(arena, 1, 1, 2, 3, 16);
            m = message(IllegalArgumentException.class, () -> mha.forward(rank4, arena));
            assertTrue(m.contains("(n, E) or (B, n, E)"), m);
            Tensor q = randomInput(arena, 1, 2, 3, 16), kv = randomInput(arena, 2, 3, 5, 16);
            m = message(IllegalArgumentException.class, () -> mha.forward(q, kv, Mask.none(), arena));
            assertTrue(m.contains("(3, 5, 16)") && m.contains("(2, 3, 16)"), m);
            m = message(IllegalArgumentException.class, () -> mha.forward(q, Mask.keyLengths(3), arena));
            assertTrue(m.contains("give 1 values for a batch of 2"), m);
            m = message(IllegalArgumentException.class, () -> mha.forward(q, Mask.keyLengths(3, 4), arena));
            assertTrue(m.contains("key length 4 exceeds the 3 keys"), m);
            Tensor nan = randomInput(arena, 1, 3, 16);
            nan.set(17, Float.NaN);
            m = message(IllegalArgumentException.class, () -> mha.forward(nan, arena));
            assertTrue(m.contains("NaN at flat index 17"), m);
            nan.set(17, Float.POSITIVE_INFINITY);
            m = message(IllegalArgumentException.class, () -> mha.forward(nan, arena));
            assertTrue(m.contains("Infinity at flat index 17"), m);
            Tensor closed;
            try (Arena other = Arena.ofShared()) {
                closed = randomInput(other, 1, 3, 16);
            }
            Tensor gone = closed;
            m = message(IllegalStateException.class, () -> mha.forward(gone, arena));
            assertTrue(m.contains("closed"), m);
            try (Arena confined = Arena.ofConfined()) {
                Tensor local = randomInput(confined, 1, 3, 16);
                m = message(IllegalArgumentException.class, () -> mha.forward(local, arena));
                assertTrue(m.contains("confined arena"), m);
            }
        }
    }

    @Test
    void oneThreadWorksWithConfinedArenas() {
        AttentionConfig c = AttentionConfig.of(12, 3);
        try (Arena arena = Arena.ofConfined();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 2, arena),
                     MultiHeadAttention.Options.defaults().withThreads(1))) {
            Tensor x = randomInput(arena, 4, 5, 12);
            Tensor y = mha.forward(x, Mask.causal(), arena);
            assertClose(ReferenceAttention.forward(mha.weights(), x, null, Mask.causal()), y, 5, c, "one thread");
        }
    }

    @Test
    void loadsNnMultiheadAttentionNpyDirectoryAndGqaSafetensors() throws IOException {
        AttentionConfig c = AttentionConfig.of(12, 3);
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 3, arena);
            // nn.MultiheadAttention layout: in_proj_weight = [W_Q; W_K; W_V]
            Map<String, Tensor> sd = w.stateDict();
            Tensor in = Tensor.allocate(arena, 36, 12), inBias = Tensor.allocate(arena, 36);
            String[] parts = {"q_proj", "k_proj", "v_proj"};
            for (int p = 0; p < 3; p++) {
                java.lang.foreign.MemorySegment.copy(sd.get(parts[p] + ".weight").segment(), 0, in.segment(), p * 144L * 4, 144L * 4);
                java.lang.foreign.MemorySegment.copy(sd.get(parts[p] + ".bias").segment(), 0, inBias.segment(), p * 12L * 4, 12L * 4);
            }
            Path npyDir = Files.createDirectories(dir.resolve("mha"));
            dev.headroom.io.Npy.write(npyDir.resolve("in_proj_weight.npy"), in);
            dev.headroom.io.Npy.write(npyDir.resolve("in_proj_bias.npy"), inBias);
            dev.headroom.io.Npy.write(npyDir.resolve("out_proj.weight.npy"), sd.get("o_proj.weight"));
            dev.headroom.io.Npy.write(npyDir.resolve("out_proj.bias.npy"), sd.get("o_proj.bias"));
            AttentionWeights fromNpy = AttentionWeights.load(npyDir, c, "", arena);

            AttentionConfig gqa = AttentionConfig.of(12, 3).withKvHeads(1).withHeadDim(5);
            AttentionWeights g = AttentionWeights.random(gqa, false, 4, arena);
            Map<String, Tensor> prefixed = new LinkedHashMap<>();
            g.stateDict().forEach((k, v) -> prefixed.put("layers.0.attn." + k, v));
            Path st = dir.resolve("gqa.safetensors");
            dev.headroom.io.SafeTensors.write(st, prefixed);
            AttentionWeights fromSt = AttentionWeights.load(st, gqa, "layers.0.attn.", arena);
            assertEquals(false, fromSt.hasBias());

            Tensor x = randomInput(arena, 5, 2, 6, 12);
            try (MultiHeadAttention a = new MultiHeadAttention(w); MultiHeadAttention b = new MultiHeadAttention(fromNpy);
                 MultiHeadAttention gOrig = new MultiHeadAttention(g); MultiHeadAttention gLoaded = new MultiHeadAttention(fromSt)) {
                assertArrayEquals(a.forward(x, arena).toArray(), b.forward(x, arena).toArray());
                assertArrayEquals(gOrig.forward(x, arena).toArray(), gLoaded.forward(x, arena).toArray());
            }

            String m = message(IllegalArgumentException.class, () -> AttentionWeights.load(st, gqa, "", arena));
            assertTrue(m.contains("keys present: [layers.0.attn.k_proj.weight"), m);
            m = message(IllegalArgumentException.class, () -> AttentionWeights.load(npyDir, AttentionConfig.of(12, 4).withKvHeads(2), "", arena));
            assertTrue(m.contains("in_proj_weight holds equal-width Q, K and V"), m);
            Files.delete(npyDir.resolve("in_proj_bias.npy"));
            dev.headroom.io.Npy.write(npyDir.resolve("in_proj_bias.npy"), Tensor.allocate(arena, 35));
            m = message(IllegalArgumentException.class, () -> AttentionWeights.load(npyDir, c, "", arena));
            assertTrue(m.contains("in_proj_bias must have 3·E = 36 elements, got shape (35)"), m);
            m = message(TensorFormatException.class, () -> AttentionWeights.load(dir.resolve("absent"), c, "", arena));
            assertTrue(m.contains("no such weights"), m);
        }
    }

    @Test
    void everyAllocationIsCountedAndReturned() {
        AttentionConfig c = AttentionConfig.of(64, 4);
        long before = OffHeap.currentBytes();
        try (TrackedArena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 1, arena);
            long weights = 4L * c.parameterCount(true);
            assertEquals(before + weights, OffHeap.currentBytes());
            Tensor x = randomInput(arena, 1, 2, 100, 64);
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(2).withQueryBlock(32));
                 Workspace ws = new Workspace()) {
                Tensor y = Tensor.allocate(arena, 2, 100, 64);
                long held = OffHeap.currentBytes();
                OffHeap.resetPeak();
                mha.forward(x, null, Mask.none(), y, ws);
                // projection (3·64·200) + concat (200·64) + 2 workers × (32·100 scores + 2·32 running max/sum), in floats
                long expected = 4L * (3 * 64 * 200 + 200 * 64 + 2 * (32 * 100 + 2 * 32));
                assertEquals(expected, ws.byteSize());
                assertEquals(held + expected, OffHeap.peakBytes());
                mha.forward(x, null, Mask.none(), y, ws);
                assertEquals(held + expected, OffHeap.currentBytes(), "a reused workspace does not grow");
            }
            assertEquals(before + weights + 2 * x.byteSize(), OffHeap.currentBytes(), "workspace freed on close");
        }
        assertEquals(before, OffHeap.currentBytes(), "nothing leaks");
    }

    @Test
    void oneInstanceServesConcurrentCallsWithIdenticalResults() throws Exception {
        AttentionConfig c = AttentionConfig.of(48, 6).withKvHeads(3);
        try (Arena arena = TrackedArena.ofShared();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 7, arena),
                     MultiHeadAttention.Options.defaults().withThreads(2).withQueryBlock(16))) {
            int callers = 6;
            List<Tensor> inputs = new ArrayList<>();
            List<float[]> expected = new ArrayList<>();
            for (int i = 0; i < callers; i++) {
                Tensor x = randomInput(arena, 100 + i, 2, 40 + i, 48);
                inputs.add(x);
                expected.add(mha.forward(x, Mask.causal(), arena).toArray());
            }
            ExecutorService callersPool = Executors.newFixedThreadPool(callers);
            try {
                List<Future<Boolean>> results = new ArrayList<>();
                for (int i = 0; i < callers; i++) {
                    int id = i;
                    results.add(callersPool.submit(() -> {
                        try (Arena mine = Arena.ofShared(); Workspace ws = new Workspace()) {
                            for (int rep = 0; rep < 10; rep++) {
                                Tensor x = inputs.get(id);
                                Tensor y = Tensor.allocate(mine, x.shape());
                                mha.forward(x, null, Mask.causal(), y, ws);
                                float[] got = y.toArray(), exp = expected.get(id);
                                if (!java.util.Arrays.equals(exp, got)) {
                                    double md = 0; int at = -1;
                                    for (int q = 0; q < got.length; q++) if (Math.abs(got[q] - exp[q]) > md) { md = Math.abs(got[q] - exp[q]); at = q; }
                                    System.err.println("DIFF caller " + id + " rep " + rep + " max " + md + " at " + at + " of " + got.length);
                                    return false;
                                }
                            }
                        }
                        return true;
                    }));
                }
                for (Future<Boolean> f : results) assertTrue(f.get(), "a concurrent call differed from the sequential result");
            } finally {
                callersPool.shutdown();
            }
        }
    }

    @Test
    void aWorkspaceRefusesTwoCallsAtOnce() {
        try (Workspace ws = new Workspace()) {
            ws.acquire();
            String m = message(IllegalStateException.class, ws::acquire);
            assertTrue(m.contains("already in use"), m);
            ws.releaseUse();
        }
    }
}
