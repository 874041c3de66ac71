package dev.headroom.inspect;

import java.util.function.Predicate;

/**
 * Roles of attention heads, decided from {@link HeadSummary} by documented thresholds, in order
 * of precedence (a head's primary role is the first that applies).
 */
public enum HeadRole {
    /**
     * More than half of the attention on the previous token. Clark et al. 2019, "What Does BERT
     * Look At?", §4: heads that put &gt; 50% of their attention on the previous/next token.
     */
    PREVIOUS_TOKEN(s -> s.previous() > 0.5),
    /** More than half on the next token (Clark et al. 2019, as above). */
    NEXT_TOKEN(s -> s.next() > 0.5),
    /** More than half on the token itself (the same 50% rule applied to offset 0). */
    SELF(s -> s.self() > 0.5),
    /**
     * The row's maximum falls at the same relative offset in at least 90% of rows. Voita et al.
     * 2019, "Analyzing Multi-Head Self-Attention", §4.1: positional heads point to a fixed relative
     * position with maximal attention in at least 90% of cases.
     */
    POSITIONAL(s -> s.argmaxShare() >= 0.9),
    /** More than half on the first token ([CLS] in BERT; Clark et al. 2019, §3). */
    FIRST_TOKEN(s -> s.first() > 0.5),
    /**
     * More than half on delimiter positions ([SEP], punctuation). Clark et al. 2019, §3: heads that
     * attend broadly to [SEP], read as a "no-op".
     */
    DELIMITER(s -> !Double.isNaN(s.delimiter()) && s.delimiter() > 0.5),
    /**
     * More than half of the head's total attention lands on its top few keys (default 3): the
     * "vertical" pattern of Kovaleva et al. 2019, "Revealing the Dark Secrets of BERT", §4.
     * The 50% threshold is ours.
     */
    VERTICAL(s -> s.columnConcentration() > 0.5),
    /**
     * At least 70% within the band |j − p| ≤ k (default 2): the "diagonal/block" local pattern of
     * Kovaleva et al. 2019. The 70% threshold is ours.
     */
    LOCAL(s -> s.bandMass() >= 0.7),
    /**
     * Normalized entropy (H / ln of the allowed keys) of at least 0.8: attention spread broadly,
     * the high-entropy heads of Clark et al. 2019, §3. The 0.8 threshold is ours (a uniform row is 1).
     */
    BROAD(s -> s.normalizedEntropy() >= 0.8),
    /** None of the above. */
    UNCLASSIFIED(s -> true);

    private final Predicate<HeadSummary> rule;

    HeadRole(Predicate<HeadSummary> rule) {
        this.rule = rule;
    }

    public boolean test(HeadSummary s) {
        return rule.test(s);
    }
}
