package dev.headroom.bench;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.TiledKernel;
import dev.headroom.attention.Workspace;
import dev.headroom.memory.TrackedArena;
import dev.headroom.sparse.AttentionPattern;
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
 * Long sequences on the {@link Problem} layer, 2 threads: exact attention with the tiled kernel
 * (keys in tiles of 1024, online softmax) against two sparse patterns that skip tiles, a sliding
 * window of width 512 and BigBird (window 192, 128 global tokens, 3 random blocks of 64).
 * {@code bin/headroom bench --long} sweeps the same configurations from 1,024 to 131,072 tokens
 * with memory and RSS; this is the JMH view of the middle of that range.
 */
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 1)
@Measurement(iterations = 3)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx2g"})
@State(Scope.Benchmark)
public class LongSequenceBenchmark {
    @Param({"8192", "16384"})
    public int n;

    @Param({"tiled", "window512", "bigbird"})
    public String config;

    /** Owns weights, input and output. */
    private TrackedArena arena;
    /** x, y: (1, n, E). */
    private Tensor x, y;
    private MultiHeadAttention attention;
    private Workspace workspace;
    private Mask mask;

    @Setup(Level.Trial)
    public void setUp() {
        arena = TrackedArena.ofShared();
        AttentionConfig layer = Problem.config();
        AttentionWeights weights = Problem.weights(layer, arena);
        x = Problem.input(arena, n, layer.dModel(), Problem.INPUT_SEED);
        y = Tensor.allocate(arena, x.shape());
        MultiHeadAttention.Options options = MultiHeadAttention.Options.defaults().withThreads(2);
        switch (config) {
            case "tiled" -> {
                options = options.withKernel(new TiledKernel(1024));
                mask = Mask.none();
            }
            case "window512" -> mask = Mask.pattern(AttentionPattern.slidingWindow(512));
            case "bigbird" -> mask = Mask.pattern(AttentionPattern.bigBird(192, 128, 3, 64, 1));
            default -> throw new IllegalArgumentException("config " + config);
        }
        attention = new MultiHeadAttention(weights, options);
        workspace = new Workspace();
        attention.prepare(x, null, mask, workspace);
    }

    @Benchmark
    public Tensor forward() {
        attention.forward(x, null, mask, y, workspace);
        return y;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        workspace.close();
        attention.close();
        arena.close();
    }
}
