package dev.headroom.attention;

import java.util.EnumMap;
import java.util.Map;
import java.util.concurrent.atomic.LongAdder;

/**
 * Where forward time goes, summed over worker threads: filled in when a profile is passed in
 * {@link MultiHeadAttention.Options#withProfile}. Costs one {@code System.nanoTime()} per
 * phase per block; off by default.
 */
public final class Profile {
    /** The steps of a forward pass. */
    public enum Phase {
        /** Q, K, V projections (sgemm). */
        PROJECTIONS,
        /** S = scale · Q Kᵀ (sgemm). */
        SCORES,
        /** mask and exp (Java). */
        SOFTMAX,
        /** P · V and the division by the softmax sums (sgemm, Java). */
        WEIGHTED_SUM,
        /** concat · W_Oᵀ (sgemm). */
        OUTPUT_PROJECTION
    }

    private final Map<Phase, LongAdder> nanos = new EnumMap<>(Phase.class);
    private final LongAdder tiles = new LongAdder();

    public Profile() {
        for (Phase p : Phase.values()) nanos.put(p, new LongAdder());
    }

    public void add(Phase phase, long ns) {
        nanos.get(phase).add(ns);
    }

    /** Thread-nanoseconds spent in a phase. */
    public long nanos(Phase phase) {
        return nanos.get(phase).sum();
    }

    public long totalNanos() {
        long t = 0;
        for (LongAdder a : nanos.values()) t += a.sum();
        return t;
    }

    /** Sparse kernel: tiles computed (the layout's non-empty tiles that were visited). */
    public void addTiles(long n) {
        tiles.add(n);
    }

    public long tilesComputed() {
        return tiles.sum();
    }

    public void reset() {
        for (LongAdder a : nanos.values()) a.reset();
        tiles.reset();
    }

    /** e.g. "projections 18% · scores 31% · softmax 15% · weighted sum 30% · output 6%". */
    public String shares() {
        long total = Math.max(1, totalNanos());
        StringBuilder s = new StringBuilder();
        for (Phase p : Phase.values()) {
            if (!s.isEmpty()) s.append(" · ");
            s.append(p.name().toLowerCase().replace('_', ' ')).append(' ')
                    .append(Math.round(100.0 * nanos(p) / total)).append('%');
        }
        return s.toString();
    }
}
