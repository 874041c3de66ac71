package dev.headroom.model.llama;

import dev.headroom.attention.CallOptions;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.NonFiniteException;
import dev.headroom.blas.Blas;
import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.kernels.Finite;
import dev.headroom.kernels.RmsNorm;
import dev.headroom.kernels.SmallMatmul;
import dev.headroom.kernels.SwiGlu;
import dev.headroom.kernels.Vectors;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.AttentionListener;
import dev.headroom.runtime.WorkerPool;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * A Llama-style decoder on Headroom: attention is Headroom's {@link MultiHeadAttention} (RoPE,
 * GQA, causal, over a paged {@link KvCache} or a whole sequence), everything else runs here,
 * off-heap, with matrix products through {@link Blas#sgemm} (or {@link SmallMatmul} for the few
 * rows of a decode step, see {@link #SMALL_ROWS}) and RMSNorm/SwiGLU in Java
 * ({@link RmsNorm#VECTOR}, {@link SwiGlu#VECTOR}). For T new tokens:
 * <pre>
 *   x = embed_tokens[ids]                                     (T, E)
 *   for each layer:
 *     h = RMSNorm(x) ⊙ w_in                                   (T, E)
 *     x = x + Attention(h)        causal; RoPE at each token's position; K, V into the cache
 *     h = RMSNorm(x) ⊙ w_post
 *     x = x + (silu(h W_gateᵀ) ⊙ (h W_upᵀ)) W_downᵀ            (T, I) in between
 *   logits = (RMSNorm(x) ⊙ w_norm) W_headᵀ                    (R, V), only the R rows asked for
 * </pre>
 * where W_head is {@code embed_tokens} when the embeddings are tied. Positions come from the cache
 * (a sequence's first token is at 0), or are 0..n−1 in a whole forward.
 *
 * <p>Two forward paths: {@link #forward(KvCache, KvCache.Step, int[], int[], Tensor, DecoderWorkspace, LayerHooks)}
 * runs one step of a ragged batch over the cache (prefill chunks and single decode tokens alike),
 * projecting Q, K, V and the output itself around the attention's attend stage
 * ({@link MultiHeadAttention#attend(KvCache, KvCache.Step, int, Matrix, Matrix, Matrix, Matrix, Mask,
 * dev.headroom.attention.Workspace, CallOptions)}); {@link #forward(int[], int, int[], Tensor, DecoderWorkspace, LayerHooks)}
 * runs B whole sequences of equal length with a causal mask and no cache, each layer's attention
 * with its own stages (inspection, and the reference the cached path is tested against).
 *
 * <p><b>Threads.</b> One pool of {@code threads} workers (the caller and threads − 1 helpers) runs
 * everything, as in {@link dev.headroom.model.minilm.MiniLmEncoder}: the norms on blocks of rows,
 * each matrix product split by rows when there are enough of them and by output columns when
 * there are not (a decode step has one row per sequence), and every layer's attention, which is
 * built on this same pool. Every sgemm runs on one OpenBLAS thread.
 *
 * <p><b>Memory.</b> The weights live in the arena they were loaded into (or one this model owns
 * and closes, see {@link dev.headroom.model.Models#tiny}). The model also keeps its own packed
 * copy of every matrix its products read (the panels {@link SmallMatmul} reads), in an arena it
 * closes: about as many bytes again as the weights ({@link #packedBytes()}; 11 MB for the tiny
 * model), the price of decode steps that never repack a weight as sgemm does on every call. Per-call scratch is
 * in a {@link DecoderWorkspace}; keys and values in a {@link KvCache} the caller makes
 * ({@link #newCache}) and closes. Outputs go to the caller's tensors.
 *
 * <p><b>Concurrency.</b> One model serves concurrent calls that each have their own workspace
 * and their own cache sequences; {@link #close()} must not race with running calls.
 */
public final class LlamaModel implements AutoCloseable {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    /**
     * A matrix product smaller than this many multiply-adds runs as one call on the calling
     * thread: below it, handing pieces to the pool costs about what it saves. A first guess (a
     * decode step of the tiny model has 164K in each feed-forward product, 66K in the logits),
     * not yet measured on a quiet machine.
     */
    static final long PARALLEL_MIN_MACS = 1L << 16;
    /**
     * Products with at most this many rows (a decode step's tokens, or a step's decoding rows and
     * a prompt chunk beside them) run in {@link SmallMatmul} on the packed weight, larger ones in
     * sgemm, which packs all of W on every call; the system property {@code headroom.smallRows}
     * overrides it (0: sgemm always), for measuring. Measured (AMD EPYC Zen 5, OpenBLAS 0.3.21's
     * own Cooperlake kernel): the step's products on one thread ({@code java -jar
     * bench/target/benchmarks.jar DecodeStepBoundBenchmark -p rows=48,64 -p threads=1 -f 2}) 48 rows
     * 1.63 ms against sgemm's 2.16, 64 rows 2.15 against 2.66; in single runs 8 rows 0.35 against
     * 1.15, 32 rows 1.12-1.22 against 2.00. Whole decode runs, {@code DecoderBenchmark} on 2
     * threads, alternating JVMs with {@code -Dheadroom.smallRows=4} and 64, ms per 127 steps: batch
     * 8 141 and 126 against 100 and 117, batch 32 482 and 453 against 440 and 429. The server
     * could not tell the thresholds apart: at 32 streams (serve-bench, 20 s) 6,089 and 4,640
     * tokens/s with 32, 5,862 and 5,252 with 4, 6,105 and 5,167 with 64, its run-to-run spread.
     * (Before the kernel read each panel once for all the rows, 4 was the threshold: batch 32 then
     * ran 1,187 ms in SmallMatmul against 777 in sgemm.)
     */
    static final int SMALL_ROWS = Integer.getInteger("headroom.smallRows", 64);
    /** Rows per task at least, before a product is split by rows instead of by output columns. */
    static final int MIN_ROWS_PER_TASK = 64;
    /** Row-wise kernels (norms, gating) run on the calling thread up to this many rows. */
    static final int INLINE_ROWS = 32;

    /** What a forward shows or changes per layer: inspection, ablation, profiling. */
    public interface LayerHooks {
        LayerHooks NONE = new LayerHooks() {};

        /** Called with each layer's attention input h, (B, n, E) or (T, E), valid only during the call. */
        default void beforeAttention(int layer, MultiHeadAttention attention, Tensor input, Mask mask) {}

        /** The options of layer {@code layer}'s attention call (an observer, a profile). */
        default CallOptions call(int layer) {
            return CallOptions.NONE;
        }

        /** Hooks that only call {@code listener} before each attention. */
        static LayerHooks listening(AttentionListener listener) {
            return new LayerHooks() {
                @Override
                public void beforeAttention(int layer, MultiHeadAttention attention, Tensor input, Mask mask) {
                    listener.beforeAttention(layer, attention, input, mask);
                }
            };
        }
    }

    private final LlamaWeights weights;
    private final LlamaConfig config;
    private final List<MultiHeadAttention> attention;
    /** Per layer, every product's weight as loaded and packed for {@link SmallMatmul} (see {@link Weights}). */
    private final List<Weights> layerWeights;
    /** The output layer, as loaded (V, E) and packed. */
    private final Linear lmHead;
    /** Owns the packed weights (the model's own copy: closed with the model). */
    private final TrackedArena packedArena;
    private final WorkerPool pool;
    /** The arena holding the weights when this model owns it, else null. */
    private final Arena ownedArena;

    /** A model over weights in the caller's arena (shared when threads &gt; 1), with default attention options. */
    public LlamaModel(LlamaWeights weights, int threads) {
        this(weights, MultiHeadAttention.Options.defaults().withThreads(threads), null);
    }

    /**
     * A model over {@code weights} whose attention layers use {@code options} (threads, memory
     * budget, finite checks: with {@link MultiHeadAttention.Options#checkFinite()} every weight
     * is checked once here, and each attention call as that class describes); it owns and closes
     * {@code ownedArena} if not null.
     */
    public LlamaModel(LlamaWeights weights, MultiHeadAttention.Options options, Arena ownedArena) {
        this.weights = weights;
        this.config = weights.config();
        int threads = options.threads();
        if (threads > 1 && !WorkerPool.shareable(weights.embedTokens().segment())) {
            throw new IllegalArgumentException("the weights live in a confined arena, which the model's " + threads
                    + " worker threads cannot read; load them into Arena.ofShared() or TrackedArena.ofShared(), or use 1 thread");
        }
        if (options.checkFinite()) checkWeightsFinite(weights);
        this.pool = new WorkerPool(threads);
        this.packedArena = TrackedArena.ofShared();
        List<MultiHeadAttention> layers = new ArrayList<>();
        List<Weights> w = new ArrayList<>();
        Linear head;
        try {
            // Every layer's attention runs on this model's pool: one set of threads for the model.
            for (LlamaWeights.Layer layer : weights.layers()) layers.add(new MultiHeadAttention(layer.attention(), options, pool));
            for (LlamaWeights.Layer layer : weights.layers()) w.add(Weights.of(layer, packedArena));
            head = Linear.of(weights.lmHead().matrix(), null, packedArena);
        } catch (RuntimeException | Error e) { // a layer refused, weights that cannot be read, or no memory for their packed copies
            packedArena.close();
            for (MultiHeadAttention m : layers) m.close();
            pool.close();
            throw e;
        }
        this.attention = Collections.unmodifiableList(layers);
        this.layerWeights = Collections.unmodifiableList(w);
        this.lmHead = head;
        this.ownedArena = ownedArena;
    }

    /**
     * One weight of a linear layer: W (out, in) as loaded (what sgemm reads), the same packed into
     * {@link SmallMatmul}'s panels once at construction (what decode rows read), and the bias or null.
     */
    private record Linear(Matrix w, MemorySegment packed, Tensor bias) {
        static Linear of(Matrix w, Tensor bias, TrackedArena arena) {
            MemorySegment packed = arena.allocate(SmallMatmul.packedFloats(w.rows(), w.cols()) * Float.BYTES, TrackedArena.ALIGNMENT);
            SmallMatmul.pack(w.segment(), w.offset(), w.ld(), w.rows(), w.cols(), packed, 0);
            return new Linear(w, packed, bias);
        }
    }

    /**
     * One layer's products: Q, K, V and O are the attention's (for the cached path, which projects
     * itself; the whole forward uses the attention's own stages), then the feed-forward's.
     */
    private record Weights(Linear q, Linear k, Linear v, Linear o, Linear gate, Linear up, Linear down) {
        static Weights of(LlamaWeights.Layer layer, TrackedArena arena) {
            java.util.Map<String, Tensor> sd = layer.attention().stateDict();
            return new Weights(Linear.of(sd.get("q_proj.weight").matrix(), sd.get("q_proj.bias"), arena),
                    Linear.of(sd.get("k_proj.weight").matrix(), sd.get("k_proj.bias"), arena),
                    Linear.of(sd.get("v_proj.weight").matrix(), sd.get("v_proj.bias"), arena),
                    Linear.of(sd.get("o_proj.weight").matrix(), sd.get("o_proj.bias"), arena),
                    Linear.of(layer.gate(), null, arena), Linear.of(layer.up(), null, arena), Linear.of(layer.down(), null, arena));
        }
    }

    public LlamaConfig config() {
        return config;
    }

    public LlamaWeights weights() {
        return weights;
    }

    public int threads() {
        return pool.threads();
    }

    /** Sets how the model's worker threads wait between tasks ({@link WorkerPool.Waiting}; a server yields to its I/O threads). */
    public void setWaiting(WorkerPool.Waiting waiting) {
        pool.setWaiting(waiting);
    }

    /** Layer {@code layer}'s attention (0 first). */
    public MultiHeadAttention attention(int layer) {
        return attention.get(layer);
    }

    public List<MultiHeadAttention> attentionLayers() {
        return attention;
    }

    /** The shape of a KV cache for this model: every layer, G heads of d, blocks of {@code blockSize} tokens. */
    public KvCache.Shape cacheShape(int blockSize, KvDtype dtype) {
        return new KvCache.Shape(config.layers(), config.kvHeads(), config.headDim(), blockSize, dtype);
    }

    /** A KV cache for this model holding at most {@code budgetBytes}; the caller closes it. */
    public KvCache newCache(int blockSize, KvDtype dtype, long budgetBytes) {
        return new KvCache(cacheShape(blockSize, dtype), budgetBytes);
    }

    // ---- forward over the cache ----

    /**
     * One step of a ragged batch over {@code cache}: {@code ids} holds the step's T new tokens
     * sequence by sequence in the step's order ({@link KvCache#step} reserved their slots); each
     * attends to its sequence's cached tokens and itself. Writes the logits of rows
     * {@code logitRows} (indices into the T new tokens, in the order given; null for all T) into
     * {@code logits}, (R, V).
     */
    public void forward(KvCache cache, KvCache.Step step, int[] ids, int[] logitRows, Tensor logits, DecoderWorkspace ws,
                        LayerHooks hooks) {
        int T = step.tokens();
        if (ids.length != T) {
            throw new IllegalArgumentException("the step has " + T + " new tokens but " + ids.length + " ids were given");
        }
        KvCache.Shape s = cache.shape();
        if (s.layers() != config.layers() || s.kvHeads() != config.kvHeads() || s.headDim() != config.headDim()) {
            throw new IllegalArgumentException("the KV cache holds " + s.layers() + " layers × " + s.kvHeads() + " heads of "
                    + s.headDim() + ", the model needs " + config.layers() + " × " + config.kvHeads() + " of " + config.headDim());
        }
        int[] rows = checkRows(logitRows, T, logits);
        checkIds(ids);
        if (T == 0) return;
        int E = config.hiddenSize(), q = config.heads() * config.headDim(), kv = config.kvHeads() * config.headDim();
        ws.prepare(T, rows.length, E, config.intermediateSize(), q, kv);
        MemorySegment P = ws.projections();
        /* Qᵀ: (H·d, T) and Kᵀ: (G·d, T), the step's tokens as columns; V: (T, G·d) by rows, as the cache stores it. */
        Matrix qT = Matrix.of(P, 0, q, T), kT = Matrix.of(P, (long) q * T, kv, T), v = Matrix.of(P, (long) (q + kv) * T, T, kv);
        /* concat: (T, H·d), the heads' outputs side by side. */
        Matrix concat = Matrix.of(ws.concat(), 0, T, q);
        Matrix xRows = Matrix.of(ws.hidden(), 0, T, E);
        forwardLayers(T, ids, ws, hooks, true, (l, mha, h, a, call) -> {
            // The layer's own stages with this model's products (SmallMatmul for decode rows, where
            // sgemm would pack W for one row), around the attention's attend stage over the cache.
            Matrix hRows = Matrix.of(h, 0, T, E);
            hooks.beforeAttention(l, mha, Tensor.wrap(h, T, E), Mask.causal());
            Weights p = layerWeights.get(l);
            // Qᵀ = W_Q hᵀ, Kᵀ = W_K hᵀ, V = h W_Vᵀ (+ biases), in one hand-off to the workers
            products(hRows, new Product(p.q(), qT, true, false), new Product(p.k(), kT, true, false),
                    new Product(p.v(), v, false, false));
            boolean check = mha.options().checkFinite();
            if (check) {
                checkFinite("the Q projection", l, qT, true);
                checkFinite("the K projection", l, kT, true);
                checkFinite("the V projection", l, v, false);
            }
            // RoPE at the tokens' positions, K and V into the cache, attention over each sequence's cache
            mha.attend(cache, step, l, qT, kT, v, concat, Mask.causal(), ws.attention(), call);
            if (call.observer() != null) call.observer().headOutputs(concat);
            if (check) checkFinite("the attention (Q, K, V finite: the scores overflowed)", l, concat, false);
            // x = x + concat W_Oᵀ + b_O
            linear(concat, p.o(), xRows, false, true);
            if (check) checkFinite("the residual stream after the output projection", l, xRows, false);
        });
        logits(rows, ws, logits);
    }

    // ---- whole forward, no cache ----

    /**
     * {@code batch} whole sequences of equal length n = ids.length / batch, (batch, n) row-major,
     * each at positions 0..n−1 with a causal mask and no cache. Writes the logits of rows
     * {@code logitRows} (indices into the batch·n tokens; null for all) into {@code logits}, (R, V).
     */
    public void forward(int[] ids, int batch, int[] logitRows, Tensor logits, DecoderWorkspace ws, LayerHooks hooks) {
        if (batch < 1 || ids.length % batch != 0) {
            throw new IllegalArgumentException(ids.length + " token ids do not make " + batch + " sequences of equal length");
        }
        int T = ids.length, n = T / batch, E = config.hiddenSize();
        int[] rows = checkRows(logitRows, T, logits);
        checkIds(ids);
        if (T == 0) return;
        ws.prepare(T, rows.length, E, config.intermediateSize(), 0, 0);
        forwardLayers(T, ids, ws, hooks, false, (l, mha, h, a, call) -> {
            Tensor h3 = Tensor.wrap(h, batch, n, E), a3 = Tensor.wrap(a, batch, n, E);
            hooks.beforeAttention(l, mha, h3, Mask.causal());
            mha.forward(h3, null, Mask.causal(), a3, ws.attention(), call);
        });
        logits(rows, ws, logits);
    }

    /** All logits of one sequence, (n, V), in {@code arena} (a convenience for tests and tools). */
    public Tensor logits(int[] ids, Arena arena) {
        Tensor out = Tensor.allocate(arena, ids.length, config.vocabSize());
        try (DecoderWorkspace ws = new DecoderWorkspace()) {
            forward(ids, 1, null, out, ws, LayerHooks.NONE);
        }
        return out;
    }

    /**
     * How one layer's attention runs on h, both (T, E) segments: a = Attention(h) into {@code a},
     * or, for a step that adds its output projection onto the residual stream itself, x += Attention(h).
     */
    @FunctionalInterface
    private interface AttentionStep {
        void run(int layer, MultiHeadAttention mha, MemorySegment h, MemorySegment a, CallOptions call);
    }

    /**
     * Embeddings, then every layer, leaving the residual stream x in the workspace;
     * {@code addsItself}: the attention step adds its output to x (else it writes a, added here).
     */
    private void forwardLayers(int T, int[] ids, DecoderWorkspace ws, LayerHooks hooks, boolean addsItself, AttentionStep attend) {
        int E = config.hiddenSize(), I = config.intermediateSize();
        float eps = (float) config.rmsNormEps();
        long rowBytes = (long) E * Float.BYTES;
        MemorySegment x = ws.hidden(), h = ws.normed(), a = ws.attentionOut(), g = ws.gate(), u = ws.up();
        MemorySegment h0 = h.asSlice(0, T * rowBytes), a0 = a.asSlice(0, T * rowBytes);
        Matrix xRows = Matrix.of(x, 0, T, E), hRows = Matrix.of(h, 0, T, E);
        Matrix gRows = Matrix.of(g, 0, T, I), uRows = Matrix.of(u, 0, T, I);

        // 1. x = embed_tokens[ids]
        MemorySegment embed = weights.embedTokens().segment();
        for (int r = 0; r < T; r++) MemorySegment.copy(embed, (long) ids[r] * rowBytes, x, r * rowBytes, rowBytes);

        for (int l = 0; l < config.layers(); l++) {
            LlamaWeights.Layer layer = weights.layers().get(l);
            MemorySegment inNorm = layer.inputNorm().segment(), postNorm = layer.postAttentionNorm().segment();
            // 2. h = RMSNorm(x) ⊙ w_in
            byRows(T, (r0, r1) -> {
                for (int r = r0; r < r1; r++) RmsNorm.VECTOR.normalize(x, (long) r * E, inNorm, eps, h, (long) r * E, E);
            });
            // 3. x = x + Attention(h): causal, RoPE at each token's position
            attend.run(l, attention.get(l), h0, a0, hooks.call(l));
            // 4. h = RMSNorm(x) ⊙ w_post (after x = x + a when the step wrote a)
            byRows(T, (r0, r1) -> {
                for (int r = r0; r < r1; r++) {
                    if (addsItself) RmsNorm.VECTOR.normalize(x, (long) r * E, postNorm, eps, h, (long) r * E, E);
                    else RmsNorm.VECTOR.addAndNormalize(x, (long) r * E, a, (long) r * E, postNorm, eps, h, (long) r * E, E);
                }
            });
            // 5. g = h W_gateᵀ, u = h W_upᵀ, g = silu(g) ⊙ u
            Weights t = layerWeights.get(l);
            gated(hRows, t.gate(), t.up(), gRows, uRows);
            // 6. x = x + g W_downᵀ (the product adds onto x)
            linear(gRows, t.down(), xRows, false, true);
        }
    }

    /** logits[k] = (RMSNorm(x[rows[k]]) ⊙ w_norm) W_headᵀ. */
    private void logits(int[] rows, DecoderWorkspace ws, Tensor logits) {
        int E = config.hiddenSize(), R = rows.length;
        float eps = (float) config.rmsNormEps();
        MemorySegment x = ws.hidden(), f = ws.finalRows(), w = weights.finalNorm().segment();
        for (int k = 0; k < R; k++) RmsNorm.VECTOR.normalize(x, (long) rows[k] * E, w, eps, f, (long) k * E, E);
        linear(Matrix.of(f, 0, R, E), lmHead, logits.matrix(), false, false);
    }

    @FunctionalInterface
    private interface RowRange {
        void run(int r0, int r1);
    }

    /** Runs a row-wise kernel over rows [0, T): inline for a few rows, else in one block of rows per worker. */
    private void byRows(int T, RowRange body) {
        if (T <= INLINE_ROWS || pool.threads() == 1) {
            body.run(0, T);
            return;
        }
        int chunk = (T + pool.threads() - 1) / pool.threads();
        pool.run((T + chunk - 1) / chunk, (task, worker) -> body.run(task * chunk, Math.min(T, (task + 1) * chunk)));
    }

    /**
     * y = in · Wᵀ + b for in (m, k) and W (n, k) in PyTorch's Linear layout, into {@code out}:
     * (m, n) by rows, or with {@code features} its transpose (n, m), the tokens as columns (the
     * Qᵀ and Kᵀ the attend stage reads); {@code accumulate} adds y to what out holds.
     */
    private record Product(Linear w, Matrix out, boolean features, boolean accumulate) {
        /** Outputs [c0, c1) of out. */
        Matrix outputs(int c0, int c1) {
            return features ? out.rowRange(c0, c1) : out.colRange(c0, c1);
        }

        /** What rows [r0, r1) of the input give: those rows of out, or those columns when it is features × tokens. */
        Matrix forInputRows(int r0, int r1) {
            return features ? out.colRange(r0, r1) : out.rowRange(r0, r1);
        }
    }

    /** Refuses a product whose input, weight and output shapes do not agree (a bug here, not a caller's error). */
    private static void checkShapes(Matrix in, Linear w, Matrix out, boolean features) {
        int m = in.rows(), n = w.w().rows();
        if ((features ? out.rows() != n || out.cols() != m : out.rows() != m || out.cols() != n) || w.w().cols() != in.cols()) {
            throw new IllegalStateException("linear: in " + in + ", W " + w.w() + ", out " + out + (features ? " (features × tokens)" : ""));
        }
    }

    /** Outputs [c0, c1) of product {@code product} of a {@link #products} call: one task. */
    private record Block(int product, int c0, int c1) {}

    private void linear(Matrix in, Linear w, Matrix out, boolean features, boolean accumulate) {
        products(in, new Product(w, out, features, accumulate));
    }

    /** Whether products of m rows split by rows of the input (sgemm, {@link #MIN_ROWS_PER_TASK} rows for every worker). */
    private boolean byRowsOfInput(int m) {
        return pool.threads() > 1 && m > SMALL_ROWS && m >= pool.threads() * MIN_ROWS_PER_TASK;
    }

    /**
     * Outputs per task when a product of m rows and n outputs splits by outputs: n over the
     * workers in whole panels of the packed weight (for sgemm, multiples of 16 and of the vector
     * length, which {@link #gated} relies on); n itself (one task) on one thread or below
     * {@link #PARALLEL_MIN_MACS}.
     */
    private int outputBlock(int m, int n, int k) {
        int threads = pool.threads();
        if (threads == 1 || (long) m * n * k < PARALLEL_MIN_MACS) return n;
        int unit = m <= SMALL_ROWS ? SmallMatmul.panel() : Math.max(16, Vectors.lanes());
        return ((n + threads - 1) / threads + unit - 1) / unit * unit;
    }

    /**
     * The products of one input {@code in} (m, k), as {@link Product} describes each. Up to
     * {@link #SMALL_ROWS} rows run in {@link SmallMatmul} on the packed weight, more in sgemm on
     * the loaded one. Split over the pool into blocks of output features ({@link #outputBlock}),
     * every product's blocks in one hand-off to the workers (a decode step's Q, K and V
     * together), or, product after product, by rows of {@code in} when sgemm can give every
     * worker {@link #MIN_ROWS_PER_TASK} ({@link #byRowsOfInput}). Each output is computed as it
     * would be alone: the fusion changes no number.
     */
    private void products(Matrix in, Product... ps) {
        int m = in.rows(), k = in.cols(), threads = pool.threads();
        for (Product p : ps) checkShapes(in, p.w(), p.out(), p.features());
        if (byRowsOfInput(m)) {
            int chunk = ((m + threads - 1) / threads + 15) / 16 * 16;
            for (Product p : ps) {
                int n = p.w().w().rows();
                if ((long) m * n * k < PARALLEL_MIN_MACS) {
                    product(in, p.w(), 0, n, p.out(), p.features(), p.accumulate());
                    continue;
                }
                pool.run((m + chunk - 1) / chunk, (task, worker) -> {
                    int r0 = task * chunk, r1 = Math.min(m, r0 + chunk);
                    product(in.rowRange(r0, r1), p.w(), 0, n, p.forInputRows(r0, r1), p.features(), p.accumulate());
                });
            }
            return;
        }
        List<Block> tasks = new ArrayList<>();
        for (int i = 0; i < ps.length; i++) {
            int n = ps[i].w().w().rows(), block = outputBlock(m, n, k);
            for (int c0 = 0; c0 < n; c0 += block) tasks.add(new Block(i, c0, Math.min(n, c0 + block)));
        }
        pool.run(tasks.size(), (task, worker) -> {
            Block b = tasks.get(task);
            Product p = ps[b.product()];
            product(in, p.w(), b.c0(), b.c1(), p.outputs(b.c0(), b.c1()), p.features(), p.accumulate());
        });
    }

    /**
     * g = silu(h W_gateᵀ) ⊙ (h W_upᵀ), the feed-forward's gated product, into g (m, I), u (m, I)
     * scratch. Split by outputs, each task computes a block of columns of both products and gates
     * it, in one hand-off to the workers (instead of one per product and one for the gating);
     * split by rows of h, the products as {@link #products} runs them, then the gating by rows.
     */
    private void gated(Matrix h, Linear gate, Linear up, Matrix g, Matrix u) {
        int m = h.rows(), I = gate.w().rows();
        if (byRowsOfInput(m)) {
            products(h, new Product(gate, g, false, false), new Product(up, u, false, false));
            byRows(m, (r0, r1) -> {
                for (int r = r0; r < r1; r++) SwiGlu.VECTOR.apply(g.segment(), g.index(r, 0), u.segment(), u.index(r, 0), g.segment(),
                        g.index(r, 0), I);
            });
            return;
        }
        checkShapes(h, gate, g, false);
        checkShapes(h, up, u, false);
        int block = outputBlock(m, I, h.cols());
        pool.run((I + block - 1) / block, (task, worker) -> {
            int c0 = task * block, c1 = Math.min(I, c0 + block);
            product(h, gate, c0, c1, g.colRange(c0, c1), false, false);
            product(h, up, c0, c1, u.colRange(c0, c1), false, false);
            // c0 is a multiple of the vector length: each row's elements meet the same lanes and tail as in one call over I
            for (int r = 0; r < m; r++) SwiGlu.VECTOR.apply(g.segment(), g.index(r, c0), u.segment(), u.index(r, c0), g.segment(),
                    g.index(r, c0), c1 - c0);
        });
    }

    /** One piece of {@link #linear}: outputs [c0, c1) of W (c0 a multiple of the panel width for SmallMatmul) into {@code out}. */
    private static void product(Matrix in, Linear w, int c0, int c1, Matrix out, boolean features, boolean accumulate) {
        int m = in.rows(), n = c1 - c0, k = in.cols();
        MemorySegment b = w.bias() == null ? null : w.bias().segment().asSlice((long) c0 * Float.BYTES, (long) n * Float.BYTES);
        if (m <= SMALL_ROWS) {
            SmallMatmul.VECTOR.apply(in.segment(), in.offset(), in.ld(), m, k, w.packed(), SmallMatmul.panelOffset(c0, k), n, b,
                    accumulate, out.segment(), out.offset(), features ? 1 : out.ld(), features ? out.ld() : 1);
            return;
        }
        Matrix wRows = w.w().rowRange(c0, c1);
        if (b != null) {
            // the bias first, so that sgemm adds onto it (beta = 1)
            if (!accumulate) {
                if (features) for (int j = 0; j < n; j++) Vectors.fill(out.segment(), out.index(j, 0), m, b.getAtIndex(F, j));
                else out.fillRows(b, 0);
            } else {
                for (int i = 0; i < m; i++) {
                    for (int j = 0; j < n; j++) {
                        long at = features ? out.index(j, i) : out.index(i, j);
                        out.segment().setAtIndex(F, at, out.segment().getAtIndex(F, at) + b.getAtIndex(F, j));
                    }
                }
            }
        }
        float beta = accumulate || b != null ? 1f : 0f;
        if (features) Blas.sgemm(1f, wRows, false, in, true, beta, out);   // yᵀ = W inᵀ
        else Blas.sgemm(1f, in, false, wRows, true, beta, out);            // y = in Wᵀ
    }

    /**
     * The cached path's finite check (with {@link MultiHeadAttention.Options#checkFinite()}): refuses
     * NaN or ±∞ in {@code m}, (tokens, features) or with {@code features} (features, tokens),
     * naming the stage, the layer, the token and the feature where the first one appeared.
     */
    private static void checkFinite(String stage, int layer, Matrix m, boolean features) {
        for (int r = 0; r < m.rows(); r++) {
            long bad = Finite.firstNonFinite(m.segment().asSlice(m.index(r, 0) * Float.BYTES, (long) m.cols() * Float.BYTES), m.cols());
            if (bad >= 0) {
                long token = features ? bad : r, feature = features ? r : bad;
                throw new NonFiniteException(stage + " of layer " + layer + " holds " + m.get(r, (int) bad) + " at token " + token
                        + " of the step, feature " + feature + " (inputs or weights too large; checkFinite is on)");
            }
        }
    }

    // ---- checks ----

    private int[] checkRows(int[] logitRows, int T, Tensor logits) {
        int[] rows = logitRows != null ? logitRows : java.util.stream.IntStream.range(0, T).toArray();
        for (int r : rows) {
            if (r < 0 || r >= T) throw new IllegalArgumentException("logit row " + r + " is outside the " + T + " new tokens");
        }
        if (logits.rank() != 2 || logits.dim(0) != rows.length || logits.dim(1) != config.vocabSize()) {
            throw new IllegalArgumentException("logits must be (" + rows.length + ", " + config.vocabSize() + ") for "
                    + rows.length + " rows of a vocabulary of " + config.vocabSize() + ", got " + logits.shapeString());
        }
        if (pool.threads() > 1 && !WorkerPool.shareable(logits.segment())) {
            throw new IllegalArgumentException("the logits " + logits.shapeString() + " live in a confined arena, which the model's "
                    + pool.threads() + " worker threads cannot write; allocate them in Arena.ofShared() or TrackedArena.ofShared()");
        }
        if (pool.isClosed()) throw new IllegalStateException("this LlamaModel is closed");
        if (!weights.embedTokens().segment().scope().isAlive()) {
            throw new IllegalStateException("the weights of this LlamaModel (" + config + ") belong to an arena that is closed");
        }
        return rows;
    }

    private void checkIds(int[] ids) {
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] < 0 || ids[i] >= config.vocabSize()) {
                throw new IllegalArgumentException("token id " + ids[i] + " at row " + i + " is outside the vocabulary of "
                        + config.vocabSize());
            }
        }
    }

    /** Refuses weights holding NaN or ±∞ (the attention layers check their own), naming the tensor and the element. */
    private static void checkWeightsFinite(LlamaWeights w) {
        check("model.embed_tokens.weight", w.embedTokens());
        check("model.norm.weight", w.finalNorm());
        if (w.lmHead() != w.embedTokens()) check("lm_head.weight", w.lmHead());
        for (int l = 0; l < w.layers().size(); l++) {
            LlamaWeights.Layer layer = w.layers().get(l);
            String p = "model.layers." + l + ".";
            check(p + "input_layernorm.weight", layer.inputNorm());
            check(p + "post_attention_layernorm.weight", layer.postAttentionNorm());
            check(p + "mlp.gate_proj.weight", dense(layer.gate()));
            check(p + "mlp.up_proj.weight", dense(layer.up()));
            check(p + "mlp.down_proj.weight", dense(layer.down()));
        }
    }

    private static Tensor dense(Matrix m) {
        return Tensor.wrap(m.segment().asSlice(m.offset() * Float.BYTES, (long) m.rows() * m.cols() * Float.BYTES), m.rows(), m.cols());
    }

    private static void check(String name, Tensor t) {
        long bad = Finite.firstNonFinite(t.segment(), t.size());
        if (bad >= 0) {
            throw new NonFiniteException(name + " " + t.shapeString() + " holds " + t.get(bad) + " at flat index " + bad
                    + " (checkFinite is on)");
        }
    }

    /** Bytes of this model's packed copies of its weights (about the size of the weights themselves). */
    public long packedBytes() {
        return packedArena.allocatedBytes();
    }

    /**
     * The bytes {@link #packedBytes()} will be for a model of {@code config}, known before any
     * weight is read: per layer the packed Q, K, V, O, gate, up and down, then the output layer.
     */
    public static long packedBytesFor(LlamaConfig config) {
        int E = config.hiddenSize(), I = config.intermediateSize(), q = config.heads() * config.headDim();
        int kv = config.kvHeads() * config.headDim();
        long perLayer = packed(q, E) + 2 * packed(kv, E) + packed(E, q) + 2 * packed(I, E) + packed(E, I);
        return config.layers() * perLayer + packed(config.vocabSize(), E);
    }

    /** Bytes of one packed (out, in) weight as {@link Linear#of} allocates it. */
    private static long packed(int out, int in) {
        return SmallMatmul.packedFloats(out, in) * Float.BYTES;
    }

    @Override
    public void close() {
        for (MultiHeadAttention mha : attention) mha.close();
        pool.close();
        packedArena.close();
        if (ownedArena != null) ownedArena.close();
    }

    @Override
    public String toString() {
        return "LlamaModel(" + config + ", " + pool.threads() + " threads)";
    }
}
