package dev.headroom.attention;

/**
 * What one forward call does besides computing its output, apart from the layer's
 * {@link MultiHeadAttention.Options} (which hold for every call of a layer).
 *
 * @param observer shown kept heads, progress and probabilities (e.g. an
 *                 {@code dev.headroom.inspect.Inspection}), or null
 * @param profile  if not null, the call's time per phase is added to it
 */
public record CallOptions(AttentionObserver observer, Profile profile) {
    public static final CallOptions NONE = new CallOptions(null, null);

    public static CallOptions observing(AttentionObserver observer) {
        return new CallOptions(observer, null);
    }

    public static CallOptions profiling(Profile profile) {
        return new CallOptions(null, profile);
    }

    public CallOptions withObserver(AttentionObserver o) {
        return new CallOptions(o, profile);
    }

    public CallOptions withProfile(Profile p) {
        return new CallOptions(observer, p);
    }
}
