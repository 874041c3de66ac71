package dev.headroom.bench;

import dev.headroom.blas.Blas;
import dev.headroom.blas.OpenBlas;
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
 * The physical limit: one square sgemm, C = A·B with 2048 × 2048 row-major matrices, through
 * Headroom's {@link Blas} facade, with OpenBLAS's own threading set to {@code threads}. Its
 * rate (2·2048³ FLOPs per operation) is what every attention figure is set against: a forward
 * pass cannot beat its FLOPs at this rate.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@State(Scope.Benchmark)
public class SgemmBenchmark {
    public static final int SIZE = 2048;
    /** FLOPs of one operation: SIZE³ multiply-adds. */
    public static final double FLOPS = 2.0 * SIZE * SIZE * (double) SIZE;

    @Param({"1", "2"})
    public int threads;

    private TrackedArena arena;
    /** A, B: (SIZE, SIZE) operands; C: (SIZE, SIZE) result. */
    private Matrix a, b, c;

    @Setup(Level.Trial)
    public void setUp() {
        OpenBlas.setThreads(threads);
        if (OpenBlas.threads() != threads) {
            throw new IllegalStateException("OpenBLAS runs " + OpenBlas.threads() + " threads, not the " + threads
                    + " asked (is OPENBLAS_NUM_THREADS set, or does it see fewer processors?)");
        }
        arena = TrackedArena.ofShared();
        a = random(SIZE, 1);
        b = random(SIZE, 2);
        c = Tensor.allocate(arena, SIZE, SIZE).matrix();
    }

    private Matrix random(int size, long seed) {
        return Tensor.uniform(arena, seed, 1, size, size).matrix();
    }

    @Benchmark
    public Matrix sgemm() {
        Blas.sgemm(1f, a, false, b, false, 0f, c);
        return c;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }
}
