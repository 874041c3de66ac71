package dev.headroom.inspect;

import java.util.EnumSet;
import java.util.Set;

/**
 * What one head does, averaged over query rows (see {@link HeadStatistics} for the definitions).
 * Masses are fractions of a row's attention, in [0, 1]; NaN where the input gave nothing to
 * measure (no delimiters given; no repeated tokens).
 */
public record HeadSummary(int head, long rows,
                          double entropy, double normalizedEntropy, double distance,
                          double self, double previous, double next, double first, double delimiter,
                          int band, double bandMass, int maxOffset, double[] offsetProfile,
                          double confidence, int argmaxOffset, double argmaxShare,
                          int topColumns, double columnConcentration,
                          double duplicateToken, double induction) {

    /** Mass at offset j − p = δ for |δ| ≤ maxOffset. */
    public double offsetMass(int delta) {
        return offsetProfile[delta + maxOffset];
    }

    /** Every role whose threshold this head meets (see {@link HeadRole}). */
    public Set<HeadRole> roles() {
        EnumSet<HeadRole> r = EnumSet.noneOf(HeadRole.class);
        for (HeadRole role : HeadRole.values()) if (role != HeadRole.UNCLASSIFIED && role.test(this)) r.add(role);
        if (r.isEmpty()) r.add(HeadRole.UNCLASSIFIED);
        return r;
    }

    /** The first role in {@link HeadRole}'s order of precedence. */
    public HeadRole role() {
        return roles().iterator().next();
    }

    /** A one-line description with the numbers behind the role. */
    public String describe() {
        HeadRole r = role();
        String why = switch (r) {
            case PREVIOUS_TOKEN -> String.format("%.0f%% on the previous token", 100 * previous);
            case NEXT_TOKEN -> String.format("%.0f%% on the next token", 100 * next);
            case SELF -> String.format("%.0f%% on itself", 100 * self);
            case POSITIONAL -> String.format("argmax at offset %+d in %.0f%% of rows", argmaxOffset, 100 * argmaxShare);
            case FIRST_TOKEN -> String.format("%.0f%% on the first token", 100 * first);
            case DELIMITER -> String.format("%.0f%% on delimiters", 100 * delimiter);
            case VERTICAL -> String.format("%.0f%% of all attention on %d keys", 100 * columnConcentration, topColumns);
            case LOCAL -> String.format("%.0f%% within ±%d", 100 * bandMass, band);
            case BROAD -> String.format("normalized entropy %.2f", normalizedEntropy);
            case UNCLASSIFIED -> String.format("normalized entropy %.2f, distance %.1f", normalizedEntropy, distance);
        };
        return r + " (" + why + ")";
    }
}
