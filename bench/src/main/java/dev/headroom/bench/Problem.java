package dev.headroom.bench;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.DenseKernel;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;

/**
 * The benchmarked problem, one definition for Headroom, the C reference and the correctness
 * guard: a BERT-base-sized layer (d_model 768, 12 heads of 64, with biases) with seeded random
 * weights, applied to one sequence of n seeded random tokens.
 */
public final class Problem {
    public static final int D_MODEL = 768;
    public static final int HEADS = 12;
    public static final long WEIGHT_SEED = 20250101L;
    public static final long INPUT_SEED = 7L;
    private Problem() {}

    /**
     * Query rows per attention task: Headroom's default, which the C reference is given too. A
     * method, not a constant, so that {@link BenchReport} can use this class in a JVM without the
     * Vector API module (Headroom's {@code Options} loads it).
     */
    public static int queryBlock() {
        return MultiHeadAttention.Options.defaults().queryBlock();
    }

    public static AttentionConfig config() {
        return AttentionConfig.of(D_MODEL, HEADS);
    }

    /**
     * Headroom's options for the benchmarks: {@code threads} workers, and the dense kernel named
     * explicitly, because that is the algorithm the C reference implements; Headroom's default
     * choice of kernel may differ with n.
     */
    public static MultiHeadAttention.Options headroomOptions(int threads) {
        return MultiHeadAttention.Options.defaults().withThreads(threads).withQueryBlock(queryBlock())
                .withKernel(DenseKernel.INSTANCE);
    }

    /** The layer's weights in {@code arena} (which must be shared for more than one thread). */
    public static AttentionWeights weights(AttentionConfig config, Arena arena) {
        return AttentionWeights.random(config, true, WEIGHT_SEED, arena);
    }

    /** x: (1, n, E), uniform in [−1, 1), in {@code arena}. */
    public static Tensor input(Arena arena, int n, int dModel, long seed) {
        return Tensor.uniform(arena, seed, 1, 1, n, dModel);
    }

    /**
     * Floating-point operations of one forward pass as counted throughout: 8·n·E² for the four
     * projections (2·n·E² each) and 4·n²·E for Q·Kᵀ and P·V (2·n²·E each), E = d_model.
     */
    public static double flops(int n, int dModel) {
        return 8.0 * n * dModel * dModel + 4.0 * n * (double) n * dModel;
    }
}
