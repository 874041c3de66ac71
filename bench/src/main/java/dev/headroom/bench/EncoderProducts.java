package dev.headroom.bench;

import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.blas.Blas;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.runtime.WorkerPool;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The matrix products of one all-MiniLM-L6-v2 forward pass and nothing else: what the encoder
 * would cost if its LayerNorms, GELU, softmax, masking and bias additions took no time. Each
 * product is the same OpenBLAS call, on the same shapes and layouts and split over the same
 * workers the same way, as in {@code MiniLmEncoder} and {@code MultiHeadAttention}:
 * <pre>
 *   per layer (6, each with its own weights, so they stream through the caches as the model's do):
 *     [Qᵀ; Kᵀ; Vᵀ] = W_QKV · xᵀ        (3E, rows), W_QKV rows split over the workers, a
 *                                       worker's block cut where W_Q, W_K and W_V meet
 *     per (sentence, head, 256 queries): S = Q_h K_hᵀ, O_h = S V_h     head dim 32, S V_h by
 *                                       Blas.sgemmInSmallBlocks
 *     y = concat · W_Oᵀ                 (rows, E), row blocks
 *     u = x · W₁, f = u · W₂            (rows, I), (rows, E): row blocks of 256–1024, or column
 *                                       blocks when the batch is too small for two row blocks
 * </pre>
 * Weights and activations are seeded uniform numbers (the rate of a product does not depend on
 * its values). The throughput of this loop is the most the encoder can reach with OpenBLAS doing
 * its products this way; {@link EmbeddingBenchmark} runs it beside the encoder and ONNX Runtime.
 *
 * <p>With {@code openblasThreads}, the same products run instead as whole calls on the caller's
 * thread with OpenBLAS's own threads (as many as the workers; W_QKV as one stacked call, each
 * sentence's and head's scores over all its queries at once): the other way to spread them over
 * the cores, measured too so that the ceiling does not rest on Headroom's way of splitting.
 */
final class EncoderProducts implements AutoCloseable {
    static final int E = 384, I = 1536, HEADS = 12, D = 32, LAYERS = 6;
    /** The encoder's attention layers run with the default options: this many queries per task. */
    static final int QUERY_BLOCK = MultiHeadAttention.Options.defaults().queryBlock();

    private final int batch, length, rows;
    /** Headroom's workers, or null when OpenBLAS's own threads split each product. */
    private final WorkerPool pool;
    private final Arena arena = Arena.ofShared();
    /* Per layer: W_QKV (3E, E), W_O (E, E) in PyTorch's (out, in) layout; W₁ (E, I), W₂ (I, E) as the ONNX file stores them. */
    private final Matrix[] wqkv = new Matrix[LAYERS], wo = new Matrix[LAYERS], w1 = new Matrix[LAYERS], w2 = new Matrix[LAYERS];
    /* x (rows, E): the layer input; qkvT (3E, rows): the projections, features × tokens. */
    private final Matrix x, qkvT;
    /* concat (rows, E): the heads' outputs side by side; y (rows, E); u (rows, I); f (rows, E). */
    private final Matrix concat, y, u, f;
    /* scores: one (QUERY_BLOCK, length) block per worker. */
    private final MemorySegment[] scores;

    EncoderProducts(int batch, int length, int threads, boolean openblasThreads) {
        this.batch = batch;
        this.length = length;
        this.rows = batch * length;
        this.pool = openblasThreads ? null : new WorkerPool(threads);
        dev.headroom.blas.OpenBlas.setThreads(openblasThreads ? threads : 1);
        long seed = 1;
        for (int l = 0; l < LAYERS; l++) {
            wqkv[l] = matrix(seed++, 3 * E, E);
            wo[l] = matrix(seed++, E, E);
            w1[l] = matrix(seed++, E, I);
            w2[l] = matrix(seed++, I, E);
        }
        x = matrix(seed++, rows, E);
        qkvT = matrix(seed++, 3 * E, rows);
        concat = matrix(seed++, rows, E);
        y = matrix(seed++, rows, E);
        u = matrix(seed++, rows, I);
        f = matrix(seed, rows, E);
        scores = new MemorySegment[threads];
        // per worker one block of queries; whole calls take all of a sentence's queries at once
        long scoreFloats = (long) (openblasThreads ? length : Math.min(QUERY_BLOCK, length)) * length;
        for (int w = 0; w < threads; w++) scores[w] = arena.allocate(scoreFloats * Float.BYTES, 64);
    }

    private Matrix matrix(long seed, int r, int c) {
        Tensor t = Tensor.uniform(arena, seed, 0.1, r, c);
        return Matrix.of(t.segment(), 0, r, c);
    }

