package dev.headroom.attention;

import dev.headroom.blas.Blas;
import dev.headroom.blas.OpenBlas;
import dev.headroom.inspect.Inspection;
import dev.headroom.jfr.ForwardEvent;
import dev.headroom.kernels.Finite;
import dev.headroom.memory.OffHeap;
import dev.headroom.kernels.Softmax;
import dev.headroom.kernels.Vectors;
import dev.headroom.runtime.WorkerPool;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import dev.headroom.sparse.AttentionPattern;
import dev.headroom.sparse.BlockLayout;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Multi-head attention, PyTorch semantics, on off-heap memory:
 * <pre>
 *   Q = X W_Qᵀ + b_Q,  K = KV W_Kᵀ + b_K,  V = KV W_Vᵀ + b_V
 *   O_h = softmax(scale · Q_h K_gᵀ + mask) V_g          g = h / (H / G)
 *   Y = [O_1 … O_H] W_Oᵀ + b_O
 * </pre>
 * Inputs are (n, E) or (B, n, E); KV defaults to X (self-attention) and may be longer or
 * shorter (cross-attention).
 *
 * <p><b>Threads.</b> Work is split in Java across {@code threads} workers (the calling thread
 * and a pool this object owns): projection rows, then (batch, head, block of query rows) tasks,
 * then output rows. Each sgemm runs on one OpenBLAS thread; constructing this object sets
 * OpenBLAS's process-wide thread count to {@link Options#blasThreads()} (1 by default).
 *
 * <p><b>Concurrency.</b> One instance serves concurrent {@code forward} calls from any number
 * of threads: the weights are only read, and every call has its own {@link Workspace} (the
 * allocating overloads make a fresh one; callers of the workspace overload give each thread its
 * own). Calls share the worker pool. {@link #close()} must not race with running calls.
 *
 * <p><b>Memory.</b> The weights stay where the caller's arena put them. Each call's scratch is
 * in its workspace; outputs go to the caller's arena or tensor. Nothing here allocates on the
 * Java heap in proportion to the sequence.
 */
public final class MultiHeadAttention implements AutoCloseable {

    /**
     * @param threads      worker threads (default: available processors)
     * @param blasThreads  OpenBLAS threads per sgemm call, set process-wide at construction (default 1)
     * @param queryBlock   query rows per task; a worker's scores are queryBlock × n_k floats with the
     *                     dense kernel, queryBlock × (key tile or span) with the tiled and sparse ones
     * @param kernel       the attention kernel, or null to choose per call (see {@link #kernelFor})
     * @param softmax      the softmax implementation (default {@link Softmax#VECTOR})
     * @param checkFinite  reject inputs holding NaN or ±∞ (one pass over each input)
     * @param profile      if not null, time per phase is added to it
     * @param memoryBudget bytes a call may hold off-heap (weights, activations, scratch: {@link #estimate});
     *                     a call whose estimate exceeds it is refused before anything is allocated; 0 = no limit
     */
    public record Options(int threads, int blasThreads, int queryBlock, AttentionKernel kernel, Softmax softmax,
                          boolean checkFinite, Profile profile, long memoryBudget) {
        public Options {
            if (threads < 1) throw new IllegalArgumentException("threads must be >= 1, got " + threads);
            if (blasThreads < 1) throw new IllegalArgumentException("blasThreads must be >= 1, got " + blasThreads);
            if (queryBlock < 1) throw new IllegalArgumentException("queryBlock must be >= 1, got " + queryBlock);
            if (softmax == null) throw new IllegalArgumentException("softmax must be given");
            if (memoryBudget < 0) throw new IllegalArgumentException("memory budget must be >= 0, got " + memoryBudget);
        }

        public static Options defaults() {
            return new Options(Runtime.getRuntime().availableProcessors(), 1, 256, null, Softmax.VECTOR, false, null, 0);
        }

        public Options withThreads(int t) {
            return new Options(t, blasThreads, queryBlock, kernel, softmax, checkFinite, profile, memoryBudget);
        }

        public Options withBlasThreads(int t) {
            return new Options(threads, t, queryBlock, kernel, softmax, checkFinite, profile, memoryBudget);
        }

        public Options withQueryBlock(int rows) {
            return new Options(threads, blasThreads, rows, kernel, softmax, checkFinite, profile, memoryBudget);
        }

        public Options withKernel(AttentionKernel k) {
            return new Options(threads, blasThreads, queryBlock, k, softmax, checkFinite, profile, memoryBudget);
        }

        public Options withSoftmax(Softmax s) {
            return new Options(threads, blasThreads, queryBlock, kernel, s, checkFinite, profile, memoryBudget);
        }

        public Options withCheckFinite(boolean check) {
            return new Options(threads, blasThreads, queryBlock, kernel, softmax, check, profile, memoryBudget);
        }

        public Options withProfile(Profile p) {
            return new Options(threads, blasThreads, queryBlock, kernel, softmax, checkFinite, p, memoryBudget);
        }

        public Options withMemoryBudget(long bytes) {
            return new Options(threads, blasThreads, queryBlock, kernel, softmax, checkFinite, profile, bytes);
        }
    }

    /** Up to this many keys the dense kernel keeps whole score rows (queryBlock × n_k floats per worker). */
    static final int DENSE_MAX_KEYS = 4096;
    /** Key tile of the tiled kernel chosen for longer sequences. */
    static final int TILE_KEYS = 1024;
    /** Layout tile width of the sparse kernel, and the most keys one of its spans covers. */
    static final int SPARSE_KEY_BLOCK = 64, SPARSE_MAX_SPAN = 1024;

    private final AttentionConfig config;
    private final AttentionWeights weights;
    private final Options options;
    private final WorkerPool pool;
    private final boolean ownsPool;
    /** Compiled sparse layouts by (pattern, sizes): compiling is O(tiles), reuse is free. */
    private final Map<List<Object>, BlockLayout> layouts = new ConcurrentHashMap<>();

    public MultiHeadAttention(AttentionWeights weights, Options options) {
        this(weights, options, null);
    }

    /**
     * A layer that runs on {@code sharedPool} instead of a pool of its own (its thread count
     * replaces {@link Options#threads()}): a model with many layers gives them one pool, so that
     * idle pools do not spin against each other. The pool stays open when this layer closes.
     */
    public MultiHeadAttention(AttentionWeights weights, Options options, WorkerPool sharedPool) {
        this.config = weights.config();
        this.weights = weights;
        this.options = sharedPool == null ? options : options.withThreads(sharedPool.threads());
        this.ownsPool = sharedPool == null;
        OpenBlas.setThreads(options.blasThreads());
        if (this.options.threads() > 1) {
            for (Matrix m : List.of(weights.wq, weights.wk, weights.wv, weights.wo)) {
                if (!WorkerPool.shareable(m.segment())) {
                    throw new IllegalArgumentException("weights live in a confined arena, which the " + this.options.threads()
                            + " worker threads cannot read; load them into Arena.ofShared() or TrackedArena.ofShared(), "
                            + "or use Options.withThreads(1)");
                }
            }
        }
        this.pool = sharedPool != null ? sharedPool : new WorkerPool(options.threads());
    }

    public MultiHeadAttention(AttentionWeights weights) {
        this(weights, Options.defaults());
    }

    public AttentionConfig config() {
        return config;
    }

    public AttentionWeights weights() {
        return weights;
    }

    public Options options() {
        return options;
    }

    /** Self-attention without a mask; the output is allocated in {@code arena}. */
    public Tensor forward(Tensor x, Arena arena) {
        return forward(x, null, Mask.none(), arena);
    }

    /** Self-attention with a mask; the output is allocated in {@code arena}. */
    public Tensor forward(Tensor x, Mask mask, Arena arena) {
        return forward(x, null, mask, arena);
    }

    /**
     * Attention of {@code query} over {@code keyValue} (null: self-attention); the output, shaped
     * like {@code query}, is allocated in {@code arena}; scratch lives only for this call.
     */
    public Tensor forward(Tensor query, Tensor keyValue, Mask mask, Arena arena) {
        plan(query, keyValue, mask, query, null); // every check, before anything is allocated
        Tensor out = Tensor.allocate(arena, query.shape());
        try (Workspace ws = new Workspace()) {
            forward(query, keyValue, mask, out, ws);
        }
        return out;
    }

    /** The allocation-free form: writes {@code out} (shaped like {@code query}), scratch in {@code ws}. */
    public void forward(Tensor query, Tensor keyValue, Mask mask, Tensor out, Workspace ws) {
        forward(query, keyValue, mask, out, ws, null);
    }

    /**
     * As {@link #forward(Tensor, Tensor, Mask, Tensor, Workspace)}, and also captures attention
     * probabilities, accumulates per-head statistics or zeroes chosen heads, as {@code inspection}
     * says (null: none of it).
     */
    public void forward(Tensor query, Tensor keyValue, Mask mask, Tensor out, Workspace ws, Inspection inspection) {
        ForwardEvent event = new ForwardEvent();
        event.begin();
        Plan plan = plan(query, keyValue, mask, out, inspection);
        int B = plan.batch, nq = plan.queries, nk = plan.keys, d = config.headDim(), block = plan.block;
        int qw = config.queryWidth(), kw = config.kvWidth();
        long qFloats = (long) qw * B * nq, kFloats = (long) kw * B * nk;
        AttentionKernel kernel = plan.kernel;
        Mask.Bound bound = plan.bound;
        BlockLayout layout = plan.layout;

        ws.acquire();
        long allocated;
        try {
            allocated = ws.prepare(plan.projectionFloats, plan.concatFloats, pool.threads(), plan.scratchFloats);
            MemorySegment P = ws.projection();
            /* Qᵀ: (H·d, B·n_q), columns are tokens; head h is rows [h·d, (h+1)·d). */
            Matrix qT = new Matrix(P, 0, qw, B * nq, B * nq);
            /* Kᵀ, Vᵀ: (G·d, B·n_k) each, after Qᵀ in the same buffer. */
            Matrix kT = new Matrix(P, qFloats, kw, B * nk, B * nk);
            Matrix vT = new Matrix(P, qFloats + kFloats, kw, B * nk, B * nk);
            /* concat: (B·n_q, H·d), head h's output in columns [h·d, (h+1)·d). */
            Matrix concat = Matrix.of(ws.concat(), 0, B * nq, qw);
            Matrix x = query.matrix(), kv = (keyValue == null ? query : keyValue).matrix();

            // 1. project: Qᵀ = W_Q Xᵀ + b_Q, Kᵀ = W_K KVᵀ + b_K, Vᵀ = W_V KVᵀ + b_V
            project(List.of(
                    new Projection(weights.wq, weights.bq, x, qT),
                    new Projection(weights.wk, weights.bk, kv, kT),
                    new Projection(weights.wv, weights.bv, kv, vT)));

            // 2. O_h = softmax(scale · Q_h K_gᵀ + mask) V_g, per batch element, head and block of query rows
            int blocks = (nq + block - 1) / block;
            pool.run(B * config.heads() * blocks, (task, worker) -> {
                int b = task / (config.heads() * blocks), h = task / blocks % config.heads();
                int q0 = task % blocks * block, q1 = Math.min(nq, q0 + block), g = config.kvHeadOf(h);
                if (inspection != null && !inspection.keeps(h)) { // ablation: the head contributes nothing
                    SpanAttention.zero(concat.rowRange(b * nq + q0, b * nq + q1).colRange(h * d, (h + 1) * d));
                    if (inspection.progress() != null) inspection.progress().accept(q1 - q0);
                    return;
                }
                HeadBlock hb = new HeadBlock(b, h, q0,
                        qT.rowRange(h * d, (h + 1) * d).colRange(b * nq + q0, b * nq + q1),
                        kT.rowRange(g * d, (g + 1) * d).colRange(b * nk, (b + 1) * nk),
                        vT.rowRange(g * d, (g + 1) * d).colRange(b * nk, (b + 1) * nk),
                        concat.rowRange(b * nq + q0, b * nq + q1).colRange(h * d, (h + 1) * d),
                        config.scale(), bound, options.softmax(), layout, options.profile(), inspection);
                kernel.attend(hb, ws.scratch(worker));
                if (inspection != null && inspection.progress() != null) inspection.progress().accept(q1 - q0);
            });

            // 3. Y = concat(O_1 … O_H) W_Oᵀ + b_O
            Matrix y = out.matrix();
            int chunk = rowChunk(y.rows());
            pool.run((y.rows() + chunk - 1) / chunk, (task, worker) -> {
                long t = startTimer();
                int r0 = task * chunk, r1 = Math.min(y.rows(), r0 + chunk);
                Matrix yRows = y.rowRange(r0, r1);
                if (weights.bo != null) yRows.fillRows(weights.bo.segment(), 0);
                Blas.sgemm(1f, concat.rowRange(r0, r1), false, weights.wo, true, weights.bo != null ? 1f : 0f, yRows);
                stopTimer(Profile.Phase.OUTPUT_PROJECTION, t);
            });
        } finally {
            ws.releaseUse();
        }
        if (event.shouldCommit()) {
            event.kernel = kernel.name();
            event.batch = B;
            event.queries = nq;
            event.keys = nk;
            event.heads = config.heads();
            event.dModel = config.dModel();
            event.threads = pool.threads();
            event.mask = describe(mask);
            event.bytesAllocated = allocated;
            event.workspaceBytes = ws.byteSize();
            event.offHeapBytes = OffHeap.currentBytes();
            event.offHeapPeakBytes = OffHeap.peakBytes();
            event.commit();
        }
    }

    private void checkInspection(Inspection inspection, Shapes s) {
        if (inspection == null) return;
        if (inspection.capture() != null) {
            inspection.capture().check(s.batch, config.heads(), s.queries, s.keys);
            if (pool.threads() > 1 && !WorkerPool.shareable(inspection.capture().probabilities().segment())) {
                throw new IllegalArgumentException("the attention capture lives in a confined arena, which the worker threads "
                        + "cannot write; allocate it in a shared arena or use Options.withThreads(1)");
            }
        }
        if (inspection.statistics() != null) {
            if (inspection.statistics().heads() != config.heads()) {
                throw new IllegalArgumentException("statistics were made for " + inspection.statistics().heads()
                        + " heads, the layer has " + config.heads());
            }
            inspection.statistics().options().check(s.batch, s.queries, s.keys);
        }
        if (inspection.keepHead() != null && inspection.keepHead().length != config.heads()) {
            throw new IllegalArgumentException("head mask has " + inspection.keepHead().length + " entries, the layer has "
                    + config.heads() + " heads");
        }
    }

    private static String describe(Mask mask) {
        if (mask.isNone()) return "none";
        StringBuilder s = new StringBuilder();
        if (mask.isCausal()) s.append("causal ");
        if (mask.keyLengthsOrNull() != null) s.append("padding ");
        if (mask.hasExplicit()) s.append("explicit ");
        if (mask.pattern() != null) s.append(mask.pattern().describe());
        return s.toString().trim();
    }

    /**
     * What a call with these shapes would hold off-heap with this instance's options: the weights,
     * the inputs (a key/value input only when {@code cross}), the output, the projections, the
     * concatenated heads, and every worker's kernel scratch.
     */
    public MemoryEstimate estimate(int batch, int nq, int nk, boolean cross, Mask mask) {
        return estimate(config, weights.hasBias(), options.threads(), Math.min(options.queryBlock(), nq),
                kernelFor(mask, nk), batch, nq, nk, cross);
    }

    /**
     * What self-attention over n tokens (batch 1) would hold off-heap with default options, the
     * given layer and pattern (null: none), before anything exists: weights with biases,
     * activations and scratch.
     */
    public static MemoryEstimate estimate(AttentionConfig config, int n, AttentionPattern pattern) {
        Options o = Options.defaults();
        return estimate(config, true, o.threads(), Math.min(o.queryBlock(), n), defaultKernel(pattern, n), 1, n, n, false);
    }

    private static MemoryEstimate estimate(AttentionConfig c, boolean bias, int threads, int block, AttentionKernel kernel,
                                           int batch, int nq, int nk, boolean cross) {
        long f = Float.BYTES, E = c.dModel();
        long weights = f * c.parameterCount(bias);
        long inputs = f * batch * (nq + (cross ? nk : 0)) * E;
        long output = f * batch * nq * E;
        long projections = f * ((long) c.queryWidth() * batch * nq + 2L * c.kvWidth() * batch * nk);
        long concat = f * batch * nq * c.queryWidth();
        long scratch = f * threads * kernel.scratchFloats(block, nk);
        return new MemoryEstimate(weights, inputs + output + projections + concat, scratch);
    }

    /**
     * A smaller layer without the given query heads: W_Q, W_K, W_V lose those heads' rows and W_O
     * their columns (new tensors in {@code arena}; this layer is unchanged). Its output equals this
     * layer's with those heads masked ({@link Inspection#ablate}). With grouped-query attention, a
     * key/value head stays shared while every group keeps the same number of query heads; when
     * pruning makes groups uneven, each remaining query head gets its own copy of its key/value
     * head (G' = H'). The new layer runs as this one does: on a pool of its own, or on this
     * layer's shared pool. Close it either way.
     */
    public MultiHeadAttention prune(Arena arena, int... heads) {
        int H = config.heads(), G = config.kvHeads(), d = config.headDim(), E = config.dModel();
        boolean[] drop = new boolean[H];
        for (int h : heads) {
            if (h < 0 || h >= H) throw new IllegalArgumentException("head " + h + " outside [0, " + H + ")");
            drop[h] = true;
        }
        int[] kept = java.util.stream.IntStream.range(0, H).filter(h -> !drop[h]).toArray();
        if (kept.length == 0) throw new IllegalArgumentException("cannot prune all " + H + " heads");
        // Refuse a confined arena before copying anything into it (the constructor would, after);
        // the probe is a zero-length segment in the arena's scope, so it allocates nothing.
        if (options.threads() > 1 && !WorkerPool.shareable(MemorySegment.NULL.reinterpret(arena, null))) {
            throw new IllegalArgumentException("the pruned weights would live in a confined arena, which the " + options.threads()
                    + " worker threads cannot read; pass Arena.ofShared() or TrackedArena.ofShared()");
        }
        // Keep GQA when every group that survives keeps the same number of query heads.
        int[] perGroup = new int[G];
        for (int h : kept) perGroup[config.kvHeadOf(h)]++;
        int groupSize = 0;
        boolean even = true;
        for (int c : perGroup) {
            if (c == 0) continue;
            if (groupSize == 0) groupSize = c;
            even &= c == groupSize;
        }
        int[] kvKept = even ? java.util.stream.IntStream.range(0, G).filter(g -> perGroup[g] > 0).toArray()
                : java.util.Arrays.stream(kept).map(config::kvHeadOf).toArray();
        AttentionConfig c = new AttentionConfig(E, kept.length, kvKept.length, d, config.scale());
        Tensor wq = Tensor.allocate(arena, kept.length * d, E), wo = Tensor.allocate(arena, E, kept.length * d);
        Tensor wk = Tensor.allocate(arena, kvKept.length * d, E), wv = Tensor.allocate(arena, kvKept.length * d, E);
        for (int a = 0; a < kept.length; a++) copyRows(weights.wq, kept[a] * d, wq.matrix(), a * d, d);
        for (int a = 0; a < kvKept.length; a++) {
            copyRows(weights.wk, kvKept[a] * d, wk.matrix(), a * d, d);
            copyRows(weights.wv, kvKept[a] * d, wv.matrix(), a * d, d);
        }
        for (int e = 0; e < E; e++) {
            for (int a = 0; a < kept.length; a++) {
                MemorySegment.copy(weights.wo.segment(), weights.wo.index(e, kept[a] * d) * Float.BYTES,
                        wo.segment(), wo.matrix().index(e, a * d) * Float.BYTES, (long) d * Float.BYTES);
            }
        }
        java.util.Map<String, Tensor> sd = new java.util.LinkedHashMap<>();
        sd.put("q_proj.weight", wq);
        sd.put("k_proj.weight", wk);
        sd.put("v_proj.weight", wv);
        sd.put("o_proj.weight", wo);
        if (weights.hasBias()) {
            sd.put("q_proj.bias", gather(arena, weights.bq, kept, d));
            sd.put("k_proj.bias", gather(arena, weights.bk, kvKept, d));
            sd.put("v_proj.bias", gather(arena, weights.bv, kvKept, d));
            Tensor bo = Tensor.allocate(arena, E);
            MemorySegment.copy(weights.bo.segment(), 0, bo.segment(), 0, (long) E * Float.BYTES);
            sd.put("o_proj.bias", bo);
        }
        return new MultiHeadAttention(AttentionWeights.fromStateDict(c, sd, ""), options.withProfile(null), ownsPool ? null : pool);
    }

    private static void copyRows(Matrix from, int fromRow, Matrix to, int toRow, int rows) {
        for (int r = 0; r < rows; r++) {
            MemorySegment.copy(from.segment(), from.index(fromRow + r, 0) * Float.BYTES, to.segment(),
                    to.index(toRow + r, 0) * Float.BYTES, (long) from.cols() * Float.BYTES);
        }
    }

    private static Tensor gather(Arena arena, Tensor bias, int[] heads, int d) {
        Tensor t = Tensor.allocate(arena, heads.length * d);
        for (int a = 0; a < heads.length; a++) {
            MemorySegment.copy(bias.segment(), (long) heads[a] * d * Float.BYTES, t.segment(), (long) a * d * Float.BYTES,
                    (long) d * Float.BYTES);
        }
        return t;
    }

    /**
     * Does everything a call with these inputs would do before computing: checks the shapes, the
     * mask and the memory budget, sizes {@code ws} and compiles (and caches) the sparse layout of
     * the mask's pattern. A server calls this once per shape so that the first real call costs no
     * more than the next ones.
     */
    public void prepare(Tensor query, Tensor keyValue, Mask mask, Workspace ws) {
        Plan plan = plan(query, keyValue, mask, query, null);
        ws.acquire();
        try {
            ws.prepare(plan.projectionFloats, plan.concatFloats, pool.threads(), plan.scratchFloats);
        } finally {
            ws.releaseUse();
        }
    }

    /** What a call will do, decided and checked before anything runs or is allocated. */
    private record Plan(int batch, int queries, int keys, int block, AttentionKernel kernel, Mask.Bound bound,
                        BlockLayout layout, long projectionFloats, long concatFloats, long scratchFloats) {}

    private Plan plan(Tensor query, Tensor keyValue, Mask mask, Tensor out, Inspection inspection) {
        if (pool.isClosed()) throw new IllegalStateException("this MultiHeadAttention (or the pool it runs on) is closed");
        Shapes s = checkInputs(query, keyValue == null ? query : keyValue, out);
        Mask.Bound bound = mask.bind(s.batch, config.heads(), s.queries, s.keys);
        checkInspection(inspection, s);
        MemorySegment explicit = mask.explicitSegment();
        if (explicit != null && pool.threads() > 1 && !WorkerPool.shareable(explicit)) {
            throw new IllegalArgumentException("the explicit mask lives in a confined arena, which the worker threads "
                    + "cannot read; allocate it in a shared arena or use Options.withThreads(1)");
        }
        int B = s.batch, nq = s.queries, nk = s.keys, block = Math.min(options.queryBlock(), nq);
        AttentionKernel kernel = kernelFor(mask, nk);
        if (kernel instanceof SparseKernel && mask.pattern() == null) {
            throw new IllegalArgumentException("the " + kernel.name() + " kernel needs a mask with a sparse pattern "
                    + "(Mask.pattern(...) or withPattern); this mask has none");
        }
        if (options.memoryBudget() > 0) {
            MemoryEstimate e = estimate(B, nq, nk, keyValue != null, mask);
            if (e.total() > options.memoryBudget()) {
                throw new MemoryBudgetExceededException("forward of batch " + B + ", n_q=" + nq + ", n_k=" + nk + " with the "
                        + kernel.name() + " kernel needs an estimated " + e + ", over the memory budget of "
                        + OffHeap.format(options.memoryBudget()), e, options.memoryBudget());
            }
        }
        BlockLayout layout = kernel instanceof SparseKernel sparse ? layout(mask.pattern(), nq, nk, block, sparse.keyBlock()) : null;
        long projection = (long) config.queryWidth() * B * nq + 2L * config.kvWidth() * B * nk;
        return new Plan(B, nq, nk, block, kernel, bound, layout, projection, (long) B * nq * config.queryWidth(),
                kernel.scratchFloats(block, nk));
    }

    /**
     * The kernel for a call: the one given in the options, else the sparse kernel when the mask
     * has a pattern, the dense kernel up to {@value #DENSE_MAX_KEYS} keys, the tiled kernel beyond.
     */
    public AttentionKernel kernelFor(Mask mask, int keys) {
        return options.kernel() != null ? options.kernel() : defaultKernel(mask.pattern(), keys);
    }

    /** The kernel chosen when none is given: sparse for a pattern, dense up to {@value #DENSE_MAX_KEYS} keys, else tiled. */
    static AttentionKernel defaultKernel(AttentionPattern pattern, int keys) {
        if (pattern != null) return new SparseKernel(SPARSE_KEY_BLOCK, SPARSE_MAX_SPAN);
        return keys <= DENSE_MAX_KEYS ? DenseKernel.INSTANCE : new TiledKernel(TILE_KEYS);
    }

    /** The compiled layout of {@code pattern} for these sizes, from the cache when it is there. */
    BlockLayout layout(AttentionPattern pattern, int nq, int nk, int queryBlock, int keyBlock) {
        List<Object> key = List.of(pattern, nq, nk, queryBlock, keyBlock);
        BlockLayout l = layouts.get(key);
        if (l != null) return l;
        if (layouts.size() >= 16) layouts.clear(); // a handful of shapes per instance is the normal case
        l = BlockLayout.compile(pattern, config.heads(), nq, nk, queryBlock, keyBlock);
        layouts.put(key, l);
        return l;
    }

    /** out = W · inputᵀ + bias (bias broadcast along each row of out): (rows, tokens). */
    private record Projection(Matrix weight, Tensor bias, Matrix input, Matrix out) {}

    /**
     * Runs the projections as one stacked row space [W_Q; W_K; W_V] cut into about one chunk per
     * thread, so every worker gets an equal share; a chunk that crosses from one matrix into the
     * next is two sgemm calls.
     */
    private void project(List<Projection> projections) {
        int totalRows = 0;
        for (Projection p : projections) totalRows += p.weight.rows();
        int chunk = rowChunk(totalRows);
        record Piece(Projection p, int r0, int r1) {}
        List<List<Piece>> tasks = new ArrayList<>();
        List<Piece> current = new ArrayList<>();
        int room = chunk;
        for (Projection p : projections) {
            for (int r0 = 0; r0 < p.weight.rows(); ) {
                int r1 = Math.min(p.weight.rows(), r0 + room);
                current.add(new Piece(p, r0, r1));
                room -= r1 - r0;
                r0 = r1;
                if (room == 0) {
                    tasks.add(current);
                    current = new ArrayList<>();
                    room = chunk;
                }
            }
        }
        if (!current.isEmpty()) tasks.add(current);
        pool.run(tasks.size(), (task, worker) -> {
            long t = startTimer();
            for (Piece piece : tasks.get(task)) {
                Projection p = piece.p;
                Matrix outRows = p.out.rowRange(piece.r0, piece.r1);
                if (p.bias != null) { // row r of Qᵀ/Kᵀ/Vᵀ is feature r: every token starts at b[r]
                    for (int r = piece.r0; r < piece.r1; r++) {
                        Vectors.fill(outRows.segment(), outRows.index(r - piece.r0, 0), outRows.cols(), p.bias.get(r));
                    }
                }
                Blas.sgemm(1f, p.weight.rowRange(piece.r0, piece.r1), false, p.input, true, p.bias != null ? 1f : 0f, outRows);
            }
            stopTimer(Profile.Phase.PROJECTIONS, t);
        });
    }

    /** Rows per task so that each of the threads gets about one task, in multiples of 16. */
    private int rowChunk(int rows) {
        int perThread = (rows + pool.threads() - 1) / pool.threads();
        return Math.max(16, (perThread + 15) / 16 * 16);
    }

    private long startTimer() {
        return options.profile() == null ? 0 : System.nanoTime();
    }

    private void stopTimer(Profile.Phase phase, long start) {
        if (options.profile() != null) options.profile().add(phase, System.nanoTime() - start);
    }


    private record Shapes(int batch, int queries, int keys) {}

    private Shapes checkInputs(Tensor query, Tensor keyValue, Tensor out) {
        int E = config.dModel();
        checkTensor("query", query, E);
        checkTensor("key/value", keyValue, E);
        if (keyValue.rank() != query.rank() || (query.rank() == 3 && keyValue.dim(0) != query.dim(0))) {
            throw new IllegalArgumentException("key/value shape " + keyValue.shapeString()
                    + " does not match the batch of query shape " + query.shapeString());
        }
        if (!java.util.Arrays.equals(out.shape(), query.shape())) {
            throw new IllegalArgumentException("output shape " + out.shapeString() + " must equal query shape "
                    + query.shapeString());
        }
        if (!out.segment().scope().isAlive()) throw new IllegalStateException("the output tensor's arena is closed");
        checkShareable("output", out);
        int batch = query.rank() == 3 ? query.dim(0) : 1;
        int nq = query.dim(-2), nk = keyValue.dim(-2);
        if ((long) batch * Math.max(nq, nk) * Math.max(config.queryWidth(), E) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("problem too large for 32-bit BLAS sizes: batch=" + batch
                    + ", n_q=" + nq + ", n_k=" + nk + ", width=" + Math.max(config.queryWidth(), E));
        }
        return new Shapes(batch, nq, nk);
    }

    private void checkTensor(String name, Tensor t, int E) {
        if (t.rank() != 2 && t.rank() != 3) {
            throw new IllegalArgumentException(name + " must have shape (n, E) or (B, n, E), got " + t.shapeString());
        }
        if (t.dim(-1) != E) {
            throw new IllegalArgumentException(name + " has shape " + t.shapeString() + " but d_model is " + E);
        }
        if (t.dim(-2) < 1 || (t.rank() == 3 && t.dim(0) < 1)) {
            throw new IllegalArgumentException(name + " must have at least one token and one batch element, got "
                    + t.shapeString());
        }
        if (!t.segment().scope().isAlive()) {
            throw new IllegalStateException(name + " tensor " + t.shapeString() + " belongs to an arena that is closed");
        }
        checkShareable(name, t);
        if (options.checkFinite()) {
            long bad = Finite.firstNonFinite(t.segment(), t.size());
            if (bad >= 0) {
                throw new IllegalArgumentException(name + " " + t.shapeString() + " holds " + t.get(bad)
                        + " at flat index " + bad + " (checkFinite is on)");
            }
        }
    }


    /** Worker threads can only touch segments of shared (or global/automatic) arenas. */
    private void checkShareable(String name, Tensor t) {
        if (pool.threads() > 1 && !WorkerPool.shareable(t.segment())) {
            throw new IllegalArgumentException(name + " tensor " + t.shapeString() + " lives in a confined arena, "
                    + "which Headroom's " + pool.threads() + " worker threads cannot read; allocate it in "
                    + "Arena.ofShared() or TrackedArena.ofShared(), or use Options.withThreads(1)");
        }
    }

    @Override
    public void close() {
        if (ownsPool) pool.close();
    }
}
