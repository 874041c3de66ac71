package dev.headroom.server;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.headroom.generate.Generator;
import dev.headroom.serve.Engine;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The API over raw HTTP (the JDK's client, and serve-bench's own): every bad request gets its 4xx and OpenAI's error body
 * and leaves the server healthy with no cache memory held; concurrent greedy requests each get
 * what {@code generate --greedy} gives; the response shapes of completions, streams, models,
 * health and metrics.
 */
class HttpApiTest {
    private static TestStack.Server server;

    @BeforeAll
    static void start() throws Exception {
        server = new TestStack.Server(Engine.Config.defaults().withKvBudget(64L << 20));
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    /** Posts {@code body} and checks the status and the error's type, param and code; returns the message. */
    static String refused(String path, String body, int status, String param, String code) throws Exception {
        HttpResponse<String> r = server.post(path, body);
        assertEquals(status, r.statusCode(), body + " → " + r.body());
        assertEquals("application/json", r.headers().firstValue("Content-Type").orElse(""));
        JsonObject e = JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonObject("error");
        assertEquals(status >= 500 ? "server_error" : "invalid_request_error", e.get("type").getAsString(), r.body());
        assertEquals(param, e.get("param").isJsonNull() ? null : e.get("param").getAsString(), r.body());
        assertEquals(code, e.get("code").isJsonNull() ? null : e.get("code").getAsString(), r.body());
        return e.get("message").getAsString();
    }

    @Test
    void badRequestsGetOpenAiErrorsAndLeaveNothingBehind() throws Exception {
        String c = "/v1/completions", e = "/v1/embeddings";
        long submitted = server.engine.snapshot().submitted(), embedded = server.batcher.stats().sentences();
        assertEquals("the request body is not valid JSON: malformed JSON at line 1 column 3 path $",
                refused(c, "{bad json", 400, null, null));
        assertEquals("the request body must be a JSON object, got an array", refused(c, "[1, 2]", 400, null, null));
        assertEquals("the request body is empty; send a JSON object", refused(c, "", 400, null, null));
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\"} trailing", 400, null, null);
        assertEquals("the model 'gpt-4' does not exist at this endpoint; it serves 'tiny'",
                refused(c, "{\"model\": \"gpt-4\", \"prompt\": \"a\"}", 404, "model", "model_not_found"));
        refused(c, "{\"prompt\": \"a\"}", 400, "model", null);
        refused(c, "{\"model\": \"tiny\"}", 400, "prompt", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": 7}", 400, "prompt", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": []}", 400, "prompt", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": [256, 999]}", 400, "prompt", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": [\"a\", 3]}", 400, "prompt", null);
        assertEquals("the prompt has 301 tokens; the model's context is 256 tokens, which leaves no room to generate",
                refused(c, "{\"model\": \"tiny\", \"prompt\": \"" + "a".repeat(300) + "\"}", 400, "prompt", "context_length_exceeded"));
        assertEquals("max_tokens must be at least 1, got 0", refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"max_tokens\": 0}", 400,
                "max_tokens", null));
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"max_tokens\": -5}", 400, "max_tokens", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"max_tokens\": 1.5}", 400, "max_tokens", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"max_tokens\": \"ten\"}", 400, "max_tokens", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"max_tokens\": 1e400}", 400, "max_tokens", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"temperature\": 3}", 400, "temperature", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"top_p\": 0}", 400, "top_p", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"top_k\": -2}", 400, "top_k", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"seed\": 0.5}", 400, "seed", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"n\": 2}", 400, "n", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"echo\": true}", 400, "echo", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"logprobs\": 2}", 400, "logprobs", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", 400, "stop", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"stop\": \"\"}", 400, "stop", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"stream\": \"yes\"}", 400, "stream", null);
        refused(c, "{\"model\": \"tiny\", \"prompt\": \"a\", \"stream_options\": {\"include_usage\": true}}", 400, "stream_options", null);
        assertTrue(refused(c, "{\"model\": \"tiny\", \"prompt\": \"" + "a".repeat(2 << 20) + "\"}", 413, null, "request_too_large")
                .contains("at most 1048576 bytes"));
        refused(e, "{\"model\": \"minilm\"}", 400, "input", null);
        refused(e, "{\"model\": \"minilm\", \"input\": []}", 400, "input", null);
        refused(e, "{\"model\": \"minilm\", \"input\": [\"\"]}", 400, "input", null);
        refused(e, "{\"model\": \"minilm\", \"input\": [101, 102]}", 400, "input", null);
        refused(e, "{\"model\": \"minilm\", \"input\": \"a\", \"dimensions\": 10}", 400, "dimensions", null);
        refused(e, "{\"model\": \"minilm\", \"input\": \"a\", \"encoding_format\": \"hex\"}", 400, "encoding_format", null);
        refused(e, "{\"model\": \"tiny\", \"input\": \"a\"}", 404, "model", "model_not_found");
        // bytes that are not UTF-8
        HttpResponse<String> bad = server.client.send(HttpRequest.newBuilder(server.uri(c))
                .POST(HttpRequest.BodyPublishers.ofByteArray(new byte[]{'{', (byte) 0xC3, '}'})).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(400, bad.statusCode());
        assertTrue(bad.body().contains("not valid UTF-8"), bad.body());
        // paths and methods
        HttpResponse<String> get = server.get(c);
        assertEquals(405, get.statusCode());
        assertEquals("POST", get.headers().firstValue("Allow").orElse(""));
        assertEquals(404, server.get("/v2/anything").statusCode());
        assertEquals(404, server.get("/v1/models/gpt-4").statusCode());
        // the server is fine and holds nothing
        assertEquals(200, server.get("/health").statusCode());
        assertEquals(0, server.engine.cacheStats().usedBlocks());
        assertEquals(submitted, server.engine.snapshot().submitted()); // nothing reached the engine or the encoder
        assertEquals(embedded, server.batcher.stats().sentences());
    }

    @Test
    void concurrentGreedyRequestsEachGetWhatGenerateGives() throws Exception {
        String[] prompts = {"The jury said", "In the morning the", "He had been there for", "A", "Mr. Kennedy and the Congress",
                "She looked at the", "The first thing to do is to", "It is not clear whether the new"};
        List<Future<HttpResponse<String>>> responses = new ArrayList<>();
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < prompts.length; i++) {
                String body = "{\"model\": \"tiny\", \"prompt\": " + new com.google.gson.JsonPrimitive(prompts[i]) + ", \"max_tokens\": "
                        + (20 + 4 * i) + ", \"temperature\": 0" + (i % 2 == 0 ? ", \"stream\": true" : "") + "}";
                responses.add(pool.submit(() -> server.post("/v1/completions", body)));
            }
            for (int i = 0; i < prompts.length; i++) {
                HttpResponse<String> r = responses.get(i).get();
                assertEquals(200, r.statusCode(), r.body());
                String text = i % 2 == 0 ? streamedText(r.body()) : JsonParser.parseString(r.body()).getAsJsonObject()
                        .getAsJsonArray("choices").get(0).getAsJsonObject().get("text").getAsString();
                Greedy.assertSameText("prompt " + i, prompts[i], Greedy.generate(prompts[i], 20 + 4 * i), text);
            }
        }
        // a list of prompts: one choice per prompt, in order
        HttpResponse<String> r = server.post("/v1/completions", "{\"model\": \"tiny\", \"prompt\": [\"The jury said\", \"A\"], "
                + "\"max_tokens\": 12, \"temperature\": 0}");
        JsonObject o = JsonParser.parseString(r.body()).getAsJsonObject();
        assertEquals("text_completion", o.get("object").getAsString());
        for (int i = 0; i < 2; i++) {
            JsonObject choice = o.getAsJsonArray("choices").get(i).getAsJsonObject();
            assertEquals(i, choice.get("index").getAsInt());
            String p = i == 0 ? "The jury said" : "A";
            Greedy.assertSameText("list " + i, p, Greedy.generate(p, 12), choice.get("text").getAsString());
        }
        assertEquals(14 + 2, o.getAsJsonObject("usage").get("prompt_tokens").getAsInt());
        assertTrue(server.engine.awaitIdle(Duration.ofSeconds(30)));
        assertEquals(0, server.engine.cacheStats().usedBlocks());
    }

    /** The text of a stream's chunks, checking its shape: data lines, one finish reason, [DONE] last. */
    static String streamedText(String body) {
        StringBuilder text = new StringBuilder();
        int finishes = 0;
        String last = null;
        for (String line : body.split("\n")) {
            if (!line.startsWith("data: ")) continue;
            last = line.substring(6);
            if (last.equals("[DONE]")) continue;
            JsonObject chunk = JsonParser.parseString(last).getAsJsonObject();
            for (var ch : chunk.getAsJsonArray("choices")) {
                text.append(ch.getAsJsonObject().get("text").getAsString());
                if (!ch.getAsJsonObject().get("finish_reason").isJsonNull()) finishes++;
            }
        }
        assertEquals("[DONE]", last);
        assertEquals(1, finishes);
        return text.toString();
    }

    @Test
    void aFullQueueAnswers503WithRetryAfterAndTheOthersGoOn() throws Exception {
        try (TestStack.Server small = new TestStack.Server(Engine.Config.defaults().withKvBudget(16L << 20).withMaxRunning(1)
                .withMaxQueue(1))) {
            // the first stream runs (one at a time), the second waits: the queue of one is full
            HttpResponse<InputStream> first = stream(small, "{\"model\": \"tiny\", \"prompt\": \"The\", \"max_tokens\": 240, "
                    + "\"temperature\": 0, \"stream\": true}");
            BufferedReader a = new BufferedReader(new InputStreamReader(first.body(), StandardCharsets.UTF_8));
            while (!a.readLine().startsWith("data: ")) { /* until its first token */ }
            HttpResponse<InputStream> second = stream(small, "{\"model\": \"tiny\", \"prompt\": \"A\", \"max_tokens\": 5, "
                    + "\"temperature\": 0, \"stream\": true}");
            BufferedReader b = new BufferedReader(new InputStreamReader(second.body(), StandardCharsets.UTF_8));
            assertEquals(": queued, position 0", b.readLine());
            HttpResponse<String> third = small.post("/v1/completions", "{\"model\": \"tiny\", \"prompt\": \"B\", \"max_tokens\": 5}");
            assertEquals(503, third.statusCode());
            assertEquals("1", third.headers().firstValue("Retry-After").orElse(""));
            JsonObject err = JsonParser.parseString(third.body()).getAsJsonObject().getAsJsonObject("error");
            assertEquals("queue_full", err.get("code").getAsString());
            assertEquals("the server is busy: 1 requests are waiting for memory and the queue holds 1; retry later",
                    err.get("message").getAsString());
            // the first client leaves: its stream is cancelled, the second runs to its end
            first.body().close();
            StringBuilder rest = new StringBuilder();
            for (String line; (line = b.readLine()) != null; ) rest.append(line).append('\n');
            assertTrue(rest.toString().endsWith("data: [DONE]\n\n"), rest.toString());
            assertTrue(small.engine.awaitIdle(Duration.ofSeconds(60)));
            Engine.Snapshot s = small.engine.snapshot();
            // The first stream is cancelled when its client leaves, unless it already generated all it
            // could (240 tokens, near the model's context of 256): on a quiet machine that takes about
            // 0.2 s, less than the requests above may take. Either way each request ends once.
            assertEquals(2, s.cancelled() + s.finished(), s.toString());
            assertTrue(s.finished() >= 1, s.toString());
            assertEquals(1, s.refused());
            assertEquals(0, s.cache().usedBlocks());
            String metrics = small.get("/metrics").body();
            assertTrue(metrics.contains("headroom_http_requests_total{code=\"503\",endpoint=\"completions\"} 1.0"), metrics);
            if (s.cancelled() == 1) {
                assertTrue(metrics.contains("headroom_completion_requests_total{outcome=\"cancelled\"} 1.0"), metrics);
            }
        }
    }

    @Test
    void serveBenchsClientReadsWhatTheServerStreamed() throws Exception {
        String body = "{\"model\": \"tiny\", \"prompt\": \"The jury said\", \"max_tokens\": 40, \"temperature\": 0, "
                + "\"stream\": true, \"stream_options\": {\"include_usage\": true}}";
        // the same greedy stream read whole by the JDK's client: its chunks with text, and its usage
        HttpResponse<String> whole = server.post("/v1/completions", body);
        assertEquals(200, whole.statusCode());
        int texts = 0;
        long tokens = -1;
        for (String line : whole.body().split("\n")) {
            if (!line.startsWith("data: {")) continue;
            JsonObject chunk = JsonParser.parseString(line.substring(6)).getAsJsonObject();
            if (chunk.get("usage") != null && chunk.get("usage").isJsonObject()) {
                tokens = chunk.getAsJsonObject("usage").get("completion_tokens").getAsLong();
            }
            JsonArray choices = chunk.getAsJsonArray("choices");
            if (!choices.isEmpty() && !choices.get(0).getAsJsonObject().get("text").getAsString().isEmpty()) texts++;
        }
        assertTrue(tokens > 0 && texts > 1, whole.body());
        StreamingClient.Sample s = StreamingClient.stream(server.uri(""), body, 60_000);
        assertEquals(tokens, s.tokens());
        assertEquals(texts - 1, s.itlMs().length);
        assertTrue(s.ttftMs() > 0, "time to first token " + s.ttftMs());
        for (double gap : s.itlMs()) assertTrue(gap >= 0, "gap " + gap);
        IOException bad = assertThrows(IOException.class, () -> StreamingClient.stream(server.uri(""),
                "{\"model\": \"tiny\", \"prompt\": \"A\", \"max_tokens\": 0, \"stream\": true}", 60_000));
        assertTrue(bad.getMessage().startsWith("HTTP 400: {\"error\""), bad.getMessage());
        assertTrue(bad.getMessage().contains("max_tokens"), bad.getMessage());
    }

    private static HttpResponse<InputStream> stream(TestStack.Server s, String body) throws Exception {
        HttpResponse<InputStream> r = s.client.send(HttpRequest.newBuilder(s.uri("/v1/completions"))
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofInputStream());
        assertEquals(200, r.statusCode());
        assertEquals("text/event-stream; charset=utf-8", r.headers().firstValue("Content-Type").orElse(""));
        return r;
    }

    @Test
    void modelsHealthAndMetricsHaveTheirShapes() throws Exception {
        JsonObject models = JsonParser.parseString(server.get("/v1/models").body()).getAsJsonObject();
        assertEquals("list", models.get("object").getAsString());
        assertEquals("tiny", models.getAsJsonArray("data").get(0).getAsJsonObject().get("id").getAsString());
        assertEquals("minilm", models.getAsJsonArray("data").get(1).getAsJsonObject().get("id").getAsString());
        assertEquals("model", JsonParser.parseString(server.get("/v1/models/minilm").body()).getAsJsonObject().get("object").getAsString());
        assertEquals("ok", JsonParser.parseString(server.get("/health").body()).getAsJsonObject().get("status").getAsString());
        HttpResponse<String> m = server.get("/metrics");
        assertEquals(200, m.statusCode());
        assertTrue(m.headers().firstValue("Content-Type").orElse("").startsWith("text/plain; version=0.0.4"), m.headers().toString());
        for (String name : List.of("headroom_queue_length ", "headroom_running_sequences ", "headroom_generation_tokens_per_second ",
                "headroom_kv_blocks{state=\"used\"}", "headroom_kv_blocks{state=\"shared\"}", "headroom_kv_blocks{state=\"free\"}",
                "headroom_time_to_first_token_seconds_bucket", "headroom_inter_token_latency_seconds_bucket", "headroom_http_requests_total")) {
            assertTrue(m.body().contains(name), name + " missing from\n" + m.body());
        }
        // base64 embeddings decode to the float ones
        JsonObject f = JsonParser.parseString(server.post("/v1/embeddings", "{\"model\": \"minilm\", \"input\": \"a cat\"}").body()).getAsJsonObject();
        JsonObject b = JsonParser.parseString(server.post("/v1/embeddings", "{\"model\": \"minilm\", \"input\": \"a cat\", "
                + "\"encoding_format\": \"base64\"}").body()).getAsJsonObject();
        java.nio.ByteBuffer bytes = java.nio.ByteBuffer.wrap(java.util.Base64.getDecoder().decode(b.getAsJsonArray("data").get(0)
                .getAsJsonObject().get("embedding").getAsString())).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        var floats = f.getAsJsonArray("data").get(0).getAsJsonObject().getAsJsonArray("embedding");
        assertEquals(384, floats.size());
        for (int j = 0; j < 384; j++) assertEquals(floats.get(j).getAsFloat(), bytes.getFloat());
    }

    @Test
    void aSlowNonStreamingAnswerIsChunkedWithLeadingSpacesThatJsonIgnores() throws Exception {
        // 200 tokens take longer than the 250 ms after which the answer is sent chunked, with probes
        HttpResponse<String> r = server.post("/v1/completions", "{\"model\": \"tiny\", \"prompt\": \"The\", \"max_tokens\": 200, "
                + "\"temperature\": 0}");
        assertEquals(200, r.statusCode());
        JsonObject o = JsonParser.parseString(r.body()).getAsJsonObject();
        Generator.Output expected = Greedy.generate("The", 200);
        Greedy.assertSameText("slow", "The", expected, o.getAsJsonArray("choices").get(0).getAsJsonObject().get("text").getAsString());
    }

    @Test
    void oversizedBodiesGetTheir413NotAReset() throws Exception {
        // refused on Content-Length before a byte of the body is read: the server drains it so the client reads the answer
        String big = "{\"model\": \"tiny\", \"prompt\": \"" + "a".repeat(3 << 20) + "\"}";
        for (int i = 0; i < 10; i++) refused("/v1/completions", big, 413, null, "request_too_large");
    }

    @Test
    void streamsAreWrittenWithoutNagleDelays() {
        // The JDK's server reads this once; without it each small SSE write waits for the client's delayed ACK.
        assertEquals("true", System.getProperty("sun.net.httpserver.nodelay"));
    }

    @Test
    void serveBenchQuantilesAreNearestRank() {
        double[] v = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
        assertEquals(5, ServeBench.quantile(v, 0.5));
        assertEquals(10, ServeBench.quantile(v, 0.99));
        assertEquals(1, ServeBench.quantile(v, 0.0));
        assertTrue(Double.isNaN(ServeBench.quantile(new double[0], 0.5)));
    }

    @Test
    void serveBenchSplitsStepsIntoDecodeOnlyAndPrefillCarrying() {
        ServeBench.Steps st = new ServeBench.Steps(new double[]{1, 2, 3}, new double[]{0.5, 1.5, 2.5}, new double[]{9}, 40);
        assertEquals(4, st.count());
        assertEquals(0.25, st.prefillShare());
        String d = st.describe();
        assertTrue(d.startsWith("4 steps: decode only p50 2.00 ms (forward 1.50), p99 3.00 ms; 25 % carried prompt tokens (40 on average): "
                + "p50 9.00 ms"), d);
    }

    @Test
    void workerWaitIsYieldOrSpinAndNothingElse() {
        EngineOptions.WaitingConverter c = new EngineOptions.WaitingConverter();
        assertEquals(dev.headroom.runtime.WorkerPool.Waiting.YIELD, c.convert("Yield"));
        assertEquals(dev.headroom.runtime.WorkerPool.Waiting.SPIN, c.convert(" spin "));
        Exception e = org.junit.jupiter.api.Assertions.assertThrows(picocli.CommandLine.TypeConversionException.class, () -> c.convert("busy"));
        assertTrue(e.getMessage().contains("expected yield or spin, got 'busy'"), e.getMessage());
    }

    @Test
    void serveBenchWarmsUpUntilTheRateIsEvenAndTheJitQuiet() {
        // previous window, this window, JIT share of the window, seconds of warm-up so far, at least
        assertFalse(ServeBench.WarmUp.steady(Double.NaN, 1000, 0, 10, 5), "no window to compare with");
        assertFalse(ServeBench.WarmUp.steady(1000, 1000, 0, 4, 5), "shorter than --warmup");
        assertTrue(ServeBench.WarmUp.steady(1000, 1040, 0.01, 6, 5));
        assertTrue(ServeBench.WarmUp.steady(1000, 960, Double.NaN, 6, 5), "a remote server's JIT is unknown: the rate decides");
        assertFalse(ServeBench.WarmUp.steady(1000, 1060, 0, 6, 5), "6 % faster: still warming");
        assertFalse(ServeBench.WarmUp.steady(1000, 930, 0, 6, 5), "7 % slower");
        assertFalse(ServeBench.WarmUp.steady(1000, 1000, 0.05, 6, 5), "even, but the JIT compiled for 5 % of the window");
    }
}
