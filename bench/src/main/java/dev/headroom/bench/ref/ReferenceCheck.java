package dev.headroom.bench.ref;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.ReferenceAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.bench.Problem;
import dev.headroom.bench.ref.generated.attention_ref_h;
import dev.headroom.blas.OpenBlas;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;

import java.io.PrintStream;
import java.util.Arrays;

/**
 * The correctness guard run before any timing: a comparison of two programs is only worth
 * something if both compute the same thing. It checks, and throws {@link IllegalStateException}
 * naming the figures when anything fails:
 * <ol>
 *   <li>the C reference against {@link ReferenceAttention} (Headroom's double-precision reference path, which shares no code with its kernels) on a small
 *       grouped-query layer, with and without biases, with several query blocks and a partial
 *       last one, on two threads;</li>
 *   <li>the C reference against Headroom on the benchmarked layer ({@link Problem}) at n = 300
 *       (a full block of 256 rows and a partial one), two threads;</li>
 *   <li>that the comparison itself fails when it should: one element of Headroom's output
 *       moved by 10 × the tolerance must be reported;</li>
 *   <li>that the C code refuses a workspace one float too small, leaving y untouched.</li>
 * </ol>
 * The measure is max|a − b| / max|b| over all elements (b the reference), which stays
 * meaningful for outputs near zero; NaN anywhere fails it.
 *
 * <p>Run on its own (the JVM needs Headroom's flags):
 * {@code java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp bench/target/benchmarks.jar dev.headroom.bench.ref.ReferenceCheck}
 */
public final class ReferenceCheck {
    /** Tolerance of every comparison, relative to the largest output. */
    public static final double TOLERANCE = 1e-4;
    /** The sequence length of the C-against-Headroom comparison. */
    static final int CHECK_TOKENS = 300;

    private static volatile boolean passed;

    private ReferenceCheck() {}

    public static void main(String[] args) {
        verify(System.out);
    }

    /** Runs the checks once per JVM (later calls return at once); throws if any fails. */
    public static synchronized void verifyOnce(PrintStream log) {
        if (passed) return;
        verify(log);
    }

    /** Runs all the checks, printing one line each to {@code log}; throws if any fails. */
    public static synchronized void verify(PrintStream log) {
        log.println("reference check: OpenBLAS " + OpenBlas.config() + ", core " + OpenBlas.coreName()
                + ", C reference " + CReference.load());
        checkAgainstReference(log, true);
        checkAgainstReference(log, false);
        checkAgainstHeadroom(log);
        log.println("reference check: passed (tolerance " + TOLERANCE + ")");
        passed = true;
    }

    /** C reference vs double-precision attention: E = 48, H = 4, G = 2, d = 12, n = 37, blocks of 16. */
    private static void checkAgainstReference(PrintStream log, boolean bias) {
        AttentionConfig config = AttentionConfig.of(48, 4, 2, 12);
        int n = 37, threads = 2, block = 16;
        try (TrackedArena arena = TrackedArena.ofShared()) {
            AttentionWeights weights = AttentionWeights.random(config, bias, 11, arena);
            Tensor x = Problem.input(arena, n, config.dModel(), 12);
            Tensor y = Tensor.allocate(arena, x.shape());
            try (CReference c = new CReference(weights, threads, block)) {
                c.forward(x, y);
            }
            double[] expected = ReferenceAttention.flatten(ReferenceAttention.forward(weights, x, null, Mask.none()));
            double diff = relativeDifference(y.toArray(), expected);
            String what = "C reference vs ReferenceAttention (double), E=48 H=4 G=2 d=12 n=" + n + " block=" + block
                    + " bias=" + bias + " threads=" + threads;
            report(log, what, diff);
        }
    }

    /** C reference vs Headroom on the benchmarked layer, then the two checks of the checking itself. */
    private static void checkAgainstHeadroom(PrintStream log) {
        AttentionConfig config = Problem.config();
        int n = CHECK_TOKENS, threads = 2;
        try (TrackedArena arena = TrackedArena.ofShared()) {
            AttentionWeights weights = Problem.weights(config, arena);
            Tensor x = Problem.input(arena, n, config.dModel(), Problem.INPUT_SEED);
            Tensor yJava = Tensor.allocate(arena, x.shape()), yC = Tensor.allocate(arena, x.shape());
            try (MultiHeadAttention mha = new MultiHeadAttention(weights, Problem.headroomOptions(threads));
                 Workspace ws = new Workspace()) {
                mha.forward(x, null, Mask.none(), yJava, ws);
            }
            try (CReference c = new CReference(weights, threads, Problem.queryBlock())) {
                c.forward(x, yC);

                float[] java = yJava.toArray(), ref = yC.toArray();
                double diff = relativeDifference(java, toDouble(ref));
                report(log, "Headroom vs C reference, E=" + config.dModel() + " H=" + config.heads() + " n=" + n
                        + " block=" + Problem.queryBlock() + " threads=" + threads, diff);

                // The comparison must be able to fail: move one element by 10 × the tolerance.
                double scale = maxAbs(toDouble(ref));
                float[] moved = java.clone();
                moved[moved.length / 3] += (float) (10 * TOLERANCE * scale);
                double movedDiff = relativeDifference(moved, toDouble(ref));
                if (!(movedDiff > TOLERANCE)) {
                    throw new IllegalStateException("the comparison is broken: an output moved by 10 × the tolerance gave "
                            + movedDiff + ", not more than " + TOLERANCE);
                }
                log.printf("  ok    a perturbed output is caught: %.3g > %.0e%n", movedDiff, TOLERANCE);

                // The C code's own argument check: one float of workspace short must be refused.
                Tensor sentinel = Tensor.allocate(arena, x.shape());
                sentinel.segment().fill((byte) 0x7f);
                float[] before = sentinel.toArray();
                int rc = c.forwardWithWorkspaceShortBy(x, sentinel, 1);
                boolean untouched = Arrays.equals(before, sentinel.toArray());
                if (rc != attention_ref_h.HEADROOM_REF_WORKSPACE_TOO_SMALL() || !untouched) {
                    throw new IllegalStateException("headroom_ref_forward with a workspace one float short returned " + rc
                            + " (" + CReference.describe(rc) + ")" + (untouched ? "" : " and wrote y"));
                }
                log.println("  ok    the C reference refuses a workspace one float short (" + CReference.describe(rc) + ")");
            }
        }
    }

    private static void report(PrintStream log, String what, double diff) {
        if (!(diff < TOLERANCE)) {
            throw new IllegalStateException("reference check FAILED: " + what + ": max relative difference " + diff
                    + " is not below " + TOLERANCE + "; the benchmarks would compare different computations");
        }
        log.printf("  ok    %s: max relative difference %.3g%n", what, diff);
    }

    /**
     * max_i |actual_i − expected_i| / max_i |expected_i|; NaN if any element is NaN or the
     * expected output is all zeros (which would make any comparison vacuous).
     */
    static double relativeDifference(float[] actual, double[] expected) {
        if (actual.length != expected.length) {
            throw new IllegalArgumentException("outputs of " + actual.length + " and " + expected.length + " elements");
        }
        double worst = 0;
        for (int i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));  // NaN propagates
        double scale = maxAbs(expected);
        return scale > 0 ? worst / scale : Double.NaN;
    }

    private static double maxAbs(double[] values) {
        double m = 0;
        for (double v : values) m = Math.max(m, Math.abs(v));
        return m;
    }

    private static double[] toDouble(float[] values) {
        double[] d = new double[values.length];
        for (int i = 0; i < values.length; i++) d[i] = values[i];
        return d;
    }
}
