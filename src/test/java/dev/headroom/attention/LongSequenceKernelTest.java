package dev.headroom.attention;

import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.sparse.AttentionPattern;
import dev.headroom.sparse.BlockLayout;
import dev.headroom.sparse.TileKind;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.SplittableRandom;

import static dev.headroom.attention.MultiHeadAttentionTest.assertClose;
import static dev.headroom.attention.MultiHeadAttentionTest.randomInput;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Tiled and sparse kernels against the dense kernel and the double reference. */
class LongSequenceKernelTest {
    private static final AttentionConfig C = AttentionConfig.of(24, 4).withKvHeads(2); // d = 6

    private static MultiHeadAttention.Options with(AttentionKernel k, int block) {
        return MultiHeadAttention.Options.defaults().withKernel(k).withQueryBlock(block);
    }

    /** Max |a − b| / max |b|. */
    private static double relDiff(Tensor a, Tensor b) {
        double max = 0, diff = 0;
        for (long i = 0; i < a.size(); i++) {
            max = Math.max(max, Math.abs(b.get(i)));
            diff = Math.max(diff, Math.abs(a.get(i) - b.get(i)));
        }
        return diff / Math.max(max, 1e-30);
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 31, 257, 1000})
    void tiledEqualsDenseForEveryMaskKind(int n) {
        SplittableRandom r = new SplittableRandom(n);
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(C, true, 3, arena);
            Tensor x = randomInput(arena, n, 2, n, C.dModel());
            MemorySegment allowed = MaskAndShapeTest.randomBooleans(arena, (long) n * n, n, 0.7);
            Tensor additive = Tensor.allocate(arena, n, n);
            for (long i = 0; i < additive.size(); i++) additive.set(i, (float) r.nextDouble(-2, 2));
            List<Mask> masks = List.of(Mask.none(), Mask.causal(), Mask.keyLengths(n, Math.max(0, n - 13)),
                    Mask.none().withAllowed(allowed, n, n), Mask.causal().withAdditive(additive));
            for (Mask mask : masks) {
                int tile = 1 + r.nextInt(Math.max(1, n / 3) + 16), block = 1 + r.nextInt(40);
                try (MultiHeadAttention dense = new MultiHeadAttention(w, with(DenseKernel.INSTANCE, block));
                     MultiHeadAttention tiled = new MultiHeadAttention(w, with(new TiledKernel(tile), block))) {
                    Tensor yd = dense.forward(x, mask, arena), yt = tiled.forward(x, mask, arena);
                    double rel = relDiff(yt, yd);
                    assertTrue(rel < 2e-6, "n=" + n + " tile " + tile + " block " + block + ": tiled vs dense " + rel);
                    if (n <= 257) assertClose(ReferenceAttention.forward(w, x, null, mask), yt, n, C, "tiled n=" + n);
                }
            }
        }
    }

    /** The pattern as an explicit (B, H, n_q, n_k) boolean mask, for the dense kernel to apply. */
    static Mask explicitEquivalent(Arena arena, AttentionPattern p, int batch, int heads, int nq, int nk) {
        MemorySegment m = arena.allocate((long) batch * heads * nq * nk);
        for (int b = 0; b < batch; b++) for (int h = 0; h < heads; h++) for (int i = 0; i < nq; i++) for (int j = 0; j < nk; j++) {
            m.set(ValueLayout.JAVA_BYTE, (((long) b * heads + h) * nq + i) * nk + j, (byte) (p.allowed(h, (long) i + nk - nq, j, nk) ? 1 : 0));
        }
        return Mask.none().withAllowed(m, batch, heads, nq, nk);
    }

    static List<AttentionPattern> patterns() {
        return List.of(
                AttentionPattern.causal(),
                AttentionPattern.slidingWindow(10),
                AttentionPattern.causalWindow(7),
                AttentionPattern.slidingWindow(6).and(AttentionPattern.causal()),
                AttentionPattern.dilatedWindow(8, 3),
                AttentionPattern.slidingWindow(4).or(AttentionPattern.global(0, 17, 60)),
                AttentionPattern.bigBird(6, 2, 2, 8, 42),
                AttentionPattern.strided(8),
                AttentionPattern.fixed(16, 3),
                AttentionPattern.blockDiagonal(20, 0, 33, 15),            // the tail past 68 sees nothing
                AttentionPattern.streaming(4, 9),
                AttentionPattern.streaming(0, 1),
                AttentionPattern.streaming(13, 5),
                AttentionPattern.predicate("even keys of my parity", (h, i, j) -> (i + j + h) % 2 == 0),
                AttentionPattern.perHead(AttentionPattern.causal(), AttentionPattern.slidingWindow(2),
                        AttentionPattern.global(3), AttentionPattern.blockDiagonal(30, 40)));
    }

    @Test
    void everyPatternEqualsDenseWithTheEquivalentExplicitMask() {
        int B = 2, H = C.heads();
        try (Arena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(C, true, 5, arena);
            for (int[] sizes : new int[][]{{75, 75}, {9, 75}, {75, 30}}) {
                int nq = sizes[0], nk = sizes[1];
                Tensor q = randomInput(arena, 1, B, nq, C.dModel());
                Tensor kv = nq == nk ? null : randomInput(arena, 2, B, nk, C.dModel());
                for (AttentionPattern p : patterns()) {
                    for (Mask extra : List.of(Mask.none(), Mask.causal().withKeyLengths(nk, nk - 5))) {
                        Mask sparseMask = extra.withPattern(p);
                        Mask denseMask = explicitEquivalent(arena, p, B, H, nq, nk);
                        if (extra.isCausal()) denseMask = denseMask.withCausal().withKeyLengths(nk, nk - 5);
                        try (MultiHeadAttention sparse = new MultiHeadAttention(w, with(new SparseKernel(8, 24), 16));
                             MultiHeadAttention dense = new MultiHeadAttention(w, with(DenseKernel.INSTANCE, 16))) {
                            Tensor ys = sparse.forward(q, kv, sparseMask, arena), yd = dense.forward(q, kv, denseMask, arena);
                            double rel = relDiff(ys, yd);
                            String what = p.describe() + " n_q=" + nq + " n_k=" + nk + (extra.isCausal() ? " +causal+padding" : "");
                            assertTrue(rel < 2e-6, what + ": sparse vs dense " + rel);
                            assertClose(ReferenceAttention.forward(w, q, kv, denseMask), ys, nk, C, what);
                        }
                    }
                }
            }
        }
    }

    @Test
    void classifyAgreesWithTheElementsOnRandomTiles() {
        SplittableRandom r = new SplittableRandom(1);
        for (AttentionPattern p : patterns()) {
            for (int trial = 0; trial < 400; trial++) {
                int nq = 1 + r.nextInt(90), nk = 1 + r.nextInt(90), h = r.nextInt(4);
                int q0 = r.nextInt(nq), q1 = q0 + 1 + r.nextInt(nq - q0), k0 = r.nextInt(nk), k1 = k0 + 1 + r.nextInt(nk - k0);
                boolean any = false, all = true;
                for (int i = q0; i < q1; i++) for (int j = k0; j < k1; j++) {
                    boolean a = p.allowed(h, (long) i + nk - nq, j, nk);
                    any |= a;
                    all &= a;
                }
                TileKind k = p.classify(h, (long) q0 + nk - nq, (long) q1 + nk - nq, k0, k1, nk);
                String where = p.describe() + " tile [" + q0 + "," + q1 + ")×[" + k0 + "," + k1 + ") of " + nq + "×" + nk + " head " + h;
                if (k == TileKind.EMPTY) assertTrue(!any, where + " called EMPTY but holds an allowed pair");
                if (k == TileKind.FULL) assertTrue(all, where + " called FULL but holds a forbidden pair");
                if (k == TileKind.PARTIAL) assertTrue(any, where + " called PARTIAL but is empty: work would not be skipped");
            }
        }
    }

    @Test
    void compiledLayoutsAgreeWithTheElementsInEveryHead() {
        int n = 61, qb = 16, kb = 8;
        for (AttentionPattern p : patterns()) {
            BlockLayout layout = BlockLayout.compile(p, 4, n, n, 0, qb, kb);
            for (int h = 0; h < 4; h++) {
                for (int q = 0; q < layout.queryBlocks(); q++) {
                    java.util.Map<Integer, TileKind> listed = new java.util.HashMap<>();
                    for (int t = 0; t < layout.tileCount(h, q); t++) listed.put(layout.tileKeyBlock(h, q, t), layout.tileKind(h, q, t));
                    for (int k = 0; k < layout.keyBlocks(); k++) {
                        boolean any = false, all = true;
                        for (int i = q * qb; i < Math.min(n, (q + 1) * qb); i++) for (int j = k * kb; j < Math.min(n, (k + 1) * kb); j++) {
                            boolean a = p.allowed(h, i, j, n);
                            any |= a;
                            all &= a;
                        }
                        TileKind truth = !any ? TileKind.EMPTY : all ? TileKind.FULL : TileKind.PARTIAL;
                        assertEquals(truth, listed.getOrDefault(k, TileKind.EMPTY), p.describe() + " head " + h + " tile " + q + "×" + k);
                    }
                }
            }
        }
    }

    @Test
    void fillRowAgreesWithTheElements() {
        SplittableRandom r = new SplittableRandom(2);
        boolean[] row = new boolean[200];
        for (AttentionPattern p : patterns()) {
            for (int trial = 0; trial < 300; trial++) {
                int nq = 1 + r.nextInt(150), nk = 1 + r.nextInt(150), h = r.nextInt(4), i = r.nextInt(nq);
                int j0 = r.nextInt(nk), j1 = j0 + 1 + r.nextInt(nk - j0);
                java.util.Arrays.fill(row, true);
                p.fillRow(h, (long) i + nk - nq, j0, j1, nk, row);
                for (int j = j0; j < j1; j++) {
                    assertEquals(p.allowed(h, (long) i + nk - nq, j, nk), row[j - j0], p.describe() + " row " + i + " key " + j + " of " + nq + "×" + nk);
                }
            }
        }
    }

    @Test
    void theSparseKernelComputesExactlyTheNonEmptyTiles() {
        int n = 1000, block = 100, keyBlock = 64;
        AttentionPattern window = AttentionPattern.slidingWindow(128);
        BlockLayout layout = BlockLayout.compile(window, C.heads(), n, n, 0, block, keyBlock);
        // count by brute force: a tile is non-empty iff it holds an allowed pair
        long nonEmpty = 0, total = 0;
        for (int q0 = 0; q0 < n; q0 += block) for (int k0 = 0; k0 < n; k0 += keyBlock) {
            total++;
            boolean any = false;
            for (int i = q0; i < Math.min(n, q0 + block) && !any; i++)
                for (int j = k0; j < Math.min(n, k0 + keyBlock) && !any; j++) any = Math.abs(i - j) <= 64;
            if (any) nonEmpty++;
        }
        nonEmpty *= C.heads();
        total *= C.heads();
        assertEquals(nonEmpty, layout.tiles(TileKind.FULL) + layout.tiles(TileKind.PARTIAL));
        assertEquals(total - nonEmpty, layout.tiles(TileKind.EMPTY));
        Profile profile = new Profile();
        try (Arena arena = TrackedArena.ofShared();
             MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(C, false, 1, arena),
                     with(new SparseKernel(keyBlock, 256), block));
             Workspace ws = new Workspace()) {
            Tensor x = randomInput(arena, 1, n, C.dModel());
            mha.forward(x, null, Mask.pattern(window), Tensor.allocate(arena, x.shape()), ws, CallOptions.profiling(profile));
        }
        assertEquals(nonEmpty, profile.tilesComputed(), "tiles visited by the kernel");
        // density: the exact share of allowed pairs
        long allowedPairs = 0;
        for (int i = 0; i < n; i++) allowedPairs += Math.min(n - 1, i + 64) - Math.max(0, i - 64) + 1;
        assertEquals(allowedPairs / (double) n / n, layout.density(), 1e-12);
    }

    @Test
    void tiledPeakMemoryDoesNotGrowBeyondActivations() {
        AttentionConfig c = AttentionConfig.of(32, 4);
        long[] overhead = new long[2];
        int[] sizes = {1500, 6000};
        for (int s = 0; s < 2; s++) {
            int n = sizes[s];
            try (TrackedArena arena = TrackedArena.ofShared();
                 MultiHeadAttention mha = new MultiHeadAttention(AttentionWeights.random(c, true, 1, arena),
                         MultiHeadAttention.Options.defaults().withThreads(2).withKernel(new TiledKernel(256)).withQueryBlock(128))) {
                Tensor x = randomInput(arena, 1, n, 32);
                long before = OffHeap.currentBytes();
                OffHeap.resetPeak();
                mha.forward(x, Mask.causal(), arena);
                long activations = 4L * n * 32 /* output */ + 4L * 3 * 32 * n /* Qᵀ, Kᵀ, Vᵀ */ + 4L * n * 32 /* concat */;
                overhead[s] = OffHeap.peakBytes() - before - activations;
            }
        }
        assertEquals(overhead[0], overhead[1], "scratch beyond the O(n) activations must not depend on n");
        assertEquals(4L * 2 * (128 * 256 + 2 * 128), overhead[0], "two workers × (128 × 256 scores + running max and sum)");
    }
}
