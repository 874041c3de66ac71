package dev.headroom.attention;

import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Attention over parts of the keys, merged through (O, M, L): each part's state against a plain
 * double computation, merged parts against double softmax attention over all keys, and one part
 * against the tiled kernel's forward, bit for bit.
 */
class PartialAttentionTest {
    /** Queries [q0, q0 + m) and keys [0, n) of one sequence, projected by a random layer. */
    record Problem(AttentionConfig config, Matrix qT, Matrix kT, Matrix vT, int q0, int n) {}

    static Problem problem(Arena arena, AttentionConfig c, int n, int q0, int m, long seed) {
        Matrix qT = Tensor.uniform(arena, seed, 1, c.queryWidth(), m).matrix();
        Matrix kT = Tensor.uniform(arena, seed + 1, 1, c.kvWidth(), n).matrix();
        Matrix vT = Tensor.uniform(arena, seed + 2, 1, c.kvWidth(), n).matrix();
        return new Problem(c, qT, kT, vT, q0, n);
    }

    /** Keys [k0, k1) of a (features × tokens) matrix, as a view. */
    static Matrix keys(Matrix t, int k0, int k1) {
        return t.colRange(k0, k1);
    }

    /** Scores of query r, head h against key j, in double, or −∞ where the mask forbids it. */
    static double score(Problem p, int h, int r, int j, boolean causal) {
        AttentionConfig c = p.config;
        int d = c.headDim(), g = c.kvHeadOf(h);
        if (causal && j > p.q0 + r) return Double.NEGATIVE_INFINITY;
        double s = 0;
        for (int f = 0; f < d; f++) s += (double) p.qT.get(h * d + f, r) * p.kT.get(g * d + f, j);
        double bias = c.alibi() ? -c.alibiSlopes()[h] * Math.abs((double) p.q0 + r - j) : 0;
        return c.scale() * s + bias;
    }

    @Test
    void eachPartsStateIsItsMaximumSumAndUnnormalisedOutput() {
        for (AttentionConfig c : List.of(AttentionConfig.of(24, 4), AttentionConfig.of(24, 4).withKvHeads(2).withAlibi(true))) {
            for (boolean causal : new boolean[]{false, true}) {
                try (Arena arena = TrackedArena.ofShared(); MultiHeadAttention layer = layer(c, arena, 300, 2)) {
                    int n = 1200, q0 = 500, m = 333, k0 = 317, k1 = 905; // a part that cuts through the queries' causal edge
                    Problem p = problem(arena, c, n, q0, m, 3);
                    PartialAttention.State s = PartialAttention.State.allocate(arena, m, c.heads(), c.headDim());
                    try (Workspace ws = new Workspace()) {
                        PartialAttention.attend(layer, p.qT, keys(p.kT, k0, k1), keys(p.vT, k0, k1), causal, q0, k0, s, ws);
                    }
                    int d = c.headDim();
                    for (int h = 0; h < c.heads(); h++) {
                        for (int r = 0; r < m; r++) {
                            double max = Double.NEGATIVE_INFINITY;
                            for (int j = k0; j < k1; j++) max = Math.max(max, score(p, h, r, j, causal));
                            String at = c + (causal ? " causal" : "") + " head " + h + " row " + r;
                            if (max == Double.NEGATIVE_INFINITY) { // the row is before the part: empty
                                assertEquals(Float.NEGATIVE_INFINITY, s.max(h, r), at);
                                assertEquals(0f, s.sum(h, r), at);
                                for (int f = 0; f < d; f++) assertEquals(0f, s.outMatrix().get(r, h * d + f), at);
                                continue;
                            }
                            assertEquals(max, s.max(h, r), 1e-5 * Math.max(1, Math.abs(max)), at + " M");
                            double sum = 0;
                            double[] o = new double[d];
                            for (int j = k0; j < k1; j++) {
                                double e = Math.exp(score(p, h, r, j, causal) - s.max(h, r)); // against the kernel's M
                                sum += e;
                                for (int f = 0; f < d; f++) o[f] += e * p.vT.get(c.kvHeadOf(h) * d + f, j);
                            }
                            assertEquals(sum, s.sum(h, r), 1e-5 * sum, at + " L");
                            for (int f = 0; f < d; f++) assertEquals(o[f], s.outMatrix().get(r, h * d + f), 2e-5 * sum, at + " O");
                        }
                    }
                }
            }
        }
    }

