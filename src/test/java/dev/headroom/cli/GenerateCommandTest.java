package dev.headroom.cli;

import dev.headroom.generate.Generator;
import dev.headroom.generate.Sampling;
import dev.headroom.io.SafeTensors;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.LlamaModel;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code headroom generate}: what it prints is what the API generates; its failures are one line. */
class GenerateCommandTest {
    @TempDir
    Path dir;

    private static String api(String prompt, int max, Sampling sampling) throws Exception {
        try (LlamaModel m = Models.tiny(2)) {
            ByteTokenizer t = ByteTokenizer.of(m.config());
            return new Generator(m, t).generate(List.of(new Generator.Request(t.encode(prompt), max, sampling, List.of())),
                    Generator.Listener.NONE).outputs().getFirst().text();
        }
    }

    @Test
    void streamsWhatTheApiGeneratesAndReportsSpeedAndCache() throws Exception {
        Object[] r = CliTest.run("generate", "The jury said", "--max-tokens", "40", "--seed", "7", "--threads", "2");
        assertEquals(0, r[0], (String) r[2]);
        assertEquals(api("The jury said", 40, new Sampling(0.8, 40, 0.95, 7)) + System.lineSeparator(), r[1]);
        String err = (String) r[2];
        assertTrue(err.matches("(?s)prompt: 14 tokens in [0-9.]+ s \\([0-9]+ tokens/s\\); generated: \\d+ tokens, \\d+ of them in decode "
                + "steps of [0-9.]+ s \\([0-9]+ tokens/s\\); 2 threads\\R"
                + "KV cache: .* at most \\(f32, 4096 bytes per token over 4 layers\\); stopped at .*; temperature 0.8, top-k 40, "
                + "top-p 0.95, seed 7\\R"), err);
    }

    @Test
    void greedyRunsOfSeveralPromptsArePrintedOneByOne() throws Exception {
        Object[] r = CliTest.run("generate", "--greedy", "--max-tokens", "12", "--threads", "1", "Once upon", "It was");
        assertEquals(0, r[0], (String) r[2]);
        String nl = System.lineSeparator();
        assertEquals("--- 1: Once upon" + nl + api("Once upon", 12, Sampling.greedy()) + nl + "--- 2: It was" + nl
                + api("It was", 12, Sampling.greedy()) + nl, r[1]);
        assertTrue(((String) r[2]).contains("stopped at --max-tokens ×2; greedy"), (String) r[2]);
    }

    @Test
    void aSmallerCacheIsAnOption() throws Exception {
        Object[] r = CliTest.run("generate", "--greedy", "--kv-dtype", "int8", "--max-tokens", "20", "--threads", "1", "The jury said");
        assertEquals(0, r[0], (String) r[2]);
        // int8: per layer and key/value head, 64 bytes of K, 64 of V and a float scale for each: 136 × 2 heads × 4 layers
        assertTrue(((String) r[2]).contains("(int8, 1088 bytes per token over 4 layers)"), (String) r[2]);
        r = CliTest.run("generate", "--kv-dtype", "int4", "x");
        assertEquals(2, r[0]);
        assertTrue(((String) r[2]).startsWith("headroom: "), (String) r[2]);
    }

    @Test
    void userWeightsAreReadWithTheirConfig() throws Exception {
        // the tiny model's own files, given as --weights and --config, with an extra key to show the strict check
        Path weights = dir.resolve("m.safetensors"), config = dir.resolve("config.json");
        try (TrackedArena arena = TrackedArena.ofShared()) {
            Files.write(weights, Models.resource(Models.TINY_DIR + "model.safetensors").readAllBytes());
            Files.write(config, Models.resource(Models.TINY_DIR + "config.json").readAllBytes());
            Map<String, Tensor> sd = new LinkedHashMap<>(SafeTensors.open(weights, arena));
            Object[] r = CliTest.run("generate", "--weights", weights.toString(), "--config", config.toString(), "--greedy",
                    "--max-tokens", "10", "The jury");
            assertEquals(0, r[0], (String) r[2]);
            assertEquals(api("The jury", 10, Sampling.greedy()) + System.lineSeparator(), r[1]);
            sd.put("model.layers.9.mlp.up_proj.weight", Tensor.allocate(arena, 2, 2));
            SafeTensors.write(weights, sd);
            r = CliTest.run("generate", "--weights", weights.toString(), "--config", config.toString(), "x");
            assertEquals(2, r[0]);
            assertTrue(((String) r[2]).startsWith("headroom: ") && ((String) r[2]).contains("1 unexpected key, first "
                    + "'model.layers.9.mlp.up_proj.weight' (2, 2) (layer 9, but num_hidden_layers is 4)"), (String) r[2]);
        }
    }