    /** One forward pass's products. */
    void run() {
        if (pool == null) {
            runWholeCalls();
            return;
        }
        int T = pool.threads();
        float scale = (float) (1 / Math.sqrt(D));
        for (int l = 0; l < LAYERS; l++) {
            Matrix wqkvL = wqkv[l], woL = wo[l], w1L = w1[l], w2L = w2[l];
            // [Qᵀ; Kᵀ; Vᵀ] = W_QKV · xᵀ, one block of W's rows per worker; like the layer's
            // projections, a block that crosses from W_Q into W_K (or W_K into W_V) is two calls
            int pChunk = perWorker(3 * E, T);
            pool.run((3 * E + pChunk - 1) / pChunk, (task, worker) -> {
                int end = Math.min(3 * E, (task + 1) * pChunk);
                for (int r0 = task * pChunk; r0 < end; ) {
                    int r1 = Math.min(end, (r0 / E + 1) * E);
                    Blas.sgemm(1f, wqkvL.rowRange(r0, r1), false, x, true, 1f, qkvT.rowRange(r0, r1));
                    r0 = r1;
                }
            });
            // per (sentence, head, query block): S = scale · Q Kᵀ, O_h = S V
            int qBlocks = (length + QUERY_BLOCK - 1) / QUERY_BLOCK;
            pool.run(batch * HEADS * qBlocks, (task, worker) -> {
                int b = task / (HEADS * qBlocks), h = task / qBlocks % HEADS, q0 = task % qBlocks * QUERY_BLOCK;
                int m = Math.min(QUERY_BLOCK, length - q0), t0 = b * length;
                Matrix qT = qkvT.rowRange(h * D, (h + 1) * D).colRange(t0 + q0, t0 + q0 + m);
                Matrix kT = qkvT.rowRange(E + h * D, E + (h + 1) * D).colRange(t0, t0 + length);
                Matrix vT = qkvT.rowRange(2 * E + h * D, 2 * E + (h + 1) * D).colRange(t0, t0 + length);
                Matrix s = Matrix.of(scores[worker], 0, m, length);
                Blas.sgemm(scale, qT, true, kT, false, 0f, s);
                Matrix o = concat.rowRange(t0 + q0, t0 + q0 + m).colRange(h * D, (h + 1) * D);
                Blas.sgemmInSmallBlocks(1f, s, vT, true, 0f, o); // as the kernels do
            });
            // y = concat · W_Oᵀ, row blocks
            int oChunk = perWorker(rows, T);
            pool.run((rows + oChunk - 1) / oChunk, (task, worker) -> {
                int r0 = task * oChunk, r1 = Math.min(rows, r0 + oChunk);
                Blas.sgemm(1f, concat.rowRange(r0, r1), false, woL, true, 1f, y.rowRange(r0, r1));
            });
            // u = x · W₁, f = u · W₂
            if (rows >= T * MiniLmEncoder.MIN_ROWS_PER_TASK) {
                int chunk = Math.min(MiniLmEncoder.MAX_ROWS_PER_TASK, perWorker(rows, T));
                pool.run((rows + chunk - 1) / chunk, (task, worker) -> {
                    int r0 = task * chunk, r1 = Math.min(rows, r0 + chunk);
                    Blas.sgemm(1f, x.rowRange(r0, r1), false, w1L, false, 0f, u.rowRange(r0, r1));
                    Blas.sgemm(1f, u.rowRange(r0, r1), false, w2L, false, 1f, f.rowRange(r0, r1));
                });
            } else {
                int iBlock = perWorker(I, T), eBlock = perWorker(E, T);
                pool.run((I + iBlock - 1) / iBlock, (task, worker) -> {
                    int c0 = task * iBlock, c1 = Math.min(I, c0 + iBlock);
                    Blas.sgemm(1f, x, false, w1L.colRange(c0, c1), false, 0f, u.colRange(c0, c1));
                });
                pool.run((E + eBlock - 1) / eBlock, (task, worker) -> {
                    int c0 = task * eBlock, c1 = Math.min(E, c0 + eBlock);
                    Blas.sgemm(1f, u, false, w2L.colRange(c0, c1), false, 1f, f.colRange(c0, c1));
                });
            }
        }
    }

    /** n split over T workers as the encoder and its layers split it: ⌈n / T⌉ rounded up to 16. */
    private static int perWorker(int n, int T) {
        return ((n + T - 1) / T + 15) / 16 * 16;
    }

    /** The same products as whole calls, each split by OpenBLAS over its own threads. */
    private void runWholeCalls() {
        float scale = (float) (1 / Math.sqrt(D));
        Matrix s = Matrix.of(scores[0], 0, length, length);
        for (int l = 0; l < LAYERS; l++) {
            Blas.sgemm(1f, wqkv[l], false, x, true, 1f, qkvT);
            for (int b = 0; b < batch; b++) {
                int t0 = b * length;
                for (int h = 0; h < HEADS; h++) {
                    Matrix qT = qkvT.rowRange(h * D, (h + 1) * D).colRange(t0, t0 + length);
                    Matrix kT = qkvT.rowRange(E + h * D, E + (h + 1) * D).colRange(t0, t0 + length);
                    Matrix vT = qkvT.rowRange(2 * E + h * D, 2 * E + (h + 1) * D).colRange(t0, t0 + length);
                    Blas.sgemm(scale, qT, true, kT, false, 0f, s);
                    Blas.sgemm(1f, s, false, vT, true, 0f, concat.rowRange(t0, t0 + length).colRange(h * D, (h + 1) * D));
                }
            }
            Blas.sgemm(1f, concat, false, wo[l], true, 1f, y);
            Blas.sgemm(1f, x, false, w1[l], false, 0f, u);
            Blas.sgemm(1f, u, false, w2[l], false, 1f, f);
        }
    }

    @Override
    public void close() {
        if (pool != null) pool.close();
        arena.close();
    }
}
