package dev.headroom.cache;

/**
 * An append that needs more blocks than the cache can give, even after evicting every cached
 * prefix nobody uses. Nothing was written and nothing changed: a scheduler can queue the
 * request, or preempt a running sequence and retry.
 */
public final class KvCacheFullException extends RuntimeException {
    private final int blocksNeeded, blocksAvailable;

    public KvCacheFullException(String message, int blocksNeeded, int blocksAvailable) {
        super(message);
        this.blocksNeeded = blocksNeeded;
        this.blocksAvailable = blocksAvailable;
    }

    /** Blocks the refused operation needed. */
    public int blocksNeeded() {
        return blocksNeeded;
    }

    /** Blocks that were free or evictable. */
    public int blocksAvailable() {
        return blocksAvailable;
    }
}
