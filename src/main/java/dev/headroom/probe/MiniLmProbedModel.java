package dev.headroom.probe;

import dev.headroom.memory.TrackedArena;
import dev.headroom.model.ForwardObserver;
import dev.headroom.model.Models;
import dev.headroom.model.minilm.EncoderWorkspace;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.model.minilm.MiniLmWeights;
import dev.headroom.model.tokenizer.TokenBatch;
import dev.headroom.model.tokenizer.WordPieceTokenizer;
import dev.headroom.tensor.Tensor;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * all-MiniLM-L6-v2 (or an untrained encoder of its shapes) as a {@link ProbedModel}.
 *
 * <p><b>Words to tokens.</b> Each word is cut into WordPieces on its own and the pieces are joined
 * as [CLS] pieces [SEP]: the same ids as tokenizing the sentence with spaces between the words,
 * because the tokenizer splits at white space first. A word's label goes on its first piece. Brown
 * writes double quotes as {@code ``} and {@code ''}; they are given to the model as {@code "}, the
 * character they stand for (the model never saw TeX quotes in training). Sentences are truncated to
 * {@value #MAX_TOKENS} tokens, the model's position table, rather than the tokenizer's 128 (the
 * length the model was trained at), so that no word goes unscored: the 57,340 Brown sentences make
 * 1,401,510 tokens with [CLS] and [SEP], the longest 235, and 25 of them are longer than 128. Words
 * cut away by truncation, if any, get no token and are not scored.
 *
 * <p>One {@link EncoderWorkspace} serves every call: this object is for one thread at a time.
 */
public final class MiniLmProbedModel implements ProbedModel {
    public static final int MAX_TOKENS = 512;

    private final String name;
    private final MiniLmEncoder encoder;
    private final WordPieceTokenizer tokenizer;
    private final EncoderWorkspace workspace = new EncoderWorkspace();
    /** Owns the random weights of {@link #random}; null for the trained model, whose encoder owns its arena. */
    private final TrackedArena ownedArena;
    /** Whether {@link #close} closes the encoder: false for {@link #over}, whose caller owns it. */
    private final boolean ownsEncoder;
    /** (B, n, E) for the last hidden state, grown to the largest batch. */
    private TrackedArena outputArena;
    private Tensor output;

    private MiniLmProbedModel(String name, MiniLmEncoder encoder, TrackedArena ownedArena) {
        this(name, encoder, ownedArena, true);
    }

    private MiniLmProbedModel(String name, MiniLmEncoder encoder, TrackedArena ownedArena, boolean ownsEncoder) {
        this.ownsEncoder = ownsEncoder;
        this.name = name;
        this.encoder = encoder;
        this.tokenizer = encoder.tokenizer().withMaxLength(Math.min(MAX_TOKENS, encoder.config().maxPositions()));
        this.ownedArena = ownedArena;
    }

    /** The trained all-MiniLM-L6-v2 from the class path, on {@code threads} threads. */
    public static MiniLmProbedModel trained(int threads) throws IOException {
        return new MiniLmProbedModel("minilm", Models.minilm(threads), null);
    }

    /** An untrained encoder of all-MiniLM-L6-v2's shapes ({@link MiniLmWeights#randomLike}), same tokenizer. */
    public static MiniLmProbedModel random(int threads, long seed) throws IOException {
        TrackedArena arena = TrackedArena.ofShared();
        try (TrackedArena trainedArena = TrackedArena.ofShared()) {
            MiniLmWeights random = MiniLmWeights.randomLike(Models.minilmWeights(trainedArena), seed, arena);
            return new MiniLmProbedModel("minilm-random", new MiniLmEncoder(random, Models.minilmTokenizer(), threads), arena);
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /**
     * A probed model over an encoder the caller owns and keeps (e.g. one loaded once per process
     * and shared by several threads, each with its own probed model: the encoder's forward is
     * safe from several threads with a workspace each). {@link #close} frees only this object's
     * workspace and output buffer. {@code name} is what studies and reports call it ("minilm",
     * "minilm-random").
     */
    public static MiniLmProbedModel over(String name, MiniLmEncoder encoder) {
        return new MiniLmProbedModel(name, encoder, null, false);
    }

    public MiniLmEncoder encoder() {
        return encoder;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public int layers() {
        return encoder.config().layers();
    }

    @Override
    public int heads() {
        return encoder.config().heads();
    }

    @Override
    public int headDim() {
        return encoder.config().headDim();
    }

    @Override
    public int hidden() {
        return encoder.config().hidden();
    }

    @Override
    public int maxBatch() {
        return MiniLmEncoder.MAX_USEFUL_BATCH;
    }

    @Override
    public Encoded encode(List<String> words) {
        int max = tokenizer.maxLength() - 2; // room for [CLS] and [SEP]
        List<Integer> pieces = new ArrayList<>();
        int[] wordTokens = new int[words.size()];
        for (int w = 0; w < words.size(); w++) {
            List<String> wp = tokenizer.tokenize(modelText(words.get(w)));
            if (wp.isEmpty() || pieces.size() + 1 > max) {
                wordTokens[w] = -1;
                continue;
            }
            wordTokens[w] = pieces.size() + 1; // after [CLS]
            for (String p : wp) {
                if (pieces.size() < max) pieces.add(tokenizer.id(p));
            }
        }
        int[] ids = new int[pieces.size() + 2];
        ids[0] = tokenizer.id("[CLS]");
        for (int i = 0; i < pieces.size(); i++) ids[i + 1] = pieces.get(i);
        ids[ids.length - 1] = tokenizer.id("[SEP]");
        return new Encoded(ids, wordTokens);
    }

    /** What the model reads for a Brown word: TeX quotes as the quote they stand for. */
    static String modelText(String word) {
        return word.equals("``") || word.equals("''") ? "\"" : word;
    }

    @Override
    public void forward(List<int[]> batch, ForwardObserver observer) {
        TokenBatch tokens = TokenBatch.padded(tokenizer.padId(), batch.toArray(int[][]::new));
        long floats = (long) tokens.batch() * tokens.length() * hidden();
        if (output == null || output.size() < floats) {
            if (outputArena != null) outputArena.close();
            outputArena = TrackedArena.ofShared();
            output = Tensor.allocate(outputArena, (int) floats);
        }
        Tensor out = Tensor.wrap(output.segment().asSlice(0, floats * Float.BYTES), tokens.batch(), tokens.length(), hidden());
        encoder.forward(tokens, out, workspace, observer);
    }

    @Override
    public void close() {
        workspace.close();
        if (outputArena != null) outputArena.close();
        if (ownsEncoder) encoder.close();
        if (ownedArena != null) ownedArena.close();
    }
}
