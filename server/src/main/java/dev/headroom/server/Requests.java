package dev.headroom.server;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import dev.headroom.generate.Sampling;
import dev.headroom.model.llama.ByteTokenizer;

import java.io.StringReader;
import java.math.BigDecimal;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.ByteBuffer;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;

/**
 * The OpenAI request bodies this server reads, checked field by field: every value a client can
 * send either becomes a valid request or an {@link ApiException} naming the field (4xx), never
 * an exception of the engine. Fields the server does not know are ignored (as OpenAI-compatible
 * servers do); fields it knows but does not implement are refused unless they hold their default.
 */
final class Requests {
    /** OpenAI's default for {@code max_tokens} of /v1/completions (vLLM's too). */
    static final int DEFAULT_MAX_TOKENS = 16;
    /** OpenAI's limits: stop strings per request, inputs per embeddings call. */
    static final int MAX_STOPS = 4, MAX_EMBEDDING_INPUTS = 2048;
    /** Prompts per completions call: each is a sequence of its own. */
    static final int MAX_PROMPTS = 64;
    private static final SecureRandom SEEDS = new SecureRandom();

    private Requests() {}

    /**
     * A parsed /v1/completions request.
     *
     * @param prompts      token ids per prompt (text is encoded with {@code <bos>}; token arrays are taken as given)
     * @param seeded       whether the client gave a seed (else one was drawn)
     */
    record Completion(String model, List<int[]> prompts, int maxTokens, Sampling sampling, boolean seeded, List<String> stops,
                      boolean stream, boolean includeUsage) {}

    /** A parsed /v1/embeddings request; {@code base64}: the embeddings as little-endian float32 bytes in base64. */
    record Embeddings(String model, List<String> inputs, boolean base64) {}

