package dev.headroom.inspect;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.function.BinaryOperator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Statistics of a corpus split into parts: each part's {@link HeadStatistics.Totals}, merged in
 * any order and grouping, give the summaries of one object that saw the whole corpus in one call,
 * up to float rounding.
 */
class HeadStatisticsTotalsTest {
    static final int H = 4, E = 24, DOCS = 6, N = 37;

    /** Per document: delimiter positions and token ids (duplicates and induction targets exist). */
    static int[][] delimiters(int docs) {
        int[][] d = new int[docs][];
        for (int b = 0; b < docs; b++) d[b] = new int[]{0, 5 + b, N - 1};
        return d;
    }

    static int[][] tokens(int docs) {
        int[][] t = new int[docs][N];
        Random r = new Random(7);
        for (int b = 0; b < docs; b++) for (int i = 0; i < N; i++) t[b][i] = r.nextInt(9); // small vocabulary: repeats
        return t;
    }

    static int[] lengths(int docs) {
        int[] l = new int[docs];
        for (int b = 0; b < docs; b++) l[b] = N - 3 * b; // padded documents, as in a batch of sentences
        return l;
    }

    static int[][] rows(int[][] a, int b) {
        return new int[][]{a[b]};
    }

    @Test
    void mergeOrderDoesNotChangeTheSummariesBeyondRounding() throws Exception {
        try (Arena arena = TrackedArena.ofShared();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(AttentionConfig.of(E, H), true, 3, arena))) {
            Tensor x = Tensor.uniform(arena, 11, 1, DOCS, N, E);
            int[] lengths = lengths(DOCS);
            int[][] delims = delimiters(DOCS), toks = tokens(DOCS);

            // the whole corpus in one call: what `bin/headroom inspect --model` computes
            HeadStatistics whole = new HeadStatistics(H, HeadStatistics.Options.defaults().withDelimiters(delims)
                    .withTokens(toks).withQueryLengths(lengths));
            mha.forward(x, null, Mask.keyLengths(lengths), Tensor.allocate(arena, x.shape()), new Workspace(),
                    Inspection.statistics(whole));

            // one part per document, each its own call
            List<HeadStatistics.Totals> parts = new ArrayList<>();
            for (int b = 0; b < DOCS; b++) {
                Tensor doc = Tensor.allocate(arena, 1, N, E);
                MemorySegment.copy(x.segment(), (long) b * N * E * Float.BYTES, doc.segment(), 0, (long) N * E * Float.BYTES);
                HeadStatistics part = new HeadStatistics(H, HeadStatistics.Options.defaults().withDelimiters(rows(delims, b))
                        .withTokens(rows(toks, b)).withQueryLengths(lengths[b]));
                mha.forward(doc, null, Mask.keyLengths(lengths[b]), Tensor.allocate(arena, doc.shape()), new Workspace(),
                        Inspection.statistics(part));
                parts.add(roundTrip(part.totals())); // as an executor would send it
            }

            BinaryOperator<HeadStatistics.Totals> plus = HeadStatistics.Totals::plus;
            HeadStatistics.Totals leftFold = parts.stream().reduce(plus).orElseThrow();
            HeadStatistics.Totals rightFold = parts.getLast();
            for (int i = parts.size() - 2; i >= 0; i--) rightFold = parts.get(i).plus(rightFold);
            HeadStatistics.Totals tree = parts.get(0).plus(parts.get(1)).plus(parts.get(2).plus(parts.get(3)))
                    .plus(parts.get(4).plus(parts.get(5)));
            List<HeadStatistics.Totals> shuffled = new ArrayList<>(parts);
            Collections.shuffle(shuffled, new Random(5));
            HeadStatistics.Totals empty = HeadStatistics.Totals.empty(H, HeadStatistics.Options.defaults().withDelimiters(delims));
            HeadStatistics.Totals shuffledFold = shuffled.stream().reduce(empty, plus);

            for (HeadStatistics.Totals merged : List.of(rightFold, tree, shuffledFold)) {
                for (int h = 0; h < H; h++) assertSame(leftFold.summary(h), merged.summary(h), 1e-12, "merge order, head " + h);
            }
            // against the single call: the documents' attention differs only by the rounding of a
            // batched call against one-document calls
            for (int h = 0; h < H; h++) {
                assertSame(whole.summary(h), leftFold.summary(h), 1e-5, "parts against the whole, head " + h);
                assertEquals(whole.summary(h).rows(), leftFold.summary(h).rows());
            }
            // and the whole object's own totals summarise as it does
            for (int h = 0; h < H; h++) assertSame(whole.summary(h), whole.totals().summary(h), 0, "totals of one object, head " + h);
        }
    }

    @Test
    void totalsOfDifferentKindsAreRefused() {
        HeadStatistics.Totals a = HeadStatistics.Totals.empty(4, HeadStatistics.Options.defaults());
        HeadStatistics.Totals b = HeadStatistics.Totals.empty(4, HeadStatistics.Options.defaults().withBand(3));
        HeadStatistics.Totals c = HeadStatistics.Totals.empty(5, HeadStatistics.Options.defaults());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> a.plus(b));
        assertTrue(e.getMessage().contains("band 2") && e.getMessage().contains("band 3"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> a.plus(c));
    }

    /** Every number of two summaries equal within {@code relative} (NaN equals NaN). */
    static void assertSame(HeadSummary a, HeadSummary b, double relative, String what) {
        double[] x = numbers(a), y = numbers(b);
        for (int i = 0; i < x.length; i++) {
            if (Double.isNaN(x[i]) && Double.isNaN(y[i])) continue;
            assertEquals(x[i], y[i], relative * Math.max(1, Math.abs(x[i])), what + ", number " + i + " of " + a + " vs " + b);
        }
        assertEquals(a.argmaxOffset(), b.argmaxOffset(), what + ", argmax offset");
        assertEquals(a.role(), b.role(), what + ", role");
    }

    static double[] numbers(HeadSummary s) {
        List<Double> v = new ArrayList<>(List.of((double) s.rows(), s.entropy(), s.normalizedEntropy(), s.distance(), s.self(),
                s.previous(), s.next(), s.first(), s.delimiter(), s.bandMass(), s.confidence(), s.argmaxShare(),
                s.columnConcentration(), s.duplicateToken(), s.induction()));
        for (double o : s.offsetProfile()) v.add(o);
        return v.stream().mapToDouble(Double::doubleValue).toArray();
    }

    static HeadStatistics.Totals roundTrip(HeadStatistics.Totals t) throws IOException, ClassNotFoundException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
            out.writeObject(t);
        }
        try (ObjectInputStream in = new ObjectInputStream(new ByteArrayInputStream(bytes.toByteArray()))) {
            return (HeadStatistics.Totals) in.readObject();
        }
    }
}
