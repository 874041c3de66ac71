package dev.headroom.model.minilm;

import dev.headroom.attention.Workspace;
import dev.headroom.memory.TrackedArena;

import java.lang.foreign.MemorySegment;

/**
 * The scratch memory of {@link MiniLmEncoder} calls: the attention output, the FFN's
 * intermediate activations, the hidden states when only pooled embeddings are wanted, and the
 * attention's {@link Workspace}. It grows to the largest batch it has served and keeps
 * its memory until {@link #close()}, so a caller that reuses it allocates once. One call at a
 * time; concurrent calls need one each.
 */
public final class EncoderWorkspace implements AutoCloseable {
    private TrackedArena arena;
    /** (B·n, E), row-major: the attention output, then the FFN output of the same rows. */
    private MemorySegment attentionOut = MemorySegment.NULL;
    /** (B·n, I), row-major: the FFN's intermediate activations. */
    private MemorySegment intermediate = MemorySegment.NULL;
    /** (B·n, E), row-major: the hidden states for {@link MiniLmEncoder#embed}. */
    private MemorySegment hidden = MemorySegment.NULL;
    /** The attention layers' scratch (one layer runs at a time). */
    private final Workspace attention = new Workspace();
    private boolean closed;

    public EncoderWorkspace() {}

    /** Sizes the buffers for {@code rows} = B·n tokens of width E and FFN width I. */
    void prepare(long rows, int E, int I) {
        if (closed) throw new IllegalStateException("encoder workspace is closed");
        long hiddenBytes = Math.max(4, rows * E * Float.BYTES), interBytes = Math.max(4, rows * I * Float.BYTES);
        if (arena != null && attentionOut.byteSize() >= hiddenBytes && intermediate.byteSize() >= interBytes) return;
        if (arena != null) arena.close();
        // Shared: the encoder's and the attention's worker threads read and write these buffers.
        arena = TrackedArena.ofShared();
        attentionOut = arena.allocate(hiddenBytes, TrackedArena.ALIGNMENT);
        intermediate = arena.allocate(interBytes, TrackedArena.ALIGNMENT);
        hidden = arena.allocate(hiddenBytes, TrackedArena.ALIGNMENT);
    }

    MemorySegment attentionOut() {
        return attentionOut;
    }

    MemorySegment intermediate() {
        return intermediate;
    }

    MemorySegment hidden() {
        return hidden;
    }

    Workspace attention() {
        return attention;
    }

    /** Bytes held, the attention workspace included. */
    public long byteSize() {
        long bytes = arena == null ? 0 : arena.allocatedBytes();
        return bytes + attention.byteSize();
    }

    @Override
    public void close() {
        if (arena != null) arena.close();
        arena = null;
        attentionOut = intermediate = hidden = MemorySegment.NULL;
        attention.close();
        closed = true;
    }
}
