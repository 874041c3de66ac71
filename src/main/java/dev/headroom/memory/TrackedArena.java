package dev.headroom.memory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.io.IOException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * An {@link Arena} whose allocations are counted in {@link OffHeap}. It wraps a confined or
 * shared arena and is closed like one; closing subtracts what it allocated. Everything the
 * runtime allocates goes through one of these; callers who want their own outputs counted pass
 * one as well ({@code try (var arena = TrackedArena.ofShared()) { ... }}: shared, because Headroom's
 * worker threads write outputs; confined arenas suit single-threaded use).
 *
 * <p>Segments are 64-byte aligned unless a larger alignment is asked for.
 */
public final class TrackedArena implements Arena {
    /** Alignment of every tensor Headroom allocates: one cache line, one AVX-512 vector. */
    public static final long ALIGNMENT = 64;

    private final Arena arena;
    private final AtomicLong allocated = new AtomicLong();
    private final AtomicLong mapped = new AtomicLong();

    private TrackedArena(Arena arena) {
        this.arena = arena;
    }

    /** A tracked arena usable by one thread. */
    public static TrackedArena ofConfined() {
        return new TrackedArena(Arena.ofConfined());
    }

    /** A tracked arena whose segments any thread may use (needed for Headroom's worker threads). */
    public static TrackedArena ofShared() {
        return new TrackedArena(Arena.ofShared());
    }

    @Override
    public MemorySegment allocate(long byteSize, long byteAlignment) {
        return counted(arena.allocate(byteSize, Math.max(byteAlignment, ALIGNMENT)));
    }

    private MemorySegment counted(MemorySegment s) {
        allocated.addAndGet(s.byteSize());
        OffHeap.allocated(s.byteSize());
        return s;
    }

    /**
     * {@code byteSize} zeroed bytes for a large, long-lived buffer (a KV cache's slab): on Linux on
     * transparent huge pages, 2 MiB aligned, every page backed before this returns
     * ({@link HugePages}); elsewhere, or when the system refuses, as {@link #allocate(long, long)}
     * with {@link #ALIGNMENT}. Counted like any allocation.
     */
    public MemorySegment allocateLarge(long byteSize) {
        if (byteSize < HugePages.SIZE) return allocate(byteSize, ALIGNMENT);
        return counted(HugePages.allocate(arena, byteSize).orElseGet(() -> arena.allocate(byteSize, ALIGNMENT)));
    }

    /** Whether {@link #allocateLarge} can use huge pages in this JVM (Linux, native access allowed). */
    public static boolean hugePagesAvailable() {
        return HugePages.available();
    }

    /**
     * Maps {@code size} bytes of {@code channel} from {@code offset}, read-only, for the life of
     * this arena. Counted in {@link OffHeap#mappedBytes()}, not as an allocation.
     */
    public MemorySegment map(FileChannel channel, long offset, long size) throws IOException {
        MemorySegment s = channel.map(FileChannel.MapMode.READ_ONLY, offset, size, arena);
        mapped.addAndGet(size);
        OffHeap.mapped(size);
        return s;
    }

    /** Bytes this arena has allocated so far. */
    public long allocatedBytes() {
        return allocated.get();
    }

    @Override
    public MemorySegment.Scope scope() {
        return arena.scope();
    }

    @Override
    public void close() {
        arena.close();
        OffHeap.freed(allocated.getAndSet(0));
        OffHeap.mapped(-mapped.getAndSet(0));
    }
}
