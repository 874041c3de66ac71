package dev.headroom.probe;

import dev.headroom.model.ForwardObserver;

import java.util.List;

/**
 * A model whose activations the probes read: how it turns a sentence's words into token ids (and
 * which token carries each word's label), and a forward pass over a batch that shows a
 * {@link ForwardObserver} every layer's head outputs and residual stream. {@link MiniLmProbedModel}
 * adapts all-MiniLM-L6-v2; a decoder adapts the same way (see the README, "Probing another model").
 *
 * <p>Representations, by index (see {@link Representation#all}): the residual stream at stages
 * 0 … {@link #layers()} (0 = the embeddings, l + 1 = after layer l), then head h of layer l, the
 * head's output Z_h before W_O ({@link #headDim()} wide), in layer-major order.
 */
public interface ProbedModel extends AutoCloseable {
    /** A short name for reports ("minilm", "minilm-random"). */
    String name();

    int layers();

    int heads();

    int headDim();

    /** Width of the residual stream E. */
    int hidden();

    /** The most sentences one {@link #forward} call takes. */
    int maxBatch();

    /**
     * Token ids of one sentence, and for each word the index (in {@code ids}) of the token that
     * carries its label, or -1 when the word has no token (cut by truncation, or nothing left of it
     * after the tokenizer's normalisation): labels go on a word's <em>first</em> token.
     */
    record Encoded(int[] ids, int[] wordTokens) {}

    Encoded encode(List<String> words);

    /**
     * Runs the model over {@code batch} (at most {@link #maxBatch()} sentences, each
     * {@link Encoded#ids()}), padded to the longest; {@code observer} sees rows b·n + i for
     * sentence b's token i, where n is {@code paddedLength(batch)}.
     */
    void forward(List<int[]> batch, ForwardObserver observer);

    /** The padded length of a batch: its longest sentence. */
    static int paddedLength(List<int[]> batch) {
        int n = 0;
        for (int[] s : batch) n = Math.max(n, s.length);
        return n;
    }

    @Override
    void close();
}
