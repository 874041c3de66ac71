package dev.headroom.model.llama;

import dev.headroom.io.SafeTensors;
import dev.headroom.io.TensorFormatException;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.StringReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** config.json and weights: what is read, the defaults, and the messages for what is wrong. */
class LlamaLoadingTest {
    private static final String TINY = """
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
             "tie_word_embeddings": true, "bos_token_id": 256, "eos_token_id": 257, "hidden_size": 256,
             "intermediate_size": 640, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
             "head_dim": 64, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "vocab_size": 258,
             "max_position_embeddings": 256}""";

    private static LlamaConfig parse(String json) throws IOException {
        return LlamaConfig.read(new StringReader(json), "config.json");
    }

    /** The tiny config with one key replaced (value null: removed). */
    private static String with(String key, String value) {
        String quoted = "\"" + key + "\": ";
        int at = TINY.indexOf(quoted);
        if (at < 0) return TINY.substring(0, TINY.length() - 1) + ", " + quoted + value + "}";
        int end = TINY.indexOf(',', at);
        if (end < 0) end = TINY.indexOf('}', at);
        String rest = TINY.substring(end);
        if (value == null) return TINY.substring(0, at) + (rest.startsWith(",") ? rest.substring(1).stripLeading() : rest);
        return TINY.substring(0, at) + quoted + value + rest;
    }

    private static String error(String json) {
        return assertThrows(TensorFormatException.class, () -> parse(json)).getMessage();
    }

    @Test
    void theTinyConfigIsReadWhole() throws IOException {
        LlamaConfig c = parse(TINY);
        assertEquals(new LlamaConfig(256, 640, 4, 4, 2, 64, 1e-5, 10000, 258, 256, true, false, 256, new int[]{257}), c);
        assertEquals(c, Models.tinyConfig());
        assertEquals(2_820_864, c.parameterCount()); // tools/tiny/README.md
        assertEquals("rope(θ=10000.0, 64 dims, halves)", c.attention().rope().toString());
        assertEquals(2, c.attention().groupSize());
    }

    @Test
    void transformersDefaultsApplyToMissingKeys() throws IOException {
        LlamaConfig c = parse("""
                {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "vocab_size": 300, "eos_token_id": [257, 258]}""");
        assertEquals(4, c.kvHeads());
        assertEquals(16, c.headDim());
        assertEquals(1e-6, c.rmsNormEps());
        assertEquals(10000, c.ropeTheta());
        assertEquals(2048, c.maxPositions());
        assertFalse(c.tieWordEmbeddings());
        assertEquals(-1, c.bosTokenId());
        assertArrayEquals(new int[]{257, 258}, c.eosTokenIds());
        assertTrue(c.isEos(258) && !c.isEos(256));
    }

