package dev.headroom.generate;

import dev.headroom.cache.KvCache;
import dev.headroom.model.llama.DecoderWorkspace;
import dev.headroom.model.llama.LlamaModel;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * The input of one model step over a KV cache (a ragged batch): per cache sequence, the tokens it
 * feeds (a prefill chunk, or the one token of a decode step), and whether the logits of its last
 * fed token are wanted (to sample its next token). Built with {@link #add}, reserved in the cache
 * with {@link #reserve} (all or nothing), run with {@link #forward}; the sampled rows' logits are
 * then read with {@link #logits}, in the order the sequences were added.
 */
public final class StepBatch {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private final List<Integer> sequences = new ArrayList<>();
    private final List<int[]> tokens = new ArrayList<>();
    /** Rows (indices into the step's concatenated tokens) whose logits are wanted, in order. */
    private final List<Integer> sampleRows = new ArrayList<>();
    private int total;
    /** (sampled rows, V): the logits of the last forward, a view of the caller's buffer. */
    private Tensor logits;

    /** Adds {@code ids} (at least one) for cache sequence {@code sequence}; {@code sample}: the logits of the last are wanted. */
    public void add(int sequence, int[] ids, boolean sample) {
        if (ids.length == 0) throw new IllegalArgumentException("a sequence in a step feeds at least one token");
        sequences.add(sequence);
        tokens.add(ids.clone());
        total += ids.length;
        if (sample) sampleRows.add(total - 1);
    }

    /** Sequences in the step. */
    public int size() {
        return sequences.size();
    }

    public boolean isEmpty() {
        return sequences.isEmpty();
    }

    /** Tokens fed over all sequences: the step's rows. */
    public int tokens() {
        return total;
    }

    /** Rows whose logits the step computes. */
    public int sampledRows() {
        return sampleRows.size();
    }

    /**
     * Reserves the step's slots in {@code cache} ({@link KvCache#step}: all or nothing, a
     * {@link dev.headroom.cache.KvCacheFullException} when the blocks are not there).
     */
    public KvCache.Step reserve(KvCache cache) {
        int n = sequences.size();
        int[] seqIds = new int[n], counts = new int[n];
        int[][] ids = new int[n][];
        for (int k = 0; k < n; k++) {
            seqIds[k] = sequences.get(k);
            ids[k] = tokens.get(k);
            counts[k] = ids[k].length;
        }
        return cache.step(seqIds, counts, ids);
    }

    /**
     * Runs the step reserved as {@code step}: every layer over {@code cache}, the logits of the
     * sampled rows into the first rows of {@code logitBuffer}, (capacity ≥ {@link #sampledRows()}, V).
     */
    public void forward(LlamaModel model, KvCache cache, KvCache.Step step, Tensor logitBuffer, DecoderWorkspace ws) {
        int V = model.config().vocabSize(), R = sampleRows.size();
        if (logitBuffer.rank() != 2 || logitBuffer.dim(1) != V || logitBuffer.dim(0) < R) {
            throw new IllegalArgumentException("the logit buffer " + logitBuffer.shapeString() + " must be (≥ " + R + ", " + V + ")");
        }
        int[] ids = new int[total];
        for (int k = 0, r = 0; k < tokens.size(); k++) {
            int[] t = tokens.get(k);
            System.arraycopy(t, 0, ids, r, t.length);
            r += t.length;
        }
        int[] rows = sampleRows.stream().mapToInt(Integer::intValue).toArray();
        logits = Tensor.wrap(logitBuffer.segment().asSlice(0, (long) R * V * Float.BYTES), R, V);
        model.forward(cache, step, ids, rows, logits, ws, LlamaModel.LayerHooks.NONE);
    }

    /** Copies the logits of sampled row {@code k} (the k-th sequence added with {@code sample}) into {@code row}, (V). */
    public void logits(int k, float[] row) {
        MemorySegment.copy(logits.segment(), F, (long) k * row.length * Float.BYTES, row, 0, row.length);
    }
}
