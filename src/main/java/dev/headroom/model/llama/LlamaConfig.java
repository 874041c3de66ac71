package dev.headroom.model.llama;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.RotaryEmbedding;
import dev.headroom.io.TensorFormatException;

import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * The hyper-parameters of a Llama-style decoder, as Hugging Face's {@code config.json} for
 * {@code LlamaForCausalLM} states them (their names in parentheses):
 *
 * @param hiddenSize        E, the model width ({@code hidden_size})
 * @param intermediateSize  I, the SwiGLU feed-forward width ({@code intermediate_size})
 * @param layers            decoder layers ({@code num_hidden_layers})
 * @param heads             query heads H ({@code num_attention_heads})
 * @param kvHeads           key/value heads G, dividing H ({@code num_key_value_heads}, default H)
 * @param headDim           d ({@code head_dim}, default E / H); even, as RoPE turns feature pairs
 * @param rmsNormEps        the ε of every RMSNorm ({@code rms_norm_eps}, default 1e-6 as in transformers)
 * @param ropeTheta         the RoPE base θ ({@code rope_theta}, default 10000)
 * @param vocabSize         rows of the embedding table ({@code vocab_size})
 * @param maxPositions      the context the model was trained for ({@code max_position_embeddings},
 *                          default 2048); generation stops there
 * @param tieWordEmbeddings whether the output layer is the embedding table ({@code tie_word_embeddings},
 *                          default false: a separate {@code lm_head.weight})
 * @param attentionBias     whether Q, K, V and O have biases ({@code attention_bias}, default false)
 * @param bosTokenId        the id every prompt starts with ({@code bos_token_id}), −1 for none
 * @param eosTokenIds       ids that end a generation ({@code eos_token_id}: one id or a list), possibly empty
 *
 * <p>{@link #read} refuses, naming the key and its value, what this implementation does not
 * compute: another {@code hidden_act} than silu, {@code rope_scaling}, {@code mlp_bias}, a
 * {@code sliding_window} shorter than the context, and {@code model_type}s other than
 * {@code llama} and {@code mistral}. Unknown keys are ignored, as transformers ignores them.
 */
public record LlamaConfig(int hiddenSize, int intermediateSize, int layers, int heads, int kvHeads, int headDim,
                          double rmsNormEps, double ropeTheta, int vocabSize, int maxPositions, boolean tieWordEmbeddings,
                          boolean attentionBias, int bosTokenId, int[] eosTokenIds) {
    /** {@code model_type}s whose forward pass is the one computed here. */
    public static final List<String> MODEL_TYPES = List.of("llama", "mistral");

    public LlamaConfig {
        positive("hidden_size", hiddenSize);
        positive("intermediate_size", intermediateSize);
        positive("num_hidden_layers", layers);
        positive("num_attention_heads", heads);
        positive("num_key_value_heads", kvHeads);
        positive("head_dim", headDim);
        positive("vocab_size", vocabSize);
        positive("max_position_embeddings", maxPositions);
        if (heads % kvHeads != 0) {
            throw new IllegalArgumentException("num_key_value_heads (" + kvHeads + ") must divide num_attention_heads (" + heads + ")");
        }
        if (headDim % 2 != 0) {
            throw new IllegalArgumentException("head_dim (" + headDim + ") must be even: RoPE turns pairs of features");
        }
        if (!(rmsNormEps > 0) || !Double.isFinite(rmsNormEps)) {
            throw new IllegalArgumentException("rms_norm_eps must be finite and > 0, got " + rmsNormEps);
        }
        if (!(ropeTheta > 1) || !Double.isFinite(ropeTheta)) {
            throw new IllegalArgumentException("rope_theta must be finite and > 1, got " + ropeTheta);
        }
        if (bosTokenId < -1 || bosTokenId >= vocabSize) {
            throw new IllegalArgumentException("bos_token_id (" + bosTokenId + ") is outside the vocabulary of " + vocabSize);
        }
        eosTokenIds = eosTokenIds == null ? new int[0] : eosTokenIds.clone();
        for (int eos : eosTokenIds) {
            if (eos < 0 || eos >= vocabSize) {
                throw new IllegalArgumentException("eos_token_id " + eos + " is outside the vocabulary of " + vocabSize);
            }
        }
    }

    private static void positive(String key, int value) {
        if (value < 1) throw new IllegalArgumentException(key + " must be >= 1, got " + value);
    }

    /** The attention of every layer: E, H, G, d, scale 1/√d, RoPE θ over all d features in the halves layout. */
    public AttentionConfig attention() {
        return AttentionConfig.of(hiddenSize, heads, kvHeads, headDim)
                .withRope(new RotaryEmbedding(ropeTheta, headDim, RotaryEmbedding.Layout.HALVES));
    }

    /** Whether {@code id} ends a generation. */
    public boolean isEos(int id) {
        for (int e : eosTokenIds) if (e == id) return true;
        return false;
    }

    @Override
    public int[] eosTokenIds() {
        return eosTokenIds.clone();
    }

    /** Parameters, the embedding table counted once when it is tied. */
    public long parameterCount() {
        long E = hiddenSize, I = intermediateSize;
        long attention = attention().parameterCount(attentionBias);
        long perLayer = attention + 3 * E * I + 2 * E;
        return layers * perLayer + E + (long) vocabSize * E * (tieWordEmbeddings ? 1 : 2);
    }

    // ---- reading config.json ----

    /** Reads a Hugging Face {@code config.json}. */
    public static LlamaConfig read(Path file) throws IOException {
        if (!Files.isRegularFile(file)) throw new TensorFormatException(file + ": no such config file");
        try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            return read(r, file.toString());
        }
    }

    /** Reads a {@code config.json} from a stream (closed by the caller); {@code source} names it in messages. */
    public static LlamaConfig read(InputStream in, String source) throws IOException {
        return read(new InputStreamReader(in, StandardCharsets.UTF_8), source);
    }

    static LlamaConfig read(Reader reader, String source) throws IOException {
        JsonElement root;
        try {
            root = JsonParser.parseReader(reader);
        } catch (JsonParseException e) {
            throw new TensorFormatException(source + ": not valid JSON: " + e.getMessage(), e);
        }
        if (!root.isJsonObject()) throw new TensorFormatException(source + ": a config.json must be a JSON object, found " + kind(root));
        return fromJson(root.getAsJsonObject(), source);
    }

    static LlamaConfig fromJson(JsonObject o, String source) throws TensorFormatException {
        Fields f = new Fields(o, source);
        String modelType = f.string("model_type", null);
        if (modelType != null && !MODEL_TYPES.contains(modelType)) {
            throw f.error("model_type '" + modelType + "' is not one this loader computes (" + String.join(", ", MODEL_TYPES) + ")");
        }
        String act = f.string("hidden_act", "silu");
        if (!act.equals("silu")) throw f.error("hidden_act '" + act + "' is not supported: the feed-forward is SwiGLU, silu(gate)·up");
        if (o.has("rope_scaling") && !o.get("rope_scaling").isJsonNull()) {
            throw f.error("rope_scaling " + o.get("rope_scaling") + " is not supported (only plain RoPE with rope_theta)");
        }
        if (f.bool("mlp_bias", false)) throw f.error("mlp_bias true is not supported (the feed-forward has no biases here)");
        int hidden = f.integer("hidden_size", null), heads = f.integer("num_attention_heads", null);
        int maxPositions = f.integer("max_position_embeddings", 2048);
        if (o.has("sliding_window") && !o.get("sliding_window").isJsonNull()) {
            int window = f.integer("sliding_window", null);
            if (window < maxPositions) {
                throw f.error("sliding_window " + window + " (shorter than max_position_embeddings " + maxPositions
                        + ") is not supported: attention here sees the whole context");
            }
        }
        if (!o.has("head_dim") && heads > 0 && hidden % heads != 0) {
            throw f.error("num_attention_heads (" + heads + ") must divide hidden_size (" + hidden + ") when head_dim is not given");
        }
        int headDim = f.integer("head_dim", heads > 0 ? hidden / heads : 1);
        int vocab = f.integer("vocab_size", null);
        try {
            return new LlamaConfig(hidden, f.integer("intermediate_size", null), f.integer("num_hidden_layers", null), heads,
                    f.integer("num_key_value_heads", heads), headDim, f.number("rms_norm_eps", 1e-6),
                    f.number("rope_theta", 10000.0), vocab, maxPositions, f.bool("tie_word_embeddings", false),
                    f.bool("attention_bias", false), f.optionalInteger("bos_token_id", -1), f.integers("eos_token_id"));
        } catch (IllegalArgumentException e) {
            throw f.error(e.getMessage());
        }
    }

    private static String kind(JsonElement e) {
        if (e == null || e.isJsonNull()) return "null";
        if (e.isJsonObject()) return "an object";
        if (e.isJsonArray()) return "an array " + e;
        JsonPrimitive p = e.getAsJsonPrimitive();
        return p.isString() ? "the string " + p : p.isBoolean() ? "the boolean " + p : "the number " + p;
    }

    /** Typed reads of the config's keys, with messages that name the file, the key and what was found. */
    private record Fields(JsonObject o, String source) {
        TensorFormatException error(String message) {
            return new TensorFormatException(source + ": " + message);
        }

        private JsonElement get(String key) throws TensorFormatException {
            JsonElement e = o.get(key);
            if (e == null) throw error("missing required key '" + key + "'");
            return e;
        }

        int integer(String key, Integer fallback) throws TensorFormatException {
            if (!o.has(key) || o.get(key).isJsonNull()) {
                if (fallback == null) throw error("missing required key '" + key + "'");
                return fallback;
            }
            return toInt(key, get(key));
        }

        int optionalInteger(String key, int none) throws TensorFormatException {
            return !o.has(key) || o.get(key).isJsonNull() ? none : toInt(key, o.get(key));
        }

        private int toInt(String key, JsonElement e) throws TensorFormatException {
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) throw error(key + " must be an integer, found " + kind(e));
            BigDecimal v = e.getAsBigDecimal();
            try {
                return v.intValueExact();
            } catch (ArithmeticException notAnInt) {
                throw error(key + " must be an integer, found " + v);
            }
        }

        /** One id or a list of ids (transformers allows both for eos_token_id); none when absent or null. */
        int[] integers(String key) throws TensorFormatException {
            if (!o.has(key) || o.get(key).isJsonNull()) return new int[0];
            JsonElement e = o.get(key);
            if (!e.isJsonArray()) return new int[]{toInt(key, e)};
            int[] ids = new int[e.getAsJsonArray().size()];
            for (int i = 0; i < ids.length; i++) ids[i] = toInt(key + "[" + i + "]", e.getAsJsonArray().get(i));
            return ids;
        }

        double number(String key, double fallback) throws TensorFormatException {
            if (!o.has(key) || o.get(key).isJsonNull()) return fallback;
            JsonElement e = o.get(key);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) throw error(key + " must be a number, found " + kind(e));
            return e.getAsDouble();
        }

        boolean bool(String key, boolean fallback) throws TensorFormatException {
            if (!o.has(key) || o.get(key).isJsonNull()) return fallback;
            JsonElement e = o.get(key);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean()) throw error(key + " must be true or false, found " + kind(e));
            return e.getAsBoolean();
        }

        String string(String key, String fallback) throws TensorFormatException {
            if (!o.has(key) || o.get(key).isJsonNull()) return fallback;
            JsonElement e = o.get(key);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) throw error(key + " must be a string, found " + kind(e));
            return e.getAsString();
        }
    }

    @Override
    public boolean equals(Object other) {
        return other instanceof LlamaConfig c && c.hiddenSize == hiddenSize && c.intermediateSize == intermediateSize
                && c.layers == layers && c.heads == heads && c.kvHeads == kvHeads && c.headDim == headDim
                && c.rmsNormEps == rmsNormEps && c.ropeTheta == ropeTheta && c.vocabSize == vocabSize
                && c.maxPositions == maxPositions && c.tieWordEmbeddings == tieWordEmbeddings
                && c.attentionBias == attentionBias && c.bosTokenId == bosTokenId && Arrays.equals(c.eosTokenIds, eosTokenIds);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(new double[]{hiddenSize, intermediateSize, layers, heads, kvHeads, headDim, rmsNormEps, ropeTheta,
                vocabSize, maxPositions, tieWordEmbeddings ? 1 : 0, attentionBias ? 1 : 0, bosTokenId}) * 31 + Arrays.hashCode(eosTokenIds);
    }

    @Override
    public String toString() {
        return "Llama(hidden " + hiddenSize + ", intermediate " + intermediateSize + ", " + layers + " layers, " + heads
                + " heads / " + kvHeads + " kv heads of " + headDim + ", vocab " + vocabSize + ", context " + maxPositions
                + ", rope θ " + ropeTheta + ", rms eps " + rmsNormEps + (tieWordEmbeddings ? ", tied embeddings" : "")
                + (attentionBias ? ", attention biases" : "") + ")";
    }
}
