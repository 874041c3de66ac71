package dev.headroom.generate;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Sampling against a plain reference written here the obvious way (every id, a loop per rule)
 * on a fixed distribution, and the sampled frequencies against the distribution.
 */
class SamplerTest {
    /** Logits of 12 ids with a tie at the top-k boundary (ids 3 and 7) and one masked id. */
    static final float[] LOGITS = {1.0f, 2.5f, -1.0f, 1.5f, 3.0f, 0.0f, Float.NEGATIVE_INFINITY, 1.5f, 2.0f, -3.0f, 0.5f, 2.5f};

    /** The reference: p ∝ exp(z/T) over the ids top-k keeps, then top-p over those, renormalised; as a full-vocabulary array. */
    static double[] reference(float[] z, double T, int k, double topP) {
        int V = z.length;
        boolean[] keep = new boolean[V];
        Arrays.fill(keep, true);
        if (k > 0) {
            float[] sorted = z.clone();
            Arrays.sort(sorted);
            float kth = sorted[V - k];
            for (int i = 0; i < V; i++) keep[i] = z[i] >= kth;
        }
        double[] p = new double[V];
        double sum = 0;
        for (int i = 0; i < V; i++) if (keep[i]) sum += p[i] = Math.exp(z[i] / T);
        for (int i = 0; i < V; i++) p[i] /= sum;
        if (topP < 1) {
            // take ids in decreasing probability (lower id first) until the mass reaches topP
            List<Integer> order = new ArrayList<>();
            for (int i = 0; i < V; i++) order.add(i);
            order.sort((a, b) -> p[a] != p[b] ? Double.compare(p[b], p[a]) : Integer.compare(a, b));
            double mass = 0;
            boolean[] inP = new boolean[V];
            for (int i : order) {
                if (mass >= topP) break;
                inP[i] = true;
                mass += p[i];
            }
            double s2 = 0;
            for (int i = 0; i < V; i++) if (inP[i]) s2 += p[i];
            for (int i = 0; i < V; i++) p[i] = inP[i] ? p[i] / s2 : 0;
        }
        return p;
    }

    static double[] full(Sampler.Distribution d, int V) {
        double[] p = new double[V];
        for (int k = 0; k < d.ids().length; k++) p[d.ids()[k]] = d.probabilities()[k];
        return p;
    }

    @Test
    void distributionsMatchThePlainReference() {
        for (double T : new double[]{0.5, 1.0, 2.0}) {
            for (int k : new int[]{0, 1, 3, 4, 12}) {
                for (double p : new double[]{1.0, 0.9, 0.5, 0.01}) {
                    Sampling s = new Sampling(T, k, p, 0);
                    double[] mine = full(Sampler.distribution(s, LOGITS), LOGITS.length), ref = reference(LOGITS, T, k, p);
                    for (int i = 0; i < LOGITS.length; i++) {
                        assertEquals(ref[i], mine[i], 1e-12, s + ": id " + i);
                    }
                }
            }
        }
        // top-k 2 keeps both ids tied for second place (1 and 11 at 2.5); top-k 5 both tied for fifth (3 and 7 at 1.5)
        assertArrayEquals(new int[]{4, 1, 11}, Sampler.distribution(new Sampling(1, 2, 1, 0), LOGITS).ids());
        assertArrayEquals(new int[]{4, 1, 11, 8, 3, 7}, Sampler.distribution(new Sampling(1, 5, 1, 0), LOGITS).ids());
    }