    @Test
    void mergedPartsAreSoftmaxAttentionOverAllKeys() {
        AttentionConfig c = AttentionConfig.of(24, 4).withKvHeads(2);
        int n = 2100, q0 = 290, m = 1700;
        int[] cuts = {0, 13, 700, 1024, 1500, n}; // irregular parts, one of a few keys
        for (boolean causal : new boolean[]{false, true}) {
            try (Arena arena = TrackedArena.ofShared(); MultiHeadAttention layer = layer(c, arena, 256, 2)) {
                Problem p = problem(arena, c, n, q0, m, 8);
                PartialAttention.State merged = PartialAttention.State.allocate(arena, m, c.heads(), c.headDim());
                PartialAttention.State part = PartialAttention.State.allocate(arena, m, c.heads(), c.headDim());
                try (Workspace ws = new Workspace()) {
                    for (int k = cuts.length - 2; k >= 0; k--) { // in reverse, as parts may arrive
                        PartialAttention.attend(layer, p.qT, keys(p.kT, cuts[k], cuts[k + 1]), keys(p.vT, cuts[k], cuts[k + 1]),
                                causal, q0, cuts[k], part, ws);
                        PartialAttention.merge(merged, part);
                    }
                }
                Matrix concat = Tensor.allocate(arena, m, c.queryWidth()).matrix();
                PartialAttention.normalise(merged, concat);
                int d = c.headDim();
                double worst = 0;
                for (int h = 0; h < c.heads(); h++) {
                    for (int r = 0; r < m; r += 7) {
                        double max = Double.NEGATIVE_INFINITY, sum = 0;
                        for (int j = 0; j < n; j++) max = Math.max(max, score(p, h, r, j, causal));
                        double[] o = new double[d];
                        for (int j = 0; j < n; j++) {
                            double e = Math.exp(score(p, h, r, j, causal) - max);
                            sum += e;
                            for (int f = 0; f < d; f++) o[f] += e * p.vT.get(c.kvHeadOf(h) * d + f, j);
                        }
                        for (int f = 0; f < d; f++) worst = Math.max(worst, Math.abs(o[f] / sum - concat.get(r, h * d + f)));
                    }
                }
                assertTrue(worst < 1e-5, (causal ? "causal" : "bidirectional") + ": max |merged − double| = " + worst);
            }
        }
    }

