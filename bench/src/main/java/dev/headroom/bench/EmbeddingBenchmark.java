package dev.headroom.bench;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtSession;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.minilm.EncoderWorkspace;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.model.Models;
import dev.headroom.model.tokenizer.TokenBatch;
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

import java.io.InputStream;
import java.lang.foreign.MemorySegment;
import java.nio.FloatBuffer;
import java.nio.LongBuffer;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * all-MiniLM-L6-v2 sentence embeddings from token ids: Headroom's encoder against ONNX Runtime for
 * Java on the same ONNX file, the same ids and the same thread count (ONNX Runtime's intra-op
 * threads = Headroom's workers; ONNX Runtime with all graph optimisations). One operation is one
 * batch: last hidden state, then mean pooling over the tokens and L2 normalisation (the same Java
 * code for both). Sequences are {@code length} tokens ([CLS], random word pieces, [SEP]), no
 * padding. JMH reports operations (batches) per second; sentences per second are that × batch.
 *
 * <p>Two more engines run only the encoder's matrix products ({@link EncoderProducts}), with
 * everything between them left out: {@code sgemm-only}, the same OpenBLAS calls, shapes and
 * worker split as the encoder; {@code sgemm-only-openblas-threads}, the same products as whole
 * calls split by OpenBLAS's own threads. The faster of the two is the ceiling of an encoder whose
 * products are OpenBLAS's, measured in the same run.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx2g"})
@State(Scope.Benchmark)
public class EmbeddingBenchmark {
    @Param({"1", "32"})
    public int batch;

    @Param({"128", "512"})
    public int length;

    @Param({"headroom", "onnxruntime", "sgemm-only", "sgemm-only-openblas-threads"})
    public String engine;

    @Param({"2"})
    public int threads;

    private TokenBatch tokens;
    /** Pooled embeddings, (batch, 384), for both engines. */
    private Tensor embeddings;
    private TrackedArena arena;
    private MiniLmEncoder encoder;
    private EncoderWorkspace workspace;
    /** Headroom's last hidden state, (batch, length, 384). */
    private Tensor hidden;
    private OrtEnvironment env;
    private OrtSession session;
    private Map<String, OnnxTensor> inputs;
    private EncoderProducts products;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        int[] ids = new int[batch * length];
        SplittableRandom r = new SplittableRandom(11);
        for (int b = 0; b < batch; b++) {
            for (int i = 0; i < length; i++) {
                ids[b * length + i] = i == 0 ? 101 : i == length - 1 ? 102 : 1996 + r.nextInt(27000);
            }
        }
        int[] lengths = new int[batch];
        java.util.Arrays.fill(lengths, length);
        tokens = new TokenBatch(ids, batch, length, lengths);
        arena = TrackedArena.ofShared();
        embeddings = Tensor.allocate(arena, batch, 384);
        if (engine.startsWith("sgemm-only")) {
            products = new EncoderProducts(batch, length, threads, engine.endsWith("openblas-threads"));
        } else if (engine.equals("headroom")) {
            encoder = Models.minilm(arena, threads);
            workspace = new EncoderWorkspace();
            hidden = Tensor.allocate(arena, batch, length, 384);
        } else {
            env = OrtEnvironment.getEnvironment();
            OrtSession.SessionOptions o = new OrtSession.SessionOptions();
            o.setIntraOpNumThreads(threads);
            o.setInterOpNumThreads(1);
            o.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
            byte[] model;
            try (InputStream in = Models.resource(Models.MINILM_ONNX)) {
                model = in.readAllBytes();
            }
            session = env.createSession(model, o);
            long[] shape = {batch, length};
            long[] idsL = new long[ids.length], mask = new long[ids.length], types = new long[ids.length];
            for (int i = 0; i < ids.length; i++) {
                idsL[i] = ids[i];
                mask[i] = 1;
            }
            inputs = Map.of("input_ids", OnnxTensor.createTensor(env, LongBuffer.wrap(idsL), shape),
                    "attention_mask", OnnxTensor.createTensor(env, LongBuffer.wrap(mask), shape),
                    "token_type_ids", OnnxTensor.createTensor(env, LongBuffer.wrap(types), shape));
        }
    }

    @Benchmark
    public Tensor embedBatch() throws Exception {
        if (products != null) {
            products.run();
            return embeddings;
        }
        if (encoder != null) {
            encoder.lastHiddenState(tokens, hidden, workspace, null);
            for (int b = 0; b < batch; b++) MiniLmEncoder.meanPoolAndNormalize(hidden, b, length, embeddings.segment(), (long) b * 384);
            return embeddings;
        }
        try (OrtSession.Result result = session.run(inputs)) {
            FloatBuffer out = ((OnnxTensor) result.get(0)).getFloatBuffer();
            Tensor h = Tensor.wrap(MemorySegment.ofBuffer(out), batch, length, 384);
            for (int b = 0; b < batch; b++) MiniLmEncoder.meanPoolAndNormalize(h, b, length, embeddings.segment(), (long) b * 384);
        }
        return embeddings;
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        if (products != null) products.close();
        if (encoder != null) {
            workspace.close();
            encoder.close();
        }
        if (session != null) {
            for (OnnxTensor t : inputs.values()) t.close();
            session.close();
        }
        arena.close();
    }
}
