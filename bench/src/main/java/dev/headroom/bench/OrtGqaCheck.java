package dev.headroom.bench;

import dev.headroom.attention.DecodeWorkload;

import ai.onnxruntime.OrtException;
import dev.headroom.cache.KvDtype;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Matrix;

import java.io.PrintStream;

/**
 * The check run before ONNX Runtime's decode is timed ({@link OrtGqaBenchmark}'s set-up and
 * {@link DecodeReport}): the comparison means something only if both engines compute the same
 * step. On small problems it runs one step of {@link DecodeWorkload} (float32 cache) and of
 * {@link OrtGqaDecode} on the same {@link DecodeWorkload.Data}, and throws {@link IllegalStateException}
 * naming the figures unless
 * <ol>
 *   <li>the outputs for the new tokens agree: max|a − b| / max|b| &lt; {@value #TOLERANCE} over all
 *       sequences and heads (b Headroom's);</li>
 *   <li>ONNX Runtime wrote each new key and value into slot {@code context} of the buffer given as
 *       both past and present, i.e. it shared the buffer instead of copying the past;</li>
 *   <li>the comparison itself fails when it should (one output element moved by 10 × the tolerance).</li>
 * </ol>
 * Problems: the benchmark's small shape (12 heads over 4 of 64) with 3 sequences of 37 cached
 * tokens (blocks of 16: two full, one partial); 8 heads over 2 of 16 with 2 sequences of 1,100
 * tokens (past the 1,024-token chunk that fills the cache, so the repeat is covered too); and the
 * small shape with 5 sequences split into parts of at most 2 (three GroupQueryAttention nodes, as
 * the largest benchmark cell needs).
 *
 * <p>Run on its own (the JVM needs Headroom's flags):
 * {@code java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp bench/target/benchmarks.jar dev.headroom.bench.OrtGqaCheck}
 */
public final class OrtGqaCheck {
    public static final double TOLERANCE = 1e-4;

    private static volatile boolean passed;

    private OrtGqaCheck() {}

    public static void main(String[] args) throws OrtException {
        verify(System.out);
    }

    /** Runs the checks once per JVM (later calls return at once); throws if any fails. */
    public static synchronized void verifyOnce(PrintStream log) throws OrtException {
        if (passed) return;
        verify(log);
    }

    /** Runs all the checks, one line each to {@code log}; throws if any fails. */
    public static synchronized void verify(PrintStream log) throws OrtException {
        compare(log, 12, 4, 64, 37, 3, 16, OrtGqaDecode.MAX_TENSOR_BYTES);
        compare(log, 8, 2, 16, 1100, 2, 16, OrtGqaDecode.MAX_TENSOR_BYTES);
        // the split into parts that the largest cell needs, forced here with parts of ≤ 2 sequences
        compare(log, 12, 4, 64, 37, 5, 16, 2L * 4 * 38 * 64 * Float.BYTES);
        log.println("ONNX Runtime GQA check: passed (tolerance " + TOLERANCE + ")");
        passed = true;
    }

    private static void compare(PrintStream log, int H, int G, int d, int context, int sequences, int blockSize, long maxTensorBytes)
            throws OrtException {
        String problem = "H " + H + ", G " + G + ", d " + d + ", " + sequences + " sequences × " + context + " cached tokens";
        int threads = 2;
        try (TrackedArena arena = TrackedArena.ofShared()) {
            DecodeWorkload.Data data = DecodeWorkload.Data.random(arena, H, G, d, context, sequences);
            float[] expected = new float[sequences * H * d], actual = new float[expected.length];
            try (DecodeWorkload headroom = new DecodeWorkload(data, KvDtype.F32, blockSize, threads)) {
                Matrix concat = headroom.step();
                for (int s = 0; s < sequences; s++) {
                    for (int f = 0; f < H * d; f++) expected[s * H * d + f] = concat.get(s, f);
                }
            }
            try (OrtGqaDecode ort = new OrtGqaDecode(data, threads, arena, maxTensorBytes)) {
                if (ort.parts() > 1) problem += " in " + ort.parts() + " parts";
                ort.step();
                for (int s = 0; s < sequences; s++) {
                    for (int f = 0; f < H * d; f++) actual[s * H * d + f] = ort.output(s, f);
                }
                if (!ort.newTokenWrittenInPlace()) {
                    throw new IllegalStateException("ONNX Runtime did not write the new keys and values into the shared cache buffer ("
                            + problem + "): past and present were not one buffer, so a step would copy the whole cache");
                }
            }
            double error = relativeError(actual, expected);
            log.printf("ONNX Runtime GQA check: %s: max|ORT − Headroom| / max|Headroom| = %.2e%n", problem, error);
            if (!(error < TOLERANCE)) {
                throw new IllegalStateException("ONNX Runtime's GroupQueryAttention and Headroom's decode disagree (" + problem
                        + "): relative error " + error + " ≥ " + TOLERANCE);
            }
            float[] moved = expected.clone();
            double largest = 0;
            for (float x : expected) largest = Math.max(largest, Math.abs(x));
            moved[moved.length / 2] += (float) (10 * TOLERANCE * largest);
            if (relativeError(actual, moved) < TOLERANCE) {
                throw new IllegalStateException("the comparison missed an output element moved by 10 × the tolerance (" + problem + ")");
            }
        }
    }

    /** max|a − b| / max|b| over all elements; NaN if either holds a NaN. */
    static double relativeError(float[] a, float[] b) {
        double diff = 0, scale = 0;
        for (int i = 0; i < a.length; i++) {
            double e = Math.abs((double) a[i] - b[i]);
            if (Double.isNaN(e)) return Double.NaN;
            diff = Math.max(diff, e);
            scale = Math.max(scale, Math.abs(b[i]));
        }
        return diff / scale;
    }
}
