package dev.headroom.attention;

import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.kernels.Softmax;
import dev.headroom.runtime.WorkerPool;
import dev.headroom.sparse.AttentionPattern;
import dev.headroom.sparse.TileKind;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * One layer of causal self-attention over a {@link KvCache}, for one step of a batch of
 * sequences, each with its own number of new tokens and of cached ones (a ragged batch):
 * <pre>
 *   Q, K, V = project(new tokens)                 the layer's stage 1
 *   Q, K turned at the tokens' positions          RoPE, positions from the cache
 *   cache[layer] ← K, V of the new tokens
 *   O = attend(Q, all of the sequence's cached K, V), causal    stage 2, two ways (below)
 *   Y = O W_Oᵀ + b_O                              stage 3
 * </pre>
 * Two attend paths, chosen per sequence:
 * <ul>
 *   <li><b>decode</b> (at most {@link #DECODE_MAX_QUERIES} new tokens, no observer): the cache's
 *       blocks are read in place by {@link DecodeBlocks}; the query rows of every head that shares
 *       a key/value head (GQA) and every new token are one group, so each key and value is read
 *       once per step; long sequences are split into chunks of keys on several workers and their
 *       partial results (O, M, L) merged exactly afterwards (split-K, "flash-decoding").</li>
 *   <li><b>prefill</b> (longer chunks, or when an observer watches): the sequence's keys and values
 *       are gathered from the blocks into a contiguous Kᵀ/Vᵀ and the layer's span loop runs on them,
 *       exactly as a whole forward does (the chunk's queries see the cached prefix and themselves,
 *       causally).</li>
 * </ul>
 */
final class CachedAttention {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    /** Sequences with at most this many new tokens take the decode path. */
    static final int DECODE_MAX_QUERIES = 8;
    /**
     * Keys per online-softmax step of the decode path (rounded to whole blocks): the scores of a
     * span's keys, then the weighted sum of its values, so the reads switch between the key and
     * the value stream once per span. Llama 16 seq × 4k on 2 threads (AMD EPYC Zen 5, scratch
     * timings, two runs each): 256 keys 16.2 ms, 512 16.2–16.6, 1024 14.1–15.8, 2048 13.7–16.7,
     * 4096 14.1–15.0 (and one run each of 1024 and 4096 at 25–27 ms: a slow mode of whole runs,
     * not explained yet); the small shape was fastest at 1024 (4.8 ms against 5.7–6.5).
     */
    static final int DECODE_SPAN_KEYS = 1024;
    /** Split-K: the decode path aims at this many tasks per worker, in chunks of at least this many keys. */
    static final int TASKS_PER_WORKER = 4, MIN_CHUNK_KEYS = 512;

    private CachedAttention() {}

    static void forward(MultiHeadAttention layer, KvCache cache, KvCache.Step step, int l, Tensor x, Mask mask, Tensor out,
                        Workspace ws, CallOptions call, DecodeBlocks blocks) {
        AttentionConfig c = layer.config();
        int T = step.tokens();
        check(layer, cache, step, l, mask);
        checkRows("the step's input", x, T, c.dModel());
        checkRows("the output", out, T, c.dModel());
        checkBudget(layer, step, mask, true);
        ws.acquire();
        try {
            ws.prepare((long) (c.queryWidth() + 2 * c.kvWidth()) * T, (long) T * c.queryWidth(), layer.pool().threads(),
                    scratchFloats(layer, step, mask));
            MemorySegment P = ws.projection();
            /* Qᵀ: (H·d, T), Kᵀ: (G·d, T): the step's new tokens as columns; V: (T, G·d), as the cache stores it. */
            Matrix qT = new Matrix(P, 0, c.queryWidth(), T, T);
            Matrix kT = new Matrix(P, (long) c.queryWidth() * T, c.kvWidth(), T, T);
            Matrix v = Matrix.of(P, (long) (c.queryWidth() + c.kvWidth()) * T, T, c.kvWidth());
            /* concat: (T, H·d). */
            Matrix concat = Matrix.of(ws.concat(), 0, T, c.queryWidth());

            // 1. project the new tokens
            layer.project(x.matrix(), x.matrix(), qT, kT, v, true, call.profile());
            // 2. positions, cache writes, attention
            attend(layer, cache, step, l, qT, kT, v, concat, mask, ws, call, blocks);
            if (call.observer() != null) call.observer().headOutputs(concat);
            // 3. Y = O W_Oᵀ + b_O
            layer.projectOutput(concat, out.matrix(), call.profile());
            if (layer.options().checkFinite()) layer.checkOutputFinite(out, qT, kT, v, false, concat);
        } finally {
            ws.releaseUse();
        }
    }

    /** The span loop's scratch for the step's largest prefill sequence. */
    private static long scratchFloats(MultiHeadAttention layer, KvCache.Step step, Mask mask) {
        long scratch = 1;
        for (int i = 0; i < step.size(); i++) {
            int nq = Math.max(1, step.count(i)), L = Math.max(1, step.keys(i));
            scratch = Math.max(scratch, layer.kernelFor(mask.withCausal(), L).scratchFloats(Math.min(layer.options().queryBlock(), nq), L));
        }
        return scratch;
    }

    /**
     * The attend stage over the cache, for projected new tokens: Qᵀ (H·d, T) and Kᵀ (G·d, T) are
     * turned in place at the tokens' positions (RoPE), K and V (T, G·d) written into the cache at
     * layer l, and every sequence's new queries attend to its cache, into {@code concat} (T, H·d).
     * The workspace must be held by the caller ({@link Workspace#acquire}) and must not hold the
     * matrices passed in unless it was prepared for them first.
     */
    static void attend(MultiHeadAttention layer, KvCache cache, KvCache.Step step, int l, Matrix qT, Matrix kT, Matrix v,
                       Matrix concat, Mask mask, Workspace ws, CallOptions call, DecodeBlocks blocks) {
        AttentionConfig c = layer.config();
        int H = c.heads(), G = c.kvHeads(), d = c.headDim(), T = step.tokens(), n = step.size();
        Mask causal = mask.withCausal();
        ws.prepare(0, 0, layer.pool().threads(), scratchFloats(layer, step, mask));

        // positions: column r of sequence i is at starts[i] + (r − row(i))
        int[] seqOfColumn = new int[T];
        for (int i = 0, r = 0; i < n; i++) for (int t = 0; t < step.count(i); t++) seqOfColumn[r++] = i;
        int[] rows = new int[n];
        for (int i = 1; i < n; i++) rows[i] = rows[i - 1] + step.count(i - 1);
        RotaryEmbedding.ColumnPositions position = col -> step.start(seqOfColumn[col]) + (col - rows[seqOfColumn[col]]);
        Matrix qTSinks = null;
        if (c.rope() != null) {
            if (causal.pattern() instanceof AttentionPattern.Streaming st) {
                qTSinks = layer.sinkQueries(qT, col -> Mask.sinkPosition(position.of(col), st.sinks(), st.window()), ws);
            }
            layer.rotate(c.rope(), qT, H, position, ws);
            layer.rotate(c.rope(), kT, G, position, ws);
        }

        // cache[l] ← K, V of the new tokens
        for (int i = 0; i < n; i++) cache.write(step.sequence(i), l, step.start(i), step.count(i), kT, rows[i], v, rows[i]);

        // attend: decode sequences together, straight from the blocks; prefill ones one by one
        List<Integer> decode = new ArrayList<>(), prefill = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (step.count(i) == 0) continue;
            (step.count(i) <= DECODE_MAX_QUERIES && call.observer() == null ? decode : prefill).add(i);
        }
        if (!decode.isEmpty()) decode(layer, cache, step, l, decode, rows, causal, qT, qTSinks, concat, ws, blocks);
        for (int i : prefill) {
            int seq = step.sequence(i), L = step.keys(i), q0 = rows[i], q1 = q0 + step.count(i);
            MultiHeadAttention.Plan plan = layer.plan(1, q1 - q0, L, false, causal, Positions.uniform(step.start(i)),
                    call.observer(), false);
            checkEvicted(cache.blockTable(seq), cache.blockSize(), L, plan.bound(), q1 - q0, c.heads());
            /* gathered Kᵀ: (G·d, L), V: (L, G·d): this sequence's whole cache for this layer, as float32. */
            MemorySegment gathered = ws.extra(Workspace.Extra.GATHERED_KEYS_VALUES, 2L * c.kvWidth() * L);
            Matrix gk = Matrix.of(gathered, 0, c.kvWidth(), L), gv = Matrix.of(gathered, (long) c.kvWidth() * L, L, c.kvWidth());
            layer.pool().run(G, (g, worker) -> cache.gather(seq, l, g, 0, L, gk.rowRange(g * d, (g + 1) * d),
                    gv.colRange(g * d, (g + 1) * d)));
            layer.attend(plan, qT.colRange(q0, q1), qTSinks == null ? null : qTSinks.colRange(q0, q1),
                    KeyValues.gathered(gk, gv, d), concat.rowRange(q0, q1), ws, call);
        }
    }

    private static void checkRows(String what, Tensor t, int rows, int cols) {
        if (t.rank() != 2 || t.dim(0) != rows || t.dim(1) != cols) {
            throw new IllegalArgumentException(what + " must be (" + rows + ", " + cols + ") (the step's new tokens), got "
                    + t.shapeString());
        }
    }

    static void check(MultiHeadAttention layer, KvCache cache, KvCache.Step step, int l, Mask mask) {
        AttentionConfig c = layer.config();
        KvCache.Shape s = cache.shape();
        if (s.kvHeads() != c.kvHeads() || s.headDim() != c.headDim()) {
            throw new IllegalArgumentException("the KV cache holds " + s.kvHeads() + " heads of " + s.headDim()
                    + ", the layer has " + c.kvHeads() + " of " + c.headDim());
        }
        if (l < 0 || l >= s.layers()) throw new IllegalArgumentException("layer " + l + " outside the cache's " + s.layers() + " layers");
        if (!mask.isCausal()) {
            throw new IllegalArgumentException("attention over a KV cache is causal self-attention: pass Mask.causal() (with a "
                    + "pattern if any)");
        }
        if (mask.hasExplicit() || mask.keyLengthsOrNull() != null) {
            throw new IllegalArgumentException("attention over a KV cache takes causal masks and patterns only: an explicit "
                    + "mask or key lengths have no fixed shape across a ragged batch");
        }
        if (!step.of(cache)) throw new IllegalArgumentException("the step " + step + " was reserved in another KV cache");
        for (int i = 0; i < step.size(); i++) {
            int length = cache.length(step.sequence(i));
            if (length != step.keys(i)) {
                throw new IllegalArgumentException("sequence " + step.sequence(i) + " holds " + length + " tokens, but the step "
                        + "reserved tokens [" + step.start(i) + ", " + step.keys(i) + "): a step runs right after the "
                        + "KvCache.step that reserved it, before the sequence changes again");
            }
        }
    }

    /**
     * What a forward over the cache holds off-heap besides the cache, for the layer's memory
     * budget: the projections and the concatenated heads of the step's T tokens, the largest
     * prefill sequence's gathered keys and values, the span loop's scratch, the decode path's
     * task slots, and (RoPE) the angle tables and the sink queries. The weights are counted as
     * in a whole forward.
     */
    static MemoryEstimate estimate(MultiHeadAttention layer, KvCache.Step step, Mask mask, boolean projections) {
        AttentionConfig c = layer.config();
        long f = Float.BYTES, T = step.tokens(), gathered = 0, slots = 0;
        for (int i = 0; i < step.size(); i++) {
            if (step.count(i) > DECODE_MAX_QUERIES) gathered = Math.max(gathered, 2L * c.kvWidth() * step.keys(i));
            else slots += (long) c.groupSize() * step.count(i) * (c.headDim() + 2) * c.kvHeads()
                    * Math.max(1, step.keys(i) / MIN_CHUNK_KEYS);
        }
        long activations = f * ((projections ? T * (c.queryWidth() + 2L * c.kvWidth()) + T * c.queryWidth() : 0) + gathered + slots);
        if (c.rope() != null) activations += f * (2L * c.rope().pairs() * T + (long) c.queryWidth() * T);
        long scratch = f * layer.pool().threads() * scratchFloats(layer, step, mask);
        return new MemoryEstimate(f * c.parameterCount(layer.weights().hasBias()), activations, scratch);
    }

    /** Refuses a call whose estimate exceeds the layer's memory budget, before anything is allocated. */
    static void checkBudget(MultiHeadAttention layer, KvCache.Step step, Mask mask, boolean projections) {
        long budget = layer.options().memoryBudget();
        if (budget <= 0) return;
        MemoryEstimate e = estimate(layer, step, mask, projections);
        if (e.total() > budget) {
            throw new MemoryBudgetExceededException("a step of " + step.tokens() + " new tokens over " + step.size()
                    + " cached sequences needs an estimated " + e + " besides the cache, over the memory budget of "
                    + dev.headroom.memory.OffHeap.format(budget) + "; refused before allocating anything (fewer tokens per "
                    + "step, or Options.withMemoryBudget)", e, budget);
        }
    }

    /**
     * Split-K: how many chunks of keys a sequence of L keys is cut into, with G key/value heads on
     * {@code threads} workers: about {@value #TASKS_PER_WORKER} tasks per worker for the sequence
     * alone, none shorter than {@value #MIN_CHUNK_KEYS} keys (below that a chunk's fixed cost —
     * copying the queries, merging — outweighs the parallelism). It depends on the sequence only,
     * not on what else is in the step, so a sequence gets the same output whatever it is batched
     * with (the merge's rounding depends on the chunks).
     */
    static int chunks(int L, int G, int threads) {
        long wanted = Math.max(1, Math.round((double) TASKS_PER_WORKER * threads / G));
        return (int) Math.clamp(wanted, 1, Math.max(1, (long) L / MIN_CHUNK_KEYS));
    }

    /**
     * Query rows the decode kernels are given for a group of R: the vector kernels take rows four at
     * a time, then two, then one; three left
     * over are padded here with a zero row, once per task, so a block is read in one pass for them
     * too (padding them inside every kernel call instead cost the small shape's 3 rows a fifth of an
     * int8 step in copies). Two left over are not padded: the tiny decoder's
     * groups of two (two query heads per key/value head, one new token) padded to four spent half
     * their scores and weighted sums on zero rows. The same memory is read either way;
     * {@code DecoderBenchmark} batch 32 (AMD EPYC Zen 5, alternating JVMs, a noisy machine) gave
     * 387–431 ms unpadded against 402–473 padded, within its spread. int8 keys have had a two-row
     * kernel since too (they were padded to four, converting each key vector once for four rows,
     * two of them zero); float16 blocks are widened to float32 first.
     */
    static int kernelRows(int R) {
        return R % 4 == 3 ? R + 1 : R;
    }

    /** A worker's decode scratch, in Java arrays (reads need no memory-session checks), grown as needed and kept. */
    private static final class DecodeScratch {
        private static final ThreadLocal<DecodeScratch> MINE = ThreadLocal.withInitial(DecodeScratch::new);
        float[] q = new float[0], qs = q, S = q, S2 = q, O = q, M = q, L = q;

        static DecodeScratch of(int rows, int d, int span, int bs) {
            DecodeScratch w = MINE.get();
            if (w.q.length < rows * d || w.O.length < rows * d || w.S.length < rows * span || w.S2.length < rows * bs
                    || w.M.length < rows) {
                w.q = new float[rows * d];
                w.qs = new float[rows * d];
                w.S = new float[rows * span];
                w.S2 = new float[rows * bs];
                w.O = new float[rows * d];
                w.M = new float[rows];
                w.L = new float[rows];
            }
            return w;
        }
    }

    private static IllegalStateException evictedButVisible(int block, AttentionPattern pattern) {
        return new IllegalStateException("key block " + block + " was evicted from the cache but the mask still lets a query see it ("
                + (pattern == null ? "a causal mask without a window sees every key" : pattern.describe()) + ")");
    }

    /**
     * Refuses a prefill over evicted keys that some query of it may still see: gathering would give
     * them as zeros, a silent wrong answer (the decode path refuses the same while it reads).
     */
    private static void checkEvicted(int[] table, int bs, int L, Mask.Bound bound, int queries, int heads) {
        AttentionPattern pattern = bound.pattern();
        long p0 = bound.position(0, 0), p1 = bound.position(0, queries - 1) + 1;
        for (int kb = 0; kb < table.length; kb++) {
            if (table[kb] >= 0) continue;
            int k0 = kb * bs, k1 = Math.min(L, k0 + bs);
            boolean seen = pattern == null;
            for (int h = 0; h < heads && !seen; h++) seen = pattern.classify(h, p0, p1, k0, k1, L) != TileKind.EMPTY;
            if (seen) throw evictedButVisible(kb, pattern);
        }
    }

    /**
     * Masks one block's scores, columns [cols, cols + tokens) of every row of S (R rows of
     * {@code span}; row r is head h0 + r / nNew, query r % nNew), keys k0 …: the causal end, the
     * pattern and the bias.
     */
    private static void mask(Mask.Bound bound, AttentionPattern pattern, float[] S, MemorySegment Sm, int span, int cols, int k0,
                             int tokens, int R, int nNew, int h0) {
        for (int r = 0; r < R; r++) {
            int h = h0 + r / nNew, t = r % nNew;
            int row = r * span + cols;
            int len = Math.clamp((long) bound.keyEnd(0, t) - k0, 0, tokens);
            java.util.Arrays.fill(S, row + len, row + tokens, Float.NEGATIVE_INFINITY);
            if (pattern != null) bound.applyPattern(0, h, t, Sm, row, k0, k0, k0 + len);
            if (bound.hasBias()) bound.applyBias(0, h, t, Sm, row, k0, len);
        }
    }

    /**
     * One split-K task: rows of sequence i's key/value head g against its key blocks [b0, b1);
     * {@code whole}: the only chunk of its (sequence, head), which writes its rows itself.
     */
    private record Task(int i, int g, int b0, int b1, long out, boolean whole) {}

    /**
     * The decode path: tasks (sequence, key/value head, chunk of key blocks); each keeps per query
     * row a running max M, sum L and unnormalised output O over its chunk, written to its own
     * slot; then one pass per (sequence, head) merges the chunks: M = max M_c,
     * O = Σ e^(M_c − M) O_c / Σ e^(M_c − M) L_c. A (sequence, head) of one chunk (short contexts:
     * every one of a tiny model's) writes O / L itself, the same numbers, and when no pair is split
     * the merge pass and its hand-off to the workers are skipped.
     */
    private static void decode(MultiHeadAttention layer, KvCache cache, KvCache.Step step, int l, List<Integer> seqs, int[] rows,
                               Mask causal, Matrix qT, Matrix qTSinks, Matrix concat, Workspace ws, DecodeBlocks blocks) {
        AttentionConfig c = layer.config();
        int G = c.kvHeads(), d = c.headDim(), gs = c.groupSize(), bs = cache.blockSize();
        int threads = layer.pool().threads();
        // chunks per sequence: enough tasks for every worker, chunks of whole blocks ≥ MIN_CHUNK_KEYS
        List<Task> tasks = new ArrayList<>();
        int[][] tables = new int[step.size()][];
        Mask.Bound[] bounds = new Mask.Bound[step.size()];
        int maxRows = 0;
        long out = 0;
        float[] slopes = c.alibi() ? c.alibiSlopes() : null; // a copy: taken once per call, not per sequence
        KvDtype dtype = cache.shape().dtype();
        for (int i : seqs) {
            int L = step.keys(i), R = gs * step.count(i), nb = (L + bs - 1) / bs;
            tables[i] = cache.blockTable(step.sequence(i));
            Mask.Bound bound = causal.bind(1, c.heads(), step.count(i), L, Positions.uniform(step.start(i)));
            bounds[i] = slopes != null ? bound.withAlibi(slopes) : bound;
            maxRows = Math.max(maxRows, kernelRows(R));
            int chunks = chunks(L, G, threads), perChunk = (nb + chunks - 1) / chunks;
            for (int g = 0; g < G; g++) {
                for (int b0 = 0; b0 < nb; b0 += perChunk) {
                    boolean whole = perChunk >= nb;
                    tasks.add(new Task(i, g, b0, Math.min(nb, b0 + perChunk), out, whole));
                    if (!whole) out += (long) R * (d + 2);
                }
            }
        }
        int spanBlocks = Math.max(1, DECODE_SPAN_KEYS / bs), span = spanBlocks * bs;
        /* the task slots: per task of a split (sequence, head) O (R, d), then M (R), L (R), unnormalised, for the merge. */
        MemorySegment buffer = ws.extra(Workspace.Extra.DECODE, Math.max(1, out));
        Softmax softmax = layer.options().softmax();
        int rowsMax = maxRows;
        layer.pool().run(tasks.size(), (index, worker) -> {
            Task task = tasks.get(index);
            int i = task.i, g = task.g, nNew = step.count(i), R = gs * nNew, Rk = kernelRows(R), L = step.keys(i);
            Mask.Bound bound = bounds[i];
            DecodeScratch w = DecodeScratch.of(rowsMax, d, span, bs);
            /*
             * q, qs: (Rk, d) query rows (qs turned at the sink positions), rows R.. zero; S: (Rk, span)
             * scores; S2: (Rk, bs); O: (Rk, d); M, Lsum: (R). The zero rows' scores are exactly 0 and
             * are never softmaxed, so they add nothing to their O rows, which are never read.
             */
            float[] q = w.q, qs = w.qs, S = w.S, S2 = w.S2, O = w.O, M = w.M, Lsum = w.L;
            MemorySegment Sm = MemorySegment.ofArray(S); // for the pattern and the bias
            for (int r = 0; r < R; r++) {
                int h = g * gs + r / nNew, col = rows[i] + r % nNew;
                for (int f = 0; f < d; f++) {
                    q[r * d + f] = qT.get(h * d + f, col);
                    if (qTSinks != null) qs[r * d + f] = qTSinks.get(h * d + f, col);
                }
            }
            java.util.Arrays.fill(q, R * d, Rk * d, 0f);
            if (qTSinks != null) java.util.Arrays.fill(qs, R * d, Rk * d, 0f);
            java.util.Arrays.fill(O, 0, Rk * d, 0f);
            java.util.Arrays.fill(M, 0, R, Float.NEGATIVE_INFINITY);
            java.util.Arrays.fill(Lsum, 0, R, 0f);
            int[] table = tables[i];
            AttentionPattern pattern = bound.pattern();
            long pFirst = bound.position(0, 0), pLast = bound.position(0, nNew - 1);
            int sinks = bound.sinks();
            /*
             * int8 keys are scored two blocks per kernel pass (for groups of four rows, each broadcast
             * query element serves a key vector of each; pairs of rows take two two-row passes): the
             * int8 kernel is bound by arithmetic, not memory. float32 is
             * bound by memory, and two interleaved block streams read it slower (llama 16 × 4k,
             * 2 threads: 19.5–20.1 ms against 14–15 one block at a time, scratch timings).
             */
            boolean pairs = qTSinks == null && dtype == KvDtype.INT8;
            int[] spanBlock = new int[spanBlocks];
            for (int kb = task.b0; kb < task.b1; ) {
                WorkerPool.checkCancelled();
                // the next span: up to spanBlocks blocks that some row of the group may see
                int count = 0;
                for (; kb < task.b1 && count < spanBlocks; kb++) {
                    int k0 = kb * bs, k1 = Math.min(L, k0 + bs);
                    boolean empty = false;
                    if (pattern != null) {
                        empty = true;
                        for (int h = g * gs; h < (g + 1) * gs && empty; h++) {
                            empty = pattern.classify(h, pFirst, pLast + 1, k0, k1, L) == TileKind.EMPTY;
                        }
                    }
                    if (empty) continue;
                    if (table[kb] < 0) {
                        throw evictedButVisible(kb, pattern);
                    }
                    spanBlock[count++] = kb;
                }
                if (count == 0) continue;
                int cols = 0;
                for (int s = 0; s < count; ) {
                    int b = spanBlock[s], k0 = b * bs, tokens = Math.min(bs, L - k0), phys = table[b];
                    MemorySegment mem = cache.slab(phys);
                    long keys = cache.keys(phys, l, g), keyScales = cache.keyScales(phys, l, g);
                    if (pairs && s + 1 < count && tokens == bs && (spanBlock[s + 1] + 1) * bs <= L) {
                        // two full int8 blocks in one pass of the scores kernel
                        int b2 = spanBlock[s + 1], phys2 = table[b2];
                        blocks.scoresOfTwo(mem, keys, keyScales, cache.slab(phys2), cache.keys(phys2, l, g), cache.keyScales(phys2, l, g),
                                dtype, d, bs, q, Rk, c.scale(), S, span, cols);
                        mask(bound, pattern, S, Sm, span, cols, k0, bs, R, nNew, g * gs);
                        mask(bound, pattern, S, Sm, span, cols + bs, b2 * bs, bs, R, nNew, g * gs);
                        cols += 2 * bs;
                        s += 2;
                        continue;
                    }
                    boolean sinkPart = qTSinks != null && k0 < sinks;
                    blocks.scores(mem, keys, keyScales, dtype, d, bs, tokens, sinkPart && k0 + tokens <= sinks ? qs : q,
                            Rk, c.scale(), S, span, cols);
                    if (sinkPart && k0 + tokens > sinks) { // a block across the sink boundary: its sink keys against qs
                        blocks.scores(mem, keys, keyScales, dtype, d, bs, tokens, qs, Rk, c.scale(), S2, bs, 0);
                        for (int r = 0; r < R; r++) System.arraycopy(S2, r * bs, S, r * span + cols, sinks - k0);
                    }
                    mask(bound, pattern, S, Sm, span, cols, k0, tokens, R, nNew, g * gs);
                    cols += tokens;
                    s++;
                }
                // online softmax over the span, then the weighted sum of its values
                for (int r = 0; r < R; r++) {
                    long row = (long) r * span;
                    float oldMax = M[r];
                    float newMax = Math.max(oldMax, softmax.max(S, (int) row, cols));
                    float sum = softmax.expInPlace(S, (int) row, cols, newMax);
                    if (newMax == Float.NEGATIVE_INFINITY) continue;                  // nothing allowed yet
                    float correction = oldMax == newMax ? 1f : (float) Math.exp(oldMax - newMax);
                    M[r] = newMax;
                    Lsum[r] = Lsum[r] * correction + sum;
                    if (correction != 1f) softmax.scale(O, r * d, d, correction);
                }
                cols = 0;
                for (int s = 0; s < count; s++) {
                    int b = spanBlock[s], tokens = Math.min(bs, L - b * bs), phys = table[b];
                    blocks.accumulate(cache.slab(phys), cache.values(phys, l, g), cache.valueScales(phys, l, g),
                            dtype, d, bs, tokens, S, span, cols, Rk, O);
                    cols += tokens;
                }
            }
            if (task.whole) { // the only chunk: its rows are the output, as the merge of one chunk would write them
                for (int r = 0; r < R; r++) {
                    int h = g * gs + r / nNew, col = rows[i] + r % nNew;
                    double sum = M[r] == Float.NEGATIVE_INFINITY ? 0 : Lsum[r];
                    // 0.0 + O as the merge's sum starts (it turns −0 into +0): bitwise what the merge writes
                    for (int f = 0; f < d; f++) concat.set(col, h * d + f, sum > 0 ? (float) ((0.0 + O[r * d + f]) / sum) : 0f);
                }
                return;
            }
            // this task's (O, M, L) into its slot
            MemorySegment.copy(O, 0, buffer, F, task.out * Float.BYTES, R * d);
            MemorySegment.copy(M, 0, buffer, F, (task.out + (long) R * d) * Float.BYTES, R);
            MemorySegment.copy(Lsum, 0, buffer, F, (task.out + (long) R * d + R) * Float.BYTES, R);
        });

        // merge the chunks of each (sequence, head) split in several: exact, as one softmax over all keys
        List<int[]> groups = new ArrayList<>();
        for (int t = 0; t < tasks.size(); ) {
            int from = t;
            while (t < tasks.size() && tasks.get(t).i == tasks.get(from).i && tasks.get(t).g == tasks.get(from).g) t++;
            if (!tasks.get(from).whole) groups.add(new int[]{from, t});
        }
        if (groups.isEmpty()) return;
        layer.pool().run(groups.size(), (index, worker) -> {
            int from = groups.get(index)[0], to = groups.get(index)[1];
            Task first = tasks.get(from);
            int i = first.i, g = first.g, nNew = step.count(i), R = gs * nNew;
            long mAt = (long) R * d, lAt = mAt + R;
            for (int r = 0; r < R; r++) {
                int h = g * gs + r / nNew, col = rows[i] + r % nNew;
                float M = Float.NEGATIVE_INFINITY;
                for (int t = from; t < to; t++) M = Math.max(M, buffer.getAtIndex(F, tasks.get(t).out + mAt + r));
                double[] weight = new double[to - from];      // e^(M_c − M), 0 for a chunk that saw nothing
                double sum = 0;
                for (int t = from; t < to; t++) {
                    float m = buffer.getAtIndex(F, tasks.get(t).out + mAt + r);
                    weight[t - from] = m == Float.NEGATIVE_INFINITY ? 0 : Math.exp(m - M);
                    sum += weight[t - from] * buffer.getAtIndex(F, tasks.get(t).out + lAt + r);
                }
                for (int f = 0; f < d; f++) {
                    double o = 0;
                    for (int t = from; t < to; t++) {
                        if (weight[t - from] != 0) o += weight[t - from] * buffer.getAtIndex(F, tasks.get(t).out + (long) r * d + f);
                    }
                    concat.set(col, h * d + f, sum > 0 ? (float) (o / sum) : 0f); // no allowed key: zeros
                }
            }
        });
    }
}