    /** A config's shape with random weights: the same noise every run (seeded), and refusals of the combinations that make no sense. */
    @Test
    void dummyWeightsServeAConfigsShape() throws Exception {
        Path config = dir.resolve("dummy.json");
        Files.writeString(config, "{\"hidden_size\": 32, \"intermediate_size\": 48, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, "
                + "\"num_key_value_heads\": 1, \"vocab_size\": 258, \"max_position_embeddings\": 64, \"bos_token_id\": 256, "
                + "\"eos_token_id\": 257, \"tie_word_embeddings\": true}");
        String[] args = {"generate", "--dummy-weights", "--config", config.toString(), "--greedy", "--max-tokens", "16", "--threads", "1", "ab"};
        Object[] first = CliTest.run(args), second = CliTest.run(args);
        assertEquals(0, first[0], (String) first[2]);
        assertTrue(((String) first[1]).length() > 1, "some text: " + first[1]);
        assertEquals(first[1], second[1]);
        assertTrue(((String) first[2]).contains("over 2 layers"), (String) first[2]);
        Object[] r = CliTest.run("generate", "--dummy-weights", "x");
        assertEquals("headroom: --dummy-weights needs --config" + System.lineSeparator(), r[2]);
        r = CliTest.run("generate", "--dummy-weights", "--weights", "w.safetensors", "--config", config.toString(), "x");
        assertEquals("headroom: give either --weights or --dummy-weights, not both" + System.lineSeparator(), r[2]);
        r = CliTest.run("generate", "--model", "tiny", "--dummy-weights", "--config", config.toString(), "x");
        assertEquals("headroom: give one of --model, --weights with --config, or --dummy-weights with --config" + System.lineSeparator(), r[2]);
        r = CliTest.run("generate", "--mmap", "--dummy-weights", "--config", config.toString(), "x");
        assertEquals("headroom: --mmap maps --weights; --dummy-weights has no file to map" + System.lineSeparator(), r[2]);
        Path huge = dir.resolve("huge.json"); // 8,192 wide, 4,096 layers: 3.5 trillion parameters, 13 TiB of float32
        Files.writeString(huge, "{\"hidden_size\": 8192, \"intermediate_size\": 28672, \"num_hidden_layers\": 4096, "
                + "\"num_attention_heads\": 64, \"num_key_value_heads\": 8, \"vocab_size\": 258, \"bos_token_id\": 256, \"eos_token_id\": 257}");
        r = CliTest.run("generate", "--dummy-weights", "--config", huge.toString(), "x");
        assertEquals(2, r[0]);
        assertTrue(((String) r[2]).startsWith("headroom: --dummy-weights for --config " + huge + " would take "), (String) r[2]);
        assertTrue(((String) r[2]).contains("this process can be given"), (String) r[2]);
        // weights that fit this process once but not with the copy the model packs for decode steps: refused up front
        long budget = dev.headroom.memory.MemoryLimits.defaultBudget(), perLayer = 4L * 7 * 4096 * 4096; // 7 E² floats a layer
        int layers = (int) (0.7 * budget / perLayer);
        if (layers >= 2) {
            Path twice = dir.resolve("twice.json");
            Files.writeString(twice, "{\"hidden_size\": 4096, \"intermediate_size\": 4096, \"num_hidden_layers\": " + layers
                    + ", \"num_attention_heads\": 32, \"num_key_value_heads\": 32, \"vocab_size\": 258, \"bos_token_id\": 256, "
                    + "\"eos_token_id\": 257, \"tie_word_embeddings\": true}");
            r = CliTest.run("generate", "--dummy-weights", "--config", twice.toString(), "x");
            assertEquals(2, r[0], (String) r[2]);
            assertTrue(((String) r[2]).contains("parameters, and their copy packed for decode steps); this process can be given"),
                    (String) r[2]);
        }
        r = CliTest.run("generate", "--mmap", "x");
        assertEquals("headroom: --mmap maps --weights; the built-in model is read from the jar" + System.lineSeparator(), r[2]);
    }

    @Test
    void badArgumentsAreOneLine() throws Exception {
        Object[] r = CliTest.run("generate", "--model", "gpt2", "x");
        assertEquals(2, r[0]);
        assertEquals("headroom: unknown model 'gpt2'; built in: tiny" + System.lineSeparator(), r[2]);
        r = CliTest.run("generate", "--weights", "w.safetensors", "x");
        assertEquals("headroom: --weights and --config go together" + System.lineSeparator(), r[2]);
        r = CliTest.run("generate", "--top-p", "0", "x");
        assertEquals("headroom: top-p must be in (0, 1] (1 = off), got 0.0" + System.lineSeparator(), r[2]);
        Path config = dir.resolve("config.json");
        Files.writeString(config, "{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 1, "
                + "\"num_attention_heads\": 4, \"vocab_size\": 32000, \"bos_token_id\": 1, \"eos_token_id\": 2}");
        r = CliTest.run("generate", "--weights", dir.resolve("w.safetensors").toString(), "--config", config.toString(), "x");
        assertEquals(2, r[0]);
        assertEquals("headroom: generate reads prompts as UTF-8 bytes (ids 0-255) with special tokens above them, which this "
                + "model's config does not fit: <bos> id 1 must be a special id in [256, 32000) or -1" + System.lineSeparator(), r[2]);
    }
}
