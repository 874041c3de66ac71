package dev.headroom.model.minilm;

import dev.headroom.model.tokenizer.TokenBatch;
import dev.headroom.model.tokenizer.WordPieceTokenizer;
import dev.headroom.model.Models;
import dev.headroom.model.AttentionListener;
import dev.headroom.model.ForwardObserver;

import dev.headroom.attention.AttentionObserver;
import dev.headroom.attention.CallOptions;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.blas.Blas;
import dev.headroom.kernels.Gelu;
import dev.headroom.kernels.LayerNorm;
import dev.headroom.runtime.WorkerPool;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.stream.IntStream;

/**
 * A BERT-style sentence encoder (all-MiniLM-L6-v2) on Headroom: attention is Headroom's
 * {@link MultiHeadAttention}, everything else runs here, off-heap, with matrix products through
 * {@link Blas#sgemm} and LayerNorm/GELU in Java ({@link LayerNorm#VECTOR}, {@link Gelu#VECTOR}).
 * <pre>
 *   x = LN_emb(word[id] + position[i] + type[0])                     (B·n, E)
 *   for each layer:
 *     a = MultiHeadAttention(x), keys past each sequence's length masked
 *     x = LN_attn(a + x)
 *     x = LN_out(GELU(x·W₁ + b₁)·W₂ + b₂ + x)                       W₁ (E, I), W₂ (I, E)
 *   last_hidden_state = x                                            (B, n, E)
 *   embedding = normalize(mean of x over the real tokens)            (B, E), ‖·‖₂ = 1
 * </pre>
 * Padded positions are computed too (their queries see the real keys, as in the ONNX graph),
 * but no real token ever attends to them.
 *
 * <p><b>Threads.</b> One pool of {@code threads} workers (the caller and threads − 1 helpers)
 * runs the whole forward pass: the embeddings and each layer's LayerNorm–FFN–LayerNorm on blocks
 * of token rows, and every layer's {@link MultiHeadAttention}, which is built on this same pool
 * and splits its own projections and (batch, head, query block) tasks over it. One pool, not one
 * per layer: idle pools spin between calls, and seven pools on two cores took the cores from each
 * other (a batch of one ran at half speed). Every sgemm runs on one OpenBLAS thread (the
 * attention layers set that, process-wide). Tensors must be in a shared arena when threads &gt; 1.
 *
 * <p><b>Memory.</b> The weights live in the arena given to {@link MiniLmWeights#fromOnnx}, or in
 * one this encoder owns and closes (see {@link Models}). Per-call scratch is in an
 * {@link EncoderWorkspace}; outputs go to the caller's tensors or arena.
 *
 * <p><b>Concurrency.</b> One encoder serves concurrent calls that each have their own workspace;
 * {@link #close()} must not race with running calls.
 */
public final class MiniLmEncoder implements AutoCloseable {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    /** Sentences per forward call in {@link #embed}; sorted by length first, so padding stays small. */
    public static final int DEFAULT_BATCH = 32;
    /**
     * The most sentences {@link #embed} puts in one forward call, whatever batch size it is given:
     * beyond this nothing was gained, and a batch pads every sentence to its longest one and needs
     * scratch for all of them. 300 built-in sentences (4 to 82 tokens, median 20), 2 threads, one
     * JVM after warm-up, on a machine shared with other work (load 7 on 2 cores, so ±30 %): batches
     * of 16, 32 and 64 took 2.6–4.7 s, 128 took 4.5–5.6 s, and one batch of 300 (3.99 × the real
     * tokens once padded) 13–18 s. The default batch, so that any larger batch gives bitwise the
     * default's embeddings (the batch's padded length changes the last bits).
     */
    public static final int MAX_USEFUL_BATCH = DEFAULT_BATCH;
    /**
     * OpenBLAS packs all of W for every sgemm call, whatever the number of rows: measured here
     * (SkylakeX kernel, 384×1536), 4096 rows in blocks of 64 run at 74% of one call's rate, blocks
     * of 128 at 84%, of 256 and more at 93–96%. Batches that cannot give each worker this many rows
     * split the FFN's products by columns instead. Over 6 real layers and 8192 rows on one thread
     * the FFN's two products ran at 127 GFLOP/s in blocks of 512 rows and 136–139 in blocks of
     * 1024 (W₁ and W₂, 2.4 MB each, are packed half as often), with no further gain beyond.
     */
    public static final int MIN_ROWS_PER_TASK = 256, MAX_ROWS_PER_TASK = 1024;

