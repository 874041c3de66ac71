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
        // top-k: every id whose logit is at least the k-th largest (found without sorting the vocabulary)
        boolean topK = sampling.topK() > 0 && sampling.topK() < V;
        int[] order = topK ? topByDecreasingLogit(logits, sampling.topK()) : byDecreasingLogit(logits);
        int kept = order.length;
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
        for (int i = 0; i < V; i++) keys[i] = key(logits[i], i);
        return ids(keys);
    }

    /**
     * The first ids of {@link #byDecreasingLogit}'s order up to the k-th and every id after it
     * whose logit equals the k-th's (top-k keeps ties), without sorting the vocabulary: a max-heap
     * of the k smallest keys in one pass finds the k-th key, a second pass keeps every key up to
     * it and every tie, and only those are sorted. A full sort cost 2.6 ms per token at a
     * vocabulary of 49,152 and 7.1 ms at 128,256 (SamplerBenchmark, AMD EPYC Zen 4), on the
     * serving engine's thread, for every running stream of every step. 0 &lt; k &lt; V.
     */
    static int[] topByDecreasingLogit(float[] logits, int k) {
        int V = logits.length;
        long[] heap = new long[k]; // the k smallest keys so far; heap[0] the largest of them
        for (int i = 0; i < k; i++) {
            heap[i] = key(logits[i], i);
            for (int c = i; c > 0 && heap[(c - 1) / 2] < heap[c]; c = (c - 1) / 2) swap(heap, c, (c - 1) / 2);
        }
        for (int i = k; i < V; i++) {
            long key = key(logits[i], i);
            if (key >= heap[0]) continue;
            heap[0] = key;
            for (int c = 0; ; ) { // sift down
                int l = 2 * c + 1, r = l + 1, big = c;
                if (l < k && heap[l] > heap[big]) big = l;
                if (r < k && heap[r] > heap[big]) big = r;
                if (big == c) break;
                swap(heap, c, big);
                c = big;
            }
        }
        long kthKey = heap[0];
        float kth = logits[(int) kthKey];
        // the k keys, and the ids tied with the k-th (== also ties −0 with +0, as the sorted order's neighbours)
        int n = 0;
        for (int i = 0; i < V; i++) if (logits[i] == kth && key(logits[i], i) > kthKey) n++;
        long[] keys = Arrays.copyOf(heap, k + n);
        for (int i = 0, at = k; i < V; i++) if (logits[i] == kth && key(logits[i], i) > kthKey) keys[at++] = key(logits[i], i);
        return ids(keys);
    }

    /** (descending order key of the logit) · 2³² + id: ascending keys are decreasing logits, lower ids first on ties. */
    private static long key(float logit, int id) {
        int bits = Float.floatToRawIntBits(logit);
        int ascending = bits ^ ((bits >> 31) & 0x7fffffff); // signed-int order = Float.compare's (−0 before +0)
        return (long) ~ascending << 32 | id;                // ~ reverses it: larger logits first, then lower ids
    }

    /** The ids of {@code keys}, sorted (in place) by key. */
    private static int[] ids(long[] keys) {
        Arrays.sort(keys);
        int[] order = new int[keys.length];
        for (int k = 0; k < keys.length; k++) order[k] = (int) keys[k];
        return order;
    }

    private static void swap(long[] a, int i, int j) {
        long t = a[i];
        a[i] = a[j];
        a[j] = t;
    }

    /** Ids and their probabilities, most probable first. */
    public record Distribution(int[] ids, double[] probabilities) {}
}
