package dev.headroom.bench;

import dev.headroom.attention.DecodeWorkload;

import ai.onnxruntime.OrtException;
import dev.headroom.memory.TrackedArena;
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
 * {@link DecodeBenchmark}'s decode step on ONNX Runtime for Java: the {@code com.microsoft}
 * GroupQueryAttention contrib operator with past key/value ({@link OrtGqaDecode}), CPU, float32,
 * on the same shapes and the same seeded numbers ({@link DecodeWorkload.Data}), {@code threads} intra-op
 * threads and one inter-op thread. The parameters have DecodeBenchmark's names and values where
 * they apply; {@code dtype} and {@code blockSize} do not (ONNX Runtime 1.23's operator has no int8
 * cache and keeps each sequence's cache contiguous), so {@code -p dtype=...} leaves this benchmark
 * alone.
 *
 * <p>Each trial's set-up first runs {@link OrtGqaCheck} (ONNX Runtime and Headroom agree on small
 * problems, and ONNX Runtime shares the past and present buffers), then builds its cell and
 * checks after one step that the new token was written in place.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx2g"})
@State(Scope.Benchmark)
public class OrtGqaBenchmark {
    @Param({"llama", "small"})
    public String shape;

    @Param({"1024", "4096", "16384"})
    public int context;

    @Param({"1", "16", "64"})
    public int sequences;

    @Param({"2"})
    public int threads;

    private TrackedArena arena;
    private OrtGqaDecode decode;

    @Setup(Level.Trial)
    public void setUp() throws OrtException {
        OrtGqaCheck.verifyOnce(System.out);
        arena = TrackedArena.ofShared();
        decode = new OrtGqaDecode(DecodeWorkload.Data.random(arena, shape, context, sequences), threads, arena);
        decode.step();
        if (!decode.newTokenWrittenInPlace()) {
            throw new IllegalStateException("ONNX Runtime did not write the new tokens into the shared cache buffers of " + shape
                    + ", " + sequences + " × " + context);
        }
        if (decode.parts() > 1) {
            System.out.println("ONNX Runtime: the cache is split into " + decode.parts() + " GroupQueryAttention nodes of at most "
                    + OrtGqaDecode.MAX_TENSOR_BYTES + " bytes per tensor (ONNX Runtime for Java's buffer limit)");
        }
    }

    @Benchmark
    public OrtGqaDecode step() throws OrtException {
        decode.step();
        return decode;
    }

    @TearDown(Level.Trial)
    public void tearDown() throws OrtException {
        decode.close();
        arena.close();
    }
}
