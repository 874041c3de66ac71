package dev.headroom.model.llama;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.io.SafeTensors;
import dev.headroom.io.TensorFormatException;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The parameters of a Llama-style decoder under Hugging Face's key names, borrowed from tensors
 * that the caller's arena owns (a {@code .safetensors} file copied or mapped, see
 * {@link SafeTensors}). Matrices are PyTorch's Linear layout, (out_features, in_features):
 * <pre>
 *   model.embed_tokens.weight                          (V, E)
 *   model.layers.N.input_layernorm.weight              (E)
 *   model.layers.N.self_attn.q_proj.weight             (H·d, E)      (+ .bias (H·d) with attention_bias)
 *   model.layers.N.self_attn.k_proj.weight             (G·d, E)      (+ .bias)
 *   model.layers.N.self_attn.v_proj.weight             (G·d, E)      (+ .bias)
 *   model.layers.N.self_attn.o_proj.weight             (E, H·d)      (+ .bias (E))
 *   model.layers.N.post_attention_layernorm.weight     (E)
 *   model.layers.N.mlp.gate_proj.weight                (I, E)
 *   model.layers.N.mlp.up_proj.weight                  (I, E)
 *   model.layers.N.mlp.down_proj.weight                (E, I)
 *   model.norm.weight                                  (E)
 *   lm_head.weight                                     (V, E)        absent when tie_word_embeddings
 * </pre>
 *
 * <p><b>RoPE layout.</b> Hugging Face's conversion script ({@code convert_llama_weights_to_hf.py})
 * permutes the rows of every {@code q_proj} and {@code k_proj} head so that its {@code rotate_half}
 * applies: feature i of a head turns with feature i + d/2 ({@link
 * dev.headroom.attention.RotaryEmbedding.Layout#HALVES}). Checkpoints under these names are read
 * in that layout; Meta's original checkpoints (adjacent pairs, {@code Layout.PAIRS}) use other key
 * names and are not read here.
 *
 * <p>Loading is strict, as PyTorch's {@code load_state_dict(strict=True)}: a missing key, a shape
 * that does not match the config, or a key this model does not use (a layer past
 * {@code num_hidden_layers}, a bias with {@code attention_bias} false) is refused with a message
 * that names the key, the shape found and the shape expected with the config values it comes
 * from. The only keys skipped are {@code rotary_emb.inv_freq} buffers (recomputed from
 * {@code rope_theta}) and, with tied embeddings, an {@code lm_head.weight} (transformers ties it
 * to the embeddings on load, whatever the file holds).
 */
public final class LlamaWeights {
    private static final Pattern LAYER_KEY = Pattern.compile("model\\.layers\\.(\\d+)\\.(.+)");

    /**
     * One decoder layer.
     *
     * @param inputNorm          RMSNorm weight before attention, (E)
     * @param attention          W_Q, W_K, W_V, W_O (and biases) with the layer's {@link LlamaConfig#attention()}
     * @param postAttentionNorm  RMSNorm weight before the feed-forward, (E)
     * @param gate               W_gate, (I, E)
     * @param up                 W_up, (I, E)
     * @param down               W_down, (E, I)
     */
    public record Layer(Tensor inputNorm, AttentionWeights attention, Tensor postAttentionNorm, Matrix gate, Matrix up,
                        Matrix down) {}

    private final LlamaConfig config;
    /** (V, E): row t is token t's embedding. */
    private final Tensor embedTokens;
    /** (E): the final RMSNorm's weight. */
    private final Tensor finalNorm;
    /** (V, E): the output layer, logits = final-normed hidden · lmHeadᵀ; the same tensor as embedTokens when tied. */
    private final Tensor lmHead;
    private final List<Layer> layers;

    private LlamaWeights(LlamaConfig config, Tensor embedTokens, Tensor finalNorm, Tensor lmHead, List<Layer> layers) {
        this.config = config;
        this.embedTokens = embedTokens;
        this.finalNorm = finalNorm;
        this.lmHead = lmHead;
        this.layers = Collections.unmodifiableList(layers);
    }

    public LlamaConfig config() {
        return config;
    }

    public Tensor embedTokens() {
        return embedTokens;
    }

    public Tensor finalNorm() {
        return finalNorm;
    }

    public Tensor lmHead() {
        return lmHead;
    }

    public List<Layer> layers() {
        return layers;
    }

    /**
     * Reads {@code file} (.safetensors) into {@code arena} ({@link SafeTensors.Load#COPY}) or maps
     * it, and checks it against {@code config}; problems are {@link TensorFormatException}s that
     * name the file.
     */
    public static LlamaWeights load(Path file, LlamaConfig config, Arena arena, SafeTensors.Load load) throws IOException {
        if (!file.getFileName().toString().endsWith(".safetensors")) {
            throw new TensorFormatException(file + ": Llama weights must be a .safetensors file");
        }
        Map<String, Tensor> sd = SafeTensors.open(file, arena, load);
        try {
            return fromStateDict(config, sd);
        } catch (IllegalArgumentException e) {
            throw new TensorFormatException(file + ": " + e.getMessage(), e);
        }
    }

    /** The weights from a state dict under Hugging Face's names (see the class comment), checked against {@code config}. */
    public static LlamaWeights fromStateDict(LlamaConfig config, Map<String, Tensor> sd) {
        checkKeys(config, sd);
        int E = config.hiddenSize(), I = config.intermediateSize(), V = config.vocabSize();
        int H = config.heads(), G = config.kvHeads(), d = config.headDim();
        String e = "hidden_size " + E;
        Tensor embed = tensor(sd, "model.embed_tokens.weight", new int[]{V, E}, "vocab_size " + V + ", " + e);
        Tensor norm = tensor(sd, "model.norm.weight", new int[]{E}, e);
        Tensor head = config.tieWordEmbeddings() ? embed
                : tensor(sd, "lm_head.weight", new int[]{V, E}, "vocab_size " + V + ", " + e + " (tie_word_embeddings is false)");
        String q = "num_attention_heads " + H + " × head_dim " + d, kv = "num_key_value_heads " + G + " × head_dim " + d;
        String i = "intermediate_size " + I;
        List<Layer> layers = new ArrayList<>();
        AttentionConfig attentionConfig = config.attention(); // one for every layer, so its RoPE table is computed once
        for (int l = 0; l < config.layers(); l++) {
            String p = "model.layers." + l + ".";
            Tensor inputNorm = tensor(sd, p + "input_layernorm.weight", new int[]{E}, e);
            String a = p + "self_attn.";
            tensor(sd, a + "q_proj.weight", new int[]{H * d, E}, q + ", " + e);
            tensor(sd, a + "k_proj.weight", new int[]{G * d, E}, kv + ", " + e);
            tensor(sd, a + "v_proj.weight", new int[]{G * d, E}, kv + ", " + e);
            tensor(sd, a + "o_proj.weight", new int[]{E, H * d}, e + ", " + q);
            if (config.attentionBias()) {
                tensor(sd, a + "q_proj.bias", new int[]{H * d}, q);
                tensor(sd, a + "k_proj.bias", new int[]{G * d}, kv);
                tensor(sd, a + "v_proj.bias", new int[]{G * d}, kv);
                tensor(sd, a + "o_proj.bias", new int[]{E}, e);
            }
            AttentionWeights attention = AttentionWeights.fromStateDict(attentionConfig, sd, a);
            Tensor postNorm = tensor(sd, p + "post_attention_layernorm.weight", new int[]{E}, e);
            Matrix gate = tensor(sd, p + "mlp.gate_proj.weight", new int[]{I, E}, i + ", " + e).matrix();
            Matrix up = tensor(sd, p + "mlp.up_proj.weight", new int[]{I, E}, i + ", " + e).matrix();
            Matrix down = tensor(sd, p + "mlp.down_proj.weight", new int[]{E, I}, e + ", " + i).matrix();
            layers.add(new Layer(inputNorm, attention, postNorm, gate, up, down));
        }
        return new LlamaWeights(config, embed, norm, head, layers);
    }

    /** Refuses keys this model does not use (skipping the recomputed RoPE buffers and a tied lm_head). */
    private static void checkKeys(LlamaConfig config, Map<String, Tensor> sd) {
        List<String> unexpected = new ArrayList<>();
        for (String key : new TreeSet<>(sd.keySet())) {
            if (key.endsWith("rotary_emb.inv_freq")) continue;
            if (key.equals("lm_head.weight") && config.tieWordEmbeddings()) continue;
            if (!expected(config, key)) unexpected.add(key);
        }
        if (unexpected.isEmpty()) return;
        String first = unexpected.getFirst();
        Matcher m = LAYER_KEY.matcher(first);
        String why = "";
        if (m.matches() && Integer.parseInt(m.group(1)) >= config.layers()) {
            why = " (layer " + m.group(1) + ", but num_hidden_layers is " + config.layers() + ")";
        } else if (first.endsWith(".bias") && !config.attentionBias()) {
            why = " (attention_bias is false)";
        }
        throw new IllegalArgumentException(unexpected.size() + " unexpected key" + (unexpected.size() == 1 ? "" : "s") + ", first '"
                + first + "' " + shape(sd.get(first)) + why + (unexpected.size() > 1 ? "; all: " + abbreviate(unexpected) : ""));
    }

    private static boolean expected(LlamaConfig config, String key) {
        if (key.equals("model.embed_tokens.weight") || key.equals("model.norm.weight")) return true;
        if (key.equals("lm_head.weight")) return !config.tieWordEmbeddings();
        Matcher m = LAYER_KEY.matcher(key);
        if (!m.matches()) return false;
        String layer = m.group(1);
        if (layer.length() > 9 || Integer.parseInt(layer) >= config.layers() || (layer.length() > 1 && layer.startsWith("0"))) return false;
        return switch (m.group(2)) {
            case "input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                 "self_attn.v_proj.weight", "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                 "mlp.down_proj.weight" -> true;
            case "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias", "self_attn.o_proj.bias" ->
                    config.attentionBias();
            default -> false;
        };
    }

    private static String abbreviate(List<String> keys) {
        return keys.size() <= 8 ? keys.toString() : keys.subList(0, 8) + " and " + (keys.size() - 8) + " more";
    }

    private static Tensor tensor(Map<String, Tensor> sd, String key, int[] shape, String from) {
        Tensor t = sd.get(key);
        if (t == null) {
            throw new IllegalArgumentException("missing '" + key + "' " + shape(shape) + " (from " + from + ")");
        }
        if (!java.util.Arrays.equals(t.shape(), shape)) {
            throw new IllegalArgumentException("'" + key + "' has shape " + t.shapeString() + ", expected " + shape(shape)
                    + " from " + from);
        }
        return t;
    }

    private static String shape(Tensor t) {
        return t == null ? "" : t.shapeString();
    }

    private static String shape(int[] s) {
        return java.util.Arrays.toString(s).replace('[', '(').replace(']', ')'); // as Tensor.shapeString
    }

    @Override
    public String toString() {
        return "LlamaWeights(" + config + ")";
    }
}
