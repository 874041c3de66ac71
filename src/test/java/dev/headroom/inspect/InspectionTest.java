package dev.headroom.inspect;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionKernel;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.DenseKernel;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.SparseKernel;
import dev.headroom.attention.TiledKernel;
import dev.headroom.attention.Workspace;
import dev.headroom.memory.TrackedArena;
import dev.headroom.sparse.AttentionPattern;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class InspectionTest {
    /** Seeded, uniform in [−1, 1). */
    static Tensor random(Arena arena, long seed, int... shape) {
        return Tensor.uniform(arena, seed, 1, shape);
    }

    @Test
    void constructedHeadsAreClassifiedAsTheyWereBuilt() {
        int n = 23;
        try (Arena arena = TrackedArena.ofShared();
             MultiHeadAttention mha = InspectionTestSupport.constructedHeads(arena, n, MultiHeadAttention.Options.defaults().withQueryBlock(8))) {
            HeadStatistics stats = new HeadStatistics(4, HeadStatistics.Options.defaults());
            Tensor x = InspectionTestSupport.oneHotPositions(arena, n);
            mha.forward(x, null, Mask.none(), Tensor.allocate(arena, x.shape()), new Workspace(), Inspection.statistics(stats));
            HeadSummary[] s = stats.summaries();
            assertEquals(HeadRole.PREVIOUS_TOKEN, s[0].role(), s[0].describe());
            assertTrue(s[0].previous() > 0.9, s[0].describe());     // row 0 has no previous token
            assertEquals(-1, s[0].argmaxOffset());
            assertEquals(HeadRole.SELF, s[1].role(), s[1].describe());
            assertTrue(s[1].self() > 0.99);
            assertEquals(HeadRole.FIRST_TOKEN, s[2].role(), s[2].describe());
            assertTrue(s[2].first() > 0.99 && s[2].columnConcentration() > 0.99);
            assertEquals(HeadRole.BROAD, s[3].role(), s[3].describe());
            assertEquals(1.0, s[3].normalizedEntropy(), 1e-5);
            assertEquals(Math.log(n), s[3].entropy(), 1e-4);
            assertEquals(1.0 / n, s[3].confidence(), 1e-6);
        }
    }

    /** The same statistics computed plainly from full captured maps (double precision). */
    static Map<String, Double> fromMaps(AttentionCapture cap, int h, HeadStatistics.Options o, int nq, int nk) {
        Map<String, Double> r = new HashMap<>();
        double rows = 0, ent = 0, dist = 0, self = 0, prev = 0, next = 0, first = 0, band = 0, conf = 0, delim = 0;
        double[] cols = new double[nk * cap.batch()];
        Map<Integer, Integer> argmax = new HashMap<>();
        for (int b = 0; b < cap.batch(); b++) {
            for (int i = 0; i < nq; i++) {
                if (!o.counts(b, i)) continue; // padding rows are not measured
                long pos = (long) i + nk - nq;
                double sum = 0, best = -1, h1 = 0;
                int bestJ = -1;
                for (int j = 0; j < nk; j++) {
                    double p = cap.get(b, h, i, j);
                    sum += p;
                    if (p > 0) h1 -= p * Math.log(p);
                    if (p > best) {
                        best = p;
                        bestJ = j;
                    }
                    dist += p * Math.abs(j - pos);
                    if (j == pos) self += p;
                    if (j == pos - 1) prev += p;
                    if (j == pos + 1) next += p;
                    if (j == 0) first += p;
                    if (Math.abs(j - pos) <= o.band()) band += p;
                    if (o.delimiters() != null) for (int dp : o.delimiters()[b]) if (dp == j) delim += p;
                    cols[b * nk + j] += p;
                }
                if (sum < 0.5) continue; // a row with no allowed key
                rows++;
                ent += h1;
                conf += best;
                argmax.merge((int) (bestJ - pos), 1, Integer::sum);
            }
        }
        r.put("entropy", ent / rows);
        r.put("distance", dist / rows);
        r.put("self", self / rows);
        r.put("previous", prev / rows);
        r.put("next", next / rows);
        r.put("first", first / rows);
        r.put("band", band / rows);
        r.put("confidence", conf / rows);
        r.put("delimiter", delim / rows);
        int mode = argmax.entrySet().stream().max(Map.Entry.<Integer, Integer>comparingByValue()
                .thenComparing(e -> -Math.abs(e.getKey()))).orElseThrow().getValue();
        r.put("argmaxShare", mode / rows);
        double total = 0, top = 0;
        for (int b = 0; b < cap.batch(); b++) {
            double[] c = java.util.Arrays.copyOfRange(cols, b * nk, (b + 1) * nk);
            java.util.Arrays.sort(c);
            for (double v : c) total += v;
            for (int t = 0; t < o.topColumns(); t++) top += c[nk - 1 - t];
        }
        r.put("columnConcentration", top / total);
        return r;
    }

    @Test
    void streamingStatisticsEqualTheSameStatisticsFromCapturedMaps() {
        AttentionConfig c = AttentionConfig.of(24, 4).withKvHeads(2);
        int B = 2, n = 70;
        List<Object[]> cases = List.of(
                new Object[]{DenseKernel.INSTANCE, Mask.causal().withKeyLengths(70, 51)},
                new Object[]{new TiledKernel(16), Mask.keyLengths(60, 70)},
                new Object[]{new SparseKernel(8, 24), Mask.pattern(AttentionPattern.slidingWindow(12)
                        .or(AttentionPattern.global(0, 33)))});
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 9, arena);
            Tensor x = random(arena, 4, B, n, 24);
            for (Object[] k : cases) {
                HeadStatistics.Options o = HeadStatistics.Options.defaults().withDelimiters(new int[][]{{0, 35, 69}, {0, 12}});
                if (k[0] == DenseKernel.INSTANCE) o = o.withQueryLengths(70, 51); // batch element 1 is padded after 51
                try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults()
                        .withKernel((AttentionKernel) k[0]).withQueryBlock(16))) {
                    Mask mask = (Mask) k[1];
                    HeadStatistics stats = new HeadStatistics(4, o);
                    AttentionCapture cap = AttentionCapture.allRows(arena, B, 4, new int[]{0, 1, 2, 3}, n, n);
                    mha.forward(x, null, mask, Tensor.allocate(arena, x.shape()), new Workspace(),
                            new Inspection(cap, stats, null));
                    for (int h = 0; h < 4; h++) {
                        HeadSummary s = stats.summary(h);
                        Map<String, Double> ref = fromMaps(cap, h, o, n, n);
                        String what = ((AttentionKernel) k[0]).name() + " head " + h + ": ";
                        assertEquals(ref.get("entropy"), s.entropy(), 2e-4, what + "entropy");
                        assertEquals(ref.get("distance"), s.distance(), 2e-4 * Math.max(1, ref.get("distance")), what + "distance");
                        assertEquals(ref.get("self"), s.self(), 1e-5, what + "self");
                        assertEquals(ref.get("previous"), s.previous(), 1e-5, what + "previous");
                        assertEquals(ref.get("next"), s.next(), 1e-5, what + "next");
                        assertEquals(ref.get("first"), s.first(), 1e-5, what + "first");
                        assertEquals(ref.get("band"), s.bandMass(), 1e-5, what + "band");
                        assertEquals(ref.get("confidence"), s.confidence(), 1e-5, what + "confidence");
                        assertEquals(ref.get("delimiter"), s.delimiter(), 1e-5, what + "delimiter");
                        assertEquals(ref.get("argmaxShare"), s.argmaxShare(), 1e-9, what + "argmax share");
                        assertEquals(ref.get("columnConcentration"), s.columnConcentration(), 1e-5, what + "columns");
                    }
                }
            }
        }
    }

    @Test
    void capturedRowsEqualThoseRowsOfTheFullMap() {
        AttentionConfig c = AttentionConfig.of(24, 4);
        int n = 90;
        int[] rows = {0, 17, 45, 89};
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 2, arena);
            Tensor x = random(arena, 5, 1, n, 24);
            for (AttentionKernel k : List.of(DenseKernel.INSTANCE, new TiledKernel(32), new SparseKernel(8, 32))) {
                Mask mask = k instanceof SparseKernel ? Mask.pattern(AttentionPattern.causalWindow(20)) : Mask.causal();
                try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withKernel(k).withQueryBlock(16))) {
                    AttentionCapture full = AttentionCapture.allRows(arena, 1, 4, new int[]{1, 3}, n, n);
                    AttentionCapture some = AttentionCapture.rows(arena, 1, 4, new int[]{3}, n, n, rows);
                    Tensor y1 = Tensor.allocate(arena, x.shape()), y2 = Tensor.allocate(arena, x.shape()), y0 = Tensor.allocate(arena, x.shape());
                    mha.forward(x, null, mask, y1, new Workspace(), Inspection.capture(full));
                    mha.forward(x, null, mask, y2, new Workspace(), Inspection.capture(some));
                    mha.forward(x, null, mask, y0, new Workspace());
                    assertArrayEquals(y0.toArray(), y1.toArray(), "capturing does not change the output");
                    for (int i : rows) {
                        double sum = 0;
                        for (int j = 0; j < n; j++) {
                            assertEquals(full.get(0, 3, i, j), some.get(0, 3, i, j), 0f, k.name() + " row " + i + " key " + j);
                            sum += some.get(0, 3, i, j);
                            if (j > i) assertEquals(0f, some.get(0, 3, i, j));
                        }
                        assertEquals(1.0, sum, 1e-5, "row " + i + " sums to one");
                    }
                }
            }
        }
    }

    @Test
    void prunedEqualsMasked() {
        for (AttentionConfig c : List.of(AttentionConfig.of(36, 6), AttentionConfig.of(36, 6).withKvHeads(3),
                AttentionConfig.of(36, 6).withKvHeads(2))) {
            try (Arena arena = TrackedArena.ofShared()) {
                AttentionWeights w = AttentionWeights.random(c, true, 8, arena);
                Tensor x = random(arena, 6, 2, 19, 36);
                for (int[] pruned : new int[][]{{0}, {1, 4}, {0, 1, 2, 3, 4}, {2, 3}}) {
                    try (MultiHeadAttention mha = new MultiHeadAttention(w);
                         MultiHeadAttention small = mha.prune(arena, pruned)) {
                        Tensor masked = Tensor.allocate(arena, x.shape());
                        mha.forward(x, null, Mask.causal(), masked, new Workspace(), Inspection.ablate(6, pruned));
                        Tensor y = small.forward(x, Mask.causal(), arena);
                        assertEquals(6 - pruned.length, small.config().heads());
                        float[] a = masked.toArray(), b = y.toArray();
                        for (int i = 0; i < a.length; i++) {
                            assertEquals(a[i], b[i], 1e-5f * (1 + Math.abs(a[i])), c + " pruned " + java.util.Arrays.toString(pruned) + " at " + i);
                        }
                    }
                }
            }
        }
    }

    @Test
    void importanceIsZeroForADeadHeadAndRedundancyZeroForTwins() {
        int n = 23;
        try (Arena arena = TrackedArena.ofShared();
             MultiHeadAttention mha = InspectionTestSupport.constructedHeads(arena, n, MultiHeadAttention.Options.defaults())) {
            Tensor x = InspectionTestSupport.oneHotPositions(arena, n);
            double[] imp = Ablation.importance(mha, List.of(x), Mask.none());
            for (double v : imp) assertTrue(v > 0.01, java.util.Arrays.toString(imp));
            AttentionCapture cap = AttentionCapture.allRows(arena, 1, 4, new int[]{0, 1, 2, 3}, n, n);
            mha.forward(x, null, Mask.none(), Tensor.allocate(arena, x.shape()), new Workspace(), Inspection.capture(cap));
            double[][] jsd = Redundancy.jensenShannon(cap);
            assertEquals(0, jsd[1][1], 0);
            assertTrue(jsd[0][1] > 0.6 && jsd[0][1] <= Math.log(2) + 1e-9, "previous vs self are disjoint: " + jsd[0][1]);
            assertEquals(jsd[0][1], jsd[1][0], 0);
            assertTrue(jsd[1][3] > 0.1 && jsd[1][3] < jsd[0][1], "self vs uniform: " + jsd[1][3]);
        }
    }

    @Test
    void duplicateAndInductionScoresOnARepeatedSequence() {
        // Olsson et al.'s setting: ten distinct random tokens, then the same ten again. In the second
        // half, row i's earlier occurrence is i − 10 (duplicate-token target) and the token that
        // followed it is i − 9 (induction target). Streamed scores must equal those masses read off
        // the captured map.
        int n = 20;
        int[] tokens = new int[n];
        SplittableRandom r = new SplittableRandom(1);
        for (int i = 0; i < 10; i++) tokens[i] = tokens[i + 10] = 1000 + 100 * i + r.nextInt(50);
        try (Arena arena = TrackedArena.ofShared();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(AttentionConfig.of(16, 4), true, 4, arena))) {
            Tensor x = random(arena, 3, 1, n, 16);
            HeadStatistics stats = new HeadStatistics(4, HeadStatistics.Options.defaults().withTokens(new int[][]{tokens}));
            AttentionCapture cap = AttentionCapture.allRows(arena, 1, 4, new int[]{0, 1, 2, 3}, n, n);
            mha.forward(x, null, Mask.causal(), Tensor.allocate(arena, x.shape()), new Workspace(), new Inspection(cap, stats, null));
            for (int h = 0; h < 4; h++) {
                double dup = 0, ind = 0;
                for (int i = 10; i < n; i++) {
                    dup += cap.get(0, h, i, i - 10);
                    ind += cap.get(0, h, i, i - 9);
                }
                HeadSummary s = stats.summary(h);
                assertEquals(dup / 10, s.duplicateToken(), 1e-5, "head " + h + " duplicate-token");
                assertEquals(ind / 10, s.induction(), 1e-5, "head " + h + " induction");
            }
        }
    }
}
