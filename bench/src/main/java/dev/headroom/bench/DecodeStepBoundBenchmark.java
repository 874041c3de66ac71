package dev.headroom.bench;

import dev.headroom.blas.Blas;
import dev.headroom.blas.OpenBlas;
import dev.headroom.kernels.SmallMatmul;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.model.llama.LlamaConfig;
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

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The compute limit of one decode step of the tiny decoder (or of a config's shape) with {@code rows} new tokens: every
 * matrix product of the step (per layer Q, K and V as one product of the concatenated weights,
 * the output projection, gate and up as one, down; then the output layer), each one
 * {@code cblas_sgemm} with OpenBLAS's own {@code threads} threads on random operands of the
 * step's shapes. The products alone, at OpenBLAS's rate for exactly these shapes: no norms, no
 * attention, no hand-offs. Set against {@code DecoderBenchmark} (the whole step) and
 * {@code ReadBandwidthBenchmark} (the step's key/value reads at the machine's streaming rate),
 * it bounds what batching can give with OpenBLAS computing the products. {@code packedOneThread}
 * runs the same products in Headroom's {@code SmallMatmul} on one thread, on weights packed once
 * (what decode steps of up to 64 rows use): at 32 rows it is faster on one thread than OpenBLAS
 * on two, so the machine's own limit for the products is sgemm's rate on large matrices
 * ({@code SgemmBenchmark}), not OpenBLAS's rate at these shapes.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@State(Scope.Benchmark)
public class DecodeStepBoundBenchmark {
    @Param({"1", "32"})
    public int rows;

    @Param({"2"})
    public int threads;

    /** The shapes: {@code tiny} (the trained decoder's) or the path of a Llama {@code config.json}. */
    @Param({"tiny"})
    public String config;

    private TrackedArena arena;
    /** Per product: its input (rows, in), weight (out, in) and output (rows, out). */
    private final List<Matrix[]> products = new ArrayList<>();
    /** Per product: its weight packed for {@link SmallMatmul}. */
    private final List<MemorySegment> packed = new ArrayList<>();

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        OpenBlas.setThreads(threads);
        LlamaConfig c = config.equals("tiny") ? Models.tinyConfig() : LlamaConfig.read(Path.of(config));
        int E = c.hiddenSize(), I = c.intermediateSize(), q = c.heads() * c.headDim(), kv = c.kvHeads() * c.headDim();
        arena = TrackedArena.ofShared();
        long seed = 1;
        for (int l = 0; l < c.layers(); l++) {
            add(E, q + 2 * kv, seed++);  // Q, K, V
            add(q, E, seed++);           // output projection
            add(E, 2 * I, seed++);       // gate, up
            add(I, E, seed++);           // down
        }
        add(E, c.vocabSize(), seed);     // output layer
    }

    private void add(int in, int out, long seed) {
        Matrix x = Tensor.uniform(arena, seed, 1, rows, in).matrix();
        Matrix w = Tensor.uniform(arena, seed + 1000, 0.05f, out, in).matrix();
        Matrix y = Tensor.allocate(arena, rows, out).matrix();
        products.add(new Matrix[]{x, w, y});
        MemorySegment p = arena.allocate(SmallMatmul.packedFloats(out, in) * Float.BYTES, TrackedArena.ALIGNMENT);
        SmallMatmul.pack(w.segment(), w.offset(), w.ld(), out, in, p, 0);
        packed.add(p);
    }

    /** The same products in {@link SmallMatmul} on weights packed once, on the calling thread alone. */
    @Benchmark
    public Matrix packedOneThread() {
        Matrix last = null;
        for (int i = 0; i < products.size(); i++) {
            Matrix[] p = products.get(i);
            Matrix x = p[0], y = p[2];
            SmallMatmul.VECTOR.apply(x.segment(), x.offset(), x.ld(), x.rows(), x.cols(), packed.get(i), 0, y.cols(), null, false,
                    y.segment(), y.offset(), y.ld(), 1);
            last = y;
        }
        return last;
    }

    @Benchmark
    public Matrix products() {
        Matrix last = null;
        for (Matrix[] p : products) {
            Blas.sgemm(1f, p[0], false, p[1], true, 0f, p[2]); // y = x Wᵀ
            last = p[2];
        }
        return last;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }
}
