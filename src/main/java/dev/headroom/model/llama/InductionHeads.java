package dev.headroom.model.llama;

import dev.headroom.attention.CallOptions;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.inspect.AttentionCapture;
import dev.headroom.inspect.HeadStatistics;
import dev.headroom.inspect.HeadSummary;
import dev.headroom.inspect.Inspection;
import dev.headroom.inspect.LayerInspection;
import dev.headroom.report.AttentionReport;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Induction heads (Olsson et al. 2022, "In-context Learning and Induction Heads") of a decoder,
 * measured the way the paper does: on sequences made of a random string repeated twice,
 * {@code <bos> s s} with s of {@code length} random letters, where the second copy is predictable
 * only by finding the earlier occurrence of the current token and copying what came after it.
 * For query position i in the second copy (its token equals the one at i − L):
 * <ul>
 *   <li><b>induction score</b>: the attention on position i − L + 1, the token that followed the
 *       earlier occurrence (what an induction head attends to; TransformerLens's "induction score");</li>
 *   <li><b>prefix-matching score</b>: the attention on every position that followed an earlier
 *       occurrence of the current token anywhere in the sequence (the paper's prefix matching:
 *       random letters repeat within a copy too), from {@link HeadStatistics}'s induction mass;</li>
 *   <li><b>duplicate-token score</b>: the attention on i − L itself;</li>
 *   <li><b>previous-token score</b>: the attention on i − 1 over all positions (the first half of
 *       the two-layer induction circuit);</li>
 *   <li><b>ablation</b>: how many bits per token the loss on the second copy rises when the head's
 *       output is zeroed (the copying the head actually contributes).</li>
 * </ul>
 * The loss on the first copy (unpredictable letters) against the second (copyable) is the
 * model's in-context learning on this task. Position 1 of a copy (its first letter) is not
 * counted in either loss: nothing predicts it.
 */
public final class InductionHeads {
    /** Letters the random strings are drawn from: text the model saw in training, in random order. */
    static final String ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    /**
     * A head counts as an induction head from this induction score on. With L = 100 a query in
     * the second copy sees 102–201 keys, so uniform attention would put under 1% on the target;
     * 0.3 is thirty times that (the paper gives no threshold; TransformerLens's demonstrations
     * single out heads above about 0.4).
     */
    public static final double THRESHOLD = 0.3;

    /** One head's scores (see the class comment); {@code ablationBits} in bits per token. */
    public record Head(int layer, int head, double induction, double prefixMatching, double duplicateToken, double previousToken,
                       double ablationBits) {
        public String name() {
            return "L" + layer + "H" + head;
        }

        public boolean isInductionHead() {
            return induction >= THRESHOLD;
        }
    }

    /**
     * The measurement.
     *
     * @param sequences        how many random strings
     * @param length           L, letters per copy
     * @param firstCopyBits    mean −log₂ p of the first copy's letters 2..L (bits per token)
     * @param secondCopyBits   the same over the second copy
     * @param heads            every head, layer by layer
     * @param tokens           labels of sequence 0's tokens (for pictures)
     * @param layers           every layer's capture and summaries over all sequences (pictures draw sequence 0)
     */
    public record Result(int sequences, int length, double firstCopyBits, double secondCopyBits, List<Head> heads,
                         List<String> tokens, List<AttentionReport.Layer> layers) {
        /** The head with the highest induction score. */
        public Head strongest() {
            return Collections.max(heads, Comparator.comparingDouble(Head::induction));
        }

        public List<Head> inductionHeads() {
            return heads.stream().filter(Head::isInductionHead).toList();
        }
    }

    private InductionHeads() {}

    /** {@code <bos> s s} for {@code sequences} random strings s of {@code length} letters, (sequences, 1 + 2L) row-major. */
    public static int[] repeatedSequences(int sequences, int length, int bos, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        int n = 1 + 2 * length;
        int[] ids = new int[sequences * n];
        for (int b = 0; b < sequences; b++) {
            ids[b * n] = bos;
            for (int i = 0; i < length; i++) {
                int letter = ALPHABET.charAt(rnd.nextInt(ALPHABET.length()));
                ids[b * n + 1 + i] = letter;
                ids[b * n + 1 + length + i] = letter;
            }
        }
        return ids;
    }

    /**
     * Measures every head of {@code model} on {@code sequences} repeated random strings of
     * {@code length} letters (1 + 2L ≤ the model's context), seeded; captures live in {@code arena}
     * (shared when the model has several threads): sequences × heads × (1 + 2L)² floats per layer.
     */
    public static Result measure(LlamaModel model, int sequences, int length, long seed, Arena arena) {
        return measure(model, sequences, length, seed, arena, true);
    }

    /** As {@link #measure(LlamaModel, int, int, long, Arena)}; without {@code ablate} each head's ablation is NaN (one forward instead of 1 + layers·heads). */
    public static Result measure(LlamaModel model, int sequences, int length, long seed, Arena arena, boolean ablate) {
        LlamaConfig c = model.config();
        int n = 1 + 2 * length, L = length, H = c.heads(), layers = c.layers(), V = c.vocabSize();
        if (length < 2 || n > c.maxPositions()) {
            throw new IllegalArgumentException("copies of " + length + " letters make " + n + " tokens; the model's context is "
                    + c.maxPositions() + " and a copy needs at least 2 letters");
        }
        if (sequences < 1) throw new IllegalArgumentException("sequences must be >= 1, got " + sequences);
        if (c.bosTokenId() < 0) throw new IllegalArgumentException("the model has no <bos> token to start the sequences with");
        int[] ids = repeatedSequences(sequences, length, c.bosTokenId(), seed);
        List<List<String>> labels = new ArrayList<>();
        for (int b = 0; b < sequences; b++) labels.add(labels(java.util.Arrays.copyOfRange(ids, b * n, (b + 1) * n), c));

        // 1. every head's attention and statistics, layer by layer, and the logits of every position
        List<AttentionReport.Layer> captured = new ArrayList<>();
        Tensor logits = Tensor.allocate(arena, sequences * n, V);
        try (DecoderWorkspace ws = new DecoderWorkspace()) {
            model.forward(ids, sequences, null, logits, ws, new LlamaModel.LayerHooks() {
                @Override
                public void beforeAttention(int layer, MultiHeadAttention attention, Tensor input, Mask mask) {
                    // the layer again, on the same input, with every head captured and its statistics
                    LayerInspection.Result r = LayerInspection.run(attention, input, mask, labels, null, null, arena, null);
                    captured.add(new AttentionReport.Layer(r.capture(), r.statistics().summaries()));
                }
            });
        }
        double[] base = copyBits(logits, ids, sequences, n, L, V);

        // 2. scores from the captures, and each head's ablation on the second copy
        List<Head> heads = new ArrayList<>();
        try (DecoderWorkspace ws = new DecoderWorkspace()) {
            for (int l = 0; l < layers; l++) {
                AttentionCapture cap = captured.get(l).capture();
                HeadSummary[] summaries = captured.get(l).summaries();
                for (int h = 0; h < H; h++) {
                    double induction = 0, duplicate = 0;
                    for (int b = 0; b < sequences; b++) {
                        for (int i = L + 1; i <= 2 * L; i++) {
                            induction += cap.get(b, h, i, i - L + 1);
                            duplicate += cap.get(b, h, i, i - L);
                        }
                    }
                    induction /= (double) sequences * L;
                    duplicate /= (double) sequences * L;
                    double ablation = Double.NaN;
                    if (ablate) {
                        int layer = l, head = h;
                        model.forward(ids, sequences, null, logits, ws, new LlamaModel.LayerHooks() {
                            @Override
                            public CallOptions call(int at) {
                                return at == layer ? CallOptions.observing(Inspection.ablate(H, head)) : CallOptions.NONE;
                            }
                        });
                        ablation = copyBits(logits, ids, sequences, n, L, V)[1] - base[1];
                    }
                    heads.add(new Head(l, h, induction, summaries[h].induction(), duplicate, summaries[h].previous(), ablation));
                }
            }
        }
        return new Result(sequences, L, base[0], base[1], heads, labels.getFirst(), captured);
    }

    /** Mean −log₂ p of the first copy's tokens 2..L and of the second copy's, {first, second}. */
    private static double[] copyBits(Tensor logits, int[] ids, int sequences, int n, int L, int V) {
        double first = 0, second = 0;
        for (int b = 0; b < sequences; b++) {
            for (int k = 2; k <= L; k++) {
                first += bits(logits, ids, b * n + k - 1, b * n + k, V);              // position k − 1 predicts token k
                second += bits(logits, ids, b * n + L + k - 1, b * n + L + k, V);
            }
        }
        double count = (double) sequences * (L - 1);
        return new double[]{first / count, second / count};
    }

    /** −log₂ softmax(logits[row])[ids[target]], in double. */
    private static double bits(Tensor logits, int[] ids, int row, int target, int V) {
        long base = (long) row * V;
        double max = Double.NEGATIVE_INFINITY;
        for (int j = 0; j < V; j++) max = Math.max(max, logits.get(base + j));
        double sum = 0;
        for (int j = 0; j < V; j++) sum += Math.exp(logits.get(base + j) - max);
        return (Math.log(sum) + max - logits.get(base + ids[target])) / Math.log(2);
    }

    /**
     * Readable labels of byte tokens, one per token and distinct per id (the statistics tell
     * tokens apart by their labels): printable ASCII as itself, space as ␣, other bytes as \xNN,
     * special tokens by name.
     */
    public static List<String> labels(int[] ids, LlamaConfig c) {
        List<String> out = new ArrayList<>();
        for (int id : ids) out.add(label(id, c));
        return out;
    }

    static String label(int id, LlamaConfig c) {
        if (id == c.bosTokenId()) return "<bos>";
        if (c.isEos(id)) return "<eos>";
        if (id >= 256) return "<" + id + ">";
        if (id == ' ') return "␣";
        if (id == '\n') return "\\n";
        if (id > 32 && id < 127) return String.valueOf((char) id);
        return String.format("\\x%02X", id);
    }
}
