package dev.headroom.model.llama;

import dev.headroom.attention.Workspace;
import dev.headroom.memory.TrackedArena;

import java.lang.foreign.MemorySegment;

/**
 * The scratch memory of {@link LlamaModel} calls: the residual stream, the normalised inputs,
 * the attention output, the feed-forward's two projections, the final-normed rows whose logits
 * are wanted, and the attention's {@link Workspace}. It grows to the largest step it has served
 * (T new tokens, R logit rows) and keeps its memory until {@link #close()}, so a generation loop
 * allocates once. One call at a time; concurrent calls need one each.
 */
public final class DecoderWorkspace implements AutoCloseable {
    private TrackedArena arena;
    private int rows, logitRows;
    /** x: (T, E), row-major: the residual stream, one row per new token. */
    private MemorySegment hidden = MemorySegment.NULL;
    /** h: (T, E): RMSNorm(x) ⊙ w, the input of attention and of the feed-forward. */
    private MemorySegment normed = MemorySegment.NULL;
    /** a: (T, E): the attention output. */
    private MemorySegment attentionOut = MemorySegment.NULL;
    /** g: (T, I): h W_gateᵀ, then silu(g) ⊙ u in place. */
    private MemorySegment gate = MemorySegment.NULL;
    /** u: (T, I): h W_upᵀ. */
    private MemorySegment up = MemorySegment.NULL;
    /** (R, E): the final RMSNorm of the R rows whose logits are computed. */
    private MemorySegment finalRows = MemorySegment.NULL;
    /** The cached path's Qᵀ (H·d, T), Kᵀ (G·d, T) and V (T, G·d), one after the other. */
    private MemorySegment projections = MemorySegment.NULL;
    /** The cached path's concatenated head outputs, (T, H·d). */
    private MemorySegment concat = MemorySegment.NULL;
    private int queryWidth, kvWidth;
    /** The attention layers' scratch (one layer runs at a time). */
    private final Workspace attention = new Workspace();
    private boolean closed;

    public DecoderWorkspace() {}

    /**
     * Sizes the buffers for {@code T} tokens and {@code R} logit rows of a model of width E, FFN
     * width I, H·d = {@code q} and G·d = {@code kv} (0, 0 when the attention projects itself).
     */
    void prepare(int T, int R, int E, int I, int q, int kv) {
        if (closed) throw new IllegalStateException("decoder workspace is closed");
        if (arena != null && T <= rows && R <= logitRows && q <= queryWidth && kv <= kvWidth) return;
        int keepRows = Math.max(Math.max(T, rows), 1), keepLogits = Math.max(Math.max(R, logitRows), 1);
        queryWidth = Math.max(q, queryWidth);
        kvWidth = Math.max(kv, kvWidth);
        if (arena != null) arena.close();
        // Shared: the model's and the attention's worker threads read and write these buffers.
        arena = TrackedArena.ofShared();
        long te = (long) keepRows * E * Float.BYTES, ti = (long) keepRows * I * Float.BYTES;
        hidden = arena.allocate(te, TrackedArena.ALIGNMENT);
        normed = arena.allocate(te, TrackedArena.ALIGNMENT);
        attentionOut = arena.allocate(te, TrackedArena.ALIGNMENT);
        gate = arena.allocate(ti, TrackedArena.ALIGNMENT);
        up = arena.allocate(ti, TrackedArena.ALIGNMENT);
        finalRows = arena.allocate((long) keepLogits * E * Float.BYTES, TrackedArena.ALIGNMENT);
        projections = arena.allocate(Math.max(4, (long) keepRows * (queryWidth + 2L * kvWidth) * Float.BYTES), TrackedArena.ALIGNMENT);
        concat = arena.allocate(Math.max(4, (long) keepRows * queryWidth * Float.BYTES), TrackedArena.ALIGNMENT);
        rows = keepRows;
        logitRows = keepLogits;
    }

    MemorySegment hidden() {
        return hidden;
    }

    MemorySegment normed() {
        return normed;
    }

    MemorySegment attentionOut() {
        return attentionOut;
    }

    MemorySegment gate() {
        return gate;
    }

    MemorySegment up() {
        return up;
    }

    MemorySegment finalRows() {
        return finalRows;
    }

    MemorySegment projections() {
        return projections;
    }

    MemorySegment concat() {
        return concat;
    }

    Workspace attention() {
        return attention;
    }

    /** Bytes held, the attention workspace included. */
    public long byteSize() {
        return (arena == null ? 0 : arena.allocatedBytes()) + attention.byteSize();
    }

    @Override
    public void close() {
        if (arena != null) arena.close();
        arena = null;
        hidden = normed = attentionOut = gate = up = finalRows = projections = concat = MemorySegment.NULL;
        rows = logitRows = queryWidth = kvWidth = 0;
        attention.close();
        closed = true;
    }
}
