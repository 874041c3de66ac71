package dev.headroom.generate;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Chooses tokens from logits as a {@link Sampling} says, with the random numbers of one sequence
 * (so a sequence samples the same tokens whether it runs alone or in a batch). Works in double.
 * No token sorts the whole vocabulary unless it must: top-k finds its k ids with a heap, and
 * top-p alone or a plain draw take the sorted order's head only as far as they need (a sort of a
 * real vocabulary cost more than a decode step's forward: 7 ms at 128,256 ids).
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
        if (!truncates(sampling, logits.length) && logits.length > HEAD) {
            // the whole vocabulary: one draw needs the sorted order only as far as the draw reaches
            checkLogits(logits);
            double u = random.nextDouble();
            Head head = head(logits, sampling.temperature(), mass -> mass > u);
            if (head != null) {
                double cumulative = 0;
                for (int k = 0; k < head.ids.length; k++) {
                    cumulative += head.p[k];
                    if (u < cumulative) return head.ids[k];
                }
            }
            return draw(sortedDistribution(sampling, logits), u);
        }
        return draw(distribution(sampling, logits), random.nextDouble());
    }

    /** The id whose cumulative probability, in the distribution's order, first exceeds u. */
    private static int draw(Distribution d, double u) {
        double cumulative = 0;
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
        boolean topK = cutsTopK(sampling, V);
        double topP = sampling.topP();
        if (!topK && topP < 1 && V > HEAD) {
            // top-p alone: the smallest prefix of the sorted order whose mass reaches p, from its head only
            checkLogits(logits);
            Head head = head(logits, sampling.temperature(), mass -> mass >= topP);
            if (head != null) {
                double mass = 0, sum = 0;
                int prefix = 0;
                while (prefix < head.ids.length && mass < topP) mass += head.p[prefix++];
                int kept = Math.max(1, prefix);
                for (int k = 0; k < kept; k++) sum += head.p[k];
                double[] p = new double[kept];
                for (int k = 0; k < kept; k++) p[k] = head.p[k] / sum;
                return new Distribution(Arrays.copyOf(head.ids, kept), p);
            }
        }
        return sortedDistribution(sampling, logits);
    }

    /**
     * {@link #distribution} from the vocabulary's sorted order (only the top k and their ties when
     * top-k is on): the plain path, and the reference of the head's shortcuts.
     */
    static Distribution sortedDistribution(Sampling sampling, float[] logits) {
        int V = logits.length;
        checkLogits(logits);
        // top-k: every id whose logit is at least the k-th largest (found without sorting the vocabulary)
        boolean topK = cutsTopK(sampling, V);
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

    private static void checkLogits(float[] logits) {
        for (int i = 0; i < logits.length; i++) {
            if (Float.isNaN(logits[i]) || logits[i] == Float.POSITIVE_INFINITY) {
                throw new IllegalArgumentException("cannot sample from logits holding " + logits[i] + " (id " + i + ")");
            }
        }
    }

    /** Whether top-k or top-p cut the vocabulary. */
    private static boolean truncates(Sampling sampling, int V) {
        return cutsTopK(sampling, V) || sampling.topP() < 1;
    }

    /** Whether top-k keeps fewer ids than the vocabulary's V. */
    private static boolean cutsTopK(Sampling sampling, int V) {
        return sampling.topK() > 0 && sampling.topK() < V;
    }

    /** Ids the head of the sorted order is first taken with; 8 times more each time they fall short. */
    static final int HEAD = 64;

    /** The first ids of the sorted order (with the ties of the last) and their probabilities over the whole vocabulary. */
    private record Head(int[] ids, double[] p) {}

    /**
     * The head of the whole vocabulary's distribution, for a token that needs only its most
     * probable ids (top-p alone, or one draw without top-k or top-p): the softmax's total over
     * every id in one pass, then the first {@value #HEAD} ids of the sorted order by
     * {@link #topByDecreasingLogit}, then 8 times more, until {@code enough} holds for their
     * cumulative probability; null when that would take the whole vocabulary (the caller sorts it
     * all). A language model's distribution puts most of its mass on few ids, so this is one pass
     * of exp and a heap where sorting 128,256 ids took 7 ms. The probabilities are e^(z/T − max) /
     * total as the sorted path's are; its total is summed in sorted order, this one in id order, so
     * their last bits may differ.
     */
    private static Head head(float[] logits, double T, java.util.function.DoublePredicate enough) {
        int V = logits.length;
        double max = logits[argmax(logits)] / T, total = 0;
        for (float z : logits) total += Math.exp(z / T - max);
        for (int k = HEAD; k < V; k = (int) Math.min(8L * k, V)) {
            int[] ids = topByDecreasingLogit(logits, k);
            double[] p = new double[ids.length];
            double mass = 0;
            for (int i = 0; i < ids.length; i++) {
                p[i] = Math.exp(logits[ids[i]] / T - max) / total;
                mass += p[i];
            }
            if (enough.test(mass)) return new Head(ids, p);
        }
        return null;
    }

    /** Ids and their probabilities, most probable first. */
    public record Distribution(int[] ids, double[] probabilities) {}
}
