package dev.headroom.generate;

/**
 * How the next token is chosen from a row of logits z (one per vocabulary id), in the order of
 * Hugging Face's {@code generate} (temperature, then top-k, then top-p):
 * <ol>
 *   <li>greedy: the id of the largest logit (the lowest id on ties, as {@code torch.argmax});
 *       temperature 0 means greedy;</li>
 *   <li>z / temperature;</li>
 *   <li>top-k (k &gt; 0): keep the ids whose logit is at least the k-th largest (ties at the
 *       boundary are all kept, as transformers' {@code TopKLogitsWarper});</li>
 *   <li>p = softmax of what is kept; top-p (p &lt; 1): keep the most probable ids, in order of
 *       decreasing probability (lower id first on ties), until their mass reaches p — the
 *       smallest such set, and never fewer than one id (transformers' {@code TopPLogitsWarper});</li>
 *   <li>renormalise and draw one id with the sequence's own {@link java.util.SplittableRandom},
 *       seeded with {@code seed}: the same seed and logits give the same tokens.</li>
 * </ol>
 *
 * @param temperature &gt; 0 to sample, 0 for greedy
 * @param topK        ids kept by top-k, 0 for all
 * @param topP        probability mass kept by top-p, in (0, 1]; 1 keeps all
 * @param seed        the seed of the sequence's random numbers
 */
public record Sampling(double temperature, int topK, double topP, long seed) {
    public Sampling {
        if (!(temperature >= 0) || !Double.isFinite(temperature)) {
            throw new IllegalArgumentException("temperature must be finite and >= 0 (0 = greedy), got " + temperature);
        }
        if (topK < 0) throw new IllegalArgumentException("top-k must be >= 0 (0 = off), got " + topK);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top-p must be in (0, 1] (1 = off), got " + topP);
    }

    /** Argmax decoding. */
    public static Sampling greedy() {
        return new Sampling(0, 0, 1, 0);
    }

    /** Sampling at {@code temperature} from the whole distribution, seeded. */
    public static Sampling sample(double temperature, long seed) {
        return new Sampling(temperature, 0, 1, seed);
    }

    public boolean isGreedy() {
        return temperature == 0;
    }

    public Sampling withTopK(int k) {
        return new Sampling(temperature, k, topP, seed);
    }

    public Sampling withTopP(double p) {
        return new Sampling(temperature, topK, p, seed);
    }

    public Sampling withSeed(long s) {
        return new Sampling(temperature, topK, topP, s);
    }

    @Override
    public String toString() {
        if (isGreedy()) return "greedy";
        return "temperature " + temperature + (topK > 0 ? ", top-k " + topK : "") + (topP < 1 ? ", top-p " + topP : "") + ", seed " + seed;
    }
}
