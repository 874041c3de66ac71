package dev.headroom.attention;

/** A forward call would need more off-heap memory than the configured budget; nothing was allocated. */
public final class MemoryBudgetExceededException extends IllegalStateException {
    private final MemoryEstimate estimate;
    private final long budget;

    public MemoryBudgetExceededException(String message, MemoryEstimate estimate, long budget) {
        super(message);
        this.estimate = estimate;
        this.budget = budget;
    }

    public MemoryEstimate estimate() {
        return estimate;
    }

    public long budget() {
        return budget;
    }
}
