package dev.headroom.serve;

import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Dynamic batching of MiniLM embeddings: what {@code headroom embed} gives, alone bitwise, batched to the last bits. */
class EmbeddingBatcherTest {
    private static TrackedArena arena;
    private static MiniLmEncoder encoder;

    @BeforeAll
    static void load() throws IOException {
        arena = TrackedArena.ofShared();
        encoder = Models.minilm(arena, 2);
    }

    @AfterAll
    static void close() {
        encoder.close();
        arena.close();
    }

    /** What {@code headroom embed} computes for a list of sentences (EmbedCommand: one embed call, batch 32). */
    static float[][] cli(List<String> sentences) {
        try (TrackedArena a = TrackedArena.ofConfined()) {
            Tensor t = encoder.embed(sentences, a);
            float[][] out = new float[sentences.size()][t.dim(1)];
            for (int i = 0; i < out.length; i++) for (int j = 0; j < t.dim(1); j++) out[i][j] = t.at(i, j);
            return out;
        }
    }

    static String sentence(int i) {
        String[] words = {"the", "jury", "said", "a", "report", "on", "city", "election", "was", "praised", "for", "its", "manner"};
        StringBuilder b = new StringBuilder();
        for (int k = 0; k < 2 + (i * 7) % 19; k++) b.append(k == 0 ? "" : " ").append(words[(i * 5 + k * 3) % words.length]);
        return b.toString();
    }

    @Test
    void aRequestAloneGetsBitwiseWhatTheCommandLineGives() throws Exception {
        List<String> sentences = List.of("The jury praised the city.", "An election report", "Atlanta's recent primary election");
        try (EmbeddingBatcher b = new EmbeddingBatcher(encoder, Duration.ofMillis(1), 1024)) {
            float[][] served = b.embed(sentences), expected = cli(sentences);
            for (int i = 0; i < sentences.size(); i++) assertArrayEquals(expected[i], served[i], "sentence " + i);
            assertEquals(0, b.embed(List.of()).length);
            assertEquals(1, b.stats().batches());
        }
    }

    @Test
    void concurrentRequestsShareOneForwardAndEachGetsItsOwnRows() throws Exception {
        // 16 requests of 2 sentences: 32 sentences fill one batch, whatever the timing (the wait is long)
        int requests = 16;
        List<List<String>> inputs = new ArrayList<>();
        for (int r = 0; r < requests; r++) inputs.add(List.of(sentence(2 * r), sentence(2 * r + 1)));
        List<Future<float[][]>> results = new ArrayList<>();
        try (EmbeddingBatcher b = new EmbeddingBatcher(encoder, Duration.ofSeconds(60), 1024);
             ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            CountDownLatch go = new CountDownLatch(1);
            for (List<String> in : inputs) {
                results.add(pool.submit(() -> {
                    go.await();
                    return b.embed(in);
                }));
            }
            go.countDown();
            double worst = 0;
            for (int r = 0; r < requests; r++) {
                float[][] served = results.get(r).get(), alone = cli(inputs.get(r));
                for (int i = 0; i < 2; i++) {
                    for (int j = 0; j < served[i].length; j++) worst = Math.max(worst, Math.abs(served[i][j] - alone[i][j]));
                }
            }
            System.out.printf(Locale.ROOT, "batched vs alone: max |difference| %.2e%n", worst);
            assertTrue(worst < 1e-6, "batched embeddings differ from the command line's by " + worst);
            EmbeddingBatcher.Stats s = b.stats();
            assertEquals(1, s.batches());
            assertEquals(requests, s.requests());
            assertEquals(2L * requests, s.sentences());
        }
    }

    @Test
    void aClosedBatcherRefuses() throws Exception {
        EmbeddingBatcher b = new EmbeddingBatcher(encoder, Duration.ofMillis(1), 8);
        assertEquals(384, b.embed(List.of("one"))[0].length);
        b.close();
        b.close();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> b.embed(List.of("two")));
        assertEquals("the embedding batcher is closed", e.getMessage());
    }
}
