package dev.headroom.attention;

import dev.headroom.sparse.AttentionPattern;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * Which keys each query may attend to. A mask combines any of:
 * <ul>
 *   <li><b>causal</b>: a query at position p sees key j iff j ≤ p. Positions come from
 *       {@link Positions}: by default query i is at i + (n_k − n_q), so with equal lengths
 *       that is j ≤ i and with a longer key sequence the last query sees every key (the
 *       bottom-right alignment of FlashAttention ≥ 2.1; PyTorch's {@code is_causal} aligns
 *       top-left, which differs only when n_q ≠ n_k); after a KV cache, query i of a sequence
 *       with c cached tokens is at c + i.</li>
 *   <li><b>key lengths</b>: per batch element b, only keys j &lt; length[b] exist (padding).</li>
 *   <li><b>an explicit mask</b> of shape (n_q, n_k), (B, n_q, n_k) or (B, H, n_q, n_k), either
 *       boolean (one byte per element, non-zero = <em>allowed</em>, as in PyTorch's
 *       {@code scaled_dot_product_attention}; note that {@code nn.MultiheadAttention}'s boolean
 *       {@code attn_mask} means the opposite) or additive (float, added to the scaled scores;
 *       −∞ forbids).</li>
 *   <li><b>a sparse pattern</b> ({@link AttentionPattern}: windows, global tokens, BigBird, …):
 *       with it, the sparse kernel skips the tiles the pattern leaves empty instead of masking
 *       them; other kernels apply it element by element.</li>
 * </ul>
 * A query with no allowed key gets zeros from every head (so the layer's output row is just the
 * output bias b_O), never NaN.
 */
public final class Mask {
    private static final Mask NONE = new Mask(false, null, null, null, null, null);

    private final boolean causal;
    private final int[] keyLengths;
    private final MemorySegment allowed;   // one byte per element, or null
    private final Tensor additive;         // or null
    private final int[] explicitShape;     // shape of allowed/additive
    private final AttentionPattern pattern; // or null

    private Mask(boolean causal, int[] keyLengths, MemorySegment allowed, Tensor additive, int[] explicitShape,
                 AttentionPattern pattern) {
        this.causal = causal;
        this.keyLengths = keyLengths;
        this.allowed = allowed;
        this.additive = additive;
        this.explicitShape = explicitShape;
        this.pattern = pattern;
    }

    /** Every query sees every key. */
    public static Mask none() {
        return NONE;
    }

    public static Mask causal() {
        return NONE.withCausal();
    }

    /** Key padding: batch element b has {@code lengths[b]} real keys. */
    public static Mask keyLengths(int... lengths) {
        return NONE.withKeyLengths(lengths);
    }

    /** Only pairs the pattern allows (in addition to everything else in this mask). */
    public static Mask pattern(AttentionPattern pattern) {
        return NONE.withPattern(pattern);
    }

    public Mask withCausal() {
        return new Mask(true, keyLengths, allowed, additive, explicitShape, pattern);
    }

    /** Adds a sparse pattern; replaces any pattern set before (combine patterns with or/and). */
    public Mask withPattern(AttentionPattern p) {
        if (p == null) throw new IllegalArgumentException("pattern must not be null");
        if (!(p instanceof AttentionPattern.Streaming) && p.nestsStreaming()) {
            // The sinks' positions (RoPE and ALiBi see them at their place in the cache) are read
            // from a top-level streaming pattern only; nested, they would silently be text positions.
            throw new IllegalArgumentException("attention sinks (AttentionPattern.streaming) must be a mask's whole pattern, "
                    + "not combined with another: " + p.describe());
        }
        return new Mask(causal, keyLengths, allowed, additive, explicitShape, p);
    }

    /** The sparse pattern, or null. */
    public AttentionPattern pattern() {
        return pattern;
    }

    public Mask withKeyLengths(int... lengths) {
        for (int len : lengths) {
            if (len < 0) throw new IllegalArgumentException("key lengths must be >= 0, got " + Arrays.toString(lengths));
        }
        return new Mask(causal, lengths.clone(), allowed, additive, explicitShape, pattern);
    }

    /**
     * A boolean mask, one byte per element (non-zero = allowed), of shape (n_q, n_k), (B, n_q, n_k)
     * or (B, H, n_q, n_k). Replaces any explicit mask set before.
     */
    public Mask withAllowed(MemorySegment bytes, int... shape) {
        long n = checkExplicitShape(shape);
        if (bytes.byteSize() != n) {
            throw new IllegalArgumentException("boolean mask of shape " + Arrays.toString(shape) + " needs " + n
                    + " bytes, got " + bytes.byteSize());
        }
        return new Mask(causal, keyLengths, bytes, null, shape.clone(), pattern);
    }

    /** An additive float mask of shape (n_q, n_k), (B, n_q, n_k) or (B, H, n_q, n_k). */
    public Mask withAdditive(Tensor mask) {
        checkExplicitShape(mask.shape());
        return new Mask(causal, keyLengths, null, mask, mask.shape(), pattern);
    }

