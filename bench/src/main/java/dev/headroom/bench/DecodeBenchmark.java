package dev.headroom.bench;

import dev.headroom.attention.DecodeWorkload;

import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Matrix;
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
 * {@code small} 12 over 4 of 64. The step is {@link DecodeWorkload} on {@link DecodeWorkload.Data}, the
 * same seeded numbers that {@link OrtGqaBenchmark} gives ONNX Runtime.
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
    private DecodeWorkload decode;

    /** Bytes of keys and values one step reads: every cached token of every sequence, plus the new one. */
    static long bytesRead(String shape, int context, int sequences, String dtype, int blockSize) {
        int[] h = DecodeWorkload.shape(shape);
        KvCache.Shape s = new KvCache.Shape(1, h[1], h[2], blockSize, KvDtype.parse(dtype));
        return DecodeWorkload.bytesRead(s, context, sequences);
    }

    @Setup(Level.Trial)
    public void setUp() {
        arena = TrackedArena.ofShared();
        decode = new DecodeWorkload(DecodeWorkload.Data.random(arena, shape, context, sequences), KvDtype.parse(dtype), blockSize,
                threads);
    }

    @Benchmark
    public Matrix step() {
        return decode.step();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        decode.close();
        arena.close();
    }
}
