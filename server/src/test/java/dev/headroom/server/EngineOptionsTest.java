package dev.headroom.server;

import com.google.gson.JsonParser;
import dev.headroom.cache.KvDtype;
import dev.headroom.generate.Generator;
import dev.headroom.generate.Sampling;
import dev.headroom.serve.Engine;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

/** serve's cache options (--kv-dtype, --block-size) reach the engine, and an int8 cache serves what generate --kv-dtype int8 gives. */
class EngineOptionsTest {
    @Test
    void theCacheOptionsReachTheEngine() {
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs("--kv-dtype", "int8", "--block-size", "32", "--kv-budget", "64m");
        assertEquals(KvDtype.INT8, serve.engine.config(8).kvDtype());
        assertEquals(32, serve.engine.config(8).blockSize());
        assertEquals(64L << 20, serve.engine.config(8).kvBudgetBytes());
        ServeCommand defaults = new ServeCommand();
        new CommandLine(defaults).parseArgs();
        assertEquals(KvDtype.F32, defaults.engine.config(8).kvDtype());
        assertEquals(16, defaults.engine.config(8).blockSize());
        java.io.PrintStream err = System.err;
        java.io.ByteArrayOutputStream captured = new java.io.ByteArrayOutputStream();
        try {
            System.setErr(new java.io.PrintStream(captured, true, java.nio.charset.StandardCharsets.UTF_8));
            assertEquals(2, ServerMain.execute("serve-bench", "--url", "http://127.0.0.1:9", "--kv-dtype", "int8", "--out", "unused"));
        } finally {
            System.setErr(err);
        }
        String message = captured.toString(java.nio.charset.StandardCharsets.UTF_8);
        org.junit.jupiter.api.Assertions.assertTrue(message.contains("--kv-dtype sets up a server started here; with --url the server at "
                + "http://127.0.0.1:9 has its own settings"), message);
        // refused while parsing, before anything starts (a serve that started would run until interrupted: hence the timeout)
        assertEquals(2, assertTimeoutPreemptively(Duration.ofSeconds(60), () -> ServerMain.execute("serve", "--kv-dtype", "int4", "--port", "0")));
    }

    @Test
    void anInt8CacheServesWhatGenerateWithInt8Gives() throws Exception {
        int f32Blocks;
        try (Engine f32 = Engine.start(TestStack.DECODER, TestStack.TOKENIZER, Engine.Config.defaults().withKvBudget(64L << 20))) {
            f32Blocks = f32.cacheStats().capacityBlocks();
        }
        try (TestStack.Server server = new TestStack.Server(Engine.Config.defaults().withKvBudget(64L << 20).withKvDtype(KvDtype.INT8))) {
            // the server's cache is int8: 3.76 times the blocks of f32 in the same budget (68 bytes a token and head against 256)
            assertEquals(256.0 / 68, (double) server.engine.cacheStats().capacityBlocks() / f32Blocks, 0.05);
            String prompt = "The jury said";
            HttpResponse<String> r = server.post("/v1/completions", "{\"model\": \"tiny\", \"prompt\": \"" + prompt + "\", \"max_tokens\": 24, "
                    + "\"temperature\": 0}");
            assertEquals(200, r.statusCode(), r.body());
            String text = JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonArray("choices").get(0).getAsJsonObject()
                    .get("text").getAsString();
            Generator.Output expected = new Generator(TestStack.DECODER, TestStack.TOKENIZER).withCacheDtype(KvDtype.INT8)
                    .generate(List.of(new Generator.Request(TestStack.TOKENIZER.encode(prompt), 24, Sampling.greedy(), List.of())),
                            Generator.Listener.NONE).outputs().getFirst();
            Greedy.assertSameText("int8", prompt, expected, text);
        }
    }
}