    @Test
    void idsAreOrderedAsAStableSortByDecreasingLogit() {
        java.util.SplittableRandom random = new java.util.SplittableRandom(12);
        for (int trial = 0; trial < 50; trial++) {
            int V = 1 + random.nextInt(600);
            float[] z = new float[V];
            // few distinct values, so ties are everywhere; signed zeros, infinities and extremes among them
            float[] values = {0f, -0f, 1.5f, -1.5f, Float.NEGATIVE_INFINITY, Float.MAX_VALUE, -Float.MAX_VALUE, Float.MIN_VALUE,
                    -Float.MIN_VALUE, 3e-39f, 7f};
            for (int i = 0; i < V; i++) z[i] = random.nextInt(3) == 0 ? (float) random.nextGaussian() : values[random.nextInt(values.length)];
            Integer[] expected = new Integer[V];
            for (int i = 0; i < V; i++) expected[i] = i;
            Arrays.sort(expected, (a, b) -> Float.compare(z[b], z[a])); // stable: lower id first on ties
            int[] order = Sampler.byDecreasingLogit(z);
            for (int k = 0; k < V; k++) assertEquals(expected[k], order[k], "V " + V + ", position " + k);
        }
    }

    /** Top-k by a heap equals the sorted order's first k ids and the ties that follow them, ±0 and infinities among them. */
    @Test
    void topKWithoutASortEqualsTheSortedPrefixAndItsTies() {
        java.util.SplittableRandom random = new java.util.SplittableRandom(13);
        float[] values = {0f, -0f, 1.5f, -1.5f, Float.NEGATIVE_INFINITY, Float.POSITIVE_INFINITY, Float.MAX_VALUE, -Float.MAX_VALUE,
                Float.MIN_VALUE, -Float.MIN_VALUE, 7f};
        for (int trial = 0; trial < 300; trial++) {
            int V = 2 + random.nextInt(trial < 250 ? 300 : 60_000);
            float[] z = new float[V];
            int spread = random.nextInt(3); // 0: few values, ties everywhere; 2: all Gaussian
            for (int i = 0; i < V; i++) {
                z[i] = random.nextInt(3) < spread ? (float) random.nextGaussian() : values[random.nextInt(values.length)];
            }
            int k = 1 + random.nextInt(Math.min(V - 1, trial % 2 == 0 ? 50 : V - 1));
            int[] sorted = Sampler.byDecreasingLogit(z);
            int kept = k;
            while (kept < V && z[sorted[kept]] == z[sorted[k - 1]]) kept++;
            assertArrayEquals(Arrays.copyOf(sorted, kept), Sampler.topByDecreasingLogit(z, k), "V " + V + ", k " + k);
        }
    }

    /** Logits like a model's (peaked or flat), with ties and masked ids among them. */
    static float[] modelLikeLogits(java.util.SplittableRandom random, int V, double spread) {
        float[] z = new float[V];
        for (int i = 0; i < V; i++) z[i] = (float) (spread * random.nextGaussian());
        for (int i = 0; i < V / 50; i++) z[random.nextInt(V)] = z[random.nextInt(V)];            // ties
        for (int i = 0; i < V / 100; i++) z[random.nextInt(V)] = Float.NEGATIVE_INFINITY;        // masked
        return z;
    }

    /** Top-p without top-k from the head of the sorted order equals the sorted path: the same ids, the probabilities to 1e-12. */
    @Test
    void topPFromTheHeadEqualsTheSortedPath() {
        java.util.SplittableRandom random = new java.util.SplittableRandom(14);
        int heads = 0;
        for (int V : new int[]{Sampler.HEAD + 1, 300, 5_000, 60_000}) {
            for (double spread : new double[]{0.05, 1, 6}) {
                float[] z = modelLikeLogits(random, V, spread);
                for (double T : new double[]{0.7, 1.3}) {
                    for (double topP : new double[]{0.3, 0.9, 0.99}) {
                        Sampling s = new Sampling(T, 0, topP, 0);
                        Sampler.Distribution mine = Sampler.distribution(s, z), ref = Sampler.sortedDistribution(s, z);
                        String what = "V " + V + ", spread " + spread + ", " + s;
                        assertArrayEquals(ref.ids(), mine.ids(), what);
                        for (int k = 0; k < ref.ids().length; k++) assertEquals(ref.probabilities()[k], mine.probabilities()[k], 1e-12, what);
                        if (mine.ids().length < V / 2) heads++;
                    }
                }
            }
        }
        assertTrue(heads > 20, "most cases end within the head: " + heads);
    }

