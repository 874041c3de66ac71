package dev.headroom.model.llama;

import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.LinkedHashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The induction measurement: the sequences it builds, its scores' bounds, its losses against a
 * computation written here from the logits, and its ablation against the same model with the
 * head's columns of W_O zeroed in a copy of the weights (another way to remove a head).
 */
class InductionHeadsTest {
    @Test
    void sequencesAreARandomStringRepeatedOnce() {
        int L = 30;
        int[] ids = InductionHeads.repeatedSequences(3, L, 256, 5);
        assertEquals(3 * (1 + 2 * L), ids.length);
        for (int b = 0; b < 3; b++) {
            int o = b * (1 + 2 * L);
            assertEquals(256, ids[o]);
            for (int i = 1; i <= L; i++) {
                assertEquals(ids[o + i], ids[o + L + i]);
                assertTrue(InductionHeads.ALPHABET.indexOf(ids[o + i]) >= 0);
            }
        }
        assertArrayEquals(ids, InductionHeads.repeatedSequences(3, L, 256, 5));
        assertTrue(ids[1] != InductionHeads.repeatedSequences(3, L, 256, 6)[1] || ids[2] != InductionHeads.repeatedSequences(3, L, 256, 6)[2]);
    }

    /** Mean bits of the second copy's tokens 2..L, computed directly. */
    private static double secondCopyBits(LlamaModel model, int[] ids, int sequences, int L) {
        int n = 1 + 2 * L;
        double bits = 0;
        try (TrackedArena a = TrackedArena.ofShared()) {
            for (int b = 0; b < sequences; b++) {
                int[] seq = java.util.Arrays.copyOfRange(ids, b * n, (b + 1) * n);
                Tensor logits = model.logits(seq, a);
                int V = logits.dim(1);
                for (int t = L + 2; t <= 2 * L; t++) {
                    double max = Double.NEGATIVE_INFINITY, sum = 0;
                    for (int j = 0; j < V; j++) max = Math.max(max, logits.get((long) (t - 1) * V + j));
                    for (int j = 0; j < V; j++) sum += Math.exp(logits.get((long) (t - 1) * V + j) - max);
                    bits += (Math.log(sum) + max - logits.get((long) (t - 1) * V + seq[t])) / Math.log(2);
                }
            }
        }
        return bits / (sequences * (L - 1.0));
    }

    @Test
    void scoresLossesAndAblationsOfTheTinyModel() throws IOException {
        int S = 3, L = 40;
        long seed = 11;
        try (TrackedArena arena = TrackedArena.ofShared(); LlamaModel model = Models.tiny(2)) {
            InductionHeads.Result r = InductionHeads.measure(model, S, L, seed, arena);
            assertEquals(16, r.heads().size());
            for (InductionHeads.Head h : r.heads()) {
                assertTrue(h.induction() >= 0 && h.duplicateToken() >= 0 && h.induction() + h.duplicateToken() <= 1 + 1e-6, h.toString());
                assertTrue(h.prefixMatching() >= 0 && h.prefixMatching() <= 1 + 1e-6 && h.previousToken() >= 0 && h.previousToken() <= 1 + 1e-6, h.toString());
            }
            assertEquals(81, r.tokens().size());
            assertEquals("<bos>", r.tokens().getFirst());
            int[] ids = InductionHeads.repeatedSequences(S, L, 256, seed);
            double second = secondCopyBits(model, ids, S, L);
            assertEquals(second, r.secondCopyBits(), 1e-4);

            // ablating L1H2 equals zeroing its columns of W_O
            int layer = 1, head = 2, d = model.config().headDim();
            Map<String, Tensor> sd = new LinkedHashMap<>();
            LlamaWeights w = model.weights();
            sd.put("model.embed_tokens.weight", w.embedTokens());
            sd.put("model.norm.weight", w.finalNorm());
            for (int l = 0; l < model.config().layers(); l++) {
                LlamaWeights.Layer x = w.layers().get(l);
                String p = "model.layers." + l + ".";
                sd.put(p + "input_layernorm.weight", x.inputNorm());
                sd.put(p + "post_attention_layernorm.weight", x.postAttentionNorm());
                x.attention().stateDict().forEach((k, v) -> sd.put(p + "self_attn." + k, v));
                sd.put(p + "mlp.gate_proj.weight", dense(x.gate(), arena));
                sd.put(p + "mlp.up_proj.weight", dense(x.up(), arena));
                sd.put(p + "mlp.down_proj.weight", dense(x.down(), arena));
            }
            Tensor wo = sd.get("model.layers." + layer + ".self_attn.o_proj.weight");
            Tensor zeroed = Tensor.allocate(arena, wo.shape());
            MemorySegment.copy(wo.segment(), 0, zeroed.segment(), 0, wo.byteSize());
            for (int e = 0; e < wo.dim(0); e++) for (int j = head * d; j < (head + 1) * d; j++) zeroed.set((long) e * wo.dim(1) + j, 0f);
            sd.put("model.layers." + layer + ".self_attn.o_proj.weight", zeroed);
            try (LlamaModel without = new LlamaModel(LlamaWeights.fromStateDict(model.config(), sd), 2)) {
                double ablated = secondCopyBits(without, ids, S, L);
                InductionHeads.Head h = r.heads().get(layer * 4 + head);
                assertEquals("L1H2", h.name());
                assertEquals(ablated - second, h.ablationBits(), 1e-4);
            }
        }
    }

    private static Tensor dense(dev.headroom.tensor.Matrix m, TrackedArena arena) {
        Tensor t = Tensor.allocate(arena, m.rows(), m.cols());
        for (int i = 0; i < m.rows(); i++) for (int j = 0; j < m.cols(); j++) t.set((long) i * m.cols() + j, m.get(i, j));
        return t;
    }

    @Test
    void sequencesMustFitTheContext() throws IOException {
        try (TrackedArena arena = TrackedArena.ofShared(); LlamaModel model = Models.tiny(1)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> InductionHeads.measure(model, 1, 128, 0, arena));
            assertEquals("copies of 128 letters make 257 tokens; the model's context is 256 and a copy needs at least 2 letters", e.getMessage());
        }
    }
}
