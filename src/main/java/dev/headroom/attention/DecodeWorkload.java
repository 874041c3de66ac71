package dev.headroom.attention;

import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

/**
 * The decode workload that {@code bench --decode} and the JMH {@code DecodeBenchmark} both time:
 * {@code sequences} sequences with {@code context} cached tokens each (random keys and values),
 * and one decode step: append one token to each, write its key and value, attend over the whole
 * cache ({@link MultiHeadAttention#attend}: the attend stage alone, no projections), then
 * truncate the new tokens away so that every step sees the same context.
 */
public final class DecodeWorkload implements AutoCloseable {
    /** Named shapes: llama = 32 query heads over 8 key/value heads of 128 (Llama 3 8B); small = 12 over 4 of 64. */
    public static int[] shape(String name) {
        return switch (name) {
            case "llama" -> new int[]{32, 8, 128};
            case "small" -> new int[]{12, 4, 64};
            default -> throw new IllegalArgumentException("shape must be llama or small, got '" + name + "'");
        };
    }

    private final TrackedArena arena = TrackedArena.ofShared();
    private final KvCache cache;
    private final MultiHeadAttention attention;
    private final Workspace workspace = new Workspace();
    private final int[] seqs, ones;
    private final int context;
    /** The step's new tokens: Qᵀ (H·d, S), Kᵀ (G·d, S), V (S, G·d); the heads' outputs (S, H·d). */
    private final Matrix qT, kT, v, concat;

    public DecodeWorkload(int heads, int kvHeads, int headDim, int context, int sequences, KvDtype dtype, int blockSize, int threads) {
        this.context = context;
        AttentionConfig config = AttentionConfig.of(heads * headDim, heads, kvHeads, headDim);
        attention = new MultiHeadAttention(AttentionWeights.random(config, false, 1, arena),
                MultiHeadAttention.Options.defaults().withThreads(threads));
        KvCache.Shape shape = new KvCache.Shape(1, kvHeads, headDim, blockSize, dtype);
        cache = new KvCache(shape, KvCache.bytesFor(shape, sequences, context + blockSize));
        int chunk = Math.max(1, Math.min(1024, context));
        try (TrackedArena fill = TrackedArena.ofShared()) {
            Matrix k = Tensor.uniform(fill, 7, 1, kvHeads * headDim, chunk).matrix();
            Matrix vals = Tensor.uniform(fill, 8, 1, chunk, kvHeads * headDim).matrix();
            seqs = new int[sequences];
            ones = new int[sequences];
            for (int s = 0; s < sequences; s++) {
                seqs[s] = cache.create();
                ones[s] = 1;
                for (int at = 0; at < context; at += chunk) {
                    int n = Math.min(chunk, context - at);
                    cache.append(seqs[s], n, null);
                    cache.write(seqs[s], 0, at, n, k, 0, vals, 0);
                }
            }
        }
        qT = Tensor.uniform(arena, 9, 1, heads * headDim, sequences).matrix();
        kT = Tensor.uniform(arena, 10, 1, kvHeads * headDim, sequences).matrix();
        v = Tensor.uniform(arena, 11, 1, sequences, kvHeads * headDim).matrix();
        concat = Tensor.allocate(arena, sequences, heads * headDim).matrix();
    }

    /** One decode step over every sequence; returns the heads' outputs (S, H·d). */
    public Matrix step() {
        KvCache.Step st = cache.step(seqs, ones, null);
        attention.attend(cache, st, 0, qT, kT, v, concat, Mask.causal(), workspace, CallOptions.NONE);
        for (int s : seqs) cache.truncate(s, context);
        return concat;
    }

    /** Bytes of keys and values one step reads: every cached token of every sequence, and the new one (scales included). */
    public long bytesRead() {
        KvCache.Shape s = cache.shape();
        return Math.round(seqs.length * (context + 1) * s.layerBytesPerToken());
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