    @Test
    void onePartIsTheTiledForwardBitForBitAndAlignedPartsAgreeWithinRounding() {
        AttentionConfig c = AttentionConfig.of(32, 4).withKvHeads(2);
        int n = 2500;
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 5, arena);
            Tensor x = Tensor.uniform(arena, 6, 1, n, c.dModel());
            var options = MultiHeadAttention.Options.defaults().withThreads(2).withKernel(new TiledKernel(512));
            try (MultiHeadAttention layer = new MultiHeadAttention(w, options)) {
                Tensor expected = layer.forward(x, Mask.causal(), arena);
                Matrix qT = Tensor.allocate(arena, c.queryWidth(), n).matrix();
                Matrix kT = Tensor.allocate(arena, c.kvWidth(), n).matrix(), vT = Tensor.allocate(arena, c.kvWidth(), n).matrix();
                layer.project(x.matrix(), x.matrix(), qT, kT, vT, null);
                for (int[] cuts : List.of(new int[]{0, n}, new int[]{0, 512, 1536, n})) {
                    PartialAttention.State merged = PartialAttention.State.allocate(arena, n, c.heads(), c.headDim());
                    PartialAttention.State part = PartialAttention.State.allocate(arena, n, c.heads(), c.headDim());
                    try (Workspace ws = new Workspace()) {
                        for (int k = 0; k + 1 < cuts.length; k++) {
                            PartialAttention.attend(layer, qT, keys(kT, cuts[k], cuts[k + 1]), keys(vT, cuts[k], cuts[k + 1]), true, 0,
                                    cuts[k], part, ws);
                            PartialAttention.merge(merged, part);
                        }
                    }
                    PartialAttention.normalise(merged, merged.outMatrix()); // in place
                    Tensor y = Tensor.allocate(arena, n, c.dModel());
                    layer.projectOutput(merged.outMatrix(), y.matrix(), null);
                    if (cuts.length == 2) {
                        assertArrayEquals(expected.toArray(), y.toArray(), "one part: the tiled forward's bits");
                    } else {
                        float[] a = expected.toArray(), b = y.toArray();
                        for (int i = 0; i < a.length; i++) assertEquals(a[i], b[i], 2e-6f * (1 + Math.abs(a[i])), "element " + i);
                    }
                }
            }
        }
    }

    @Test
    void mergeIsCommutativeBitwiseAndAnEmptyPartChangesNothing() {
        AttentionConfig c = AttentionConfig.of(16, 2);
        int n = 900, m = 300, q0 = 200;
        try (Arena arena = TrackedArena.ofShared(); MultiHeadAttention layer = layer(c, arena, 128, 1)) {
            Problem p = problem(arena, c, n, q0, m, 21);
            PartialAttention.State a = state(arena, layer, p, 0, 400), b = state(arena, layer, p, 400, 900);
            PartialAttention.State ab = copy(arena, a), ba = copy(arena, b);
            PartialAttention.merge(ab, b);
            PartialAttention.merge(ba, a);
            assertArrayEquals(floats(ab), floats(ba), "a ⊕ b = b ⊕ a");
            PartialAttention.State empty = state(arena, layer, p, 600, 900); // causal: every row is before these keys
            for (int h = 0; h < c.heads(); h++) for (int r = 0; r < m; r++) assertEquals(0f, empty.sum(h, r));
            PartialAttention.State abEmpty = copy(arena, ab);
            PartialAttention.merge(abEmpty, empty);
            assertArrayEquals(floats(ab), floats(abEmpty), "merging a part no row sees changes nothing");
        }
    }

    @Test
    void refusesMismatchedShapesNamingThem() {
        AttentionConfig c = AttentionConfig.of(16, 2);
        try (Arena arena = TrackedArena.ofShared(); MultiHeadAttention layer = layer(c, arena, 128, 1); Workspace ws = new Workspace()) {
            Problem p = problem(arena, c, 50, 0, 10, 1);
            PartialAttention.State wrongRows = PartialAttention.State.allocate(arena, 11, 2, 8);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> PartialAttention.attend(layer, p.qT, p.kT, p.vT, true, 0, 0, wrongRows, ws));
            assertTrue(e.getMessage().contains("11 rows") && e.getMessage().contains("10 queries"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> PartialAttention.attend(layer, p.qT, p.kT, p.vT.colRange(0, 49), true, 0, 0, wrongRows, ws));
            assertTrue(e.getMessage().contains("Vᵀ"), e.getMessage());
            PartialAttention.State other = PartialAttention.State.allocate(arena, 10, 2, 8);
            e = assertThrows(IllegalArgumentException.class, () -> PartialAttention.merge(wrongRows, other));
            assertTrue(e.getMessage().contains("10 rows × 2 heads × 8") && e.getMessage().contains("11 × 2 × 8"), e.getMessage());
        }
    }

    static MultiHeadAttention layer(AttentionConfig c, Arena arena, int queryBlock, int threads) {
        return new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena),
                MultiHeadAttention.Options.defaults().withThreads(threads).withQueryBlock(queryBlock));
    }

    static PartialAttention.State state(Arena arena, MultiHeadAttention layer, Problem p, int k0, int k1) {
        AttentionConfig c = layer.config();
        PartialAttention.State s = PartialAttention.State.allocate(arena, p.qT.cols(), c.heads(), c.headDim());
        try (Workspace ws = new Workspace()) {
            PartialAttention.attend(layer, p.qT, keys(p.kT, k0, k1), keys(p.vT, k0, k1), true, p.q0, k0, s, ws);
        }
        return s;
    }

    static PartialAttention.State copy(Arena arena, PartialAttention.State s) {
        PartialAttention.State t = PartialAttention.State.allocate(arena, s.rows(), s.heads(), s.headDim());
        t.out().copyFrom(s.out().asSlice(0, t.out().byteSize()));
        t.max().copyFrom(s.max().asSlice(0, t.max().byteSize()));
        t.sum().copyFrom(s.sum().asSlice(0, t.sum().byteSize()));
        return t;
    }

    static float[] floats(PartialAttention.State s) {
        float[] o = s.out().toArray(java.lang.foreign.ValueLayout.JAVA_FLOAT);
        float[] mx = s.max().toArray(java.lang.foreign.ValueLayout.JAVA_FLOAT), l = s.sum().toArray(java.lang.foreign.ValueLayout.JAVA_FLOAT);
        float[] all = new float[o.length + mx.length + l.length];
        System.arraycopy(o, 0, all, 0, o.length);
        System.arraycopy(mx, 0, all, o.length, mx.length);
        System.arraycopy(l, 0, all, o.length + mx.length, l.length);
        return all;
    }
}
