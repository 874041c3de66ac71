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
 * Why attention stays above its sgemm bound: the rate OpenBLAS reaches, on one thread, for the
 * products a head needs at n = 4096 and head width 64, with Headroom's layout (Qᵀ, Kᵀ, Vᵀ rows
 * of a (3·768, 4096) projection buffer, 256-query blocks), against a square 2048³ product:
 * <ul>
 *   <li>{@code scores}: S (256 × 4096) = Q_blk · Kᵀ, inner dimension 64;</li>
 *   <li>{@code weighted}: O (256 × 64) = P (256 × 4096) · V, inner dimension 4096, 64 columns;</li>
 *   <li>{@code square}: 2048 × 2048 × 2048.</li>
 *   <li>{@code weighted32}: MiniLM's weighted sum, O (256 × 32) = P (256 × 512) · V, one call;</li>
 *   <li>{@code weighted32-blocks}: the same product by {@link Blas#sgemmInSmallBlocks} (blocks of
 *       32 rows here), as the attention kernels run it.</li>
 * </ul>
 * GFLOP/s = 2·m·n·k ÷ the time per operation.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@State(Scope.Benchmark)
public class HeadShapeSgemmBenchmark {
    @Param({"scores", "weighted", "square", "weighted32", "weighted32-blocks"})
    public String shape;

    private TrackedArena arena;
    /** The operands of the chosen product (views into the buffers below). */
    private Matrix a, b, c;
    private boolean transA, transB;
    /** Whether the product runs in the row blocks of {@link Blas#sgemmInSmallBlocks}. */
    private boolean smallBlocks;

    @Setup(Level.Trial)
    public void setUp() {
        OpenBlas.setThreads(1);
        arena = TrackedArena.ofShared();
        int n = 4096, d = 64, block = 256, width = 3 * 768;
        switch (shape) {
            case "scores" -> {
                Matrix projection = random(width, n, 1);            // (3E, n): Qᵀ, Kᵀ, Vᵀ rows
                a = projection.rowRange(0, d).colRange(0, block);   // Q_blkᵀ: (64, 256)
                b = projection.rowRange(768, 768 + d);              // K_hᵀ: (64, 4096)
                c = Tensor.allocate(arena, block, n).matrix();      // S: (256, 4096)
                transA = true;
            }
            case "weighted" -> {
                Matrix projection = random(width, n, 1);
                a = random(block, n, 2);                            // P: (256, 4096)
                b = projection.rowRange(1536, 1536 + d);            // V_hᵀ: (64, 4096)
                c = Tensor.allocate(arena, block, d).matrix();      // O: (256, 64)
                transB = true;
            }
            case "weighted32", "weighted32-blocks" -> {
                Matrix projection = random(3 * 384, 512, 1);          // MiniLM: (3·384, 512)
                a = random(block, 512, 2);                          // P: (256, 512)
                b = projection.rowRange(768, 768 + 32);             // V_hᵀ: (32, 512)
                c = Tensor.allocate(arena, block, 32).matrix();     // O: (256, 32)
                transB = true;
                smallBlocks = shape.endsWith("blocks");
            }
            case "square" -> {
                a = random(2048, 2048, 1);
                b = random(2048, 2048, 2);
                c = Tensor.allocate(arena, 2048, 2048).matrix();
            }
            default -> throw new IllegalArgumentException("shape " + shape);
        }
    }

    private Matrix random(int rows, int cols, long seed) {
        return Tensor.uniform(arena, seed, 1, rows, cols).matrix();
    }

    @Benchmark
    public Matrix sgemm() {
        if (smallBlocks) Blas.sgemmInSmallBlocks(1f, a, b, transB, 0f, c);
        else Blas.sgemm(1f, a, transA, b, transB, 0f, c);
        return c;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }
}