    /** A draw without top-k or top-p walks only the head it reaches: the same tokens as walking the whole sorted distribution. */
    @Test
    void aDrawFromTheHeadEqualsTheSortedWalk() {
        java.util.SplittableRandom random = new java.util.SplittableRandom(15);
        for (int V : new int[]{Sampler.HEAD + 1, 300, 20_000}) {
            for (double spread : new double[]{0.05, 2, 6}) {
                float[] z = modelLikeLogits(random, V, spread);
                Sampling s = new Sampling(0.9, 0, 1, 77);
                Sampler sampler = new Sampler(s);
                java.util.SplittableRandom draws = new java.util.SplittableRandom(77); // the sampler's own stream
                Sampler.Distribution whole = Sampler.sortedDistribution(s, z);
                for (int t = 0; t < 200; t++) {
                    double u = draws.nextDouble(), cumulative = 0;
                    int expected = whole.ids()[whole.ids().length - 1];
                    for (int k = 0; k < whole.ids().length; k++) {
                        cumulative += whole.probabilities()[k];
                        if (u < cumulative) {
                            expected = whole.ids()[k];
                            break;
                        }
                    }
                    assertEquals(expected, sampler.next(z), "V " + V + ", spread " + spread + ", draw " + t);
                }
            }
        }
    }

    @Test
    void greedyIsTheArgmaxWithTheLowestIdOnTies() {
        assertEquals(4, new Sampler(Sampling.greedy()).next(LOGITS));
        assertEquals(1, Sampler.argmax(new float[]{0f, 3f, 3f, Float.NaN}));
        assertEquals(1, Sampler.argmax(new float[]{Float.NaN, 3f}));
    }

    @Test
    void sampledFrequenciesFollowTheDistribution() {
        Sampling s = new Sampling(0.8, 5, 0.95, 42);
        double[] p = full(Sampler.distribution(s, LOGITS), LOGITS.length);
        Sampler sampler = new Sampler(s);
        int N = 200_000;
        int[] counts = new int[LOGITS.length];
        for (int i = 0; i < N; i++) counts[sampler.next(LOGITS)]++;
        for (int i = 0; i < LOGITS.length; i++) {
            double sigma = Math.sqrt(N * p[i] * (1 - p[i]));
            assertTrue(Math.abs(counts[i] - N * p[i]) <= 5 * sigma + 1e-9, "id " + i + ": " + counts[i] + " draws, expected " + N * p[i]);
            if (p[i] == 0) assertEquals(0, counts[i], "id " + i + " is outside top-k/top-p");
        }
    }

    @Test
    void theSameSeedGivesTheSameTokens() {
        Sampling s = Sampling.sample(1.0, 7);
        int[] a = draw(new Sampler(s), 50), b = draw(new Sampler(s), 50), c = draw(new Sampler(s.withSeed(8)), 50);
        assertArrayEquals(a, b);
        assertNotEquals(Arrays.toString(a), Arrays.toString(c));
    }

    private static int[] draw(Sampler s, int n) {
        int[] t = new int[n];
        for (int i = 0; i < n; i++) t[i] = s.next(LOGITS);
        return t;
    }

    @Test
    void settingsAreChecked() {
        assertEquals("temperature must be finite and >= 0 (0 = greedy), got -1.0",
                assertThrows(IllegalArgumentException.class, () -> new Sampling(-1, 0, 1, 0)).getMessage());
        assertEquals("top-k must be >= 0 (0 = off), got -2", assertThrows(IllegalArgumentException.class, () -> new Sampling(1, -2, 1, 0)).getMessage());
        assertEquals("top-p must be in (0, 1] (1 = off), got 0.0", assertThrows(IllegalArgumentException.class, () -> new Sampling(1, 0, 0, 0)).getMessage());
        assertEquals("cannot sample from logits holding NaN (id 1)",
                assertThrows(IllegalArgumentException.class, () -> new Sampler(Sampling.sample(1, 0)).next(new float[]{0f, Float.NaN})).getMessage());
    }
}
