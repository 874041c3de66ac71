package dev.headroom.bench;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.bench.ref.CReference;
import dev.headroom.bench.ref.ReferenceCheck;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.concurrent.TimeUnit;

/**
 * The same forward pass as {@link ForwardBenchmark}, same weights and input, computed by the C
 * reference ({@code native/attention_ref.c}: the same algorithm on the same OpenBLAS, with
 * OpenMP threads) through its jextract bindings. The ratio of the two is the cost of doing it
 * in Java. Each trial first runs {@link ReferenceCheck}, so a C reference that disagrees with
 * Headroom is never timed.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@State(Scope.Benchmark)
public class CReferenceBenchmark {
    @Param({"512", "1024", "2048", "4096"})
    public int n;

    @Param({"1", "2"})
    public int threads;

    /** Owns weights, input and output. */
    private TrackedArena arena;
    /** x: (1, n, E). */
    private Tensor x;
    /** y: (1, n, E), overwritten by every call. */
    private Tensor y;
    /** Owns the C workspace, sized on the first call (in setUp). */
    private CReference reference;

    @Setup(Level.Trial)
    public void setUp() {
        ReferenceCheck.verifyOnce(System.out);
        arena = TrackedArena.ofShared();
        AttentionConfig config = Problem.config();
        AttentionWeights weights = Problem.weights(config, arena);
        x = Problem.input(arena, n, config.dModel(), Problem.INPUT_SEED);
        y = Tensor.allocate(arena, x.shape());
        reference = new CReference(weights, threads, Problem.queryBlock());
        reference.forward(x, y);   // sizes the workspace outside the timed calls, as Headroom's is by warm-up
    }

    @Benchmark
    public Tensor forward() {
        reference.forward(x, y);
        return y;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        reference.close();
        arena.close();
    }
}
