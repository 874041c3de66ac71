package dev.headroom.serve;

/**
 * A request was refused because the queue of requests waiting for cache memory is full: the
 * client should retry later (HTTP 503 with {@code Retry-After}). Nothing of the request was
 * started, so nothing needs undoing.
 */
public final class QueueFullException extends RuntimeException {
    private final int queued, capacity;

    public QueueFullException(String message, int queued, int capacity) {
        super(message);
        this.queued = queued;
        this.capacity = capacity;
    }

    /** Requests waiting when this one was refused. */
    public int queued() {
        return queued;
    }

    /** The most requests that may wait. */
    public int capacity() {
        return capacity;
    }
}
