package dev.headroom.attention;

import dev.headroom.memory.TrackedArena;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The scratch memory of one forward call: the projection buffer, the concatenated head outputs,
 * and one score scratch per worker. It grows to the largest problem it has served and keeps its
 * memory until {@link #close()}, so a caller that reuses it pays for allocation once. A
 * workspace serves one forward call at a time; concurrent calls need one each (using one from
 * two calls at once is refused, not corrupted).
 */
public final class Workspace implements AutoCloseable {
    private TrackedArena arena;
    /** Qᵀ, Kᵀ, Vᵀ: (H·d, B·n_q), then (G·d, B·n_k) twice; row-major, features × tokens. */
    private MemorySegment projection = MemorySegment.NULL;
    /** Concatenated head outputs: (B·n_q, H·d), row-major. */
    private MemorySegment concat = MemorySegment.NULL;
    /** Per-worker kernel scratch: (workers, scratchFloats) floats. */
    private MemorySegment scratch = MemorySegment.NULL;
    private long scratchPerWorker;
    /** Buffers only some calls need, by {@link Extra}: each grown on demand in an arena of its own and kept. */
    private final TrackedArena[] extraArenas = new TrackedArena[Extra.values().length];
    private final MemorySegment[] extras = new MemorySegment[Extra.values().length];
    private final AtomicBoolean inUse = new AtomicBoolean();

    /** The buffers some calls need besides the projections, the concatenated heads and the scratch. */
    enum Extra {
        /** RoPE angle tables cos and sin, (R/2, columns) each: the queries', then the keys'. */
        ROPE_ANGLES,
        /** Qᵀ rotated at the queries' sink positions (StreamingLLM with RoPE): (H·d, B·n_q). */
        SINK_QUERIES,
        /** Kᵀ and Vᵀ gathered from a KV cache for the span loop: (G·d, n_k) each. */
        GATHERED_KEYS_VALUES,
        /** Decode: per task partial outputs and softmax states, and per worker row buffers. */
        DECODE
    }
    private volatile boolean closed;

    public Workspace() {}

    /** Sizes the buffers for a problem, reallocating only when something is too small; returns the bytes newly allocated. */
    long prepare(long projectionFloats, long concatFloats, int workers, long scratchFloatsPerWorker) {
        if (closed) throw new IllegalStateException("workspace is closed");
        long projBytes = projectionFloats * Float.BYTES, concatBytes = concatFloats * Float.BYTES;
        // Workers' scratches are slices of one buffer at a stride that only grows, so the buffer must
        // hold `workers` strides of the larger of the old stride and the new request.
        long perWorker = Math.max(scratchFloatsPerWorker, scratchPerWorker);
        long scratchBytes = (long) workers * perWorker * Float.BYTES;
        if (arena != null && projection.byteSize() >= projBytes && concat.byteSize() >= concatBytes
                && scratch.byteSize() >= scratchBytes) {
            return 0;
        }
        long keepProj = Math.max(projBytes, projection.byteSize());
        long keepConcat = Math.max(concatBytes, concat.byteSize());
        long keepScratch = Math.max(scratchBytes, scratch.byteSize());
        release();
        arena = TrackedArena.ofShared();
        projection = arena.allocate(Math.max(keepProj, 4), TrackedArena.ALIGNMENT);
        concat = arena.allocate(Math.max(keepConcat, 4), TrackedArena.ALIGNMENT);
        scratch = arena.allocate(Math.max(keepScratch, 4), TrackedArena.ALIGNMENT);
        scratchPerWorker = perWorker;
        return arena.allocatedBytes();
    }

    MemorySegment projection() {
        return projection;
    }

    MemorySegment concat() {
        return concat;
    }

    /** Worker w's scratch: at least the floats asked for in {@link #prepare}. */
    MemorySegment scratch(int worker) {
        long bytes = scratchPerWorker * Float.BYTES;
        return scratch.asSlice(worker * bytes, bytes);
    }

    void acquire() {
        if (!inUse.compareAndSet(false, true)) {
            throw new IllegalStateException(closed ? "workspace is closed" : "this workspace is already in use by another "
                    + "forward call (or being closed); give each concurrent call its own Workspace");
        }
        if (closed) { // closed before we took it
            inUse.set(false);
            throw new IllegalStateException("workspace is closed");
        }
    }

    void releaseUse() {
        inUse.set(false);
    }

    /**
     * Buffer {@code which}, at least {@code floats} long (contents undefined), grown when too small
     * and kept until {@link #close()}. Only the call that holds the workspace may ask.
     */
    MemorySegment extra(Extra which, long floats) {
        int w = which.ordinal();
        long bytes = Math.max(floats, 1) * Float.BYTES;
        if (extras[w] == null || extras[w].byteSize() < bytes) {
            if (extraArenas[w] != null) extraArenas[w].close();
            extraArenas[w] = null; // a failed allocation below must not leave the closed buffer in place
            extras[w] = null;
            TrackedArena arena = TrackedArena.ofShared();
            try {
                extras[w] = arena.allocate(bytes, TrackedArena.ALIGNMENT);
            } catch (RuntimeException | Error e) {
                arena.close();
                throw e;
            }
            extraArenas[w] = arena;
        }
        return extras[w];
    }

    /** Bytes this workspace holds. */
    public long byteSize() {
        long bytes = arena == null ? 0 : arena.allocatedBytes();
        for (TrackedArena a : extraArenas) if (a != null) bytes += a.allocatedBytes();
        return bytes;
    }

    private void releaseExtras() {
        for (int w = 0; w < extras.length; w++) {
            if (extraArenas[w] != null) extraArenas[w].close();
            extraArenas[w] = null;
            extras[w] = null;
        }
    }

    private void release() {
        if (arena != null) arena.close();
        arena = null;
        projection = concat = scratch = MemorySegment.NULL;
        scratchPerWorker = 0;
    }

    /** Frees the buffers; refused while a forward call uses the workspace. Closing twice is harmless. */
    @Override
    public void close() {
        // Take the workspace as a call would, so no call can start while the buffers are freed.
        if (!inUse.compareAndSet(false, true)) {
            throw new IllegalStateException("cannot close a workspace while a forward call uses it");
        }
        try {
            release();
            releaseExtras();
            closed = true;
        } finally {
            inUse.set(false);
        }
    }
}