    private final MiniLmWeights weights;
    private final MiniLmConfig config;
    private final WordPieceTokenizer tokenizer;
    /** One attention per layer, over that layer's weights. */
    private final List<MultiHeadAttention> attention;
    private final WorkerPool pool;
    private final boolean ownsPool;
    /** The arena holding the weights when this encoder owns it, else null. */
    private final Arena ownedArena;

    /** An encoder over weights in the caller's arena; the tokenizer must not exceed the model's positions. */
    public MiniLmEncoder(MiniLmWeights weights, WordPieceTokenizer tokenizer, int threads) {
        this(weights, tokenizer, threads, null, null, null);
    }

    /** An encoder that owns {@code ownedArena} (its weights' arena) and closes it when it is closed. */
    public static MiniLmEncoder owning(MiniLmWeights weights, WordPieceTokenizer tokenizer, int threads, Arena ownedArena) {
        return new MiniLmEncoder(weights, tokenizer, threads, ownedArena, null, null);
    }

    /**
     * {@code layers}: one attention per layer, null where every head of the layer is pruned, or null
     * to build them; {@code sharedPool}: the pool of the encoder this one was pruned from, or null
     * for a pool of its own.
     */
    private MiniLmEncoder(MiniLmWeights weights, WordPieceTokenizer tokenizer, int threads, Arena ownedArena,
                          List<MultiHeadAttention> layers, WorkerPool sharedPool) {
        this.weights = weights;
        this.config = weights.config();
        if (tokenizer.maxLength() > config.maxPositions()) {
            throw new IllegalArgumentException("the tokenizer truncates to " + tokenizer.maxLength()
                    + " tokens but the model has only " + config.maxPositions() + " positions");
        }
        if (tokenizer.vocabularySize() > config.vocabSize()) {
            throw new IllegalArgumentException("the tokenizer's vocabulary (" + tokenizer.vocabularySize()
                    + ") is larger than the model's embedding table (" + config.vocabSize() + ")");
        }
        if (threads > 1 && !WorkerPool.shareable(weights.wordEmbeddings().segment())) {
            throw new IllegalArgumentException("the weights live in a confined arena, which the encoder's " + threads
                    + " worker threads cannot read; load them into Arena.ofShared() or TrackedArena.ofShared(), or use 1 thread");
        }
        this.tokenizer = tokenizer;
        this.ownsPool = sharedPool == null;
        this.pool = ownsPool ? new WorkerPool(threads) : sharedPool;
        if (layers == null) {
            // Every layer's attention runs on this encoder's pool: one set of threads for the model.
            layers = new ArrayList<>();
            for (MiniLmWeights.Layer layer : weights.layers()) {
                layers.add(new MultiHeadAttention(layer.attention(), MultiHeadAttention.Options.defaults(), pool));
            }
        }
        this.attention = java.util.Collections.unmodifiableList(new ArrayList<>(layers));
        this.ownedArena = ownedArena;
    }

    public MiniLmConfig config() {
        return config;
    }

    public MiniLmWeights weights() {
        return weights;
    }

    public WordPieceTokenizer tokenizer() {
        return tokenizer;
    }

    public int threads() {
        return pool.threads();
    }

    /** Sets how the encoder's worker threads wait between tasks ({@link WorkerPool.Waiting}; a server yields to its I/O threads). */
    public void setWaiting(WorkerPool.Waiting waiting) {
        pool.setWaiting(waiting);
    }

    /**
     * The same model without the given heads: {@code prunedHeads[l]} lists layer l's heads to
     * remove (see {@link MultiHeadAttention#prune}); their W_Q/W_K/W_V rows and W_O columns are
     * copied into {@code arena}, the rest of the weights are shared with this encoder. A layer
     * with every head pruned keeps only the output bias b_O as its attention output. Close the
     * returned encoder (its threads and attention layers); this one stays usable.
     */
    public MiniLmEncoder pruned(Arena arena, int[][] prunedHeads) {
        if (prunedHeads.length != attention.size()) {
            throw new IllegalArgumentException(prunedHeads.length + " lists of pruned heads for " + attention.size() + " layers");
        }
        List<MultiHeadAttention> layers = new ArrayList<>();
        for (int l = 0; l < attention.size(); l++) {
            int heads = config.heads();
            layers.add(prunedHeads[l].length == 0 ? attention.get(l).prune(arena)
                    : java.util.Arrays.stream(prunedHeads[l]).distinct().count() >= heads ? null
                    : attention.get(l).prune(arena, prunedHeads[l]));
        }
        return new MiniLmEncoder(weights, tokenizer, pool.threads(), null, layers, pool);
    }

