package dev.headroom.generate;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Chooses tokens from logits as a {@link Sampling} says, with the random numbers of one sequence
 * (so a sequence samples the same tokens whether it runs alone or in a batch). Works in double:
 * the distribution is computed once per token over the vocabulary, which is small next to the
 * forward pass that produced the logits.
 */
public final class Sampler {
    private final Sampling sampling;
    private final SplittableRandom random;

    public Sampler(Sampling sampling) {
        this.sampling = sampling;
        this.random = new SplittableRandom(sampling.seed());
    }

    public Sampling sampling() {
        return sampling;
    }

    /** The next token for {@code logits} (one per vocabulary id). */
    public int next(float[] logits) {
        if (logits.length == 0) throw new IllegalArgumentException("no logits to sample from");
        if (sampling.isGreedy()) return argmax(logits);
        Distribution d = distribution(sampling, logits);
        double u = random.nextDouble(), cumulative = 0;
        for (int k = 0; k < d.ids.length; k++) {
            cumulative += d.probabilities[k];
            if (u < cumulative) return d.ids[k];
        }
        return d.ids[d.ids.length - 1]; // u within rounding of 1
    }

    /** The id of the largest logit, the lowest id on ties; NaN logits are never chosen unless all are NaN. */
    public static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best] || Float.isNaN(logits[best])) best = i;
        return best;
    }

    /**
     * The ids {@link #next} draws from and their probabilities (summing to 1), most probable first
     * (lower id first on ties), after temperature, top-k and top-p; for greedy, the argmax with
     * probability 1.
     */
    public static Distribution distribution(Sampling sampling, float[] logits) {
        int V = logits.length;
        if (sampling.isGreedy()) return new Distribution(new int[]{argmax(logits)}, new double[]{1});
        for (int i = 0; i < V; i++) {
            if (Float.isNaN(logits[i]) || logits[i] == Float.POSITIVE_INFINITY) {
                throw new IllegalArgumentException("cannot sample from logits holding " + logits[i] + " (id " + i + ")");
            }
        }
        int[] order = byDecreasingLogit(logits);
        int kept = V;
        // top-k: every id whose logit is at least the k-th largest
        if (sampling.topK() > 0 && sampling.topK() < V) {
            float kth = logits[order[sampling.topK() - 1]];
            kept = sampling.topK();
            while (kept < V && logits[order[kept]] == kth) kept++;
        }
        while (kept > 1 && logits[order[kept - 1]] == Float.NEGATIVE_INFINITY) kept--; // masked ids have probability 0
        // softmax of z / T over the kept ids
        double max = logits[order[0]] / sampling.temperature(), sum = 0;
        double[] p = new double[kept];
        for (int k = 0; k < kept; k++) {
            p[k] = Math.exp(logits[order[k]] / sampling.temperature() - max);
            sum += p[k];
        }
        for (int k = 0; k < kept; k++) p[k] /= sum;
        // top-p: the smallest prefix whose mass reaches p, at least one id
        if (sampling.topP() < 1) {
            double mass = 0;
            int prefix = 0;
            while (prefix < kept && mass < sampling.topP()) mass += p[prefix++];
            kept = Math.max(1, prefix);
            sum = 0;
            for (int k = 0; k < kept; k++) sum += p[k];
            for (int k = 0; k < kept; k++) p[k] /= sum;
        }
        int[] ids = new int[kept];
        for (int k = 0; k < kept; k++) ids[k] = order[k];
        return new Distribution(ids, Arrays.copyOf(p, kept));
    }

    /**
     * The ids by decreasing logit in {@link Float#compare}'s order, the lower id first on ties: one
     * sort of primitive keys, (descending order key of the logit) · 2³² + id, so a step of many
     * sequences does not sort boxed ids with a comparator (which held 2 % of a 32-stream server's
     * profile, on the engine thread while its workers waited). No NaN here (refused above).
     */
    static int[] byDecreasingLogit(float[] logits) {
        int V = logits.length;
        long[] keys = new long[V];
        for (int i = 0; i < V; i++) {
            int bits = Float.floatToRawIntBits(logits[i]);
            int ascending = bits ^ ((bits >> 31) & 0x7fffffff); // signed-int order = Float.compare's (−0 before +0)
            keys[i] = (long) ~ascending << 32 | i;              // ~ reverses it: larger logits first, then lower ids
        }
        Arrays.sort(keys);
        int[] order = new int[V];
        for (int k = 0; k < V; k++) order[k] = (int) keys[k];
        return order;
    }

    /** Ids and their probabilities, most probable first. */
    public record Distribution(int[] ids, double[] probabilities) {}
}
