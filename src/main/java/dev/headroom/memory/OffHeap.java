package dev.headroom.memory;

import java.util.concurrent.atomic.AtomicLong;

/**
 * Process-wide accounting of the off-heap memory Headroom allocates. Every allocation the
 * runtime makes goes through a {@link TrackedArena}, which adds to {@link #currentBytes()} and
 * subtracts again when it is closed; {@link #peakBytes()} is the high-water mark since the
 * last {@link #resetPeak()}. Memory-mapped files (.safetensors weights) are not allocations and
 * are counted apart in {@link #mappedBytes()}.
 */
public final class OffHeap {
    private static final AtomicLong CURRENT = new AtomicLong();
    private static final AtomicLong PEAK = new AtomicLong();
    private static final AtomicLong MAPPED = new AtomicLong();

    private OffHeap() {}

    /** Bytes allocated through tracked arenas that are still open. */
    public static long currentBytes() {
        return CURRENT.get();
    }

    /** The largest {@link #currentBytes()} seen since the last {@link #resetPeak()}. */
    public static long peakBytes() {
        return PEAK.get();
    }

    /** Bytes of files currently memory-mapped by Headroom (not included in current or peak). */
    public static long mappedBytes() {
        return MAPPED.get();
    }

    /** Starts a new peak measurement from the current level; returns the old peak. */
    public static long resetPeak() {
        return PEAK.getAndSet(CURRENT.get());
    }

    static void allocated(long bytes) {
        long now = CURRENT.addAndGet(bytes);
        PEAK.accumulateAndGet(now, Math::max);
    }

    static void freed(long bytes) {
        CURRENT.addAndGet(-bytes);
    }

    static void mapped(long bytes) {
        MAPPED.addAndGet(bytes);
    }

    /** What a KV cache reports of its memory (the cache's own allocations are counted as usual). */
    public interface CacheUsage {
        /** Bytes the cache may hold at most (its budget, in whole blocks). */
        long reservedBytes();

        /** Bytes of blocks that sequences reference. */
        long usedBytes();

        /** Bytes of blocks referenced by more than one sequence. */
        long sharedBytes();

        /** Bytes inside used blocks that hold no token (the last block of a sequence not yet full). */
        long wastedBytes();
    }

    private static final java.util.Set<CacheUsage> CACHES = java.util.concurrent.ConcurrentHashMap.newKeySet();

    /** Counts a KV cache's usage in the process-wide totals until {@link #unregister}. */
    public static void register(CacheUsage cache) {
        CACHES.add(cache);
    }

    public static void unregister(CacheUsage cache) {
        CACHES.remove(cache);
    }

    /** KV caches' budgets, summed over the open caches. */
    public static long kvCacheReservedBytes() {
        return CACHES.stream().mapToLong(CacheUsage::reservedBytes).sum();
    }

    /** KV cache blocks in use, summed over the open caches. */
    public static long kvCacheUsedBytes() {
        return CACHES.stream().mapToLong(CacheUsage::usedBytes).sum();
    }

    /** KV cache blocks shared by several sequences, summed over the open caches. */
    public static long kvCacheSharedBytes() {
        return CACHES.stream().mapToLong(CacheUsage::sharedBytes).sum();
    }

    /** Unused token slots inside KV cache blocks in use, summed over the open caches. */
    public static long kvCacheWastedBytes() {
        return CACHES.stream().mapToLong(CacheUsage::wastedBytes).sum();
    }

    /** A short human-readable byte count, e.g. {@code 1.50 GiB}. */
    public static String format(long bytes) {
        double b = bytes;
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
        int u = 0;
        while (Math.abs(b) >= 1024 && u < units.length - 1) {
            b /= 1024;
            u++;
        }
        return u == 0 ? bytes + " B" : String.format("%.2f %s", b, units[u]);
    }
}
