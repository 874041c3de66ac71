package dev.headroom.bench;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.CallOptions;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Matrix;
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
 * One decode step of attention over a paged KV cache: {@code sequences} sequences of
 * {@code context} cached tokens each get one new token; the step appends it to the cache, writes
 * its key and value, and attends (Headroom's attend stage alone, {@link MultiHeadAttention#attend}:
 * the projections are not part of it, as they are not part of ONNX Runtime's
 * GroupQueryAttention). After each step the new tokens are truncated away, so every operation
 * sees the same context. Memory-bound: an operation reads every cached key and value once, which
 * {@link DecodeReport} turns into bytes per second against {@link ReadBandwidthBenchmark}.
 *
 * <p>Shapes: {@code llama} is 32 query heads over 8 key/value heads of 128 (Llama 3 8B's attention),
 * {@code small} 12 over 4 of 64.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx2g"})
@State(Scope.Benchmark)
public class DecodeBenchmark {
    @Param({"llama", "small"})
    public String shape;

    @Param({"1024", "4096", "16384"})
    public int context;

    @Param({"1", "16", "64"})
    public int sequences;

    @Param({"f32", "int8"})
    public String dtype;

    @Param({"2"})
    public int threads;

    @Param({"16"})
    public int blockSize;

    private TrackedArena arena;
    private KvCache cache;
    private MultiHeadAttention attention;
    private Workspace workspace;
    private int[] seqs, ones;
    /** The step's new tokens: Qᵀ (H·d, S), Kᵀ (G·d, S), V (S, G·d); the heads' outputs (S, H·d). */
    private Matrix qT, kT, v, concat;

    /** (heads, kv heads, head dim) of a shape name. */
    static int[] heads(String shape) {
        return switch (shape) {
            case "llama" -> new int[]{32, 8, 128};
            case "small" -> new int[]{12, 4, 64};
            default -> throw new IllegalArgumentException("shape must be llama or small, got " + shape);
        };
    }

    /** Bytes of keys and values one step reads: every cached token of every sequence, plus the new one. */
    static long bytesRead(String shape, int context, int sequences, String dtype, int blockSize) {
        int[] h = heads(shape);
        KvCache.Shape s = new KvCache.Shape(1, h[1], h[2], blockSize, KvDtype.parse(dtype));
        return (long) sequences * (context + 1) * (long) (s.headBytes() * h[1] / blockSize);
    }

    @Setup(Level.Trial)
    public void setUp() {
        int[] h = heads(shape);
        int H = h[0], G = h[1], d = h[2];
        AttentionConfig config = AttentionConfig.of(H * d, H, G, d);
        arena = TrackedArena.ofShared();
        attention = new MultiHeadAttention(AttentionWeights.random(config, false, 1, arena),
                MultiHeadAttention.Options.defaults().withThreads(threads));
        KvCache.Shape cacheShape = new KvCache.Shape(1, G, d, blockSize, KvDtype.parse(dtype));
        cache = new KvCache(cacheShape, KvCache.bytesFor(cacheShape, sequences, context + blockSize));
        workspace = new Workspace();
        // fill every sequence with random keys and values, 1024 tokens at a time
        int chunk = Math.min(1024, context);
        Matrix k = Tensor.uniform(arena, 7, 1, G * d, chunk).matrix(), vals = Tensor.uniform(arena, 8, 1, chunk, G * d).matrix();
        seqs = new int[sequences];
        ones = new int[sequences];
        for (int s = 0; s < sequences; s++) {
            seqs[s] = cache.create();
            ones[s] = 1;
            for (int at = 0; at < context; at += chunk) {
                int n = Math.min(chunk, context - at);
                cache.append(seqs[s], n, null);
                cache.write(seqs[s], 0, at, n, k, 0, vals, 0);
            }
        }
        qT = Tensor.uniform(arena, 9, 1, H * d, sequences).matrix();
        kT = Tensor.uniform(arena, 10, 1, G * d, sequences).matrix();
        v = Tensor.uniform(arena, 11, 1, sequences, G * d).matrix();
        concat = Tensor.allocate(arena, sequences, H * d).matrix();
    }

    @Benchmark
    public Matrix step() {
        KvCache.Step st = cache.step(seqs, ones, null);
        attention.attend(cache, st, 0, qT, kT, v, concat, Mask.causal(), workspace, CallOptions.NONE);
        for (int s : seqs) cache.truncate(s, context);
        return concat;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        workspace.close();
        attention.close();
        cache.close();
        arena.close();
    }
}
