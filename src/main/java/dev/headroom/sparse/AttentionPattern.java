package dev.headroom.sparse;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * A sparse attention pattern: which key j each query i may attend to, per head. Patterns are
 * what make long sequences cheap: the sparse kernel compiles a pattern into a {@link BlockLayout}
 * and skips the tiles that hold no allowed pair instead of computing and masking them.
 *
 * <p>Positions: a pattern sees each query by its position p among the keys, which the caller
 * decides ({@link dev.headroom.attention.Positions}): p = i for self-attention, the cached length
 * plus i for queries after a KV cache, i + n_k − n_q (bottom-right) by default when the lengths
 * differ. Patterns never derive it themselves.
 *
 * <p>A pattern gives the truth per element ({@link #allowed}) and may classify whole tiles
 * analytically ({@link #classify}); the default classification evaluates every element, which
 * is exact but costs O(n_q·n_k) to compile, so built-in patterns override it.
 */
public interface AttentionPattern {

    /** Whether the query at position p may attend to key j in head h, with n_k = {@code keys} keys. */
    boolean allowed(int head, long p, int j, int keys);

    /**
     * The kind of tile: queries at positions [p0, p1) × keys [k0, k1) in head h. Must agree with
     * {@link #allowed}.
     */
    default TileKind classify(int head, long p0, long p1, int k0, int k1, int keys) {
        boolean any = false, all = true;
        for (long p = p0; p < p1; p++) {
            for (int j = k0; j < k1; j++) {
                if (allowed(head, p, j, keys)) any = true;
                else all = false;
                if (any && !all) return TileKind.PARTIAL;
            }
        }
        return any ? TileKind.FULL : TileKind.EMPTY;
    }

    /**
     * Writes into {@code allowed[0 .. j1 − j0)} whether the query at position p may attend to
     * each key of [j0, j1) in head h. The kernel calls this for the partial tiles, one query row at
     * a time; built-in patterns fill whole runs instead of testing pair by pair.
     */
    default void fillRow(int head, long p, int j0, int j1, int keys, boolean[] allowed) {
        for (int j = j0; j < j1; j++) allowed[j - j0] = allowed(head, p, j, keys);
    }

    /** True when every head has the same pattern (then one layout serves all heads). */
    default boolean sameForAllHeads() {
        return true;
    }

    /** A short description, e.g. {@code window(512)}. */
    String describe();

    /** Pairs allowed by this pattern or by {@code other}. */
    default AttentionPattern or(AttentionPattern other) {
        return new Combined(this, other, true);
    }

    /** Whether a streaming pattern (attention sinks) is part of this one, combined with others. */
    default boolean nestsStreaming() {
        return false;
    }

    /** Pairs allowed by this pattern and by {@code other}. */
    default AttentionPattern and(AttentionPattern other) {
        return new Combined(this, other, false);
    }

    // ---- the built-in patterns -------------------------------------------------------------

    /** Causal: key position ≤ query position. */
    static AttentionPattern causal() {
        return new Band(Integer.MAX_VALUE / 2, 0, "causal");
    }

    /**
     * Longformer's sliding window of width w: each query sees the w/2 keys on each side of its
     * position and itself (w + 1 keys for even w, fewer at the edges).
     */
    static AttentionPattern slidingWindow(int w) {
        if (w < 0) throw new IllegalArgumentException("window width must be >= 0, got " + w);
        return new Band(w / 2, w / 2, "window(" + w + ")");
    }

    /** Mistral's causal sliding window: each query sees itself and the w − 1 keys before it. */
    static AttentionPattern causalWindow(int w) {
        if (w < 1) throw new IllegalArgumentException("causal window must be >= 1, got " + w);
        return new Band(w - 1, 0, "causal-window(" + w + ")");
    }

    /** Keys j with p − before ≤ j ≤ p + after for query position p. */
    static AttentionPattern band(int before, int after) {
        if (before < 0 || after < 0) throw new IllegalArgumentException("band sides must be >= 0, got " + before + ", " + after);
        return new Band(before, after, "band(" + before + ", " + after + ")");
    }

    /**
     * Longformer's dilated window: keys p + d·t for |t| ≤ w/2 (w/2 keys each side, d apart), so the
     * receptive field is d times wider for the same work.
     */
    static AttentionPattern dilatedWindow(int w, int dilation) {
        if (w < 0 || dilation < 1) throw new IllegalArgumentException("dilated window needs w >= 0 and dilation >= 1, got " + w + ", " + dilation);
        return new Dilated(w / 2, dilation);
    }

    /**
     * Longformer's global tokens: the given key positions attend to every key and are attended
     * by every query. Alone it allows only those rows and columns; combine it with a window.
     */
    static AttentionPattern global(int... positions) {
        return new Global(positions);
    }

    /**
     * BigBird (Zaheer et al. 2020): a sliding window of width {@code window}, the first
     * {@code globalTokens} tokens global, and for every block of {@code blockSize} queries
     * {@code randomBlocks} key blocks drawn at random (seeded; different per head).
     */
    static AttentionPattern bigBird(int window, int globalTokens, int randomBlocks, int blockSize, long seed) {
        int[] g = new int[globalTokens];
        for (int t = 0; t < globalTokens; t++) g[t] = t;
        return new Combined(new Combined(slidingWindow(window), global(g), true),
                new RandomBlocks(randomBlocks, blockSize, seed), true) {
            @Override
            public String describe() {
                return "bigbird(window " + window + ", " + globalTokens + " global, " + randomBlocks + " random blocks of "
                        + blockSize + ", seed " + seed + ")";
            }
        };
    }

    /**
     * Sparse Transformer "strided" (Child et al. 2019), causal: query p sees the l keys before it
     * (p − l < j ≤ p) and every l-th key back from it ((p − j) mod l = 0).
     */
    static AttentionPattern strided(int l) {
        if (l < 1) throw new IllegalArgumentException("stride must be >= 1, got " + l);
        return new Strided(l);
    }

    /**
     * Sparse Transformer "fixed" (Child et al. 2019), causal: query p sees keys of its own block
     * of l ({@code j / l == p / l}) and the last c positions of every block (j mod l ≥ l − c).
     */
    static AttentionPattern fixed(int l, int c) {
        if (l < 1 || c < 0 || c > l) throw new IllegalArgumentException("fixed pattern needs l >= 1 and 0 <= c <= l, got " + l + ", " + c);
        return new Fixed(l, c);
    }

    /**
     * StreamingLLM's attention sinks with a sliding window (Xiao et al. 2024), causal: the query at
     * position p sees the first {@code sinks} keys and the {@code window} keys ending at itself,
     * j ≤ p and (j &lt; sinks or j &gt; p − window). Everything between is never seen again, so a
     * KV cache may free it.
     */
    static AttentionPattern streaming(int sinks, int window) {
        if (sinks < 0 || window < 1) {
            throw new IllegalArgumentException("streaming pattern needs sinks >= 0 and window >= 1, got " + sinks + ", " + window);
        }
        return new Streaming(sinks, window);
    }

    /**
     * Block-diagonal segments (packed documents): the sequence is cut into consecutive segments of
     * the given lengths; a query sees only keys of its own segment. Positions beyond the last
     * segment see nothing.
     */
    static AttentionPattern blockDiagonal(int... segmentLengths) {
        return new Segments(segmentLengths);
    }

    /**
     * Any predicate of (head, query position, key); its layout is compiled by evaluating every pair
     * (O(n_q·n_k), for moderate n). Positions below 0 (queries before the first key, possible in
     * cross-attention with fewer keys than queries) are never allowed.
     */
    static AttentionPattern predicate(String name, Predicate p) {
        return new AttentionPattern() {
            @Override
            public boolean allowed(int head, long position, int j, int keys) {
                return position >= 0 && position <= Integer.MAX_VALUE && p.allowed(head, (int) position, j);
            }

            @Override
            public boolean sameForAllHeads() {
                return false;
            }

            @Override
            public String describe() {
                return name;
            }
        };
    }

    /** A different pattern per head: {@code patterns[h]} for head h. */
    static AttentionPattern perHead(AttentionPattern... patterns) {
        return new PerHead(patterns.clone());
    }

    /** (head, query position, key) → allowed. */
    @FunctionalInterface
    interface Predicate {
        boolean allowed(int head, int p, int j);
    }

    // ---- implementations ---------------------------------------------------------------------

    /** Keys j with p − before ≤ j ≤ p + after for the query at position p. */
    record Band(int before, int after, String name) implements AttentionPattern {
        @Override
        public boolean allowed(int head, long p, int j, int keys) {
            return j >= p - before && j <= p + after;
        }

        @Override
        public TileKind classify(int head, long p0, long p1, int k0, int k1, int keys) {
            long pFirst = p0, pLast = p1 - 1;
            // allowed iff j − p ∈ [−before, after]; over the tile j − p spans [k0 − pLast, k1 − 1 − pFirst]
            long lo = k0 - pLast, hi = k1 - 1 - pFirst;
            if (hi < -before || lo > after) return TileKind.EMPTY;
            if (lo >= -before && hi <= after) return TileKind.FULL;
            return TileKind.PARTIAL;
        }

        @Override
        public void fillRow(int head, long p, int j0, int j1, int keys, boolean[] allowed) {
            int from = (int) Math.clamp(p - before, j0, j1), to = (int) Math.clamp(p + after + 1, j0, j1);
            Arrays.fill(allowed, 0, j1 - j0, false);
            if (from < to) Arrays.fill(allowed, from - j0, to - j0, true);
        }

        @Override
        public String describe() {
            return name;
        }
    }

    record Dilated(int half, int dilation) implements AttentionPattern {
        @Override
        public boolean allowed(int head, long p, int j, int keys) {
            long off = j - p;
            return Math.abs(off) <= (long) half * dilation && off % dilation == 0;
        }

        @Override
        public TileKind classify(int head, long p0, long p1, int k0, int k1, int keys) {
            long reach = (long) half * dilation;
            // off = j − p takes every integer in [lo, hi] over the tile; allowed offsets are the
            // multiples of the dilation within [−reach, reach].
            long lo = Math.max(k0 - (p1 - 1), -reach), hi = Math.min(k1 - 1 - p0, reach);
            if (lo > hi || Math.floorDiv(hi, dilation) * dilation < lo) return TileKind.EMPTY;
            boolean oneOffset = (p1 - p0 == 1 && k1 - k0 == 1);
            if (dilation == 1 && k0 - (p1 - 1) >= -reach && k1 - 1 - p0 <= reach) return TileKind.FULL;
            return oneOffset ? TileKind.FULL : TileKind.PARTIAL;
        }

        @Override
        public String describe() {
            return "dilated-window(" + 2 * half + ", dilation " + dilation + ")";
        }
    }

    final class Global implements AttentionPattern {
        private final int[] positions; // sorted, distinct

        Global(int[] positions) {
            this.positions = Arrays.stream(positions).distinct().sorted().toArray();
            if (this.positions.length > 0 && this.positions[0] < 0) {
                throw new IllegalArgumentException("global positions must be >= 0, got " + Arrays.toString(positions));
            }
        }

        private boolean isGlobal(long p) {
            return p >= 0 && p <= Integer.MAX_VALUE && Arrays.binarySearch(positions, (int) p) >= 0;
        }

        /** Whether some global position lies in [from, to). */
        private boolean anyIn(long from, long to) {
            int at = Arrays.binarySearch(positions, (int) Math.max(Integer.MIN_VALUE, Math.min(Integer.MAX_VALUE, from)));
            int idx = at >= 0 ? at : -at - 1;
            return idx < positions.length && positions[idx] < to;
        }

        private boolean allIn(long from, long to) {
            if (to <= from) return true;
            if (from < 0 || to - 1 > Integer.MAX_VALUE) return false;
            int a = Arrays.binarySearch(positions, (int) from), b = Arrays.binarySearch(positions, (int) (to - 1));
            return a >= 0 && b >= 0 && b - a == to - 1 - from;
        }

        @Override
        public boolean allowed(int head, long p, int j, int keys) {
            return isGlobal(j) || isGlobal(p);
        }

        @Override
        public TileKind classify(int head, long p0, long p1, int k0, int k1, int keys) {
            if (allIn(k0, k1) || allIn(p0, p1)) return TileKind.FULL;
            if (anyIn(k0, k1) || anyIn(p0, p1)) return TileKind.PARTIAL;
            return TileKind.EMPTY;
        }

        @Override
        public void fillRow(int head, long p, int j0, int j1, int keys, boolean[] allowed) {
            boolean all = isGlobal(p);
            Arrays.fill(allowed, 0, j1 - j0, all);
            if (all) return;
            int at = Arrays.binarySearch(positions, j0);
            for (int t = at >= 0 ? at : -at - 1; t < positions.length && positions[t] < j1; t++) allowed[positions[t] - j0] = true;
        }

        @Override
        public String describe() {
            return "global(" + positions.length + " tokens)";
        }
    }

    /** For each block of b query positions, r random key blocks of b keys, seeded per head. */
    final class RandomBlocks implements AttentionPattern {
        private final int r, b;
        private final long seed;
        /** chosen(head, query block, n_k), memoised: layouts and kernels ask for the same blocks often. */
        private final java.util.concurrent.ConcurrentHashMap<Key, int[]> memo = new java.util.concurrent.ConcurrentHashMap<>();

        private record Key(int head, long queryBlock, int nk) {}

        RandomBlocks(int r, int b, long seed) {
            if (r < 0 || b < 1) throw new IllegalArgumentException("random blocks need r >= 0 and block size >= 1, got " + r + ", " + b);
            this.r = r;
            this.b = b;
            this.seed = seed;
        }

        /** The r key blocks chosen for query block qb of head h (may repeat when there are few blocks). */
        int[] chosen(int head, long qb, int nk) {
            if (memo.size() > 1 << 20) memo.clear();
            return memo.computeIfAbsent(new Key(head, qb, nk), k -> draw(head, qb, nk));
        }

        private int[] draw(int head, long qb, int nk) {
            int keyBlocks = (nk + b - 1) / b;
            int[] out = new int[keyBlocks == 0 ? 0 : r];
            SplittableRandom rnd = new SplittableRandom(seed ^ (0x9E3779B97F4A7C15L * (head + 1)) ^ (qb * 0xBF58476D1CE4E5B9L));
            for (int t = 0; t < out.length; t++) out[t] = rnd.nextInt(keyBlocks);
            return out;
        }

        @Override
        public boolean allowed(int head, long p, int j, int keys) {
            if (p < 0) return false;
            for (int kb : chosen(head, p / b, keys)) if (j / b == kb) return true;
            return false;
        }

        @Override
        public TileKind classify(int head, long p0, long p1, int k0, int k1, int keys) {
            long pFirst = p0, pLast = p1 - 1;
            if (pLast < 0) return TileKind.EMPTY;
            // Rows are grouped by pattern block p / b; each group sees the union of its chosen key
            // blocks. The tile is FULL if every group's union covers [k0, k1), EMPTY if none touches it.
            boolean any = false, all = pFirst >= 0;
            for (long qb = Math.max(0, pFirst) / b; qb <= pLast / b; qb++) {
                int[] chosen = chosen(head, qb, keys).clone();
                Arrays.sort(chosen);
                long covered = k0;                      // [k0, covered) is covered so far
                for (int kb : chosen) {
                    long from = (long) kb * b, to = from + b;
                    if (to <= k0 || from >= k1) continue;
                    any = true;
                    if (from <= covered) covered = Math.max(covered, to);
                }
                if (covered < k1) all = false;
                if (any && !all) return TileKind.PARTIAL;
            }
            return !any ? TileKind.EMPTY : all ? TileKind.FULL : TileKind.PARTIAL;
        }

        @Override
        public void fillRow(int head, long p, int j0, int j1, int keys, boolean[] allowed) {
            Arrays.fill(allowed, 0, j1 - j0, false);
            if (p < 0) return;
            for (int kb : chosen(head, p / b, keys)) {
                int from = Math.max(j0, kb * b), to = Math.min(j1, (kb + 1) * b);
                if (from < to) Arrays.fill(allowed, from - j0, to - j0, true);
            }
        }

        @Override
        public boolean sameForAllHeads() {
            return false;
        }

        @Override
        public String describe() {
            return "random(" + r + " blocks of " + b + ")";
        }
    }

    /** j ≤ p and (j < sinks or j > p − window). */
    record Streaming(int sinks, int window) implements AttentionPattern {
        @Override
        public boolean allowed(int head, long p, int j, int keys) {
            return j <= p && (j < sinks || j > p - window);
        }

        @Override
        public TileKind classify(int head, long p0, long p1, int k0, int k1, int keys) {
            long pLast = p1 - 1;
            if (k0 > pLast) return TileKind.EMPTY;                      // every key after every query
            // Sink keys [k0, min(k1, sinks)) are seen by every query at or after them; window keys
            // [max(k0, sinks), k1) by queries p with j ≤ p < j + window.
            long w0 = Math.max(k0, sinks), w1 = k1;                      // window part of the tile
            boolean sinkPart = k0 < sinks, windowPart = w0 < w1;
            boolean anyWindow = windowPart && w0 <= pLast && w1 - 1 > p0 - window;
            if (!sinkPart && !anyWindow) return TileKind.EMPTY;
            boolean causalFull = k1 - 1 <= p0;                          // no key after the first query
            boolean windowFull = !windowPart || w0 > pLast - window;    // the last query still sees the first window key
            return causalFull && windowFull ? TileKind.FULL : TileKind.PARTIAL;
        }

        @Override
        public void fillRow(int head, long p, int j0, int j1, int keys, boolean[] allowed) {
            Arrays.fill(allowed, 0, j1 - j0, false);
            int sinkEnd = (int) Math.clamp(Math.min(sinks, p + 1), j0, j1);
            if (sinkEnd > j0) Arrays.fill(allowed, 0, sinkEnd - j0, true);
            int from = (int) Math.clamp(Math.max(p - window + 1, sinks), j0, j1), to = (int) Math.clamp(p + 1, j0, j1);
            if (from < to) Arrays.fill(allowed, from - j0, to - j0, true);
        }

        @Override
        public String describe() {
            return "streaming(" + sinks + " sinks, window " + window + ")";
        }
    }

    record Strided(int l) implements AttentionPattern {
        @Override
        public boolean allowed(int head, long p, int j, int keys) {
            long back = p - j;
            return back >= 0 && (back < l || back % l == 0);
        }

        @Override
        public TileKind classify(int head, long p0, long p1, int k0, int k1, int keys) {
            // back = p − j takes every integer value in [minBack, maxBack] over the tile
            long minBack = p0 - (k1 - 1), maxBack = p1 - 1 - k0;
            if (maxBack < 0) return TileKind.EMPTY;
            if (minBack >= 0 && maxBack < l) return TileKind.FULL;
            long lowest = Math.max(0, minBack);
            boolean local = lowest < l;
            boolean multiple = Math.floorDiv(maxBack, l) * l >= lowest;
            return local || multiple ? TileKind.PARTIAL : TileKind.EMPTY;
        }

        @Override
        public String describe() {
            return "strided(" + l + ")";
        }
    }

    record Fixed(int l, int c) implements AttentionPattern {
        @Override
        public boolean allowed(int head, long p, int j, int keys) {
            return j <= p && (j / l == p / l || j % l >= l - c);
        }

        @Override
        public TileKind classify(int head, long p0, long p1, int k0, int k1, int keys) {
            long pFirst = p0, pLast = p1 - 1;
            if (pLast < k0) return TileKind.EMPTY;                        // every key is after every query
            // Column by column: which query positions p in [pFirst, pLast] may see key j.
            boolean any = false, all = true;
            for (long j = k0; j < k1; j++) {
                long from = Math.max(j, pFirst), to;                         // causal: p >= j
                if (j % l >= l - c) to = pLast;                              // summary column: every later p
                else to = Math.min(pLast, j / l * l + l - 1);                // else only p in j's block
                any |= from <= to;
                all &= from == pFirst && to == pLast;
                if (any && !all) return TileKind.PARTIAL;
            }
            return any ? TileKind.FULL : TileKind.EMPTY;
        }

        @Override
        public String describe() {
            return "fixed(" + l + ", " + c + ")";
        }
    }

    final class Segments implements AttentionPattern {
        private final long[] ends; // exclusive end position of each segment

        Segments(int[] lengths) {
            ends = new long[lengths.length];
            long at = 0;
            for (int s = 0; s < lengths.length; s++) {
                if (lengths[s] < 0) throw new IllegalArgumentException("segment lengths must be >= 0, got " + Arrays.toString(lengths));
                at += lengths[s];
                ends[s] = at;
            }
        }

        /** Segment of position p: the first s with ends[s] > p; ends.length when p is past the last one. */
        private int seg(long p) {
            int lo = 0, hi = ends.length;
            while (lo < hi) {
                int mid = (lo + hi) >>> 1;
                if (ends[mid] > p) hi = mid;
                else lo = mid + 1;
            }
            return lo;
        }

        @Override
        public boolean allowed(int head, long p, int j, int keys) {
            if (p < 0) return false;
            int s = seg(p);
            return s < ends.length && s == seg(j);
        }

        @Override
        public TileKind classify(int head, long p0, long p1, int k0, int k1, int keys) {
            long qLo = Math.max(0, p0), qHi = p1 - 1;
            if (qHi < 0) return TileKind.EMPTY;
            int qa = seg(qLo), qb = seg(qHi), ka = seg(k0), kb = seg(k1 - 1);
            // Segments are consecutive, so the two ranges share a pair only if their segment ranges overlap.
            int lo = Math.max(qa, ka), hi = Math.min(Math.min(qb, kb), ends.length - 1);
            if (lo > hi) return TileKind.EMPTY;
            if (p0 >= 0 && qa == qb && ka == kb && qa == ka) return TileKind.FULL;
            return TileKind.PARTIAL;
        }

        @Override
        public void fillRow(int head, long p, int j0, int j1, int keys, boolean[] allowed) {
            Arrays.fill(allowed, 0, j1 - j0, false);
            if (p < 0) return;
            int s = seg(p);
            if (s >= ends.length) return;
            long start = s == 0 ? 0 : ends[s - 1];
            int from = (int) Math.clamp(start, j0, j1), to = (int) Math.clamp(ends[s], j0, j1);
            if (from < to) Arrays.fill(allowed, from - j0, to - j0, true);
        }

        @Override
        public String describe() {
            return "block-diagonal(" + ends.length + " segments)";
        }
    }

    class Combined implements AttentionPattern {
        private final AttentionPattern a, b;
        private final boolean union;

        Combined(AttentionPattern a, AttentionPattern b, boolean union) {
            this.a = a;
            this.b = b;
            this.union = union;
        }

        @Override
        public boolean nestsStreaming() {
            return a instanceof Streaming || b instanceof Streaming || a.nestsStreaming() || b.nestsStreaming();
        }

        @Override
        public boolean allowed(int head, long p, int j, int keys) {
            return union ? a.allowed(head, p, j, keys) || b.allowed(head, p, j, keys)
                    : a.allowed(head, p, j, keys) && b.allowed(head, p, j, keys);
        }

        @Override
        public TileKind classify(int head, long p0, long p1, int k0, int k1, int keys) {
            TileKind x = a.classify(head, p0, p1, k0, k1, keys);
            if (union && x == TileKind.FULL) return x;
            if (!union && x == TileKind.EMPTY) return x;
            TileKind y = b.classify(head, p0, p1, k0, k1, keys);
            TileKind k = union ? x.or(y) : x.and(y);
            // Two partial tiles may still cover every pair together (or share none); decide exactly,
            // a row at a time.
            if (k != TileKind.PARTIAL || x != TileKind.PARTIAL || y != TileKind.PARTIAL) return k;
            boolean[] row = new boolean[k1 - k0];
            boolean any = false, all = true;
            for (long p = p0; p < p1 && !(any && !all); p++) {
                fillRow(head, p, k0, k1, keys, row);
                for (boolean v : row) {
                    any |= v;
                    all &= v;
                }
            }
            return !any ? TileKind.EMPTY : all ? TileKind.FULL : TileKind.PARTIAL;
        }

        /** Row buffers for right-hand patterns, one per nesting depth, per thread. */
        private static final ThreadLocal<RowBuffers> BUFFERS = ThreadLocal.withInitial(RowBuffers::new);

        private static final class RowBuffers {
            boolean[][] stack = new boolean[4][0];
            int depth;

            boolean[] borrow(int n) {
                if (depth == stack.length) stack = Arrays.copyOf(stack, depth * 2);
                if (stack[depth] == null || stack[depth].length < n) stack[depth] = new boolean[Math.max(n, 1024)];
                return stack[depth++];
            }
        }

        @Override
        public void fillRow(int head, long p, int j0, int j1, int keys, boolean[] allowed) {
            int n = j1 - j0;
            a.fillRow(head, p, j0, j1, keys, allowed);
            RowBuffers buffers = BUFFERS.get();
            boolean[] other = buffers.borrow(n);
            try {
                b.fillRow(head, p, j0, j1, keys, other);
            } finally {
                buffers.depth--;
            }
            if (union) for (int t = 0; t < n; t++) allowed[t] |= other[t];
            else for (int t = 0; t < n; t++) allowed[t] &= other[t];
        }

        @Override
        public boolean sameForAllHeads() {
            return a.sameForAllHeads() && b.sameForAllHeads();
        }

        @Override
        public String describe() {
            return "(" + a.describe() + (union ? " ∪ " : " ∩ ") + b.describe() + ")";
        }
    }

    record PerHead(AttentionPattern[] patterns) implements AttentionPattern {
        private AttentionPattern of(int head) {
            if (head >= patterns.length) {
                throw new IllegalArgumentException("per-head pattern has " + patterns.length + " patterns, head " + head + " asked");
            }
            return patterns[head];
        }

        @Override
        public boolean allowed(int head, long p, int j, int keys) {
            return of(head).allowed(head, p, j, keys);
        }

        @Override
        public TileKind classify(int head, long p0, long p1, int k0, int k1, int keys) {
            return of(head).classify(head, p0, p1, k0, k1, keys);
        }

        @Override
        public void fillRow(int head, long p, int j0, int j1, int keys, boolean[] allowed) {
            of(head).fillRow(head, p, j0, j1, keys, allowed);
        }

        @Override
        public boolean sameForAllHeads() {
            return false;
        }

        @Override
        public String describe() {
            return "per-head" + Arrays.toString(Arrays.stream(patterns).map(AttentionPattern::describe).toArray());
        }
    }
}
