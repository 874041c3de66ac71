package dev.headroom.bench;

import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvDtype;
import dev.headroom.generate.Sampler;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.model.llama.DecoderWorkspace;
import dev.headroom.model.llama.LlamaModel;
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
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Generation with the tiny decoder over Headroom's paged KV cache, the same work as
 * {@code tools/tiny/bench_decode.py} does in PyTorch: {@code batch} prompts of {@code prompt}
 * tokens ({@code <bos>} and random printable bytes) are prefilled in one step, then
 * {@code generate − 1} decode steps each feed every sequence's last token and take the argmax of
 * its logits (the first generated token comes from the prefill).
 * <ul>
 *   <li>{@code prefill}: one prefill step of the batch (logits of each prompt's last row, argmax);
 *       prompt tokens/s = batch · prompt / time.</li>
 *   <li>{@code decode}: the {@code generate − 1} decode steps after a prefill done outside the
 *       timing; generated tokens/s = batch · (generate − 1) / time, as bench_decode.py counts them.</li>
 * </ul>
 * {@code bench/decoder-vs-pytorch.sh} runs both and the PyTorch script and prints one table.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx1g"})
@State(Scope.Benchmark)
public class DecoderBenchmark {
    @Param({"1", "8", "32"})
    public int batch;

    @Param({"128"})
    public int prompt;

    @Param({"128"})
    public int generate;

    /** Tokens per cache block (the server's and generate's default is 16). */
    @Param({"16"})
    public int blockSize;

    @Param({"2"})
    public int threads;

    /** The cache's element type: f32 (the default everywhere), f16 or int8 (lossy: fewer bytes for decode attention to read). */
    @Param({"f32"})
    public String kvDtype;

    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private LlamaModel model;
    private KvCache cache;
    private DecoderWorkspace ws;
    private TrackedArena arena;
    private int V;
    /** The prompts, (batch, prompt) row-major, and each sequence's last token. */
    private int[] prompts, last;
    private int[] sequences;
    /** Logits: (batch, V). */
    private Tensor logits;
    private float[] row;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        model = Models.tiny(MultiHeadAttention.Options.defaults().withThreads(threads));
        V = model.config().vocabSize();
        if (prompt + generate - 1 > model.config().maxPositions()) {
            throw new IllegalArgumentException("prompt + generate - 1 = " + (prompt + generate - 1) + " positions exceed the context "
                    + model.config().maxPositions());
        }
        KvCache.Shape shape = model.cacheShape(blockSize, KvDtype.valueOf(kvDtype.toUpperCase(java.util.Locale.ROOT)));
        cache = new KvCache(shape, KvCache.bytesFor(shape, batch, prompt + generate));
        ws = new DecoderWorkspace();
        arena = TrackedArena.ofShared();
        logits = Tensor.allocate(arena, batch, V);
        row = new float[V];
        SplittableRandom rnd = new SplittableRandom(0);
        prompts = new int[batch * prompt];
        for (int i = 0; i < prompts.length; i++) prompts[i] = i % prompt == 0 ? model.config().bosTokenId() : rnd.nextInt(32, 127);
        last = new int[batch];
        sequences = new int[batch];
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        cache.close();
        ws.close();
        arena.close();
        model.close();
    }

    /** Prefills every prompt in one step and takes each one's first token; the sequences stay in the cache. */
    private void prefillStep() {
        int[] counts = new int[batch], rows = new int[batch];
        int[][] ids = new int[batch][];
        for (int b = 0; b < batch; b++) {
            sequences[b] = cache.create();
            counts[b] = prompt;
            rows[b] = (b + 1) * prompt - 1;
            ids[b] = Arrays.copyOfRange(prompts, b * prompt, (b + 1) * prompt);
        }
        KvCache.Step step = cache.step(sequences, counts, ids);
        model.forward(cache, step, prompts, rows, logits, ws, LlamaModel.LayerHooks.NONE);
        argmax();
    }

    private void argmax() {
        for (int b = 0; b < batch; b++) {
            MemorySegment.copy(logits.segment(), F, (long) b * V * Float.BYTES, row, 0, V);
            last[b] = Sampler.argmax(row);
        }
    }

    private void freeAll() {
        for (int s : sequences) cache.free(s);
    }

    @Benchmark
    public int prefill() {
        prefillStep();
        freeAll();
        return last[0];
    }

    @State(Scope.Thread)
    public static class Prefilled {
        @Setup(Level.Invocation)
        public void prefill(DecoderBenchmark b) {
            b.prefillStep();
        }

        @TearDown(Level.Invocation)
        public void free(DecoderBenchmark b) {
            b.freeAll();
        }
    }

    @Benchmark
    public int decode(Prefilled prefilled) {
        int[] ones = new int[batch];
        Arrays.fill(ones, 1);
        for (int k = 0; k < generate - 1; k++) {
            KvCache.Step step = cache.step(sequences, ones, null);
            model.forward(cache, step, last.clone(), null, logits, ws, LlamaModel.LayerHooks.NONE);
            argmax();
        }
        return last[0];
    }
}
