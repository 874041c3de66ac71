package dev.headroom.server;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.headroom.memory.OffHeap;
import dev.headroom.serve.Engine;
import org.junit.jupiter.api.Test;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.Socket;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A bounded soak on loopback: {@value #CLIENTS} concurrent clients make {@value #REQUESTS}
 * requests in all (streaming and not, random prompt lengths and budgets, some embeddings, some
 * streams dropped by their client after two tokens) against a server with a small batch, a short
 * queue and a small KV cache, so that refusals (503, retried after a pause) and preemption happen
 * all along. No error but those 503s; at the end nothing runs, the cache holds no sequence and no
 * used block, off-heap memory is back where it was after the warm-up, and the process's RSS has
 * not grown by more than {@value #RSS_SLACK_MIB} MiB over the second half of the requests (the
 * first half grows the Java heap to the load; RSS then measures leaks, not heap sizing).
 */
class SoakTest {
    static final int CLIENTS = 64, REQUESTS = 256, RSS_SLACK_MIB = 128;
    /** Off-heap growth allowed after the warm-up: the decoder workspace's logits rows may still grow to the batch's. */
    static final long OFF_HEAP_SLACK = 4L << 20;

    @Test
    void sixtyFourClientsGetNoErrorButDesigned503sAndMemoryReturns() throws Exception {
        String corpus = new String(SoakTest.class.getResourceAsStream("/dev/headroom/model/sentences.txt").readAllBytes(),
                StandardCharsets.UTF_8).replace("\n", " ");
        Engine.Config config = Engine.Config.defaults().withMaxRunning(16).withMaxQueue(24).withMaxStepTokens(128)
                .withKvBudget(48 * TestStack.DECODER.cacheShape(16, dev.headroom.cache.KvDtype.F32).blockBytes());
        try (TestStack.Server server = new TestStack.Server(config)) {
            warmUp(server, corpus);
            assertTrue(server.engine.awaitIdle(Duration.ofSeconds(60)));
            long offHeap = OffHeap.currentBytes(), rss0 = rssKib(), rss = 0;
            AtomicInteger ok = new AtomicInteger(), refused = new AtomicInteger(), dropped = new AtomicInteger();
            ConcurrentLinkedQueue<String> errors = new ConcurrentLinkedQueue<>();
            long t0 = System.nanoTime();
            // two halves: the RSS after the first (the heap grown to the load) is the baseline of the second
            for (int half = 0; half < 2; half++) {
                AtomicInteger next = new AtomicInteger();
                List<Future<?>> clients = new ArrayList<>();
                try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
                    for (int c = 0; c < CLIENTS; c++) {
                        SplittableRandom rnd = new SplittableRandom(1000 * half + c);
                        clients.add(pool.submit(() -> {
                            for (int i; (i = next.getAndIncrement()) < REQUESTS / 2; ) {
                                try {
                                    long seed = rnd.nextLong(); // the same request again after a 503
                                    while (!oneRequest(server, corpus, new SplittableRandom(seed), ok, dropped, errors)) { // false: 503
                                        refused.incrementAndGet();
                                        Thread.sleep(20 + rnd.nextInt(30));
                                    }
                                } catch (IOException | RuntimeException e) {
                                    errors.add("request " + i + ": " + e);
                                }
                            }
                            return null;
                        }));
                    }
                    for (Future<?> f : clients) f.get();
                }
                if (half == 0) rss = rssKib();
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            assertTrue(server.engine.awaitIdle(Duration.ofSeconds(60)));
            Engine.Snapshot s = server.engine.snapshot();
            long rssAfter = rssKib();
            System.out.printf(Locale.ROOT, "soak: %d requests from %d clients in %.1f s: %d answered, %d dropped by their client, %d × 503 "
                            + "(retried); engine: %d finished, %d cancelled, %d failed, %d preemptions, %d tokens; %s; off-heap %s → %s; "
                            + "RSS %d MiB after the warm-up, %d after half the requests, %d at the end%n", REQUESTS, CLIENTS, seconds, ok.get(),
                    dropped.get(), refused.get(), s.finished(), s.cancelled(), s.failed(), s.preemptions(), s.generatedTokens(), s.cache(),
                    OffHeap.format(offHeap), OffHeap.format(OffHeap.currentBytes()), rss0 / 1024, rss / 1024, rssAfter / 1024);
            assertEquals(List.of(), List.copyOf(errors));
            assertEquals(REQUESTS, ok.get() + dropped.get());
            assertTrue(refused.get() > 0, "the queue never filled: the soak did not test refusals");
            assertTrue(s.preemptions() > 0, "no preemption: the soak did not test memory pressure");
            assertEquals(0, s.failed());
            assertTrue(s.cancelled() >= 1 && s.cancelled() <= dropped.get(), s.cancelled() + " cancelled, " + dropped.get() + " dropped");
            assertEquals(0, s.running());
            assertEquals(0, s.waiting());
            assertEquals(0, s.cache().usedBlocks());
            assertEquals(0, s.cache().sequences());
            long grown = OffHeap.currentBytes() - offHeap;
            assertTrue(grown <= OFF_HEAP_SLACK, "off-heap memory grew by " + OffHeap.format(grown));
            if (rss > 0) {
                assertTrue(rssAfter - rss < RSS_SLACK_MIB * 1024L, "RSS grew from " + rss / 1024 + " to " + rssAfter / 1024 + " MiB "
                        + "over the second half");
            }
            HttpResponse<String> health = server.get("/health");
            assertEquals(200, health.statusCode());
        }
    }

    /** Requests that take every buffer to its largest size: a prompt longer than a step, a full embedding batch of long inputs. */
    private static void warmUp(TestStack.Server server, String corpus) throws Exception {
        assertEquals(200, server.post("/v1/completions", completion(corpus.substring(0, 200), 8, false, 0)).statusCode());
        StringBuilder inputs = new StringBuilder("[");
        for (int i = 0; i < 32; i++) inputs.append(i == 0 ? "" : ",").append(new com.google.gson.JsonPrimitive(corpus.substring(i * 700, i * 700 + 690)));
        assertEquals(200, server.post("/v1/embeddings", "{\"model\": \"minilm\", \"input\": " + inputs + "]}").statusCode());
    }

    static String completion(String prompt, int maxTokens, boolean stream, double temperature) {
        return "{\"model\": \"tiny\", \"prompt\": " + new com.google.gson.JsonPrimitive(prompt) + ", \"max_tokens\": " + maxTokens
                + ", \"temperature\": " + temperature + ", \"seed\": 7" + (stream ? ", \"stream\": true" : "") + "}";
    }

    /** One request of a random kind; false when it was refused with 503 (to be retried), errors go to {@code errors}. */
    private static boolean oneRequest(TestStack.Server server, String corpus, SplittableRandom rnd, AtomicInteger ok, AtomicInteger dropped,
                                      ConcurrentLinkedQueue<String> errors) throws IOException, InterruptedException {
        int start = rnd.nextInt(corpus.length() - 300);
        String prompt = corpus.substring(start, start + 1 + rnd.nextInt(200));
        int kind = rnd.nextInt(20);
        if (kind < 3) { // embeddings
            List<String> inputs = new ArrayList<>();
            for (int k = 0, n = 1 + rnd.nextInt(4); k < n; k++) inputs.add(prompt.substring(0, Math.max(1, prompt.length() - k)));
            HttpResponse<String> r = server.post("/v1/embeddings", "{\"model\": \"minilm\", \"input\": "
                    + new com.google.gson.Gson().toJson(inputs) + "}");
            if (r.statusCode() == 503) return false;
            if (r.statusCode() != 200) errors.add("embeddings " + r.statusCode() + ": " + r.body());
            else if (JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonArray("data").size() != inputs.size()) errors.add(r.body());
            ok.incrementAndGet();
            return true;
        }
        int maxTokens = 4 + rnd.nextInt(45);
        double temperature = rnd.nextBoolean() ? 0 : 0.8;
        if (kind < 5) return dropMidStream(server, completion(prompt, 48, true, 0.8), dropped, errors);
        boolean stream = kind < 14;
        HttpResponse<String> r = server.post("/v1/completions", completion(prompt, maxTokens, stream, temperature));
        if (r.statusCode() == 503) {
            if (!r.headers().firstValue("Retry-After").isPresent()) errors.add("503 without Retry-After");
            return false;
        }
        if (r.statusCode() != 200) {
            errors.add("completions " + r.statusCode() + ": " + r.body());
        } else if (stream) {
            HttpApiTest.streamedText(r.body()); // its shape: chunks, one finish, [DONE]
        } else {
            JsonObject o = JsonParser.parseString(r.body()).getAsJsonObject();
            int tokens = o.getAsJsonObject("usage").get("completion_tokens").getAsInt();
            if (tokens < 1 || tokens > maxTokens) errors.add("completion of " + tokens + " tokens for max_tokens " + maxTokens);
        }
        ok.incrementAndGet();
        return true;
    }

    /** A stream whose client reads two tokens and resets the connection. */
    private static boolean dropMidStream(TestStack.Server server, String body, AtomicInteger dropped, ConcurrentLinkedQueue<String> errors)
            throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        try (Socket socket = new Socket("127.0.0.1", server.http.address().getPort())) {
            OutputStream out = socket.getOutputStream();
            out.write(("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " + bytes.length
                    + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            out.write(bytes);
            out.flush();
            InputStream in = socket.getInputStream();
            BufferedReader reader = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
            String status = reader.readLine();
            if (status != null && status.contains(" 503 ")) return false;
            if (status == null || !status.contains(" 200 ")) {
                errors.add("dropped stream got " + status);
                return true;
            }
            int data = 0;
            for (String line; data < 2 && (line = reader.readLine()) != null; ) if (line.startsWith("data: ")) data++;
            socket.setSoLinger(true, 0); // close with a reset, as a killed client does
        }
        dropped.incrementAndGet();
        return true;
    }

    /** This process's resident set in KiB (Linux), or 0 where /proc is not there. */
    static long rssKib() throws IOException {
        Path status = Path.of("/proc/self/status");
        if (!Files.exists(status)) return 0;
        for (String line : Files.readAllLines(status)) {
            if (line.startsWith("VmRSS:")) return Long.parseLong(line.replaceAll("[^0-9]", ""));
        }
        return 0;
    }
}