    /** The body as a JSON object, or 400. */
    static JsonObject object(byte[] body) {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(body)).toString();
        } catch (CharacterCodingException e) {
            throw ApiException.invalid("the request body is not valid UTF-8", null);
        }
        if (text.isBlank()) throw ApiException.invalid("the request body is empty; send a JSON object", null);
        JsonElement root;
        try {
            JsonReader reader = new JsonReader(new StringReader(text));
            reader.setStrictness(Strictness.STRICT);
            root = JsonParser.parseReader(reader);
            if (reader.peek() != com.google.gson.stream.JsonToken.END_DOCUMENT) throw new JsonParseException("text after the JSON value");
        } catch (JsonParseException | java.io.IOException | IllegalStateException e) {
            throw ApiException.invalid("the request body is not valid JSON: " + rootMessage(e), null);
        }
        if (!root.isJsonObject()) throw ApiException.invalid("the request body must be a JSON object, got " + kind(root), null);
        return root.getAsJsonObject();
    }

    static Completion completion(JsonObject o, String servedModel, ByteTokenizer tokenizer) {
        String model = model(o, servedModel);
        List<int[]> prompts = prompts(o.get("prompt"), tokenizer);
        int maxTokens = DEFAULT_MAX_TOKENS;
        if (present(o, "max_tokens")) {
            long m = integer(o, "max_tokens");
            if (m < 1) throw ApiException.invalid("max_tokens must be at least 1, got " + m, "max_tokens");
            maxTokens = (int) Math.min(m, Integer.MAX_VALUE);
        }
        double temperature = present(o, "temperature") ? number(o, "temperature") : 1.0;
        if (!(temperature >= 0 && temperature <= 2)) {
            throw ApiException.invalid("temperature must be between 0 and 2 (0: greedy), got " + temperature, "temperature");
        }
        double topP = present(o, "top_p") ? number(o, "top_p") : 1.0;
        if (!(topP > 0 && topP <= 1)) throw ApiException.invalid("top_p must be in (0, 1], got " + topP, "top_p");
        long topK = present(o, "top_k") ? integer(o, "top_k") : 0;
        if (topK < -1) throw ApiException.invalid("top_k must be >= 1, or 0 or -1 for all tokens; got " + topK, "top_k");
        boolean seeded = present(o, "seed");
        long seed = seeded ? integer(o, "seed") : SEEDS.nextLong();
        List<String> stops = stops(o.get("stop"));
        boolean stream = present(o, "stream") && bool(o, "stream");
        boolean includeUsage = false;
        if (present(o, "stream_options")) {
            if (!stream) throw ApiException.invalid("stream_options is only allowed with stream: true", "stream_options");
            JsonElement so = o.get("stream_options");
            if (!so.isJsonObject()) throw ApiException.invalid("stream_options must be an object, got " + kind(so), "stream_options");
            includeUsage = present(so.getAsJsonObject(), "include_usage") && bool(so.getAsJsonObject(), "include_usage");
        }
        unsupported(o, "n", new JsonPrimitive(1), "n: this server returns one completion per prompt");
        unsupported(o, "best_of", new JsonPrimitive(1), "best_of");
        unsupported(o, "echo", new JsonPrimitive(false), "echo");
        unsupported(o, "logprobs", null, "logprobs");
        unsupported(o, "suffix", null, "suffix");
        unsupported(o, "presence_penalty", new JsonPrimitive(0), "presence_penalty");
        unsupported(o, "frequency_penalty", new JsonPrimitive(0), "frequency_penalty");
        if (present(o, "logit_bias") && !(o.get("logit_bias").isJsonObject() && o.getAsJsonObject("logit_bias").isEmpty())) {
            throw ApiException.invalid("logit_bias is not supported by this server", "logit_bias");
        }
        Sampling sampling = temperature == 0 ? Sampling.greedy() : new Sampling(temperature, (int) Math.max(0, Math.min(topK, Integer.MAX_VALUE)), topP, seed);
        return new Completion(model, prompts, maxTokens, sampling, seeded, stops, stream, includeUsage);
    }

    static Embeddings embeddings(JsonObject o, String servedModel, int dimensions) {
        String model = model(o, servedModel);
        JsonElement in = o.get("input");
        if (in == null || in.isJsonNull()) throw ApiException.invalid("you must provide input: a string or an array of strings", "input");
        List<String> inputs = new ArrayList<>();
        if (in.isJsonPrimitive() && in.getAsJsonPrimitive().isString()) {
            inputs.add(in.getAsString());
        } else if (in.isJsonArray()) {
            JsonArray a = in.getAsJsonArray();
            if (a.isEmpty()) throw ApiException.invalid("input must not be an empty array", "input");
            if (a.size() > MAX_EMBEDDING_INPUTS) {
                throw ApiException.invalid("input has " + a.size() + " items; at most " + MAX_EMBEDDING_INPUTS + " per request", "input");
            }
            for (JsonElement e : a) {
                if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isString())) {
                    throw ApiException.invalid("input must be a string or an array of strings (" + model + " reads text, not token ids); "
                            + "found " + kind(e), "input");
                }
                inputs.add(e.getAsString());
            }
        } else {
            throw ApiException.invalid("input must be a string or an array of strings, got " + kind(in), "input");
        }
        for (int i = 0; i < inputs.size(); i++) {
            if (inputs.get(i).isEmpty()) throw ApiException.invalid("input " + i + " is an empty string", "input");
        }
        boolean base64 = false;
        if (present(o, "encoding_format")) {
            String f = string(o, "encoding_format");
            if (f.equals("base64")) base64 = true;
            else if (!f.equals("float")) throw ApiException.invalid("encoding_format must be float or base64, got '" + f + "'", "encoding_format");
        }
        if (present(o, "dimensions") && integer(o, "dimensions") != dimensions) {
            throw ApiException.invalid(model + " has " + dimensions + " dimensions; dimensions " + o.get("dimensions") + " is not supported",
                    "dimensions");
        }
        return new Embeddings(model, inputs, base64);
    }

    // ---- fields ---------------------------------------------------------------------------

    private static String model(JsonObject o, String served) {
        if (!present(o, "model")) throw ApiException.invalid("you must provide a model parameter (this endpoint serves '" + served + "')", "model");
        String m = string(o, "model");
        if (!m.equals(served)) {
            throw ApiException.notFound("the model '" + m + "' does not exist at this endpoint; it serves '" + served + "'", "model",
                    "model_not_found");
        }
        return m;
    }

    private static List<int[]> prompts(JsonElement p, ByteTokenizer tokenizer) {
        if (p == null || p.isJsonNull()) throw ApiException.invalid("you must provide a prompt: a string, an array of strings, "
                + "an array of token ids or an array of such arrays", "prompt");
        List<int[]> out = new ArrayList<>();
        if (p.isJsonPrimitive() && p.getAsJsonPrimitive().isString()) {
            out.add(tokenizer.encode(p.getAsString()));
        } else if (p.isJsonArray()) {
            JsonArray a = p.getAsJsonArray();
            if (a.isEmpty()) throw ApiException.invalid("prompt must not be an empty array", "prompt");
            JsonElement first = a.get(0);
            if (first.isJsonPrimitive() && first.getAsJsonPrimitive().isNumber()) {
                out.add(tokenIds(a, tokenizer));
            } else {
                if (a.size() > MAX_PROMPTS) {
                    throw ApiException.invalid("prompt has " + a.size() + " prompts; at most " + MAX_PROMPTS + " per request", "prompt");
                }
                for (JsonElement e : a) {
                    if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isString()) out.add(tokenizer.encode(e.getAsString()));
                    else if (e.isJsonArray()) out.add(tokenIds(e.getAsJsonArray(), tokenizer));
                    else throw ApiException.invalid("prompt items must all be strings or all arrays of token ids; found " + kind(e), "prompt");
                }
            }
        } else {
            throw ApiException.invalid("prompt must be a string or an array, got " + kind(p), "prompt");
        }
        for (int[] ids : out) if (ids.length == 0) throw ApiException.invalid("a prompt must have at least one token", "prompt");
        return out;
    }

    private static int[] tokenIds(JsonArray a, ByteTokenizer tokenizer) {
        int[] ids = new int[a.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonElement e = a.get(i);
            Long v = e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber() ? exactLong(e.getAsJsonPrimitive()) : null;
            if (v == null || v < 0 || v >= tokenizer.vocabSize()) {
                throw ApiException.invalid("prompt token " + i + " is " + e + "; token ids are integers in [0, " + tokenizer.vocabSize() + ")",
                        "prompt");
            }
            ids[i] = (int) (long) v;
        }
        return ids;
    }

    private static List<String> stops(JsonElement s) {
        if (s == null || s.isJsonNull()) return List.of();
        List<String> out = new ArrayList<>();
        if (s.isJsonPrimitive() && s.getAsJsonPrimitive().isString()) {
            out.add(s.getAsString());
        } else if (s.isJsonArray()) {
            for (JsonElement e : s.getAsJsonArray()) {
                if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isString())) {
                    throw ApiException.invalid("stop must be a string or an array of strings; found " + kind(e), "stop");
                }
                out.add(e.getAsString());
            }
        } else {
            throw ApiException.invalid("stop must be a string or an array of strings, got " + kind(s), "stop");
        }
        if (out.size() > MAX_STOPS) throw ApiException.invalid("stop has " + out.size() + " strings; at most " + MAX_STOPS, "stop");
        for (String x : out) if (x.isEmpty()) throw ApiException.invalid("stop strings must not be empty", "stop");
        return out;
    }

    /** Refuses {@code name} unless it is absent, null, or equal to {@code allowed} (null: only absent or null). */
    private static void unsupported(JsonObject o, String name, JsonPrimitive allowed, String what) {
        if (!present(o, name)) return;
        JsonElement v = o.get(name);
        if (allowed != null && v.isJsonPrimitive()) {
            JsonPrimitive p = v.getAsJsonPrimitive();
            if (p.isNumber() && allowed.isNumber() && p.getAsBigDecimal().compareTo(allowed.getAsBigDecimal()) == 0) return;
            if (p.isBoolean() && allowed.isBoolean() && p.getAsBoolean() == allowed.getAsBoolean()) return;
        }
        throw ApiException.invalid(what + (what.contains(":") ? "" : " is not supported by this server") + " (got " + v + ")", name);
    }

    private static boolean present(JsonObject o, String name) {
        return o.has(name) && !o.get(name).isJsonNull();
    }

    private static String string(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isString())) throw ApiException.invalid(name + " must be a string, got " + kind(e), name);
        return e.getAsString();
    }

    private static boolean bool(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isBoolean())) throw ApiException.invalid(name + " must be true or false, got " + kind(e), name);
        return e.getAsBoolean();
    }

    private static double number(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber())) throw ApiException.invalid(name + " must be a number, got " + kind(e), name);
        return e.getAsDouble();
    }

    private static long integer(JsonObject o, String name) {
        JsonElement e = o.get(name);
        Long v = e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber() ? exactLong(e.getAsJsonPrimitive()) : null;
        if (v == null) throw ApiException.invalid(name + " must be an integer, got " + (e.isJsonPrimitive() ? e.toString() : kind(e)), name);
        return v;
    }

    /** The number as a long if it is an integer within long's range (1.0 counts, 1.5 and 1e30 do not), else null. */
    private static Long exactLong(JsonPrimitive p) {
        try {
            BigDecimal d = p.getAsBigDecimal();
            return d.stripTrailingZeros().scale() <= 0 ? d.longValueExact() : null;
        } catch (ArithmeticException | NumberFormatException e) {
            return null;
        }
    }

    private static String kind(JsonElement e) {
        if (e == null || e.isJsonNull()) return "null";
        if (e.isJsonObject()) return "an object";
        if (e.isJsonArray()) return "an array";
        JsonPrimitive p = e.getAsJsonPrimitive();
        return p.isString() ? "a string" : p.isBoolean() ? "a boolean" : "the number " + p;
    }

    /** Gson's message without its advice to the programmer: what is wrong and where ("at line 1 column 3 path $."). */
    private static String rootMessage(Throwable e) {
        while (e.getCause() != null && e.getCause() != e) e = e.getCause();
        String m = e.getMessage();
        if (m == null) return e.getClass().getSimpleName();
        m = m.replaceAll("\\s*See https?://\\S+", "").replace("Use JsonReader.setStrictness(Strictness.LENIENT) to accept malformed JSON",
                "malformed JSON");
        return m.endsWith(".") ? m.substring(0, m.length() - 1) : m;
    }
}
