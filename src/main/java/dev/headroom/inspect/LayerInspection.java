package dev.headroom.inspect;

import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;
import java.util.List;
import java.util.function.IntConsumer;
import java.util.regex.Pattern;

/** Runs one layer once with every head captured (chosen rows) and its statistics accumulated. */
public final class LayerInspection {
    /** Tokens that count as delimiters: BERT's special tokens and pure punctuation. */
    public static final Pattern DELIMITER = Pattern.compile("\\[(CLS|SEP)]|</?s>|\\p{Punct}+");

    private LayerInspection() {}

    /** The result of inspecting one layer. */
    public record Result(AttentionCapture capture, HeadStatistics statistics, Tensor output) {}

    /**
     * Self-attention over {@code x} (B, n, E) with {@code mask}, capturing {@code rows} (null: all)
     * of every head in {@code arena}, with delimiters and token ids taken from {@code tokens}
     * (one list per batch element, or null); query rows past {@code queryLengths[b]} (padding)
     * are left out of the statistics (null: all rows count).
     */
    public static Result run(MultiHeadAttention mha, Tensor x, Mask mask, List<List<String>> tokens, int[] rows,
                             int[] queryLengths, Arena arena, IntConsumer progress) {
        int B = x.rank() == 3 ? x.dim(0) : 1, n = x.dim(-2), H = mha.config().heads();
        int[] heads = java.util.stream.IntStream.range(0, H).toArray();
        AttentionCapture capture = rows == null ? AttentionCapture.allRows(arena, B, H, heads, n, n)
                : AttentionCapture.rows(arena, B, H, heads, n, n, rows);
        HeadStatistics.Options o = HeadStatistics.Options.defaults();
        if (tokens != null) o = o.withDelimiters(delimiters(tokens)).withTokens(ids(tokens));
        if (queryLengths != null) o = o.withQueryLengths(queryLengths);
        HeadStatistics stats = new HeadStatistics(H, o);
        Tensor out = Tensor.allocate(arena, x.shape());
        try (Workspace ws = new Workspace()) {
            mha.forward(x, null, mask, out, ws, new Inspection(capture, stats, null, progress));
        }
        return new Result(capture, stats, out);
    }

    /** Positions of delimiter tokens, per batch element. */
    public static int[][] delimiters(List<List<String>> tokens) {
        int[][] d = new int[tokens.size()][];
        for (int b = 0; b < tokens.size(); b++) {
            List<String> t = tokens.get(b);
            d[b] = java.util.stream.IntStream.range(0, t.size()).filter(i -> DELIMITER.matcher(t.get(i)).matches()).toArray();
        }
        return d;
    }

    /** Token strings as ids (equal strings, equal ids), for the duplicate-token and induction scores. */
    public static int[][] ids(List<List<String>> tokens) {
        java.util.Map<String, Integer> vocab = new java.util.HashMap<>();
        int[][] ids = new int[tokens.size()][];
        for (int b = 0; b < tokens.size(); b++) {
            ids[b] = tokens.get(b).stream().mapToInt(t -> vocab.computeIfAbsent(t, k -> vocab.size())).toArray();
        }
        return ids;
    }
}
