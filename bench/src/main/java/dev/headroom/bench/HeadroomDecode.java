package dev.headroom.bench;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.CallOptions;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;

/**
 * Headroom's decode step over a paged KV cache, as {@link DecodeBenchmark} times it and
 * {@link OrtGqaCheck} checks it: one layer, {@link DecodeData#sequences} sequences filled with
 * {@link DecodeData#context} cached tokens; a step appends one token per sequence, writes its key
 * and value, and attends ({@link MultiHeadAttention#attend}, the attend stage alone: no
 * projections, as ONNX Runtime's GroupQueryAttention has none), then truncates the new tokens
 * away so that every step sees the same context.
 *
 * <p>The cache owns its memory and this object owns the cache, the layer and the workspace; the
 * weights (unused by the attend stage, but a layer needs them) and the output live in the caller's
 * arena.
 */
public final class HeadroomDecode implements AutoCloseable {
    private final DecodeData data;
    private final KvCache cache;
    private final MultiHeadAttention attention;
    private final Workspace workspace = new Workspace();
    private final int[] seqs, ones;
    /** The heads' outputs of the last step, (S, H·d): row s is sequence s. */
    private final Matrix concat;

    /** A cache of {@code dtype} in blocks of {@code blockSize} tokens, filled from {@code data}; {@code threads} workers. */
    public HeadroomDecode(DecodeData data, KvDtype dtype, int blockSize, int threads, Arena arena) {
        this.data = data;
        int H = data.heads(), G = data.kvHeads(), d = data.headDim(), S = data.sequences(), context = data.context();
        attention = new MultiHeadAttention(AttentionWeights.random(AttentionConfig.of(H * d, H, G, d), false, 1, arena),
                MultiHeadAttention.Options.defaults().withThreads(threads));
        KvCache.Shape shape = new KvCache.Shape(1, G, d, blockSize, dtype);
        // room for the step's token: one more block per sequence than the context needs
        cache = new KvCache(shape, KvCache.bytesFor(shape, S, context + blockSize));
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

    /** One decode step; returns the heads' outputs, (S, H·d). */
    public Matrix step() {
        KvCache.Step st = cache.step(seqs, ones, null);
        attention.attend(cache, st, 0, data.qT(), data.kT(), data.v(), concat, Mask.causal(), workspace, CallOptions.NONE);
        for (int s : seqs) cache.truncate(s, data.context());
        return concat;
    }

    @Override
    public void close() {
        workspace.close();
        attention.close();
        cache.close();
    }
}
