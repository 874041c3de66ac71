package dev.headroom.server;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.headroom.runtime.WorkerPool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code serve --dummy-weights --config FILE}: a config's shape with random weights, served under the
 * name "dummy"; serve-bench over such a server, started in its process or found by --url (whose
 * completion model's name it takes from /v1/models), and the option combinations it refuses.
 */
class DummyModelTest {
    @TempDir
    Path dir;

    private Path config(int positions) throws Exception {
        Path config = dir.resolve("config-" + positions + ".json");
        Files.writeString(config, "{\"hidden_size\": 64, \"intermediate_size\": 64, \"num_hidden_layers\": 1, \"num_attention_heads\": 1, "
                + "\"vocab_size\": 258, \"max_position_embeddings\": " + positions + ", \"bos_token_id\": 256, \"eos_token_id\": 257, "
                + "\"tie_word_embeddings\": true}");
        return config;
    }

    private static ServeCommand serve(String... args) {
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs(args);
        return serve;
    }

    private static ServeCommand.Stack start(ServeCommand serve) throws Exception {
        return ServeCommand.Stack.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), serve.decoder, serve.completionName(),
                serve.engine.config(8), 1, WorkerPool.Waiting.YIELD, Duration.ofMillis(2));
    }

    @Test
    void aDummyModelIsServedUnderItsNameAndServeBenchFindsIt() throws Exception {
        ServeCommand serve = serve("--dummy-weights", "--config", config(256).toString(), "--kv-budget", "16m", "--threads", "1");
        try (ServeCommand.Stack stack = start(serve); HttpClient client = HttpClient.newHttpClient()) {
            assertEquals(1, stack.decoder.config().layers());
            assertEquals(64, stack.decoder.config().hiddenSize());
            URI base = URI.create("http://127.0.0.1:" + stack.server.address().getPort());
            String models = client.send(HttpRequest.newBuilder(base.resolve("/v1/models")).build(), HttpResponse.BodyHandlers.ofString()).body();
            assertEquals("dummy", JsonParser.parseString(models).getAsJsonObject().getAsJsonArray("data").get(0).getAsJsonObject()
                    .get("id").getAsString(), models);

            HttpResponse<String> r = client.send(HttpRequest.newBuilder(base.resolve("/v1/completions"))
                    .POST(HttpRequest.BodyPublishers.ofString("{\"model\": \"dummy\", \"prompt\": \"ab\", \"max_tokens\": 12, "
                            + "\"temperature\": 0}")).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(200, r.statusCode(), r.body());
            JsonObject usage = JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonObject("usage");
            assertEquals(3, usage.get("prompt_tokens").getAsInt(), r.body()); // <bos> a b
            assertTrue(usage.get("completion_tokens").getAsInt() >= 1, r.body());
            r = client.send(HttpRequest.newBuilder(base.resolve("/v1/completions"))
                    .POST(HttpRequest.BodyPublishers.ofString("{\"model\": \"tiny\", \"prompt\": \"ab\", \"max_tokens\": 2}")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(404, r.statusCode(), r.body());

            Path out = dir.resolve("bench");
            assertEquals(0, ServerMain.execute("serve-bench", "--url", base + "/v1", "--concurrency", "2", "--duration", "1", "--warmup", "0",
                    "--embedding-clients", "0", "--max-tokens", "8", "--out", out.toString()));
            assertGenerated(out);
            // the model options belong to a server started here, not to the one --url names
            assertEquals(2, ServerMain.execute("serve-bench", "--url", base.toString(), "--dummy-weights", "--config", config(256).toString(),
                    "--out", dir.resolve("refused").toString()));
        }
    }

    @Test
    void serveBenchStartsADummyServerInItsProcess() throws Exception {
        Path out = dir.resolve("bench");
        assertEquals(0, ServerMain.execute("serve-bench", "--dummy-weights", "--config", config(256).toString(), "--kv-budget", "16m",
                "--threads", "1", "--concurrency", "2", "--duration", "1", "--warmup", "0", "--embedding-clients", "0", "--max-tokens", "8",
                "--out", out.toString()));
        assertGenerated(out);
        // prompts of up to 96 bytes do not fit a context of 64 tokens: refused before any load
        assertEquals(2, ServerMain.execute("serve-bench", "--dummy-weights", "--config", config(64).toString(), "--kv-budget", "16m",
                "--threads", "1", "--embedding-clients", "0", "--out", dir.resolve("refused").toString()));
        assertTrue(!Files.exists(dir.resolve("refused").resolve("serve-bench.csv")));
    }

    @Test
    void aCompletionModelMayNotTakeTheEmbeddingModelsName() throws Exception {
        ServeCommand serve = serve("--weights", dir.resolve("minilm.safetensors").toString(), "--config", config(256).toString());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> start(serve));
        assertTrue(e.getMessage().contains("served as 'minilm', the embedding model's name"), e.getMessage());
    }

    /** --served-model-name replaces the model's own name in the API. */
    @Test
    void aServedNameReplacesTheModelsOwn() throws Exception {
        ServeCommand serve = serve("--dummy-weights", "--config", config(256).toString(), "--kv-budget", "16m", "--served-model-name",
                "house-model");
        try (ServeCommand.Stack stack = start(serve); HttpClient client = HttpClient.newHttpClient()) {
            URI base = URI.create("http://127.0.0.1:" + stack.server.address().getPort());
            HttpResponse<String> r = client.send(HttpRequest.newBuilder(base.resolve("/v1/models/house-model")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(200, r.statusCode(), r.body());
            r = client.send(HttpRequest.newBuilder(base.resolve("/v1/models/dummy")).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(404, r.statusCode(), r.body());
        }
        // refused before it starts (a serve that started would run until interrupted: hence the timeout)
        assertEquals(2, assertTimeoutPreemptively(Duration.ofSeconds(60),
                () -> ServerMain.execute("serve", "--served-model-name", " padded", "--port", "0")));
    }

    private static void assertGenerated(Path out) throws Exception {
        List<String> csv = Files.readAllLines(out.resolve("serve-bench.csv"));
        String[] row = csv.get(1).split(",", -1);
        assertEquals("completions", row[0], csv.toString());
        assertTrue(Long.parseLong(row[3]) > 0 && row[14].equals("0"), "tokens generated and no errors: " + csv);
        assertEquals("model", csv.get(0).substring(csv.get(0).lastIndexOf(',') + 1));
        assertEquals("dummy", row[row.length - 1], csv.toString());
    }
}
