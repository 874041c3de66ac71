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
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code serve --dummy-weights --config FILE}: a config's shape with random weights, served under the
 * name "dummy", and serve-bench pointed at such a server by --url, which takes the completion
 * model's name from /v1/models.
 */
class DummyModelTest {
    @TempDir
    Path dir;

    @Test
    void aDummyModelIsServedUnderItsNameAndServeBenchFindsIt() throws Exception {
        Path config = dir.resolve("config.json");
        Files.writeString(config, "{\"hidden_size\": 64, \"intermediate_size\": 64, \"num_hidden_layers\": 1, \"num_attention_heads\": 1, "
                + "\"vocab_size\": 258, \"max_position_embeddings\": 256, \"bos_token_id\": 256, \"eos_token_id\": 257, "
                + "\"tie_word_embeddings\": true}");
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs("--dummy-weights", "--config", config.toString(), "--kv-budget", "16m", "--threads", "1");
        try (ServeCommand.Stack stack = ServeCommand.Stack.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), serve.decoder,
                serve.engine.config(8), 1, WorkerPool.Waiting.YIELD, Duration.ofMillis(2));
             HttpClient client = HttpClient.newHttpClient()) {
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
            int code = ServerMain.execute("serve-bench", "--url", base + "/v1", "--concurrency", "2", "--duration", "1", "--warmup", "0",
                    "--embedding-clients", "0", "--max-tokens", "8", "--out", out.toString());
            assertEquals(0, code);
            List<String> csv = Files.readAllLines(out.resolve("serve-bench.csv"));
            String[] row = csv.get(1).split(",", -1);
            assertEquals("completions", row[0], csv.toString());
            assertTrue(Long.parseLong(row[3]) > 0 && row[14].equals("0"), "tokens generated and no errors: " + csv);
        }
    }
}
