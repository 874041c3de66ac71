package dev.headroom.model.minilm;

import dev.headroom.model.tokenizer.TokenBatch;
import dev.headroom.model.Models;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import dev.headroom.attention.Mask;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.nio.LongBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * all-MiniLM-L6-v2 on Headroom against ONNX Runtime (Java, 1.23.2) on the same ONNX file and the
 * same token ids: the last hidden state within 1e-4 (max abs) at every real token and within
 * 1e-3 at padded positions (see {@link #PADDED_ABS}), and sentence embeddings with cosine
 * ≥ 0.99999, for short sentences, one of 256 tokens and a padded batch. The ONNX graph takes input_ids, attention_mask and token_type_ids, (B, n) int64,
 * and gives last_hidden_state, (B, n, 384). Both sides run on 2 threads.
 */
class MiniLmOnnxRuntimeTest {
    static final double MAX_ABS = 1e-4, MIN_COSINE = 0.99999;
    /**
     * Padded positions: every consumer ignores them, and they are ill-conditioned (a [PAD] query
     * late in the sequence attending to a few early keys): ONNX Runtime with all graph
     * optimisations and with none differs from itself there by 1.2e-4 on the padded batch below,
     * while real tokens agree to 2.4e-6. Headroom stays within that spread.
     */
    static final double PADDED_ABS = 1e-3;
    static final List<String> SENTENCES = List.of(
            "Hello, world!",
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "A man is riding a horse.",
            "Café naïve résumé: the accents are stripped before WordPiece.",
            "",
            "Headroom runs multi-head attention on off-heap memory, with OpenBLAS doing the matrix products.");

    static TrackedArena arena;
    static MiniLmEncoder encoder;
    static OrtEnvironment env;
    static OrtSession session;
    /** The largest difference and the smallest cosine seen, for the summary printed at the end. */
    static double worstAbs, worstPadded, worstCosine = 1;

    @BeforeAll
    static void load() throws Exception {
        arena = TrackedArena.ofShared();
        encoder = Models.minilm(arena, 2);
        byte[] onnx;
        try (InputStream in = Models.resource(Models.MINILM_ONNX)) {
            onnx = in.readAllBytes();
        }
        env = OrtEnvironment.getEnvironment();
        try (OrtSession.SessionOptions options = new OrtSession.SessionOptions()) {
            options.setIntraOpNumThreads(2);
            session = env.createSession(onnx, options);
        }
    }

    @AfterAll
    static void close() throws Exception {
        System.out.printf("MiniLM vs ONNX Runtime: max |Δ hidden| %.3g at real tokens, %.3g at padding; "
                + "min cosine of embeddings 1 - %.3g%n", worstAbs, worstPadded, 1 - worstCosine);
        if (session != null) session.close();
        if (encoder != null) encoder.close();
        if (arena != null) arena.close();
    }

    /** ONNX Runtime's last_hidden_state for the batch, (B, n, E). */
    static float[][][] onnxRuntime(TokenBatch t) throws OrtException {
        long[] shape = {t.batch(), t.length()};
        long[] ids = new long[t.ids().length];
        for (int i = 0; i < ids.length; i++) ids[i] = t.ids()[i];
        try (OnnxTensor inputIds = OnnxTensor.createTensor(env, LongBuffer.wrap(ids), shape);
             OnnxTensor mask = OnnxTensor.createTensor(env, LongBuffer.wrap(t.attentionMask()), shape);
             OnnxTensor types = OnnxTensor.createTensor(env, LongBuffer.wrap(new long[ids.length]), shape);
             OrtSession.Result result = session.run(Map.of("input_ids", inputIds, "attention_mask", mask, "token_type_ids", types))) {
            return (float[][][]) result.get("last_hidden_state").orElseThrow().getValue();
        }
    }

    /**
     * Headroom's and ONNX Runtime's last hidden states agree within MAX_ABS at every real token,
     * and within PADDED_ABS at padded positions; returns ONNX Runtime's.
     */
    static float[][][] compareHidden(TokenBatch t) throws OrtException {
        float[][][] expected = onnxRuntime(t);
        Tensor actual = encoder.lastHiddenState(t, arena);
        int E = encoder.config().hidden();
        assertArrayEquals(new int[]{t.batch(), t.length(), E}, actual.shape());
        double max = 0;
        for (int b = 0; b < t.batch(); b++) {
            for (int i = 0; i < t.length(); i++) {
                boolean real = i < t.lengths()[b];
                for (int j = 0; j < E; j++) {
                    double d = Math.abs(actual.at(b, i, j) - expected[b][i][j]);
                    assertTrue(d <= (real ? MAX_ABS : PADDED_ABS), "hidden[" + b + ", " + i + ", " + j + "]"
                            + (real ? "" : " (padding)") + ": Headroom " + actual.at(b, i, j) + ", ONNX Runtime "
                            + expected[b][i][j] + " (" + t + ")");
                    if (real) max = Math.max(max, d);
                    else worstPadded = Math.max(worstPadded, d);
                }
            }
        }
        worstAbs = Math.max(worstAbs, max);
        return expected;
    }

    /** Mean over the real tokens, L2-normalised, in double: the reference pooling. */
    static double[] pooled(float[][] hidden, int length) {
        double[] m = new double[hidden[0].length];
        for (int i = 0; i < length; i++) for (int j = 0; j < m.length; j++) m[j] += hidden[i][j];
        double norm = 0;
        for (int j = 0; j < m.length; j++) norm += (m[j] /= length) * m[j];
        for (int j = 0; j < m.length; j++) m[j] /= Math.sqrt(norm);
        return m;
    }

    static double cosine(double[] a, Tensor rows, int r) {
        double dot = 0, na = 0, nb = 0;
        for (int j = 0; j < a.length; j++) {
            double b = rows.at(r, j);
            dot += a[j] * b;
            na += a[j] * a[j];
            nb += b * b;
        }
        return dot / Math.sqrt(na * nb);
    }

    @Test
    void singleSentencesMatchOnnxRuntime() throws Exception {
        for (String s : SENTENCES) compareHidden(TokenBatch.of(encoder.tokenizer().encode(s)));
    }

    @Test
    void aSequenceOf256TokensMatches() throws Exception {
        String text = String.join(" ", java.util.Collections.nCopies(40,
                "Attention weighs every token against every other one, then mixes their values."));
        int[] ids = encoder.tokenizer().withMaxLength(256).encode(text);
        assertEquals(256, ids.length);
        compareHidden(TokenBatch.of(ids));
    }

    @Test
    void aPaddedBatchMatchesAndEqualsUnpaddedRuns() throws Exception {
        TokenBatch batch = encoder.tokenizer().encodeBatch(SENTENCES);
        assertTrue(batch.length() > 2 && batch.lengths()[5] == 2, "the batch pads: " + batch);
        compareHidden(batch);
        // Padding changes nothing for the real tokens: each sentence alone gives the same rows.
        Tensor together = encoder.lastHiddenState(batch, arena);
        for (int b = 0; b < batch.batch(); b++) {
            Tensor alone = encoder.lastHiddenState(TokenBatch.of(batch.sequence(b)), arena);
            for (int i = 0; i < batch.lengths()[b]; i++) {
                for (int j = 0; j < encoder.config().hidden(); j++) {
                    assertEquals(alone.at(0, i, j), together.at(b, i, j), 2e-5f, "sentence " + b + ", token " + i + ", feature " + j);
                }
            }
        }
    }

    @Test
    void sentenceEmbeddingsMatchPooledOnnxRuntime() throws Exception {
        Tensor embeddings = encoder.embed(SENTENCES, arena);
        assertArrayEquals(new int[]{SENTENCES.size(), 384}, embeddings.shape());
        for (int s = 0; s < SENTENCES.size(); s++) {
            int[] ids = encoder.tokenizer().encode(SENTENCES.get(s));
            double[] expected = pooled(onnxRuntime(TokenBatch.of(ids))[0], ids.length);
            double c = cosine(expected, embeddings, s);
            worstCosine = Math.min(worstCosine, c);
            assertTrue(c >= MIN_COSINE, "cosine " + c + " for '" + SENTENCES.get(s) + "'");
            double sq = 0;
            for (int j = 0; j < 384; j++) sq += embeddings.at(s, j) * embeddings.at(s, j);
            assertEquals(1.0, Math.sqrt(sq), 1e-6, "embedding " + s + " is L2-normalised");
        }
        // The trained model, not noise: paraphrases are closer than unrelated sentences.
        double[] eating = new double[384];
        for (int j = 0; j < 384; j++) eating[j] = embeddings.at(1, j);
        double paraphrase = cosine(eating, embeddings, 2), unrelated = cosine(eating, embeddings, 3);
        assertTrue(paraphrase > 0.7 && paraphrase > unrelated + 0.2, "cos(eating food, eating bread) = " + paraphrase
                + ", cos(eating food, riding a horse) = " + unrelated);
    }

    @Test
    void confinedMemoryIsRefusedWithAMessage() {
        try (java.lang.foreign.Arena confined = java.lang.foreign.Arena.ofConfined()) {
            IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                    () -> encoder.lastHiddenState(TokenBatch.of(101, 102), confined));
            assertTrue(e.getMessage().contains("confined arena") && e.getMessage().contains("2 worker threads"), e.getMessage());
        }
    }

    @Test
    void theListenerSeesEachLayersAttentionAndInput() {
        TokenBatch batch = encoder.tokenizer().encodeBatch(List.of("one two three", "four"));
        List<Integer> layers = new ArrayList<>();
        List<float[]> firstRows = new ArrayList<>();
        try (EncoderWorkspace ws = new EncoderWorkspace()) {
            Tensor out = Tensor.allocate(arena, batch.batch(), batch.length(), 384);
            encoder.lastHiddenState(batch, out, ws, (layer, attention, input, mask) -> {
                layers.add(layer);
                assertSame(encoder.attention(layer), attention);
                assertArrayEquals(new int[]{2, batch.length(), 384}, input.shape());
                Mask.Bound bound = mask.bind(batch.batch(), 12, batch.length(), batch.length());
                assertEquals(batch.lengths()[0], bound.keyEnd(0, 0), "key padding of sentence 0");
                assertEquals(batch.lengths()[1], bound.keyEnd(1, 0), "key padding of sentence 1");
                firstRows.add(java.util.Arrays.copyOf(input.toArray(), 384));
            });
            assertEquals(List.of(0, 1, 2, 3, 4, 5), layers);
            // Layer l + 1 sees what layer l produced: the inputs differ from layer to layer.
            for (int l = 1; l < 6; l++) assertTrue(!java.util.Arrays.equals(firstRows.get(l - 1), firstRows.get(l)));
        }
    }
}