    private static long checkExplicitShape(int[] shape) {
        if (shape.length < 2 || shape.length > 4) {
            throw new IllegalArgumentException("an explicit mask must have shape (n_q, n_k), (B, n_q, n_k) or "
                    + "(B, H, n_q, n_k), got " + Arrays.toString(shape));
        }
        long n = 1;
        for (int d : shape) n *= d;
        return n;
    }

    /** Per-batch key lengths, or null. */
    int[] keyLengthsOrNull() {
        return keyLengths == null ? null : keyLengths.clone();
    }

    /** The boolean mask bytes, or null. */
    MemorySegment allowedOrNull() {
        return allowed;
    }

    /** The additive mask, or null. */
    Tensor additiveOrNull() {
        return additive;
    }

    /** The shape of the explicit mask, or null. */
    int[] explicitShapeOrNull() {
        return explicitShape == null ? null : explicitShape.clone();
    }

    /** The memory of the explicit mask, or null. */
    MemorySegment explicitSegment() {
        return allowed != null ? allowed : additive != null ? additive.segment() : null;
    }

    public boolean isCausal() {
        return causal;
    }

    public boolean hasExplicit() {
        return allowed != null || additive != null;
    }

    /** True when nothing is masked. */
    public boolean isNone() {
        return !causal && keyLengths == null && !hasExplicit() && pattern == null;
    }

    /**
     * Checks the mask against the problem's shapes and returns the form the kernels query, with
     * the queries at their default positions ({@link Positions#bottomRight}).
     *
     * @throws IllegalArgumentException naming the mismatch
     */
    public Bound bind(int batch, int heads, int queries, int keys) {
        return bind(batch, heads, queries, keys, Positions.bottomRight(queries, keys));
    }

    /**
     * Checks the mask against the problem's shapes and returns the form the kernels query, with
     * the queries at {@code positions}.
     *
     * @throws IllegalArgumentException naming the mismatch
     */
    public Bound bind(int batch, int heads, int queries, int keys, Positions positions) {
        positions.check(batch);
        if (keyLengths != null) {
            if (keyLengths.length != batch) {
                throw new IllegalArgumentException("key lengths " + Arrays.toString(keyLengths) + " give "
                        + keyLengths.length + " values for a batch of " + batch);
            }
            for (int len : keyLengths) {
                if (len > keys) {
                    throw new IllegalArgumentException("key length " + len + " exceeds the " + keys + " keys of the input "
                            + "(key lengths " + Arrays.toString(keyLengths) + ")");
                }
            }
        }
        long batchStride = 0, headStride = 0;
        if (hasExplicit()) {
            int r = explicitShape.length;
            if (explicitShape[r - 2] != queries || explicitShape[r - 1] != keys) {
                throw new IllegalArgumentException("explicit mask of shape " + Arrays.toString(explicitShape)
                        + " does not end in (n_q, n_k) = (" + queries + ", " + keys + ")");
            }
            long plane = (long) queries * keys;
            if (r >= 3) {
                if (explicitShape[0] != batch) {
                    throw new IllegalArgumentException("explicit mask of shape " + Arrays.toString(explicitShape)
                            + " has batch " + explicitShape[0] + ", input batch is " + batch);
                }
                batchStride = r == 4 ? plane * heads : plane;
            }
            if (r == 4) {
                if (explicitShape[1] != heads) {
                    throw new IllegalArgumentException("explicit mask of shape " + Arrays.toString(explicitShape)
                            + " has " + explicitShape[1] + " heads, the layer has " + heads);
                }
                headStride = plane;
            }
        }
        return new Bound(this, queries, keys, positions, batchStride, headStride);
    }

    /**
     * Where the query at position p sits when it looks at the sinks of a streaming mask (sinks
     * and window as {@link AttentionPattern#streaming}): its place in the cache, p − Δ, with
     * Δ = max(0, p − window + 1 − sinks) keys evicted between the sinks and the window. The one
     * definition every caller uses.
     */
    public static long sinkPosition(long p, int sinks, int window) {
        return sinks == 0 ? p : p - Math.max(0, p - window + 1 - sinks);
    }

    /** A mask checked against one problem's shapes; what the kernels ask. Immutable, thread-safe. */
    public static final class Bound {
        private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
        private final Mask mask;
        private final int queries, keys;
        private final Positions positions;
        private final long batchStride, headStride;
        /** Per query head, the ALiBi slope; null without ALiBi. */
        private final float[] alibiSlopes;
        /** Attention sinks and window of a streaming pattern (StreamingLLM); sinks = 0 without one. */
        private final int sinks, window;

        Bound(Mask mask, int queries, int keys, Positions positions, long batchStride, long headStride) {
            this(mask, queries, keys, positions, batchStride, headStride, null);
        }

        private Bound(Mask mask, int queries, int keys, Positions positions, long batchStride, long headStride,
                      float[] alibiSlopes) {
            this.mask = mask;
            this.queries = queries;
            this.keys = keys;
            this.positions = positions;
            this.alibiSlopes = alibiSlopes;
            if (mask.pattern instanceof AttentionPattern.Streaming st) {
                this.sinks = st.sinks();
                this.window = st.window();
            } else {
                this.sinks = 0;
                this.window = 0;
            }
            this.batchStride = batchStride;
            this.headStride = headStride;
        }

