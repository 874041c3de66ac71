package dev.headroom.bench;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.inspect.AttentionCapture;
import dev.headroom.inspect.HeadStatistics;
import dev.headroom.inspect.Inspection;
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
 * What head inspection costs, on the {@link Problem} layer at n tokens, 2 threads:
 * <ul>
 *   <li>{@code off}: a plain forward (inspection {@code null}): must equal {@link ForwardBenchmark};</li>
 *   <li>{@code statistics}: per-head statistics streamed by the kernels;</li>
 *   <li>{@code capture}: probabilities of every head for 64 query rows;</li>
 *   <li>{@code pruned6}: the layer with half its heads pruned (6 of 12 left), a plain forward.</li>
 * </ul>
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@State(Scope.Benchmark)
public class InspectionBenchmark {
    @Param({"1024"})
    public int n;

    @Param({"off", "statistics", "capture", "pruned6"})
    public String mode;

    /** Owns weights, input, output and capture storage. */
    private TrackedArena arena;
    /** x, y: (1, n, E). */
    private Tensor x, y;
    private MultiHeadAttention attention;
    private Workspace workspace;
    private Inspection inspection;

    @Setup(Level.Trial)
    public void setUp() {
        arena = TrackedArena.ofShared();
        AttentionConfig config = Problem.config();
        AttentionWeights weights = Problem.weights(config, arena);
        x = Problem.input(arena, n, config.dModel(), Problem.INPUT_SEED);
        y = Tensor.allocate(arena, x.shape());
        MultiHeadAttention full = new MultiHeadAttention(weights, Problem.headroomOptions(2));
        int H = config.heads();
        int[] all = java.util.stream.IntStream.range(0, H).toArray();
        switch (mode) {
            case "off" -> attention = full;
            case "statistics" -> {
                attention = full;
                inspection = Inspection.statistics(new HeadStatistics(H, HeadStatistics.Options.defaults()));
            }
            case "capture" -> {
                attention = full;
                int[] rows = java.util.stream.IntStream.range(0, 64).map(k -> k * (n - 1) / 63).toArray();
                inspection = Inspection.capture(AttentionCapture.rows(arena, 1, H, all, n, n, rows));
            }
            case "pruned6" -> {
                attention = full.prune(arena, 1, 3, 5, 7, 9, 11);
                full.close();
            }
            default -> throw new IllegalArgumentException("mode " + mode);
        }
        workspace = new Workspace();
    }

    @Benchmark
    public Tensor forward() {
        attention.forward(x, null, Mask.none(), y, workspace, inspection);
        return y;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        workspace.close();
        attention.close();
        arena.close();
    }
}