    /** Layer {@code layer}'s attention (0 first); null when every head of it was pruned. */
    public MultiHeadAttention attention(int layer) {
        return attention.get(layer);
    }

    public List<MultiHeadAttention> attentionLayers() {
        return attention;
    }

    // ---- last hidden state ----

    /** The last hidden state of {@code tokens}, (B, n, E), allocated in {@code arena}. */
    public Tensor lastHiddenState(TokenBatch tokens, Arena arena) {
        Tensor out = Tensor.allocate(arena, tokens.batch(), tokens.length(), config.hidden());
        try (EncoderWorkspace ws = new EncoderWorkspace()) {
            lastHiddenState(tokens, out, ws, null);
        }
        return out;
    }

    /**
     * Runs the encoder on {@code tokens} (token type 0 throughout) and writes the last hidden
     * state to {@code out}, (B, n, E); scratch in {@code ws}. {@code listener}, if not null, is
     * called before each layer's attention with that attention's input.
     */
    public void lastHiddenState(TokenBatch tokens, Tensor out, EncoderWorkspace ws, AttentionListener listener) {
        run(tokens, out, ws, listener, null);
    }

    /**
     * As {@link #lastHiddenState(TokenBatch, Tensor, EncoderWorkspace, AttentionListener)}, and
     * shows {@code observer} each layer's attention call (through the {@link AttentionObserver} it
     * gives for that layer: the heads' outputs Z_h before W_O, (B·n, H·d)) and the residual stream
     * after the embeddings and after each layer, (B·n, E). A null observer, or one that returns
     * null for a layer, leaves that part of the pass exactly as the plain call runs it.
     */
    public void forward(TokenBatch tokens, Tensor out, EncoderWorkspace ws, ForwardObserver observer) {
        run(tokens, out, ws, null, observer);
    }

    private void run(TokenBatch tokens, Tensor out, EncoderWorkspace ws, AttentionListener listener, ForwardObserver observer) {
        int B = tokens.batch(), n = tokens.length(), E = config.hidden(), I = config.intermediate();
        checkTokens(tokens, out);
        if (B == 0 || n == 0) return;
        int rows = B * n;
        ws.prepare(rows, E, I);
        Mask mask = Mask.keyLengths(tokens.lengths());
        /* x: (B·n, E), the hidden state, updated in place layer by layer: it is the output. */
        MemorySegment x = out.segment();
        /* a: (B·n, E), the attention output, then each row block's FFN output. */
        MemorySegment a = ws.attentionOut();
        Tensor attentionOut = Tensor.wrap(a.asSlice(0, (long) rows * E * Float.BYTES), B, n, E);
        /* u: (B·n, I), the FFN's intermediate activations. */
        MemorySegment u = ws.intermediate();
        int chunk = rowChunk(rows), blocks = (rows + chunk - 1) / chunk;
        int[] ids = tokens.ids();

        // 1. x = LN_emb(word[id] + (position[i] + type[0]))
        MiniLmWeights.Norm emb = weights.embeddingNorm();
        MemorySegment word = weights.wordEmbeddings().segment(), position = weights.positionAndType0().segment();
        pool.run(blocks, (task, worker) -> {
            for (int r = task * chunk, end = Math.min(rows, r + chunk); r < end; r++) {
                LayerNorm.VECTOR.addAndNormalize(word, (long) ids[r] * E, position, (long) (r % n) * E,
                        emb.gamma().segment(), emb.beta().segment(), emb.eps(), x, (long) r * E, E);
            }
        });
        if (observer != null) observer.residual(0, new Matrix(x, 0, rows, E, E));

        for (int l = 0; l < attention.size(); l++) {
            MiniLmWeights.Layer layer = weights.layers().get(l);
            MultiHeadAttention mha = attention.get(l);
            if (listener != null && mha != null) listener.beforeAttention(l, mha, out, mask);
            // 2. a = MultiHeadAttention(x) with key padding (only b_O when every head of the layer was pruned)
            if (mha != null) attend(mha, out, tokens, attentionOut, ws, observer == null ? null : observer.attention(l));
            else attentionBiasOnly(new Matrix(a, 0, rows, E, E), layer.attention().stateDict().get("o_proj.bias"));
            // 3. x = LN_attn(a + x), then x = LN_out(GELU(x·W₁ + b₁)·W₂ + b₂ + x)
            if (rows >= pool.threads() * MIN_ROWS_PER_TASK) {
                pool.run(blocks, (task, worker) -> feedForward(layer, x, a, u, task * chunk, Math.min(rows, (task + 1) * chunk)));
            } else {
                feedForwardByColumns(layer, x, a, u, rows, chunk, blocks);
            }
            if (observer != null) observer.residual(l + 1, new Matrix(x, 0, rows, E, E));
        }
    }

