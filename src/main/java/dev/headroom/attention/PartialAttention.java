package dev.headroom.attention;

import dev.headroom.tensor.Matrix;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Exact attention with the keys split into parts that are attended apart (on other threads,
 * processes or machines: sequence parallelism, as ring attention and flash-decoding do) and
 * merged afterwards. Each part leaves the online-softmax state instead of an output; states merge
 * exactly; normalising the merged state gives attention over all the keys. For query row i of
 * head h, over the keys j of a part, with masked scores s_ij = scale · q_i · k_j:
 * <pre>
 *   M_i = max_j s_ij      L_i = Σ_j e^(s_ij − M_i)      O_i = Σ_j e^(s_ij − M_i) v_j   (unnormalised)
 *   merge(a, b):   M = max(M_a, M_b),  c = e^(M_a − M), c' = e^(M_b − M),
 *                  L = c L_a + c' L_b,  O = c O_a + c' O_b
 *   output:        O / L   (zeros where L = 0: no part had a key the row may see)
 * </pre>
 * {@link #attend} is the tiled kernel's own loop ({@link SpanAttention}) stopped before its last
 * step; over one part holding every key, {@link #normalise} then gives bitwise what the tiled
 * kernel's attend stage gives. Merging is commutative bitwise and associative up to rounding
 * (it sums in double and stores float): merge in a fixed order for results that do not depend on
 * the order parts arrive in.
 *
 * <p>Positions are those of the whole sequence: query r of a call is at {@code queryStart + r},
 * key j of a part at {@code keyStart + j}; a causal row sees keys at positions ≤ its own, so a
 * part entirely after a row leaves it empty (M = −∞, L = 0, O = 0). ALiBi, when the layer's config
 * has it, is applied from the same positions. RoPE is not applied here: Q and K arrive turned at
 * their positions (as {@link MultiHeadAttention#project} followed by the caller's own rotation,
 * or a KV cache, give them).
 */
public final class PartialAttention {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private PartialAttention() {}

    /**
     * The online-softmax state of {@code rows} query rows of every head over some keys. The
     * memory belongs to whoever made the segments.
     *
     * @param out (rows, H·d) row-major: unnormalised O, head h in columns [h·d, (h+1)·d); native
     *            memory, since sgemm writes it
     * @param max (H, rows): M per head and row, −∞ where no key was allowed
     * @param sum (H, rows): L per head and row
     */
    public record State(int rows, int heads, int headDim, MemorySegment out, MemorySegment max, MemorySegment sum) {
        public State {
            if (rows < 1 || heads < 1 || headDim < 1) {
                throw new IllegalArgumentException("a state needs rows, heads and head width >= 1, got " + rows + ", " + heads + ", "
                        + headDim);
            }
            long o = (long) rows * heads * headDim, ml = (long) heads * rows;
            if (out.byteSize() < o * Float.BYTES || max.byteSize() < ml * Float.BYTES || sum.byteSize() < ml * Float.BYTES) {
                throw new IllegalArgumentException("a state of " + rows + " rows, " + heads + " heads of " + headDim + " needs O of "
                        + o + " floats and M, L of " + ml + " each; got " + out.byteSize() / Float.BYTES + ", "
                        + max.byteSize() / Float.BYTES + " and " + sum.byteSize() / Float.BYTES);
            }
        }

        /** An empty state (O = 0, M = −∞, L = 0: no keys yet) in {@code arena}. */
        public static State allocate(Arena arena, int rows, int heads, int headDim) {
            long ml = (long) heads * rows;
            State s = new State(rows, heads, headDim, arena.allocate((long) rows * heads * headDim * Float.BYTES, 64),
                    arena.allocate(ml * Float.BYTES, 64), arena.allocate(ml * Float.BYTES, 64));
            s.clear();
            return s;
        }

        /** Makes this the state of no keys: O = 0, M = −∞, L = 0. */
        public void clear() {
            out.asSlice(0, (long) rows * heads * headDim * Float.BYTES).fill((byte) 0);
            for (long i = 0; i < (long) heads * rows; i++) max.setAtIndex(F, i, Float.NEGATIVE_INFINITY);
            sum.asSlice(0, (long) heads * rows * Float.BYTES).fill((byte) 0);
        }

        /** O as a matrix, (rows, H·d). */
        public Matrix outMatrix() {
            return Matrix.of(out, 0, rows, heads * headDim);
        }

        /** M of head h, row i. */
        public float max(int h, int i) {
            return max.getAtIndex(F, (long) h * rows + i);
        }

        /** L of head h, row i. */
        public float sum(int h, int i) {
            return sum.getAtIndex(F, (long) h * rows + i);
        }
    }

    /**
     * Attends the m queries of {@code qT} over one part of the keys, writing the part's state to
     * {@code state} (all of it is overwritten), with {@code layer}'s heads, scale, ALiBi, softmax,
     * key tile and threads (its weights are not used). Scratch comes from {@code ws}.
     *
     * @param qT         Qᵀ, (H·d, m): the queries as columns, projected (and turned, with RoPE)
     * @param kT         Kᵀ of the part, (G·d, n_part)
     * @param vT         Vᵀ of the part, (G·d, n_part)
     * @param causal     whether a query sees only keys at positions up to its own
     * @param queryStart position of query 0 in the sequence
     * @param keyStart   position of the part's key 0 in the sequence
     */
    public static void attend(MultiHeadAttention layer, Matrix qT, Matrix kT, Matrix vT, boolean causal, int queryStart,
                              int keyStart, State state, Workspace ws) {
        AttentionConfig c = layer.config();
        int m = qT.cols(), nk = kT.cols(), d = c.headDim(), H = c.heads();
        if (qT.rows() != c.queryWidth() || kT.rows() != c.kvWidth() || vT.rows() != c.kvWidth() || vT.cols() != nk) {
            throw new IllegalArgumentException("a partial attend of " + AttentionWeights.describe(c) + " needs Qᵀ (" + c.queryWidth()
                    + ", m), Kᵀ and Vᵀ (" + c.kvWidth() + ", n_part); got Qᵀ " + qT + ", Kᵀ " + kT + ", Vᵀ " + vT);
        }
        if (state.rows() != m || state.heads() != H || state.headDim() != d) {
            throw new IllegalArgumentException("the state holds " + state.rows() + " rows of " + state.heads() + " heads of "
                    + state.headDim() + "; the call has " + m + " queries of " + H + " heads of " + d);
        }
        if (!state.out().isNative()) {
            throw new IllegalArgumentException("the state's O must be native memory (sgemm writes it), not a heap segment");
        }
        if (layer.pool().isClosed()) throw new IllegalStateException("this MultiHeadAttention (or the pool it runs on) is closed");
        if (nk == 0) {
            state.clear();
            return;
        }
        // Positions relative to the part: the mask and ALiBi see query r at queryStart − keyStart + r
        // against key j, which is what they would see at whole-sequence positions.
        long relative = (long) queryStart - keyStart;
        if (relative < Integer.MIN_VALUE || relative > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("query start " + queryStart + " and key start " + keyStart + " are too far apart");
        }
        Mask.Bound bound = (causal ? Mask.causal() : Mask.none()).bind(1, H, m, nk, Positions.uniform((int) relative));
        if (c.alibi()) bound = bound.withAlibi(c.alibiSlopes());
        Mask.Bound mask = bound;
        int block = Math.min(layer.options().queryBlock(), m);
        int width = Math.min(nk, layer.options().kernel() instanceof TiledKernel t ? t.keyTile() : MultiHeadAttention.TILE_KEYS);
        int blocks = (m + block - 1) / block;
        Matrix out = state.outMatrix();
        ws.acquire();
        try {
            ws.prepare(0, 0, layer.pool().threads(), SpanAttention.scratchFloats(block, width));
            layer.pool().run(H * blocks, (task, worker) -> {
                int h = task / blocks, q0 = task % blocks * block, q1 = Math.min(m, q0 + block), g = c.kvHeadOf(h);
                HeadBlock blk = new HeadBlock(0, h, q0, qT.rowRange(h * d, (h + 1) * d).colRange(q0, q1), null,
                        kT.rowRange(g * d, (g + 1) * d), vT.rowRange(g * d, (g + 1) * d), true,
                        out.rowRange(q0, q1).colRange(h * d, (h + 1) * d), c.scale(), mask, layer.options().softmax(), null, null,
                        null);
                SpanAttention.attend(blk, ws.scratch(worker), SpanAttention.tiles(SpanAttention.blockKeyEnd(blk), width, false),
                        width, state.max(), state.sum(), (long) h * m + q0);
            });
        } finally {
            ws.releaseUse();
        }
    }

    /**
     * Merges {@code from} into {@code into}: afterwards {@code into} is the state of both parts'
     * keys. Both must have the same rows, heads and head width. Sums in double.
     */
    public static void merge(State into, State from) {
        if (into.rows() != from.rows() || into.heads() != from.heads() || into.headDim() != from.headDim()) {
            throw new IllegalArgumentException("cannot merge a state of " + from.rows() + " rows × " + from.heads() + " heads × "
                    + from.headDim() + " into one of " + into.rows() + " × " + into.heads() + " × " + into.headDim());
        }
        int m = into.rows(), H = into.heads(), d = into.headDim(), width = H * d;
        for (int h = 0; h < H; h++) {
            for (int i = 0; i < m; i++) {
                long at = (long) h * m + i;
                float ma = into.max().getAtIndex(F, at), mb = from.max().getAtIndex(F, at);
                if (mb == Float.NEGATIVE_INFINITY) continue;        // nothing to add
                float mNew = Math.max(ma, mb);
                // e^(M_part − M), 0 for a part that saw nothing (M = −∞)
                double ca = ma == Float.NEGATIVE_INFINITY ? 0 : Math.exp((double) ma - mNew);
                double cb = Math.exp((double) mb - mNew);
                into.max().setAtIndex(F, at, mNew);
                into.sum().setAtIndex(F, at, (float) (ca * into.sum().getAtIndex(F, at) + cb * from.sum().getAtIndex(F, at)));
                long o = (long) i * width + (long) h * d;
                for (int f = 0; f < d; f++) {
                    into.out().setAtIndex(F, o + f, (float) (ca * into.out().getAtIndex(F, o + f) + cb * from.out().getAtIndex(F, o + f)));
                }
            }
        }
    }

    /**
     * The attention output of a (merged) state: concat = O / L per head and row, (rows, H·d) like
     * the attend stage's concatenated heads; rows with L = 0 get zeros. {@code concat} may be the
     * state's own O ({@link State#outMatrix()}).
     */
    public static void normalise(State state, Matrix concat) {
        int m = state.rows(), H = state.heads(), d = state.headDim();
        if (concat.rows() != m || concat.cols() != H * d) {
            throw new IllegalArgumentException("normalising a state of " + m + " rows × " + H + " heads × " + d + " needs concat ("
                    + m + ", " + H * d + "), got " + concat);
        }
        Matrix out = state.outMatrix();
        for (int h = 0; h < H; h++) {
            for (int i = 0; i < m; i++) {
                float sum = state.sum(h, i);
                // the same float product as the kernel's last step (O_h /= L as O_h · (1 / L)), so one part gives its bits
                float scale = sum > 0f ? 1f / sum : 0f;
                for (int f = 0; f < d; f++) concat.set(i, h * d + f, out.get(i, h * d + f) * scale);
            }
        }
    }
}
