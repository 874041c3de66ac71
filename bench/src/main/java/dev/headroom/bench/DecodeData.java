package dev.headroom.bench;

import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;

/**
 * The data of one decode step, one definition for every engine that times it
 * ({@link DecodeBenchmark} on Headroom's paged cache, {@link OrtGqaBenchmark} on ONNX Runtime's
 * GroupQueryAttention) and for the check between them ({@link OrtGqaCheck}): {@code sequences}
 * sequences of {@code context} cached tokens each, and one new token per sequence. Every value is
 * seeded uniform in [−1, 1), so both engines attend over the same numbers.
 *
 * <p>The cached keys and values are one chunk of {@link #chunkTokens} tokens repeated: token t of
 * every sequence holds column (row) t mod chunk. A chunk of 1,024 tokens is far past any cache
 * line reuse, and it keeps a 16k-token context's set-up to one random fill.
 *
 * @param heads      H, query heads
 * @param kvHeads    G, key/value heads (H / G query heads share each)
 * @param headDim    d, features per head
 * @param context    cached tokens per sequence before the step
 * @param sequences  S, sequences in the batch (one new token each)
 * @param cachedKeysT   Kᵀ of the cached chunk, (G·d, chunk): column u is token u of the chunk
 * @param cachedValues  V of the cached chunk, (chunk, G·d)
 * @param qT  the new tokens' queries, Qᵀ (H·d, S): column s is sequence s
 * @param kT  the new tokens' keys, Kᵀ (G·d, S)
 * @param v   the new tokens' values, (S, G·d)
 */
public record DecodeData(int heads, int kvHeads, int headDim, int context, int sequences,
                         Matrix cachedKeysT, Matrix cachedValues, Matrix qT, Matrix kT, Matrix v) {
    /** Tokens in the repeated chunk of cached keys and values (fewer if the context is shorter). */
    public static final int CHUNK = 1024;

    /** (heads, kv heads, head dim) of a benchmark shape name: llama is Llama 3 8B's attention. */
    public static int[] heads(String shape) {
        return switch (shape) {
            case "llama" -> new int[]{32, 8, 128};
            case "small" -> new int[]{12, 4, 64};
            default -> throw new IllegalArgumentException("shape must be llama or small, got " + shape);
        };
    }

    /** The data of a benchmark cell, in {@code arena} (shared, if more than one thread reads it). */
    public static DecodeData random(Arena arena, String shape, int context, int sequences) {
        int[] h = heads(shape);
        return random(arena, h[0], h[1], h[2], context, sequences);
    }

    /** Seeded random data for H heads over G key/value heads of width d, in {@code arena}. */
    public static DecodeData random(Arena arena, int heads, int kvHeads, int headDim, int context, int sequences) {
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || headDim <= 0 || context <= 0 || sequences <= 0) {
            throw new IllegalArgumentException("need H a positive multiple of G, d, context and sequences positive; got H " + heads
                    + ", G " + kvHeads + ", d " + headDim + ", context " + context + ", sequences " + sequences);
        }
        int chunk = Math.min(CHUNK, context);
        int queryWidth = heads * headDim, kvWidth = kvHeads * headDim;
        // The seeds are the ones DecodeBenchmark has always used, so its figures stay comparable.
        return new DecodeData(heads, kvHeads, headDim, context, sequences,
                Tensor.uniform(arena, 7, 1, kvWidth, chunk).matrix(),
                Tensor.uniform(arena, 8, 1, chunk, kvWidth).matrix(),
                Tensor.uniform(arena, 9, 1, queryWidth, sequences).matrix(),
                Tensor.uniform(arena, 10, 1, kvWidth, sequences).matrix(),
                Tensor.uniform(arena, 11, 1, sequences, kvWidth).matrix());
    }

    /** Tokens in the repeated chunk. */
    public int chunkTokens() {
        return cachedKeysT.cols();
    }

    /** H·d, the width of a query row and of an output row. */
    public int queryWidth() {
        return heads * headDim;
    }

    /** G·d, the width of a key or value row. */
    public int kvWidth() {
        return kvHeads * headDim;
    }
}