    /** a = attention(x) with each sequence's keys limited to its length; the attention spreads its own work over the pool. */
    private void attend(MultiHeadAttention mha, Tensor x, TokenBatch tokens, Tensor a, EncoderWorkspace ws,
                        AttentionObserver observer) {
        Mask mask = Mask.keyLengths(tokens.lengths());
        if (observer == null) mha.forward(x, null, mask, a, ws.attention()); // the plain call, unchanged
        else mha.forward(x, null, mask, a, ws.attention(), CallOptions.observing(observer));
    }

    /** The attention output of a layer whose every head was pruned: b_O in every row (zeros without a bias). */
    private static void attentionBiasOnly(Matrix a, Tensor bias) {
        if (bias != null) a.fillRows(bias.segment(), 0);
        else for (int r = 0; r < a.rows(); r++) a.segment().asSlice(a.index(r, 0) * Float.BYTES, (long) a.cols() * Float.BYTES).fill((byte) 0);
    }

    /** Rows [r0, r1): the residual LayerNorm after attention, the FFN, and the residual LayerNorm after it. */
    private void feedForward(MiniLmWeights.Layer layer, MemorySegment x, MemorySegment a, MemorySegment u, int r0, int r1) {
        int E = config.hidden(), I = config.intermediate(), m = r1 - r0;
        MiniLmWeights.Norm n1 = layer.attentionNorm(), n2 = layer.outputNorm();
        // x = LN_attn(a + x)
        for (int r = r0; r < r1; r++) {
            LayerNorm.VECTOR.addAndNormalize(a, (long) r * E, x, (long) r * E, n1.gamma().segment(), n1.beta().segment(),
                    n1.eps(), x, (long) r * E, E);
        }
        Matrix xRows = new Matrix(x, (long) r0 * E, m, E, E);
        Matrix uRows = new Matrix(u, (long) r0 * I, m, I, I);
        Matrix fRows = new Matrix(a, (long) r0 * E, m, E, E);
        // u = GELU(x·W₁ + b₁)
        Blas.sgemm(1f, xRows, false, layer.intermediateWeight().matrix(), false, 0f, uRows);
        for (int r = r0; r < r1; r++) Gelu.VECTOR.apply(u, (long) r * I, I, layer.intermediateBias().segment());
        // f = b₂ + u·W₂, the bias first so that sgemm adds onto it (beta = 1)
        fRows.fillRows(layer.outputBias().segment(), 0);
        Blas.sgemm(1f, uRows, false, layer.outputWeight().matrix(), false, 1f, fRows);
        // x = LN_out(f + x)
        for (int r = r0; r < r1; r++) {
            LayerNorm.VECTOR.addAndNormalize(a, (long) r * E, x, (long) r * E, n2.gamma().segment(), n2.beta().segment(),
                    n2.eps(), x, (long) r * E, E);
        }
    }