    @Test
    void badConfigsAreNamedByKeyAndValue() {
        assertEquals("config.json: missing required key 'hidden_size'", error(with("hidden_size", null)));
        assertEquals("config.json: hidden_size must be an integer, found the string \"256\"", error(with("hidden_size", "\"256\"")));
        assertEquals("config.json: num_hidden_layers must be an integer, found 4.5", error(with("num_hidden_layers", "4.5")));
        assertEquals("config.json: num_key_value_heads (3) must divide num_attention_heads (4)", error(with("num_key_value_heads", "3")));
        assertEquals("config.json: head_dim (63) must be even: RoPE turns pairs of features", error(with("head_dim", "63")));
        assertEquals("config.json: intermediate_size must be >= 1, got 0", error(with("intermediate_size", "0")));
        assertEquals("config.json: rms_norm_eps must be finite and > 0, got -1.0", error(with("rms_norm_eps", "-1")));
        assertEquals("config.json: rope_theta must be finite and > 1, got 1.0", error(with("rope_theta", "1")));
        assertEquals("config.json: eos_token_id 300 is outside the vocabulary of 258", error(with("eos_token_id", "300")));
        assertEquals("config.json: bos_token_id (258) is outside the vocabulary of 258", error(with("bos_token_id", "258")));
        assertEquals("config.json: tie_word_embeddings must be true or false, found the string \"yes\"",
                error(with("tie_word_embeddings", "\"yes\"")));
        assertEquals("config.json: hidden_act 'gelu' is not supported: the feed-forward is SwiGLU, silu(gate)·up",
                error(with("hidden_act", "\"gelu\"")));
        assertEquals("config.json: model_type 'gpt2' is not one this loader computes (llama, mistral)", error(with("model_type", "\"gpt2\"")));
        assertEquals("config.json: rope_scaling {\"type\":\"linear\",\"factor\":2.0} is not supported (only plain RoPE with rope_theta)",
                error(with("rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}")));
        assertEquals("config.json: mlp_bias true is not supported (the feed-forward has no biases here)", error(with("mlp_bias", "true")));
        assertEquals("config.json: sliding_window 128 (shorter than max_position_embeddings 256) is not supported: attention here "
                + "sees the whole context", error(with("sliding_window", "128")));
        assertEquals("config.json: num_attention_heads (3) must divide hidden_size (256) when head_dim is not given",
                error(with("head_dim", null).replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 3")));
        assertTrue(error("{\"hidden_size\": ").startsWith("config.json: not valid JSON"));
        assertEquals("config.json: a config.json must be a JSON object, found an array [1]", error("[1]"));
    }

    /** A complete random state dict for the tiny config (tied, no biases). */
    private static Map<String, Tensor> tinyStateDict(TrackedArena arena) throws IOException {
        return new LinkedHashMap<>(RandomLlama.stateDict(parse(TINY), 1, arena));
    }

    private static String weightsError(Map<String, Tensor> sd) throws IOException {
        LlamaConfig c = parse(TINY);
        return assertThrows(IllegalArgumentException.class, () -> LlamaWeights.fromStateDict(c, sd)).getMessage();
    }

    @Test
    void badWeightsAreNamedByKeyAndShape() throws IOException {
        try (TrackedArena arena = TrackedArena.ofShared()) {
            Map<String, Tensor> sd = tinyStateDict(arena);
            sd.remove("model.layers.2.self_attn.k_proj.weight");
            assertEquals("missing 'model.layers.2.self_attn.k_proj.weight' (128, 256) (from num_key_value_heads 2 × head_dim 64, "
                    + "hidden_size 256)", weightsError(sd));

            sd = tinyStateDict(arena);
            sd.put("model.layers.1.mlp.down_proj.weight", Tensor.allocate(arena, 640, 256));
            assertEquals("'model.layers.1.mlp.down_proj.weight' has shape (640, 256), expected (256, 640) from hidden_size 256, "
                    + "intermediate_size 640", weightsError(sd));

            sd = tinyStateDict(arena);
            sd.put("model.embed_tokens.weight", Tensor.allocate(arena, 32000, 256));
            assertEquals("'model.embed_tokens.weight' has shape (32000, 256), expected (258, 256) from vocab_size 258, hidden_size 256",
                    weightsError(sd));

            sd = tinyStateDict(arena);
            sd.put("model.layers.4.input_layernorm.weight", Tensor.allocate(arena, 256));
            assertEquals("1 unexpected key, first 'model.layers.4.input_layernorm.weight' (256) (layer 4, but num_hidden_layers is 4)",
                    weightsError(sd));

            sd = tinyStateDict(arena);
            sd.put("model.layers.0.self_attn.q_proj.bias", Tensor.allocate(arena, 256));
            sd.put("model.layers.0.self_attn.k_proj.bias", Tensor.allocate(arena, 128));
            assertEquals("2 unexpected keys, first 'model.layers.0.self_attn.k_proj.bias' (128) (attention_bias is false); all: "
                    + "[model.layers.0.self_attn.k_proj.bias, model.layers.0.self_attn.q_proj.bias]", weightsError(sd));

            sd = tinyStateDict(arena);
            sd.put("model.norm.weight", Tensor.allocate(arena, 255));
            assertEquals("'model.norm.weight' has shape (255), expected (256) from hidden_size 256", weightsError(sd));
        }
    }

    @Test
    void untiedModelsNeedTheirOutputLayerAndTiedOnesIgnoreIt() throws IOException {
        try (TrackedArena arena = TrackedArena.ofShared()) {
            LlamaConfig untied = parse(with("tie_word_embeddings", "false"));
            Map<String, Tensor> sd = tinyStateDict(arena);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> LlamaWeights.fromStateDict(untied, sd));
            assertEquals("missing 'lm_head.weight' (258, 256) (from vocab_size 258, hidden_size 256 (tie_word_embeddings is false))",
                    e.getMessage());
            sd.put("lm_head.weight", Tensor.allocate(arena, 258, 256));
            assertSame(sd.get("lm_head.weight"), LlamaWeights.fromStateDict(untied, sd).lmHead());
            // tied: a stored lm_head.weight is ignored (transformers ties it on load), and RoPE buffers are skipped
            sd.put("model.layers.0.self_attn.rotary_emb.inv_freq", Tensor.allocate(arena, 32));
            LlamaWeights tied = LlamaWeights.fromStateDict(parse(TINY), sd);
            assertSame(tied.embedTokens(), tied.lmHead());
        }
    }

    @Test
    void aWeightsFileIsNamedInItsErrors(@TempDir Path dir) throws IOException {
        try (TrackedArena arena = TrackedArena.ofShared()) {
            Map<String, Tensor> sd = tinyStateDict(arena);
            sd.remove("model.norm.weight");
            Path file = dir.resolve("model.safetensors");
            SafeTensors.write(file, sd);
            TensorFormatException e = assertThrows(TensorFormatException.class,
                    () -> LlamaWeights.load(file, parse(TINY), arena, SafeTensors.Load.COPY));
            assertEquals(file + ": missing 'model.norm.weight' (256) (from hidden_size 256)", e.getMessage());
            Path npy = dir.resolve("weights.npy");
            Files.writeString(npy, "x");
            e = assertThrows(TensorFormatException.class, () -> LlamaWeights.load(npy, parse(TINY), arena, SafeTensors.Load.COPY));
            assertEquals(npy + ": Llama weights must be a .safetensors file", e.getMessage());
        }
    }
}
