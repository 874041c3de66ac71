package dev.headroom.bench;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.CallOptions;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
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
 * Prefill through the paged KV cache against the uncached forward it replaces: the same causal
 * self-attention over n tokens of the {@link Problem} layer (d_model 768, 12 heads), either as one
 * whole forward ({@code chunk = 0}) or through a fresh cache in chunks of {@code chunk} tokens
 * (each chunk attends to the cached prefix and to itself; every chunk gathers the prefix's keys
 * and values from the blocks). The cache is made once, its whole budget allocated, as the serving
 * engine makes it when it starts ({@link KvCache#allocateAll}); each operation creates a sequence and
 * frees it, as a server does per request. {@code freshCache = true} makes and frees the whole
 * cache inside the operation instead, as this benchmark did before: then every operation also
 * allocates, zeroes and faults in its 25 MB of slabs, which no server pays per request.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@State(Scope.Benchmark)
public class PrefillBenchmark {
    @Param({"4096"})
    public int n;

    /** Tokens per prefill step through the cache; 0 = the whole forward without a cache. */
    @Param({"0", "4096", "1024", "512"})
    public int chunk;

    @Param({"2"})
    public int threads;

    /** Whether each operation makes (and frees) its own cache, slabs and all. */
    @Param({"false"})
    public boolean freshCache;

    private TrackedArena arena;
    private MultiHeadAttention attention;
    private Workspace workspace;
    private Tensor x, y;
    private KvCache.Shape shape;
    /** The cache of every operation unless {@link #freshCache}: room for n tokens of one sequence, allocated at setup. */
    private KvCache shared;

    @Setup(Level.Trial)
    public void setUp() {
        arena = TrackedArena.ofShared();
        AttentionConfig config = Problem.config();
        attention = new MultiHeadAttention(Problem.weights(config, arena), Problem.headroomOptions(threads));
        x = Problem.input(arena, n, config.dModel(), Problem.INPUT_SEED);
        y = Tensor.allocate(arena, 1, n, config.dModel()); // (batch 1, n, E), as x
        workspace = new Workspace();
        shape = new KvCache.Shape(1, config.kvHeads(), config.headDim(), 16, KvDtype.F32);
        if (!freshCache) {
            shared = new KvCache(shape, KvCache.bytesFor(shape, 1, n));
            shared.allocateAll();
        }
    }

    @Benchmark
    public Tensor prefill() {
        if (chunk == 0) {
            attention.forward(x, null, Mask.causal(), y, workspace);
            return y;
        }
        if (!freshCache) {
            prefillThrough(shared);
            return y;
        }
        try (KvCache cache = new KvCache(shape, KvCache.bytesFor(shape, 1, n))) {
            prefillThrough(cache);
        }
        return y;
    }

    /** The n tokens through {@code cache} in chunks, as one sequence, freed at the end. */
    private void prefillThrough(KvCache cache) {
        int E = x.dim(-1), seq = cache.create();
        try {
            for (int pos = 0; pos < n; pos += chunk) {
                int count = Math.min(chunk, n - pos);
                KvCache.Step step = cache.step(new int[]{seq}, new int[]{count}, null);
                Tensor in = Tensor.wrap(x.segment().asSlice((long) pos * E * Float.BYTES, (long) count * E * Float.BYTES), count, E);
                Tensor out = Tensor.wrap(y.segment().asSlice((long) pos * E * Float.BYTES, (long) count * E * Float.BYTES), count, E);
                attention.forward(cache, step, 0, in, Mask.causal(), out, workspace, CallOptions.NONE);
            }
        } finally {
            cache.free(seq);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (shared != null) shared.close();
        workspace.close();
        attention.close();
        arena.close();
    }
}