    /**
     * The same as {@link #feedForward} over all rows for batches too small to give every worker
     * {@link #MIN_ROWS_PER_TASK} rows: the two matrix products are split by output columns
     * instead (each worker multiplies every row by its slice of W₁, then of W₂), the LayerNorms by
     * rows, with a barrier between the steps.
     */
    private void feedForwardByColumns(MiniLmWeights.Layer layer, MemorySegment x, MemorySegment a, MemorySegment u,
                                      int rows, int chunk, int blocks) {
        int E = config.hidden(), I = config.intermediate(), T = pool.threads();
        MiniLmWeights.Norm n1 = layer.attentionNorm(), n2 = layer.outputNorm();
        // x = LN_attn(a + x)
        pool.run(blocks, (task, worker) -> {
            for (int r = task * chunk, end = Math.min(rows, r + chunk); r < end; r++) {
                LayerNorm.VECTOR.addAndNormalize(a, (long) r * E, x, (long) r * E, n1.gamma().segment(), n1.beta().segment(),
                        n1.eps(), x, (long) r * E, E);
            }
        });
        Matrix xAll = new Matrix(x, 0, rows, E, E), uAll = new Matrix(u, 0, rows, I, I), fAll = new Matrix(a, 0, rows, E, E);
        // u[:, c0:c1] = GELU(x·W₁[:, c0:c1] + b₁[c0:c1]), one block of columns per worker (multiples of 16)
        int iBlock = (I / T + 15) / 16 * 16, eBlock = (E / T + 15) / 16 * 16;
        pool.run((I + iBlock - 1) / iBlock, (task, worker) -> {
            int c0 = task * iBlock, c1 = Math.min(I, c0 + iBlock);
            Blas.sgemm(1f, xAll, false, layer.intermediateWeight().matrix().colRange(c0, c1), false, 0f, uAll.colRange(c0, c1));
            MemorySegment bias = layer.intermediateBias().segment().asSlice((long) c0 * Float.BYTES);
            for (int r = 0; r < rows; r++) Gelu.VECTOR.apply(u, (long) r * I + c0, c1 - c0, bias);
        });
        // f[:, c0:c1] = b₂[c0:c1] + u·W₂[:, c0:c1]
        pool.run((E + eBlock - 1) / eBlock, (task, worker) -> {
            int c0 = task * eBlock, c1 = Math.min(E, c0 + eBlock);
            fAll.colRange(c0, c1).fillRows(layer.outputBias().segment(), c0);
            Blas.sgemm(1f, uAll, false, layer.outputWeight().matrix().colRange(c0, c1), false, 1f, fAll.colRange(c0, c1));
        });
        // x = LN_out(f + x)
        pool.run(blocks, (task, worker) -> {
            for (int r = task * chunk, end = Math.min(rows, r + chunk); r < end; r++) {
                LayerNorm.VECTOR.addAndNormalize(a, (long) r * E, x, (long) r * E, n2.gamma().segment(), n2.beta().segment(),
                        n2.eps(), x, (long) r * E, E);
            }
        });
    }

    /**
     * Rows per task: about one task per thread, a multiple of 16, at most {@link #MAX_ROWS_PER_TASK}
     * so that long batches still balance across workers.
     */
    private int rowChunk(int rows) {
        int perThread = (rows + pool.threads() - 1) / pool.threads();
        return Math.min(MAX_ROWS_PER_TASK, Math.max(16, (perThread + 15) / 16 * 16));
    }

