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
        // refused while parsing, before anything starts (a serve that started would run until interrupted: hence the timeout)
        assertEquals(2, assertTimeoutPreemptively(Duration.ofSeconds(60), () -> ServerMain.execute("serve", "--kv-dtype", "int4", "--port", "0")));
    }

    @Test
    void anInt8CacheServesWhatGenerateWithInt8Gives() throws Exception {
        try (TestStack.Server server = new TestStack.Server(Engine.Config.defaults().withKvBudget(64L << 20).withKvDtype(KvDtype.INT8))) {
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
