package dev.headroom.bench;

import dev.headroom.attention.DecodeWorkload;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import dev.headroom.tensor.Matrix;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The same decode step as {@link DecodeWorkload} on ONNX Runtime for Java's
 * {@code com.microsoft.GroupQueryAttention} ({@link GqaModel}), CPU execution provider, float32
 * (the only KV type of that operator in ONNX Runtime 1.23 besides float16: no int8 cache).
 *
 * <p>What a Java user of ONNX Runtime does to keep a step cheap, done here:
 * <ul>
 *   <li>Every tensor is created once, over native memory from the caller's arena (direct buffers,
 *       which ONNX Runtime uses in place, not copied): the step's query, key and value, the cache,
 *       {@code seqlens_k}, {@code total_sequence_length} and the output.</li>
 *   <li>The cache is shared between past and present: each part's {@code present_key} and
 *       {@code present_value} are pinned outputs ({@link OrtSession#run(Map, Map)}) bound to the
 *       very tensors given as {@code past_key} and {@code past_value}. The CPU kernel then sees
 *       equal pointers ({@code past_present_share_buffer}) and writes only the new token, at slot
 *       {@code seqlens_k} of the buffer, instead of copying the whole past into a fresh present;
 *       the operator's documentation recommends it ("Highly recommend using k-v cache share
 *       buffer"). Java has no IOBinding class; pinned outputs are its equivalent.
 *       {@link #newTokenWrittenInPlace} checks that it happened.</li>
 *   <li>The output is pinned too, so a step allocates no tensor on the Java side.</li>
 * </ul>
 * The buffers hold P = context + 1 tokens; {@code seqlens_k} = context (total − 1) and
 * {@code total_sequence_length} = context + 1 for every sequence, so each step rewrites the same
 * slot, as Headroom's step appends and truncates.
 *
 * <p>ONNX Runtime for Java takes a tensor's data from a {@link java.nio.Buffer} of at most 2³¹ − 1
 * bytes, so a cache larger than that per K or V (Llama shape, 64 sequences × 16k) is split by
 * sequences into parts, one node each in the same graph, run by one {@code session.run}.
 */
public final class OrtGqaDecode implements AutoCloseable {
    /** The largest buffer ONNX Runtime for Java accepts for a float tensor (OrtUtil.prepareBuffer). */
    static final long MAX_TENSOR_BYTES = Integer.MAX_VALUE - 8L * Float.BYTES;

    private final DecodeWorkload.Data data;
    private final int bufferTokens;
    private final int[] partStart, partSequences;
    private final OrtEnvironment env;
    private final OrtSession session;
    private final List<OnnxTensor> tensors = new ArrayList<>();
    private final Map<String, OnnxTensor> inputs = new HashMap<>();
    private final Map<String, OnnxValue> pinned = new HashMap<>();
    /** Per part: the cache, (B, G, P, d) float32, BNSH, shared by past and present. */
    private final MemorySegment[] keys, values;
    /** Per part: the output, (B, 1, H·d). */
    private final MemorySegment[] outputs;

    /** Fills the cache from {@code data}; ONNX Runtime with {@code threads} intra-op threads, 1 inter-op. */
    public OrtGqaDecode(DecodeWorkload.Data data, int threads, Arena arena) throws OrtException {
        this(data, threads, arena, MAX_TENSOR_BYTES);
    }

    /** As above, with parts of at most {@code maxTensorBytes} per K or V tensor (smaller in {@link OrtGqaCheck}, to cover the split). */
    OrtGqaDecode(DecodeWorkload.Data data, int threads, Arena arena, long maxTensorBytes) throws OrtException {
        this.data = data;
        int H = data.heads(), G = data.kvHeads(), d = data.headDim(), S = data.sequences();
        bufferTokens = data.context() + 1;
        long sequenceBytes = (long) G * bufferTokens * d * Float.BYTES;
        if (sequenceBytes > Math.min(maxTensorBytes, MAX_TENSOR_BYTES)) {
            throw new IllegalArgumentException("one sequence's keys (" + sequenceBytes + " bytes) exceed the "
                    + Math.min(maxTensorBytes, MAX_TENSOR_BYTES) + " bytes allowed in a tensor (ONNX Runtime for Java takes at most "
                    + MAX_TENSOR_BYTES + ")");
        }
        int perPart = (int) Math.min(S, Math.min(maxTensorBytes, MAX_TENSOR_BYTES) / sequenceBytes);
        int parts = (S + perPart - 1) / perPart;
        partStart = new int[parts];
        partSequences = new int[parts];
        for (int p = 0; p < parts; p++) {
            // spread evenly: parts differ by at most one sequence
            partStart[p] = (int) ((long) S * p / parts);
            partSequences[p] = (int) ((long) S * (p + 1) / parts) - partStart[p];
        }
        keys = new MemorySegment[parts];
        values = new MemorySegment[parts];
        outputs = new MemorySegment[parts];

        env = OrtEnvironment.getEnvironment();
        try (OrtSession.SessionOptions options = new OrtSession.SessionOptions()) {
            options.setIntraOpNumThreads(threads);
            options.setInterOpNumThreads(1);
            options.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
            session = env.createSession(GqaModel.build(H, G, d, partSequences, bufferTokens), options);
        }
        // One sequence's cache, laid out once and copied to every sequence; freed when set-up ends.
        try (Arena scratch = Arena.ofConfined()) {
            MemorySegment sequence = oneSequenceCache(scratch);
            for (int p = 0; p < parts; p++) {
                int B = partSequences[p], b0 = partStart[p];
                keys[p] = arena.allocate(B * sequenceBytes, 64);
                values[p] = arena.allocate(B * sequenceBytes, 64);
                for (int b = 0; b < B; b++) {
                    MemorySegment.copy(sequence, 0, keys[p], b * sequenceBytes, sequenceBytes);
                    MemorySegment.copy(sequence, sequenceBytes, values[p], b * sequenceBytes, sequenceBytes);
                }
                MemorySegment query = arena.allocate((long) B * H * d * Float.BYTES, 64);
                MemorySegment key = arena.allocate((long) B * G * d * Float.BYTES, 64);
                MemorySegment value = arena.allocate((long) B * G * d * Float.BYTES, 64);
                for (int b = 0; b < B; b++) {
                    // query row b = column b0 + b of Qᵀ; key row likewise of Kᵀ; value row b0 + b of V
                    for (int f = 0; f < H * d; f++) query.setAtIndex(ValueLayout.JAVA_FLOAT, (long) b * H * d + f, data.qT().get(f, b0 + b));
                    for (int f = 0; f < G * d; f++) {
                        key.setAtIndex(ValueLayout.JAVA_FLOAT, (long) b * G * d + f, data.kT().get(f, b0 + b));
                        value.setAtIndex(ValueLayout.JAVA_FLOAT, (long) b * G * d + f, data.v().get(b0 + b, f));
                    }
                }
                MemorySegment seqlens = arena.allocate((long) B * Integer.BYTES, 64);
                for (int b = 0; b < B; b++) seqlens.setAtIndex(ValueLayout.JAVA_INT, b, data.context());
                outputs[p] = arena.allocate((long) B * H * d * Float.BYTES, 64);

                long[] kvShape = {B, G, bufferTokens, d};
                OnnxTensor pastKey = floats(keys[p], kvShape), pastValue = floats(values[p], kvShape);
                inputs.put(GqaModel.query(p), floats(query, new long[]{B, 1, (long) H * d}));
                inputs.put(GqaModel.key(p), floats(key, new long[]{B, 1, (long) G * d}));
                inputs.put(GqaModel.value(p), floats(value, new long[]{B, 1, (long) G * d}));
                inputs.put(GqaModel.pastKey(p), pastKey);
                inputs.put(GqaModel.pastValue(p), pastValue);
                inputs.put(GqaModel.seqlensK(p), ints(seqlens, new long[]{B}));
                pinned.put(GqaModel.output(p), floats(outputs[p], new long[]{B, 1, (long) H * d}));
                pinned.put(GqaModel.presentKey(p), pastKey);
                pinned.put(GqaModel.presentValue(p), pastValue);
            }
            MemorySegment total = arena.allocate(Integer.BYTES, 64);
            total.set(ValueLayout.JAVA_INT, 0, bufferTokens);
            inputs.put(GqaModel.TOTAL_SEQUENCE_LENGTH, ints(total, new long[0]));
        } catch (OrtException | RuntimeException e) {
            close();
            throw e;
        }
    }

    /**
     * One sequence's cache as ONNX Runtime lays it out, keys (G, P, d) then values (G, P, d):
     * token t of head g holds the chunk's token t mod chunk; slot P − 1, the step's, starts at 0.
     */
    private MemorySegment oneSequenceCache(Arena arena) {
        int G = data.kvHeads(), d = data.headDim(), chunk = data.chunkTokens();
        long half = (long) G * bufferTokens * d;
        MemorySegment sequence = arena.allocate(2 * half * Float.BYTES, 64);
        Matrix kT = data.cachedKeysT(), v = data.cachedValues();
        for (int g = 0; g < G; g++) {
            for (int t = 0; t < data.context(); t++) {
                long row = ((long) g * bufferTokens + t) * d;
                for (int f = 0; f < d; f++) {
                    sequence.setAtIndex(ValueLayout.JAVA_FLOAT, row + f, kT.get(g * d + f, t % chunk));
                    sequence.setAtIndex(ValueLayout.JAVA_FLOAT, half + row + f, v.get(t % chunk, g * d + f));
                }
            }
        }
        return sequence;
    }

    private OnnxTensor floats(MemorySegment segment, long[] shape) throws OrtException {
        OnnxTensor t = OnnxTensor.createTensor(env, segment.asByteBuffer().order(ByteOrder.nativeOrder()).asFloatBuffer(), shape);
        tensors.add(t);
        return t;
    }

    private OnnxTensor ints(MemorySegment segment, long[] shape) throws OrtException {
        OnnxTensor t = OnnxTensor.createTensor(env, segment.asByteBuffer().order(ByteOrder.nativeOrder()).asIntBuffer(), shape);
        tensors.add(t);
        return t;
    }

    /** Parts the batch is split into (1 unless a part's cache would pass {@link #MAX_TENSOR_BYTES}). */
    public int parts() {
        return partStart.length;
    }

    /** One decode step. The result holds only pinned values, so closing it frees nothing of ours. */
    public void step() throws OrtException {
        try (OrtSession.Result ignored = session.run(inputs, pinned)) {
            // the output and the cache are in our buffers already
        }
    }

    /** Output feature f of sequence s after the last step: column f of row s of the heads' outputs (S, H·d). */
    public float output(int s, int f) {
        int p = partOf(s);
        return outputs[p].getAtIndex(ValueLayout.JAVA_FLOAT, (long) (s - partStart[p]) * data.queryWidth() + f);
    }

    /**
     * Whether the last step wrote each sequence's new key and value into slot context of the
     * shared buffers: true only if ONNX Runtime treated past and present as one buffer.
     */
    public boolean newTokenWrittenInPlace() {
        int G = data.kvHeads(), d = data.headDim();
        for (int s = 0; s < data.sequences(); s++) {
            int p = partOf(s);
            for (int g = 0; g < G; g++) {
                long row = (((long) (s - partStart[p]) * G + g) * bufferTokens + data.context()) * d;
                for (int f = 0; f < d; f++) {
                    if (keys[p].getAtIndex(ValueLayout.JAVA_FLOAT, row + f) != data.kT().get(g * d + f, s)
                            || values[p].getAtIndex(ValueLayout.JAVA_FLOAT, row + f) != data.v().get(s, g * d + f)) {
                        return false;
                    }
                }
            }
        }
        return true;
    }

    private int partOf(int s) {
        if (s < 0 || s >= data.sequences()) throw new IndexOutOfBoundsException("sequence " + s + " of " + data.sequences());
        int p = partStart.length - 1;
        while (partStart[p] > s) p--;
        return p;
    }

    @Override
    public void close() throws OrtException {
        for (OnnxTensor t : tensors) t.close();
        if (session != null) session.close();
    }
}
