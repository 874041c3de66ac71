package dev.headroom.attention;

import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;

/**
 * The decode workload that {@code bench --decode}, the JMH {@code DecodeBenchmark} and the ONNX
 * Runtime comparison all use: {@code sequences} sequences with {@code context} cached tokens each,
 * and one decode step: append one token to each, write its key and value, attend over the whole
 * cache ({@link MultiHeadAttention#attend}: the attend stage alone, no projections, as ONNX
 * Runtime's GroupQueryAttention has none), then truncate the new tokens away so that every step
 * sees the same context.
 */
public final class DecodeWorkload implements AutoCloseable {
    /** Named shapes: llama = 32 query heads over 8 key/value heads of 128 (Llama 3 8B's attention); small = 12 over 4 of 64; tiny = 4 over 2 of 64 (the tiny decoder's layer). */
    public static int[] shape(String name) {
        return switch (name) {
            case "llama" -> new int[]{32, 8, 128};
            case "small" -> new int[]{12, 4, 64};
            case "tiny" -> new int[]{4, 2, 64};
            default -> throw new IllegalArgumentException("shape must be llama, small or tiny, got '" + name + "'");
        };
    }

    /**
     * The numbers of one decode step, the same for every engine that runs it: every value seeded
     * uniform in [−1, 1). The cached keys and values are one chunk of {@link #CHUNK} tokens
     * repeated (token t holds chunk column, or row, t mod chunk): far past any cache reuse, and a
     * 16k-token context's set-up is one random fill.
     *
     * @param cachedKeysT  Kᵀ of the cached chunk, (G·d, chunk): column u is token u of the chunk
     * @param cachedValues V of the cached chunk, (chunk, G·d)
     * @param qT the new tokens' queries, Qᵀ (H·d, S): column s is sequence s
     * @param kT the new tokens' keys, Kᵀ (G·d, S)
     * @param v  the new tokens' values, (S, G·d)
     */
    public record Data(int heads, int kvHeads, int headDim, int context, int sequences,
                       Matrix cachedKeysT, Matrix cachedValues, Matrix qT, Matrix kT, Matrix v) {
        /** Tokens in the repeated chunk of cached keys and values (fewer when the context is shorter). */
        public static final int CHUNK = 1024;

        /** Seeded random data for H heads over G key/value heads of width d, in {@code arena} (shared when threads read it). */
        public static Data random(Arena arena, int heads, int kvHeads, int headDim, int context, int sequences) {
            if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || headDim <= 0 || context <= 0 || sequences <= 0) {
                throw new IllegalArgumentException("need H a positive multiple of G, and d, context and sequences positive; got H "
                        + heads + ", G " + kvHeads + ", d " + headDim + ", context " + context + ", sequences " + sequences);
            }
            int chunk = Math.min(CHUNK, context), queryWidth = heads * headDim, kvWidth = kvHeads * headDim;
            return new Data(heads, kvHeads, headDim, context, sequences,
                    Tensor.uniform(arena, 7, 1, kvWidth, chunk).matrix(),
                    Tensor.uniform(arena, 8, 1, chunk, kvWidth).matrix(),
                    Tensor.uniform(arena, 9, 1, queryWidth, sequences).matrix(),
                    Tensor.uniform(arena, 10, 1, kvWidth, sequences).matrix(),
                    Tensor.uniform(arena, 11, 1, sequences, kvWidth).matrix());
        }

        /** The data of a named shape ({@link DecodeWorkload#shape}). */
        public static Data random(Arena arena, String shape, int context, int sequences) {
            int[] h = DecodeWorkload.shape(shape);
            return random(arena, h[0], h[1], h[2], context, sequences);
        }

        /** Tokens in the repeated chunk. */
        public int chunkTokens() {
            return cachedKeysT.cols();
        }

        /** H·d. */
        public int queryWidth() {
            return heads * headDim;
        }

