package dev.headroom.cli;

import dev.headroom.attention.CallOptions;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.sparse.AttentionPattern;
import dev.headroom.tensor.Tensor;

import java.io.PrintStream;
import java.lang.foreign.MemorySegment;

/**
 * `run --decode`: a causal self-attention computed through a paged KV cache, as a server would:
 * every batch element is a sequence; the first step prefills P tokens of each, then every step
 * decodes one more token of each, all sequences in one ragged step. With a streaming mask the
 * tokens no query will see again are evicted after every step.
 */
final class CachedRun {
    private CachedRun() {}

    /** The output of x, (n, E) or (B, n, E), allocated in {@code arena}; statistics to {@code out}. */
    static Tensor run(MultiHeadAttention mha, Tensor x, Mask mask, Integer prefill, int blockSize, KvDtype dtype,
                      java.lang.foreign.Arena arena, PrintStream out) {
        int E = x.dim(-1), n = x.dim(-2), B = x.rank() == 3 ? x.dim(0) : 1;
        int P = prefill == null ? Math.max(1, n / 2) : prefill;
        if (P < 1 || P > n) throw new IllegalArgumentException("--prefill must be in [1, " + n + "], got " + P);
        var c = mha.config();
        KvCache.Shape shape = new KvCache.Shape(1, c.kvHeads(), c.headDim(), blockSize, dtype);
        long budget = KvCache.bytesFor(shape, B, n);
        Tensor y = Tensor.allocate(arena, x.shape());
        long maxUsed = 0;
        int steps = 0;
        long t0 = System.nanoTime();
        try (Workspace ws = new Workspace(); KvCache cache = new KvCache(shape, budget); TrackedArena rows = TrackedArena.ofShared()) {
            /* the steps' inputs and outputs, (B·count, E), sequence by sequence: the prefill's, then every decode step's. */
            Tensor prefillIn = Tensor.allocate(rows, B * P, E), prefillOut = Tensor.allocate(rows, B * P, E);
            Tensor stepIn = Tensor.allocate(rows, B, E), stepOut = Tensor.allocate(rows, B, E);
            int[] seqs = new int[B];
            for (int b = 0; b < B; b++) seqs[b] = cache.create();
            for (int pos = 0; pos < n; steps++) {
                int count = pos == 0 ? P : 1;
                int[] counts = new int[B];
                java.util.Arrays.fill(counts, count);
                KvCache.Step step = cache.step(seqs, counts, null);
                Tensor in = pos == 0 ? prefillIn : stepIn, outRows = pos == 0 ? prefillOut : stepOut;
                for (int b = 0; b < B; b++) {
                    MemorySegment.copy(x.segment(), ((long) b * n + pos) * E * Float.BYTES, in.segment(), (long) b * count * E * Float.BYTES,
                            (long) count * E * Float.BYTES);
                }
                mha.forward(cache, step, 0, in, mask, outRows, ws, CallOptions.NONE);
                for (int b = 0; b < B; b++) {
                    MemorySegment.copy(outRows.segment(), (long) b * count * E * Float.BYTES, y.segment(), ((long) b * n + pos) * E * Float.BYTES,
                            (long) count * E * Float.BYTES);
                }
                pos += count;
                maxUsed = Math.max(maxUsed, cache.stats().usedBytes());
                if (mask.pattern() instanceof AttentionPattern.Streaming st && pos - st.window() + 1 > st.sinks()) {
                    for (int s : seqs) cache.evict(s, st.sinks(), pos - st.window() + 1);
                }
            }
            double ms = (System.nanoTime() - t0) / 1e6;
            KvCache.Stats st = cache.stats();
            out.printf("decode: %d sequences × %d tokens through a KV cache (%s, blocks of %d): prefill %d, then %d decode steps, "
                            + "%.1f ms; cache peak %s used of %s reserved, %s wasted at the end%n", B, n, dtype.name().toLowerCase(),
                    blockSize, P, steps - 1, ms, OffHeap.format(maxUsed), OffHeap.format(st.reservedBytes()), OffHeap.format(st.wastedBytes()));
        }
        return y;
    }
}