    private void checkTokens(TokenBatch tokens, Tensor out) {
        int B = tokens.batch(), n = tokens.length(), E = config.hidden();
        if (out.rank() != 3 || out.dim(0) != B || out.dim(1) != n || out.dim(2) != E) {
            throw new IllegalArgumentException("output has shape " + out.shapeString() + ", expected (" + B + ", " + n + ", " + E
                    + ") for " + tokens);
        }
        if (pool.threads() > 1 && !WorkerPool.shareable(out.segment())) {
            throw new IllegalArgumentException("the output " + out.shapeString() + " lives in a confined arena, which the encoder's "
                    + pool.threads() + " worker threads cannot write; allocate it in Arena.ofShared() or TrackedArena.ofShared()");
        }
        if (n > config.maxPositions()) {
            throw new IllegalArgumentException("sequences of " + n + " tokens exceed the model's " + config.maxPositions()
                    + " positions; truncate them (WordPieceTokenizer.withMaxLength)");
        }
        int[] ids = tokens.ids();
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] < 0 || ids[i] >= config.vocabSize()) {
                throw new IllegalArgumentException("token id " + ids[i] + " at (batch " + i / n + ", position " + i % n
                        + ") is outside the vocabulary of " + config.vocabSize());
            }
        }
    }

    // ---- sentence embeddings ----

    /** One L2-normalised embedding per sentence, (count, E), allocated in {@code arena}. */
    public Tensor embed(List<String> sentences, Arena arena) {
        Tensor out = Tensor.allocate(arena, sentences.size(), config.hidden());
        try (EncoderWorkspace ws = new EncoderWorkspace()) {
            embed(sentences, out, ws, DEFAULT_BATCH);
        }
        return out;
    }

    /**
     * Writes sentence i's embedding to row i of {@code out}, (count, E): the mean of the last
     * hidden state over its real tokens, L2-normalised (as sentence-transformers' Pooling and
     * Normalize modules). Sentences are encoded in batches of up to {@code batchSize}, but never
     * more than {@link #MAX_USEFUL_BATCH}, shortest first, so that each batch pads little; the
     * embeddings are the same for every {@code batchSize} ≥ {@link #MAX_USEFUL_BATCH}.
     */
    public void embed(List<String> sentences, Tensor out, EncoderWorkspace ws, int batchSize) {
        int count = sentences.size(), E = config.hidden();
        if (out.rank() != 2 || out.dim(0) != count || out.dim(1) != E) {
            throw new IllegalArgumentException("output has shape " + out.shapeString() + ", expected (" + count + ", " + E + ")");
        }
        if (batchSize < 1) throw new IllegalArgumentException("batch size must be >= 1, got " + batchSize);
        int[][] encoded = new int[count][];
        for (int i = 0; i < count; i++) encoded[i] = tokenizer.encode(sentences.get(i));
        Integer[] order = IntStream.range(0, count).boxed().toArray(Integer[]::new);
        Arrays.sort(order, Comparator.comparingInt(i -> encoded[i].length));
        int chunk = Math.min(batchSize, MAX_USEFUL_BATCH); // a larger batch only adds padding and scratch
        for (int start = 0; start < count; start += chunk) {
            int end = Math.min(count, start + chunk);
            int[][] batch = new int[end - start][];
            for (int b = 0; b < batch.length; b++) batch[b] = encoded[order[start + b]];
            TokenBatch tokens = TokenBatch.padded(tokenizer.padId(), batch);
            int rows = tokens.batch() * tokens.length();
            ws.prepare(rows, E, config.intermediate());
            Tensor hidden = Tensor.wrap(ws.hidden().asSlice(0, (long) rows * E * Float.BYTES), tokens.batch(), tokens.length(), E);
            lastHiddenState(tokens, hidden, ws, null);
            for (int b = 0; b < batch.length; b++) {
                meanPoolAndNormalize(hidden, b, tokens.lengths()[b], out.segment(), (long) order[start + b] * E);
            }
        }
    }

    /**
     * The mean of tokens [0, length) of batch element b of {@code hidden} (B, n, E), divided by
     * its L2 norm (at least 1e-12, as {@code torch.nn.functional.normalize}), written to E floats
     * of {@code dst} from float index {@code dstOffset}. Sums in double: a sentence embedding is
     * computed once, and the order of a float sum would otherwise show in the last bits.
     */
    public static void meanPoolAndNormalize(Tensor hidden, int b, int length, MemorySegment dst, long dstOffset) {
        int n = hidden.dim(1), E = hidden.dim(2);
        MemorySegment h = hidden.segment();
        double[] sum = new double[E];
        for (int i = 0; i < length; i++) {
            long row = ((long) b * n + i) * E;
            for (int j = 0; j < E; j++) sum[j] += h.getAtIndex(F, row + j);
        }
        double norm = 0;
        for (int j = 0; j < E; j++) {
            sum[j] /= Math.max(length, 1);
            norm += sum[j] * sum[j];
        }
        double scale = 1 / Math.max(Math.sqrt(norm), 1e-12);
        for (int j = 0; j < E; j++) dst.setAtIndex(F, dstOffset + j, (float) (sum[j] * scale));
    }

    @Override
    public void close() {
        for (MultiHeadAttention mha : attention) if (mha != null) mha.close();
        if (ownsPool) pool.close();
        if (ownedArena != null) ownedArena.close();
    }
}