        /** G·d. */
        public int kvWidth() {
            return kvHeads * headDim;
        }
    }

    /** Owns the data when this workload made it, the output, and the layer's (unused, tiny) weights. */
    private final TrackedArena arena = TrackedArena.ofShared();
    private final Data data;
    private final KvCache cache;
    private final MultiHeadAttention attention;
    private final Workspace workspace = new Workspace();
    private final int[] seqs, ones;
    /** The heads' outputs of the last step, (S, H·d): row s is sequence s. */
    private final Matrix concat;

    /** A workload of seeded random data ({@link Data#random}). */
    public DecodeWorkload(int heads, int kvHeads, int headDim, int context, int sequences, KvDtype dtype, int blockSize, int threads) {
        this(null, heads, kvHeads, headDim, context, sequences, dtype, blockSize, threads);
    }

    /** A workload over the caller's data (which must outlive it), in a cache of {@code dtype} with blocks of {@code blockSize}. */
    public DecodeWorkload(Data data, KvDtype dtype, int blockSize, int threads) {
        this(data, data.heads(), data.kvHeads(), data.headDim(), data.context(), data.sequences(), dtype, blockSize, threads);
    }

    private DecodeWorkload(Data given, int H, int G, int d, int context, int S, KvDtype dtype, int blockSize, int threads) {
        KvCache made = null;
        MultiHeadAttention layer = null;
        try {
            this.data = given != null ? given : Data.random(arena, H, G, d, context, S);
            // The attend stage reads neither the projections nor d_model: a layer of width 1 keeps its weights tiny.
            layer = new MultiHeadAttention(AttentionWeights.random(new AttentionConfig(1, H, G, d, 1f / (float) Math.sqrt(d)), false,
                    1, arena), MultiHeadAttention.Options.defaults().withThreads(threads));
            KvCache.Shape shape = new KvCache.Shape(1, G, d, blockSize, dtype);
            // room for the step's token: one more block per sequence than the context needs
            made = new KvCache(shape, KvCache.bytesFor(shape, S, context + blockSize));
        } catch (RuntimeException | Error e) {
            if (made != null) made.close();
            if (layer != null) layer.close();
            workspace.close();
            arena.close();
            throw e;
        }
        attention = layer;
        cache = made;
        seqs = new int[S];
        ones = new int[S];
        int chunk = data.chunkTokens();
        for (int s = 0; s < S; s++) {
            seqs[s] = cache.create();
            ones[s] = 1;
            for (int at = 0; at < context; at += chunk) {
                int n = Math.min(chunk, context - at);
                cache.append(seqs[s], n, null);
                cache.write(seqs[s], 0, at, n, data.cachedKeysT(), 0, data.cachedValues(), 0);
            }
        }
        concat = Tensor.allocate(arena, S, H * d).matrix();
    }

    /** One decode step over every sequence; returns the heads' outputs (S, H·d). */
    public Matrix step() {
        KvCache.Step st = cache.step(seqs, ones, null);
        attention.attend(cache, st, 0, data.qT(), data.kT(), data.v(), concat, Mask.causal(), workspace, CallOptions.NONE);
        for (int s : seqs) cache.truncate(s, data.context());
        return concat;
    }

    public Data data() {
        return data;
    }

    /** Bytes of keys and values one step reads: every cached token of every sequence, and the new one (int8 scales included). */
    public long bytesRead() {
        return bytesRead(cache.shape(), data.context(), data.sequences());
    }

    /** As {@link #bytesRead()}, for a cache of {@code shape} (one layer) and a workload of these sizes. */
    public static long bytesRead(KvCache.Shape shape, int context, int sequences) {
        return Math.round((double) sequences * (context + 1) * shape.layerBytesPerToken());
    }

    /** The cache's accounting (its used bytes are the workload's cache memory). */
    public KvCache.Stats cacheStats() {
        return cache.stats();
    }

    @Override
    public void close() {
        workspace.close();
        attention.close();
        cache.close();
        arena.close();
    }
}
