package dev.headroom.model.minilm;

/**
 * The hyper-parameters of a BERT-style encoder, as read from its ONNX graph (not assumed).
 * For all-MiniLM-L6-v2: vocabulary 30522, hidden 384, 12 heads of 32, intermediate 1536,
 * 6 layers, 512 positions, 2 token types, LayerNorm eps 1e-12.
 *
 * @param vocabSize      rows of the word embedding table
 * @param hidden         E, the model width
 * @param heads          attention heads H (E / H each)
 * @param intermediate   I, the FFN width
 * @param layers         encoder layers
 * @param maxPositions   rows of the position embedding table: the longest input
 * @param typeVocabSize  rows of the token type table
 */
public record MiniLmConfig(int vocabSize, int hidden, int heads, int intermediate, int layers, int maxPositions,
                           int typeVocabSize) {
    public MiniLmConfig {
        if (vocabSize < 1 || hidden < 1 || heads < 1 || intermediate < 1 || layers < 1 || maxPositions < 1 || typeVocabSize < 1) {
            throw new IllegalArgumentException("every size must be >= 1: " + describe(vocabSize, hidden, heads, intermediate,
                    layers, maxPositions, typeVocabSize));
        }
        if (hidden % heads != 0) throw new IllegalArgumentException("heads (" + heads + ") must divide hidden (" + hidden + ")");
    }

    public int headDim() {
        return hidden / heads;
    }

    private static String describe(int v, int e, int h, int i, int l, int p, int t) {
        return "vocab " + v + ", hidden " + e + ", heads " + h + ", intermediate " + i + ", layers " + l + ", positions " + p
                + ", token types " + t;
    }

    @Override
    public String toString() {
        return describe(vocabSize, hidden, heads, intermediate, layers, maxPositions, typeVocabSize);
    }
}