        public Mask mask() {
            return mask;
        }

        /** n_q. */
        public int queries() {
            return queries;
        }

        /** n_k. */
        public int keys() {
            return keys;
        }

        /** Where the queries sit among the keys. */
        public Positions positions() {
            return positions;
        }

        /** Position of query i of batch element b. */
        public long position(int b, int i) {
            return positions.of(b, i);
        }

        /** The same bound with each head h adding −slopes[h]·|q − j| to its scores (ALiBi). */
        public Bound withAlibi(float[] slopes) {
            return new Bound(mask, queries, keys, positions, batchStride, headStride, slopes);
        }

        /**
         * Attention sinks of a streaming mask: the first {@code sinks()} keys, which every query
         * sees; 0 when the mask has no streaming pattern.
         */
        public int sinks() {
            return sinks;
        }

        /** The window of a streaming mask (0 without one). */
        public int window() {
            return window;
        }

        /**
         * Where query i of batch element b sits when it looks at the sinks. StreamingLLM gives
         * positions by place in the cache (sinks, then the window), not in the text: with Δ keys
         * evicted between the sinks and the window, the query is at p − Δ for the sinks. For window
         * keys p − j is unchanged, so they keep the text positions. Δ = max(0, p − window + 1 − sinks).
         */
        public long sinkPosition(int b, int i) {
            return Mask.sinkPosition(positions.of(b, i), sinks, window);
        }

        /** True when scores need a position-dependent bias ({@link #applyBias}). */
        public boolean hasBias() {
            return alibiSlopes != null;
        }

        /**
         * Adds head h's ALiBi bias −m_h·|q − j| to keys [k0, k0 + len) of query i (batch b), whose
         * scores are {@code row[offset ..)}; q is the query's position, or its sink position for
         * sink keys. Forbidden keys stay −∞.
         */
        public void applyBias(int b, int h, int i, MemorySegment row, long offset, int k0, int len) {
            if (alibiSlopes == null) return;
            float m = alibiSlopes[h];
            long p = positions.of(b, i), ps = sinkPosition(b, i);
            for (int t = 0; t < len; t++) {
                int j = k0 + t;
                long q = j < sinks ? ps : p;
                long at = offset + t;
                row.setAtIndex(F, at, row.getAtIndex(F, at) - m * Math.abs(q - j));
            }
        }

        /**
         * The number of leading keys query i of batch b may see before any explicit mask: keys
         * j ≥ keyEnd are never allowed (causal and padding limits). May be 0.
         */
        public int keyEnd(int b, int i) {
            int end = keys;
            if (mask.keyLengths != null) end = Math.min(end, mask.keyLengths[b]);
            if (mask.causal) end = (int) Math.min(end, Math.max(0, positions.of(b, i) + 1));
            return end;
        }

        public boolean hasExplicit() {
            return mask.hasExplicit();
        }

        /**
         * Applies the explicit mask to keys [j0, j1) of query i (batch b, head h), whose scores are
         * {@code row[offset .. offset + j1 − j0)}: adds the additive mask, or sets forbidden keys to −∞.
         */
        public void applyExplicit(int b, int h, int i, MemorySegment row, long offset, int j0, int j1) {
            long base = b * batchStride + h * headStride + (long) i * keys;
            if (mask.additive != null) {
                MemorySegment m = mask.additive.segment();
                for (int j = j0; j < j1; j++) {
                    long at = offset + j - j0;
                    row.setAtIndex(F, at, row.getAtIndex(F, at) + m.getAtIndex(F, base + j));
                }
            } else if (mask.allowed != null) {
                MemorySegment m = mask.allowed;
                for (int j = j0; j < j1; j++) {
                    if (m.get(ValueLayout.JAVA_BYTE, base + j) == 0) row.setAtIndex(F, offset + j - j0, Float.NEGATIVE_INFINITY);
                }
            }
        }

        /** The sparse pattern, or null. */
        public AttentionPattern pattern() {
            return mask.pattern;
        }

        /** Row buffers for {@link #applyPattern}, per thread (kernels run on several). */
        private static final ThreadLocal<boolean[]> ROW = ThreadLocal.withInitial(() -> new boolean[1024]);

        /**
         * Sets keys [j0, j1) of query i (batch b, head h) that the pattern forbids to −∞; key j's
         * score is at {@code row[offset + j − rowStart]}.
         */
        public void applyPattern(int b, int h, int i, MemorySegment row, long offset, int rowStart, int j0, int j1) {
            if (j1 <= j0) return;
            boolean[] ok = ROW.get();
            if (ok.length < j1 - j0) ROW.set(ok = new boolean[j1 - j0]);
            mask.pattern.fillRow(h, positions.of(b, i), j0, j1, keys, ok);
            for (int j = j0; j < j1; j++) {
                if (!ok[j - j0]) row.setAtIndex(F, offset + j - rowStart, Float.NEGATIVE_INFINITY);
            }
        }
    }
}
