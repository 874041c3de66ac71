package dev.headroom.bench;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
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
 * One Headroom self-attention forward pass of the {@link Problem} layer (d_model 768, 12 heads,
 * biases) over one sequence of n tokens, on {@code threads} Headroom worker threads (each sgemm
 * on one OpenBLAS thread). Weights, input, output and workspace are allocated once per trial,
 * so an operation is the steady-state call: no allocation, no mask.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@State(Scope.Benchmark)
public class ForwardBenchmark {
    @Param({"512", "1024", "2048", "4096"})
    public int n;

    @Param({"1", "2"})
    public int threads;

    /** Owns weights, input and output; shared because the worker threads read them. */
    private TrackedArena arena;
    /** x: (1, n, E). */
    private Tensor x;
    /** y: (1, n, E), overwritten by every call. */
    private Tensor y;
    private MultiHeadAttention attention;
    private Workspace workspace;

    @Setup(Level.Trial)
    public void setUp() {
        arena = TrackedArena.ofShared();
        AttentionConfig config = Problem.config();
        AttentionWeights weights = Problem.weights(config, arena);
        x = Problem.input(arena, n, config.dModel(), Problem.INPUT_SEED);
        y = Tensor.allocate(arena, x.shape());
        attention = new MultiHeadAttention(weights, Problem.headroomOptions(threads));
        workspace = new Workspace();
    }

    @Benchmark
    public Tensor forward() {
        attention.forward(x, null, Mask.none(), y, workspace);
        return y;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        workspace.close();
        attention.close();
        arena.close();
    }
}
