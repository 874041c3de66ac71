package dev.headroom.attention;

import dev.headroom.blas.Blas;
import dev.headroom.cache.KvCache;
import dev.headroom.jfr.ForwardEvent;
import dev.headroom.kernels.Finite;
import dev.headroom.memory.MemoryLimits;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
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
 *   Q = X W_Qᵀ + b_Q,  K = KV W_Kᵀ + b_K,  V = KV W_Vᵀ + b_V                      stage 1, project
 *   O_h = softmax(scale · Q_h K_gᵀ + mask) V_g          g = h / (H / G)         stage 2, attend
 *   Y = [O_1 … O_H] W_Oᵀ + b_O                                                 stage 3, output projection
 * </pre>
 * Inputs are (n, E) or (B, n, E); KV defaults to X (self-attention) and may be longer or
 * shorter (cross-attention). The three stages are methods of their own ({@link #project},
 * {@link #attend}, {@link #projectOutput}) so that a KV cache, a decoder or an encoder compose
 * them: the attend stage reads keys and values through {@link KeyValues}, whatever stores them,
 * and each query's position through {@link Positions}.
 *
 * <p><b>Threads.</b> Work is split in Java across {@code threads} workers (the calling thread
 * and a pool this object owns): projection rows, then (batch, head, block of query rows) tasks,
 * then output rows. Each sgemm runs on one OpenBLAS thread (set once when OpenBLAS is loaded).
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
     * The layer's settings, the same for every call (per-call settings are {@link CallOptions}).
     *
     * @param threads      worker threads (default: available processors)
     * @param queryBlock   query rows per task; a worker's scores are queryBlock × n_k floats with the
     *                     dense kernel, queryBlock × (key tile or span) with the tiled and sparse ones
     * @param kernel       the attention kernel, or null to choose per call (see {@link #kernelFor})
     * @param softmax      the softmax implementation (default {@link Softmax#VECTOR})
     * @param checkFinite  check for NaN and ±∞: the weights once, when the layer is made; every input
     *                     before a call; the output after it, where a non-finite value is reported with
     *                     the phase or head it first appeared in ({@link NonFiniteException}); one pass
     *                     over each, O(n·E)
     * @param memoryBudget bytes a call may hold off-heap (weights, activations, scratch: {@link #estimate});
     *                     a call whose estimate exceeds it is refused before anything is allocated; 0 = no
     *                     limit. Default: {@link MemoryLimits#defaultBudget()}, from the machine's memory and
     *                     the limits the process runs under
     */
    public record Options(int threads, int queryBlock, AttentionKernel kernel, Softmax softmax,
                          boolean checkFinite, long memoryBudget) {
        public Options {
            if (threads < 1) throw new IllegalArgumentException("threads must be >= 1, got " + threads);
            if (queryBlock < 1) throw new IllegalArgumentException("queryBlock must be >= 1, got " + queryBlock);
            if (softmax == null) throw new IllegalArgumentException("softmax must be given");
            if (memoryBudget < 0) throw new IllegalArgumentException("memory budget must be >= 0, got " + memoryBudget);
        }

        public static Options defaults() {
            long budget = MemoryLimits.defaultBudget();
            return new Options(Runtime.getRuntime().availableProcessors(), 256, null, Softmax.VECTOR, false,
                    budget == Long.MAX_VALUE ? 0 : budget);
        }

        public Options withThreads(int t) {
            return new Options(t, queryBlock, kernel, softmax, checkFinite, memoryBudget);
        }

        public Options withQueryBlock(int rows) {
            return new Options(threads, rows, kernel, softmax, checkFinite, memoryBudget);
        }

        public Options withKernel(AttentionKernel k) {
            return new Options(threads, queryBlock, k, softmax, checkFinite, memoryBudget);
        }

        public Options withSoftmax(Softmax s) {
            return new Options(threads, queryBlock, kernel, s, checkFinite, memoryBudget);
        }

        public Options withCheckFinite(boolean check) {
            return new Options(threads, queryBlock, kernel, softmax, check, memoryBudget);
        }

        public Options withMemoryBudget(long bytes) {
            return new Options(threads, queryBlock, kernel, softmax, checkFinite, bytes);
        }
    }

    /** Up to this many keys the dense kernel keeps whole score rows (queryBlock × n_k floats per worker). */
    static final int DENSE_MAX_KEYS = 4096;
    /** Key tile of the tiled kernel chosen for longer sequences. */
    static final int TILE_KEYS = 1024;
    /**
     * Elements up to which {@link #rotate} turns every head on the calling thread: a decode step's
     * few columns (the tiny model's 32-row step: 4 heads × 64 × 32 = 8K, a few µs), less than a
     * hand-off to the workers costs.
     */
    static final long ROTATE_INLINE = 1L << 15;
    /** Layout tile width of the sparse kernel, and the most keys one of its spans covers. */
    static final int SPARSE_KEY_BLOCK = 64, SPARSE_MAX_SPAN = 1024;

    private final AttentionConfig config;
    private final AttentionWeights weights;
    private final Options options;
    private final WorkerPool pool;
    private final boolean ownsPool;
    /** Compiled sparse layouts by (pattern, sizes, start): compiling is O(tiles), reuse is free. */
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
        if (this.options.threads() > 1) {
            for (Matrix m : List.of(weights.wq, weights.wk, weights.wv, weights.wo)) {
                if (!WorkerPool.shareable(m.segment())) {
                    throw new IllegalArgumentException("weights live in a confined arena, which the " + this.options.threads()
                            + " worker threads cannot read; load them into Arena.ofShared() or TrackedArena.ofShared(), "
                            + "or use Options.withThreads(1)");
                }
            }
        }
        if (this.options.checkFinite()) checkWeightsFinite(weights);
        this.pool = sharedPool != null ? sharedPool : new WorkerPool(options.threads());
    }

    /** Refuses weights whose arena was closed, naming them (the JDK would say only "Already closed"). */
    private void checkWeightsAlive() {
        if (!weights.wq.segment().scope().isAlive() || !weights.wo.segment().scope().isAlive()) {
            throw new IllegalStateException("the weights of this MultiHeadAttention (" + AttentionWeights.describe(config)
                    + ") belong to an arena that is closed; keep it open while the layer is used");
        }
    }

    /** Refuses weights holding NaN or ±∞, naming the tensor and the element. */
    private static void checkWeightsFinite(AttentionWeights w) {
        Matrix[] matrices = {w.wq, w.wk, w.wv, w.wo};
        String[] names = {"W_Q", "W_K", "W_V", "W_O"};
        for (int m = 0; m < matrices.length; m++) {
            Matrix x = matrices[m];
            for (int r = 0; r < x.rows(); r++) {
                long bad = Finite.firstNonFinite(x.segment().asSlice(x.index(r, 0) * Float.BYTES, (long) x.cols() * Float.BYTES), x.cols());
                if (bad >= 0) {
                    throw new NonFiniteException(names[m] + " " + "(" + x.rows() + ", " + x.cols() + ") holds " + x.get(r, (int) bad)
                            + " at (" + r + ", " + bad + ") (checkFinite is on)");
                }
            }
        }
        Tensor[] biases = {w.bq, w.bk, w.bv, w.bo};
        String[] biasNames = {"b_Q", "b_K", "b_V", "b_O"};
        for (int b = 0; b < biases.length; b++) {
            if (biases[b] == null) continue;
            long bad = Finite.firstNonFinite(biases[b].segment(), biases[b].size());
            if (bad >= 0) {
                throw new NonFiniteException(biasNames[b] + " " + biases[b].shapeString() + " holds " + biases[b].get(bad)
                        + " at " + bad + " (checkFinite is on)");
            }
        }
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

    /** The workers this layer runs on (its own, or the shared pool it was given). */
    public WorkerPool pool() {
        return pool;
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
        // The output is computed into memory of this call's own and copied into the caller's arena
        // only once the call has succeeded: an arena cannot free one allocation, so a call that
        // failed (cancelled, non-finite, out of memory) must not have allocated anything there.
        try (TrackedArena own = TrackedArena.ofShared()) {
            Tensor result = Tensor.allocate(own, query.shape());
            try (Workspace ws = new Workspace()) {
                forward(query, keyValue, mask, result, ws);
            } // the scratch is freed before the copy, so the peak stays what estimate() says
            Tensor out = Tensor.allocate(arena, query.shape());
            MemorySegment.copy(result.segment(), 0, out.segment(), 0, result.segment().byteSize());
            return out;
        }
    }

    /** The allocation-free form: writes {@code out} (shaped like {@code query}), scratch in {@code ws}. */
    public void forward(Tensor query, Tensor keyValue, Mask mask, Tensor out, Workspace ws) {
        forward(query, keyValue, mask, out, ws, CallOptions.NONE);
    }

    /**
     * As {@link #forward(Tensor, Tensor, Mask, Tensor, Workspace)}, and also shows {@code observer}
     * the heads kept and the probabilities it asks for (null: a plain call).
     */
    public void forward(Tensor query, Tensor keyValue, Mask mask, Tensor out, Workspace ws, AttentionObserver observer) {
        forward(query, keyValue, mask, out, ws, CallOptions.observing(observer));
    }

    /** As {@link #forward(Tensor, Tensor, Mask, Tensor, Workspace)}, with per-call options. */
    public void forward(Tensor query, Tensor keyValue, Mask mask, Tensor out, Workspace ws, CallOptions call) {
        ForwardEvent event = new ForwardEvent();
        event.begin();
        Plan plan = plan(query, keyValue, mask, out, call.observer());
        int B = plan.batch, nq = plan.queries, nk = plan.keys;
        long allocated;
        ws.acquire();
        try {
            allocated = ws.prepare(plan.projectionFloats, plan.concatFloats, pool.threads(), plan.scratchFloats);
            long qFloats = (long) config.queryWidth() * B * nq, kFloats = (long) config.kvWidth() * B * nk;
            MemorySegment P = ws.projection();
            /* Qᵀ: (H·d, B·n_q), columns are tokens; head h is rows [h·d, (h+1)·d). */
            Matrix qT = new Matrix(P, 0, config.queryWidth(), B * nq, B * nq);
            /* Kᵀ, Vᵀ: (G·d, B·n_k) each, after Qᵀ in the same buffer. */
            Matrix kT = new Matrix(P, qFloats, config.kvWidth(), B * nk, B * nk);
            Matrix vT = new Matrix(P, qFloats + kFloats, config.kvWidth(), B * nk, B * nk);
            /* concat: (B·n_q, H·d), head h's output in columns [h·d, (h+1)·d). */
            Matrix concat = Matrix.of(ws.concat(), 0, B * nq, config.queryWidth());

            project(query.matrix(), (keyValue == null ? query : keyValue).matrix(), qT, kT, vT, call.profile());
            Matrix qTSinks = encodePositions(plan, qT, kT, ws);
            attend(plan, qT, qTSinks, KeyValues.projected(kT, vT, config.headDim(), nk), concat, ws, call);
            if (call.observer() != null) call.observer().headOutputs(concat);
            projectOutput(concat, out.matrix(), call.profile());
            if (options.checkFinite()) checkOutputFinite(out, qT, kT, vT, true, concat);
        } finally {
            ws.releaseUse();
        }
        event.commit(plan.kernel.name(), B, nq, nk, config.heads(), config.dModel(), pool.threads(), describe(mask),
                allocated, ws.byteSize());
    }

    /**
     * One step of causal self-attention over a KV cache ({@link CachedAttention}): {@code x} holds
     * the step's new tokens, (T, E) rows, sequence by sequence in the step's order; their keys and
     * values go into {@code cache} at layer {@code layer} (slots that {@link KvCache#step} reserved),
     * and each attends to everything its sequence has cached, causally, with the mask's pattern if
     * any (explicit masks and key lengths have no fixed shape across a ragged batch and are
     * refused). Output (T, E) into {@code out}. An observer sees each sequence as batch element 0 of
     * a call of its own (n_q = its new tokens, n_k = its cached length).
     */
    public void forward(KvCache cache, KvCache.Step step, int layer, Tensor x, Mask mask, Tensor out, Workspace ws,
                        CallOptions call) {
        if (pool.isClosed()) throw new IllegalStateException("this MultiHeadAttention (or the pool it runs on) is closed");
        checkWeightsAlive();
        checkTensor("step input", x, config.dModel());
        if (!out.segment().scope().isAlive()) throw new IllegalStateException("the output tensor's arena is closed");
        checkShareable("output", out);
        CachedAttention.forward(this, cache, step, layer, x, mask, out, ws, call, DecodeBlocks.VECTOR);
    }

    /**
     * The attend stage alone over a KV cache, for a caller that projects itself (a model with its
     * own fused projections, a benchmark of attention alone): {@code qT} (H·d, T) and {@code kT}
     * (G·d, T) hold the step's new tokens as columns and are turned in place (RoPE), {@code v}
     * (T, G·d) by rows; keys and values go into the cache at {@code layer}, and the heads' outputs
     * into {@code concat} (T, H·d). None of the matrices may live in {@code ws}.
     */
    public void attend(KvCache cache, KvCache.Step step, int layer, Matrix qT, Matrix kT, Matrix v, Matrix concat, Mask mask,
                       Workspace ws, CallOptions call) {
        if (pool.isClosed()) throw new IllegalStateException("this MultiHeadAttention (or the pool it runs on) is closed");
        CachedAttention.check(this, cache, step, layer, mask);
        for (Matrix m : List.of(qT, kT, v, concat)) {
            if (!m.segment().scope().isAlive()) throw new IllegalStateException("matrix " + m + " belongs to an arena that is closed");
            if (pool.threads() > 1 && !WorkerPool.shareable(m.segment())) {
                throw new IllegalArgumentException("matrix " + m + " lives in a confined arena, which Headroom's " + pool.threads()
                        + " worker threads cannot use; allocate it in a shared arena or use Options.withThreads(1)");
            }
        }
        CachedAttention.checkBudget(this, step, mask, false);
        int T = step.tokens();
        if (qT.rows() != config.queryWidth() || qT.cols() != T || kT.rows() != config.kvWidth() || kT.cols() != T
                || v.rows() != T || v.cols() != config.kvWidth() || concat.rows() != T || concat.cols() != config.queryWidth()) {
            throw new IllegalArgumentException("attend over " + T + " new tokens needs Qᵀ (" + config.queryWidth() + ", " + T
                    + "), Kᵀ (" + config.kvWidth() + ", " + T + "), V (" + T + ", " + config.kvWidth() + ") and concat (" + T + ", "
                    + config.queryWidth() + "); got " + qT + ", " + kT + ", " + v + ", " + concat);
        }
        ws.acquire();
        try {
            CachedAttention.attend(this, cache, step, layer, qT, kT, v, concat, mask, ws, call, DecodeBlocks.VECTOR);
        } finally {
            ws.releaseUse();
        }
    }

    /** As {@link #forward(KvCache, KvCache.Step, int, Tensor, Mask, Tensor, Workspace, CallOptions)} with the scalar decode twin (tests). */
    void forwardScalarDecode(KvCache cache, KvCache.Step step, int layer, Tensor x, Mask mask, Tensor out, Workspace ws) {
        CachedAttention.forward(this, cache, step, layer, x, mask, out, ws, CallOptions.NONE, DecodeBlocks.SCALAR);
    }

    // ---- the stages -------------------------------------------------------------------------

    /**
     * Stage 1, project: Qᵀ = W_Q Xᵀ + b_Q, Kᵀ = W_K KVᵀ + b_K, Vᵀ = W_V KVᵀ + b_V, split over the
     * workers as one stacked row space [W_Q; W_K; W_V]. {@code x}: (n_q, E) rows of tokens;
     * {@code kv}: (n_k, E); {@code qT}: (H·d, n_q), {@code kT}, {@code vT}: (G·d, n_k), written.
     * {@code kv}, {@code kT} and {@code vT} may all be null to project queries only.
     */
    public void project(Matrix x, Matrix kv, Matrix qT, Matrix kT, Matrix vT, Profile profile) {
        project(x, kv, qT, kT, vT, false, profile);
    }

    /**
     * As {@link #project(Matrix, Matrix, Matrix, Matrix, Matrix, Profile)}, with V written by rows
     * when {@code valueRows}: {@code v} is then (n_k, G·d), V = KV W_Vᵀ + b_V (what a KV cache
     * stores, so that it copies whole rows).
     */
    public void project(Matrix x, Matrix kv, Matrix qT, Matrix kT, Matrix v, boolean valueRows, Profile profile) {
        List<Projection> projections = new ArrayList<>(3);
        projections.add(new Projection(weights.wq, weights.bq, x, qT, false));
        if (kv != null) {
            projections.add(new Projection(weights.wk, weights.bk, kv, kT, false));
            projections.add(new Projection(weights.wv, weights.bv, kv, v, valueRows));
        }
        project(projections, profile);
    }

    /**
     * Position encoding of a whole forward (stage 1½): RoPE turns Qᵀ at the queries' positions and
     * Kᵀ at the keys' (key j of a batch element is at position j). With a streaming mask whose
     * window has slid, a copy of Qᵀ is turned at the queries' sink positions instead
     * ({@link Mask.Bound#sinkPosition}) and returned, for the attend stage to use against the
     * sinks; otherwise null. ALiBi needs nothing here: it is in the plan's mask bound.
     */
    private Matrix encodePositions(Plan plan, Matrix qT, Matrix kT, Workspace ws) {
        RotaryEmbedding rope = config.rope();
        if (rope == null) return null;
        int nq = plan.queries, nk = plan.keys, qCols = qT.cols(), kCols = kT.cols();
        Mask.Bound bound = plan.bound;
        Matrix qTSinks = null;
        if (slidesPastSinks(bound, plan.batch, nq)) qTSinks = sinkQueries(qT, c -> bound.sinkPosition(c / nq, c % nq), ws);
        rotate(rope, qT, config.heads(), c -> bound.position(c / nq, c % nq), ws);
        rotate(rope, kT, config.kvHeads(), c -> c % nk, ws);
        return qTSinks;
    }

    /**
     * A copy of Qᵀ (H·d, T), still unturned, turned at the queries' sink positions instead: what a
     * query meets the attention sinks with under a streaming mask (see {@link Mask.Bound#sinkPosition}).
     * In the workspace.
     */
    Matrix sinkQueries(Matrix qT, RotaryEmbedding.ColumnPositions sinkPositions, Workspace ws) {
        int T = qT.cols();
        /* qTSinks: (H·d, T). */
        Matrix qTSinks = Matrix.of(ws.extra(Workspace.Extra.SINK_QUERIES, (long) qT.rows() * T), 0, qT.rows(), T);
        for (int r = 0; r < qT.rows(); r++) {
            MemorySegment.copy(qT.segment(), qT.index(r, 0) * Float.BYTES, qTSinks.segment(), qTSinks.index(r, 0) * Float.BYTES,
                    (long) T * Float.BYTES);
        }
        rotate(config.rope(), qTSinks, config.heads(), sinkPositions, ws);
        return qTSinks;
    }

    /** Whether some query's sink position differs from its position (a streaming window that has slid). */
    private static boolean slidesPastSinks(Mask.Bound bound, int batch, int nq) {
        if (bound.sinks() == 0) return false;
        for (int b = 0; b < batch; b++) if (bound.sinkPosition(b, nq - 1) != bound.position(b, nq - 1)) return true;
        return false;
    }

    /**
     * Turns every head of {@code xT} ((heads·d, T), features × tokens) at the columns' positions:
     * the angle tables in the workspace, both steps split over the workers (the turning on the
     * calling thread up to {@link #ROTATE_INLINE} elements).
     */
    void rotate(RotaryEmbedding rope, Matrix xT, int heads, RotaryEmbedding.ColumnPositions positions, Workspace ws) {
        int T = xT.cols(), pairs = rope.pairs(), d = config.headDim();
        MemorySegment tables = ws.extra(Workspace.Extra.ROPE_ANGLES, 2L * pairs * T);
        /* cos, sin: (R/2, T) each, row i over the columns. */
        MemorySegment cos = tables.asSlice(0, (long) pairs * T * Float.BYTES);
        MemorySegment sin = tables.asSlice((long) pairs * T * Float.BYTES, (long) pairs * T * Float.BYTES);
        int chunk = Math.max(64, (T + pool.threads() - 1) / pool.threads());
        pool.run((T + chunk - 1) / chunk, (task, worker) -> {
            int c0 = task * chunk, c1 = Math.min(T, c0 + chunk);
            rope.angles(c -> positions.of(c0 + c), c1 - c0, cos.asSlice((long) c0 * Float.BYTES), sin.asSlice((long) c0 * Float.BYTES),
                    T);
        });
        if ((long) heads * d * T <= ROTATE_INLINE) {
            for (int h = 0; h < heads; h++) rope.rotate(xT.rowRange(h * d, (h + 1) * d), 1, d, cos, sin);
        } else {
            pool.run(heads, (h, worker) -> rope.rotate(xT.rowRange(h * d, (h + 1) * d), 1, d, cos, sin));
        }
    }

    /**
     * Stage 2, attend: O_h = softmax(scale · Q_h K_gᵀ + mask) V_g for every batch element, head and
     * block of query rows, written into {@code concat} (B·n_q, H·d), head h in columns
     * [h·d, (h+1)·d). {@code qT}: (H·d, B·n_q), and {@code qTSinks} the same turned for the sinks
     * (or null); keys and values come from {@code kv}; the plan holds the mask bound to the
     * queries' positions, the kernel and the sparse layout.
     */
    void attend(Plan plan, Matrix qT, Matrix qTSinks, KeyValues kv, Matrix concat, Workspace ws, CallOptions call) {
        int nq = plan.queries, d = config.headDim(), H = config.heads(), block = plan.block;
        AttentionObserver observer = call.observer();
        int blocks = (nq + block - 1) / block;
        pool.run(plan.batch * H * blocks, (task, worker) -> {
            int b = task / (H * blocks), h = task / blocks % H;
            int q0 = task % blocks * block, q1 = Math.min(nq, q0 + block), g = config.kvHeadOf(h);
            Matrix o = concat.rowRange(b * nq + q0, b * nq + q1).colRange(h * d, (h + 1) * d);
            if (observer != null && !observer.keeps(h)) { // ablation: the head contributes nothing
                SpanAttention.zero(o);
            } else {
                HeadBlock hb = new HeadBlock(b, h, q0, qT.rowRange(h * d, (h + 1) * d).colRange(b * nq + q0, b * nq + q1),
                        qTSinks == null ? null : qTSinks.rowRange(h * d, (h + 1) * d).colRange(b * nq + q0, b * nq + q1),
                        kv.keysT(b, g), kv.values(b, g), kv.valuesTransposed(), o, config.scale(), plan.bound, options.softmax(), plan.layout,
                        call.profile(), observer);
                plan.kernel.attend(hb, ws.scratch(worker));
            }
            if (observer != null) observer.finished(q1 - q0);
        });
    }

    /** Stage 3, output projection: Y = concat W_Oᵀ + b_O; {@code concat}: (rows, H·d), {@code y}: (rows, E). */
    public void projectOutput(Matrix concat, Matrix y, Profile profile) {
        int chunk = Math.min(PIECE_TOKENS, rowChunk(y.rows()));
        pool.run((y.rows() + chunk - 1) / chunk, (task, worker) -> {
            long t = profile == null ? 0 : System.nanoTime();
            int r0 = task * chunk, r1 = Math.min(y.rows(), r0 + chunk);
            Matrix yRows = y.rowRange(r0, r1);
            if (weights.bo != null) yRows.fillRows(weights.bo.segment(), 0);
            Blas.sgemm(1f, concat.rowRange(r0, r1), false, weights.wo, true, weights.bo != null ? 1f : 0f, yRows);
            if (profile != null) profile.add(Profile.Phase.OUTPUT_PROJECTION, System.nanoTime() - t);
        });
    }

    /**
     * With finite checking on, an output holding NaN or ±∞ is an error that says where the first
     * non-finite value appeared: in Q, K or V (the projections overflowed: inputs or weights too
     * large), in a head's attention output (its scores overflowed: |scale · q · k| beyond float's
     * 3.4e38, or ∞ − ∞ in the softmax), or only in the output projection. The buffers are still in
     * the workspace, so this costs one more pass over them, only when the output is bad.
     * {@code vByColumns}: V is Vᵀ (G·d, tokens), else V (tokens, G·d).
     */
    void checkOutputFinite(Tensor out, Matrix qT, Matrix kT, Matrix v, boolean vByColumns, Matrix concat) {
        long bad = Finite.firstNonFinite(out.segment(), out.size());
        if (bad < 0) return;
        int d = config.headDim(), E = config.dModel();
        String where = "output " + out.shapeString() + " holds " + out.get(bad) + " at token " + bad / E + ", feature " + bad % E
                + " (checkFinite is on; inputs and weights were finite): ";
        long[] at = firstNonFinite(qT);
        if (at != null) {
            throw new NonFiniteException(where + "it first appears in the query projection, head " + at[0] / d + ", token " + at[1]
                    + " (Q = X W_Qᵀ + b_Q overflowed float32: inputs or weights too large)");
        }
        at = firstNonFinite(kT);
        if (at != null) {
            throw new NonFiniteException(where + "it first appears in the key projection, key/value head " + at[0] / d + ", token "
                    + at[1] + " (K = KV W_Kᵀ + b_K overflowed float32)");
        }
        at = firstNonFinite(v);
        if (at != null) {
            long feature = vByColumns ? at[0] : at[1], token = vByColumns ? at[1] : at[0];
            throw new NonFiniteException(where + "it first appears in the value projection, key/value head " + feature / d
                    + ", token " + token + " (V = KV W_Vᵀ + b_V overflowed float32)");
        }
        at = firstNonFinite(concat);
        if (at != null) {
            throw new NonFiniteException(where + "Q, K and V are finite; it first appears in the attention of head " + at[1] / d
                    + ", query " + at[0] + ": its scores scale · q · k overflowed float32 (|s| > 3.4e38), so the softmax "
                    + "met ∞ − ∞");
        }
        throw new NonFiniteException(where + "every head's output is finite; it first appears in the output projection "
                + "(concat W_Oᵀ + b_O overflowed float32)");
    }

    /** (row, column) of the first non-finite element of m, or null. */
    private static long[] firstNonFinite(Matrix m) {
        for (int r = 0; r < m.rows(); r++) {
            long bad = Finite.firstNonFinite(m.segment().asSlice(m.index(r, 0) * Float.BYTES, (long) m.cols() * Float.BYTES), m.cols());
            if (bad >= 0) return new long[]{r, bad};
        }
        return null;
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
        return MemoryEstimate.of(config, weights.hasBias(), options.threads(), Math.min(options.queryBlock(), nq),
                kernelFor(mask, nk), batch, nq, nk, cross, mask.pattern() instanceof AttentionPattern.Streaming);
    }

    /**
     * What self-attention over n tokens (batch 1) would hold off-heap with default options, the
     * given layer and pattern (null: none), before anything exists: weights with biases,
     * activations and scratch.
     */
    public static MemoryEstimate estimate(AttentionConfig config, int n, AttentionPattern pattern) {
        Options o = Options.defaults();
        return MemoryEstimate.of(config, true, o.threads(), Math.min(o.queryBlock(), n), defaultKernel(pattern, n), 1, n, n, false);
    }

    /**
     * A smaller layer without the given query heads ({@link AttentionWeights#prune}: new tensors in
     * {@code arena}; this layer is unchanged). Its output equals this layer's with those heads
     * masked ({@code Inspection.ablate}). The new layer runs as this one does: on a pool of its
     * own, or on this layer's shared pool. Close it either way.
     */
    public MultiHeadAttention prune(Arena arena, int... heads) {
        // Refuse a confined arena before copying anything into it (the constructor would, after);
        // the probe is a zero-length segment in the arena's scope, so it allocates nothing.
        if (options.threads() > 1 && !WorkerPool.shareable(MemorySegment.NULL.reinterpret(arena, null))) {
            throw new IllegalArgumentException("the pruned weights would live in a confined arena, which the " + options.threads()
                    + " worker threads cannot read; pass Arena.ofShared() or TrackedArena.ofShared()");
        }
        return new MultiHeadAttention(weights.prune(arena, heads), options, ownsPool ? null : pool);
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
    record Plan(int batch, int queries, int keys, int block, AttentionKernel kernel, Mask.Bound bound,
                BlockLayout layout, long projectionFloats, long concatFloats, long scratchFloats) {}

    private Plan plan(Tensor query, Tensor keyValue, Mask mask, Tensor out, AttentionObserver observer) {
        if (pool.isClosed()) throw new IllegalStateException("this MultiHeadAttention (or the pool it runs on) is closed");
        Shapes s = checkInputs(query, keyValue == null ? query : keyValue, out);
        return plan(s.batch, s.queries, s.keys, keyValue != null, mask, Positions.bottomRight(s.queries, s.keys), observer);
    }

    /**
     * The plan of an attend over {@code batch} × n_q queries at {@code positions} against n_k keys
     * per batch element: binds the mask, checks the observer and the budget, picks the kernel and
     * compiles the sparse layout. {@code cross}: whether a separate key/value input exists (for the
     * memory estimate).
     */
    Plan plan(int batch, int nq, int nk, boolean cross, Mask mask, Positions positions, AttentionObserver observer) {
        return plan(batch, nq, nk, cross, mask, positions, observer, true);
    }

    /** As above; {@code checkBudget} false skips the memory budget (a cached step accounts its memory in the cache). */
    Plan plan(int batch, int nq, int nk, boolean cross, Mask mask, Positions positions, AttentionObserver observer,
              boolean checkBudget) {
        Mask.Bound bound = mask.bind(batch, config.heads(), nq, nk, positions);
        if (config.alibi()) bound = bound.withAlibi(config.alibiSlopes());
        if (observer != null) observer.check(batch, config.heads(), nq, nk, pool.threads() > 1);
        MemorySegment explicit = mask.explicitSegment();
        if (explicit != null && pool.threads() > 1 && !WorkerPool.shareable(explicit)) {
            throw new IllegalArgumentException("the explicit mask lives in a confined arena, which the worker threads "
                    + "cannot read; allocate it in a shared arena or use Options.withThreads(1)");
        }
        int block = Math.min(options.queryBlock(), nq);
        AttentionKernel kernel = kernelFor(mask, nk);
        if (kernel instanceof SparseKernel && mask.pattern() == null) {
            throw new IllegalArgumentException("the " + kernel.name() + " kernel needs a mask with a sparse pattern "
                    + "(Mask.pattern(...) or withPattern); this mask has none");
        }
        if (checkBudget && options.memoryBudget() > 0) {
            MemoryEstimate e = estimate(batch, nq, nk, cross, mask);
            if (e.total() > options.memoryBudget()) {
                boolean byDefault = options.memoryBudget() == MemoryLimits.defaultBudget();
                throw new MemoryBudgetExceededException("forward of batch " + batch + ", n_q=" + nq + ", n_k=" + nk + " with the "
                        + kernel.name() + " kernel needs an estimated " + e + ", over the memory budget of "
                        + OffHeap.format(options.memoryBudget()) + (byDefault ? " (the " + MemoryLimits.explain() + ")" : "")
                        + "; refused before allocating anything (a smaller problem, or Options.withMemoryBudget / --budget)",
                        e, options.memoryBudget());
            }
        }
        BlockLayout layout = null;
        if (kernel instanceof SparseKernel sparse) {
            if (!positions.isUniform()) {
                throw new IllegalArgumentException("the sparse kernel needs every batch element's queries at the same "
                        + "positions, got " + positions);
            }
            layout = layout(mask.pattern(), nq, nk, positions.start(0), block, sparse.keyBlock());
        }
        long projection = (long) config.queryWidth() * batch * nq + 2L * config.kvWidth() * batch * nk;
        return new Plan(batch, nq, nk, block, kernel, bound, layout, projection, (long) batch * nq * config.queryWidth(),
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
    BlockLayout layout(AttentionPattern pattern, int nq, int nk, long start, int queryBlock, int keyBlock) {
        List<Object> key = List.of(pattern, nq, nk, start, queryBlock, keyBlock);
        BlockLayout l = layouts.get(key);
        if (l != null) return l;
        if (layouts.size() >= 16) layouts.clear(); // a handful of shapes per instance is the normal case
        l = BlockLayout.compile(pattern, config.heads(), nq, nk, start, queryBlock, keyBlock);
        layouts.put(key, l);
        return l;
    }

    /**
     * out = W · inputᵀ + bias, (W rows, tokens), bias broadcast along each row; or, when
     * {@code byRows}, out = input · Wᵀ + bias, (tokens, W rows), bias added to every row.
     */
    private record Projection(Matrix weight, Tensor bias, Matrix input, Matrix out, boolean byRows) {}

    /**
     * Tokens per projection task at most: over this, a task's tokens are cut too, so that a
     * cancelled call stops within one such piece (16,384 tokens × a thread's share of the rows:
     * about 25 ms of sgemm for d_model 768 on this project's machines) instead of one whole
     * projection of a very long sequence.
     */
    static final int PIECE_TOKENS = 16384;

    /**
     * Runs the projections as one stacked row space [W_Q; W_K; W_V] cut into about one chunk per
     * thread, so every worker gets an equal share; a chunk that crosses from one matrix into the
     * next is two sgemm calls. Sequences longer than {@link #PIECE_TOKENS} are cut by tokens as well.
     */
    private void project(List<Projection> projections, Profile profile) {
        int tokens = projections.getFirst().input.rows();
        if (tokens > PIECE_TOKENS) {
            for (int t0 = 0; t0 < tokens; t0 += PIECE_TOKENS) {
                int t1 = Math.min(tokens, t0 + PIECE_TOKENS);
                List<Projection> part = new ArrayList<>();
                for (Projection p : projections) {
                    part.add(new Projection(p.weight, p.bias, p.input.rowRange(t0, t1),
                            p.byRows ? p.out.rowRange(t0, t1) : p.out.colRange(t0, t1), p.byRows));
                }
                project(part, profile);
            }
            return;
        }
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
            long t = profile == null ? 0 : System.nanoTime();
            for (Piece piece : tasks.get(task)) {
                Projection p = piece.p;
                Matrix w = p.weight.rowRange(piece.r0, piece.r1);
                if (p.byRows) { // columns [r0, r1) of V: every token row starts at b[r0 .. r1)
                    Matrix outCols = p.out.colRange(piece.r0, piece.r1);
                    if (p.bias != null) outCols.fillRows(p.bias.segment(), piece.r0);
                    Blas.sgemm(1f, p.input, false, w, true, p.bias != null ? 1f : 0f, outCols);
                    continue;
                }
                Matrix outRows = p.out.rowRange(piece.r0, piece.r1);
                if (p.bias != null) { // row r of Qᵀ/Kᵀ/Vᵀ is feature r: every token starts at b[r]
                    for (int r = piece.r0; r < piece.r1; r++) {
                        Vectors.fill(outRows.segment(), outRows.index(r - piece.r0, 0), outRows.cols(), p.bias.get(r));
                    }
                }
                Blas.sgemm(1f, w, false, p.input, true, p.bias != null ? 1f : 0f, outRows);
            }
            if (profile != null) profile.add(Profile.Phase.PROJECTIONS, System.nanoTime() - t);
        });
    }

    /** Rows per task so that each of the threads gets about one task, in multiples of 16. */
    private int rowChunk(int rows) {
        int perThread = (rows + pool.threads() - 1) / pool.threads();
        return Math.max(16, (perThread + 15) / 16 * 16);
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
        checkWeightsAlive();
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
