package dev.headroom.attention;

/**
 * A forward call whose output holds NaN or ±∞ although its inputs were finite, with finite
 * checking on: the message says where the first non-finite value appeared (which projection,
 * which head's attention, or the output projection) and why that usually happens.
 */
public final class NonFiniteException extends IllegalStateException {
    public NonFiniteException(String message) {
        super(message);
    }
}
