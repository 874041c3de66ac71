package dev.headroom.probe;

import dev.headroom.attention.AttentionObserver;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.ForwardObserver;
import dev.headroom.tensor.Matrix;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.function.LongConsumer;
import java.util.stream.IntStream;

/**
 * Runs a model over sentences and writes every representation of every word's first token into a
 * {@link FeatureStore}: the residual stream after the embeddings and after each layer, and each
 * head's output Z_h before W_O (from {@link AttentionObserver#headOutputs}).
 *
 * <p><b>Order.</b> Sentences are sorted by token count and cut into batches of the model's
 * {@link ProbedModel#maxBatch()} (little padding, as {@code embed} does), and the batches run in an
 * order shuffled by the seed, so that a store read front to back is not sorted by sentence length
 * (the probes' minibatches come from blocks of it).
 *
 * <p><b>Memory.</b> The features never live on the heap. Per batch, the first-token rows are copied
 * as float16 into one staging buffer per representation (off-heap, sized for the largest batch's
 * words, at least {@value #MIN_STAGE_ROWS} rows), which is written to the store's files when the next
 * batch might not fit. What grows with the corpus is on the heap and small: each sentence's token
 * ids while it waits for its batch, and 4 bytes per word for the row → word map.
 */
public final class Extraction {
    static final int MIN_STAGE_ROWS = 1024;
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ValueLayout.OfShort S = ValueLayout.JAVA_SHORT_UNALIGNED;

    private Extraction() {}

    /**
     * What an extraction did.
     *
     * @param words        words with a token (rows of the store)
     * @param droppedWords words without one (truncated away, or nothing left after normalisation)
     * @param tokens       real tokens run through the model; {@code paddedTokens} counts padding too
     * @param stagingBytes off-heap bytes of the staging buffers
     */
    public record Stats(int sentences, long words, long droppedWords, long tokens, long paddedTokens, int batches,
                        long stagingBytes, double seconds) {}

    public record Result(FeatureStore store, Stats stats) {}

    /**
     * Extracts the features of {@code sentences} into a new store in {@code directory}.
     * {@code progress}, if not null, is told the number of sentences done after each batch.
     */
    public static Result run(ProbedModel model, List<ProbeTask.Sentence> sentences, Path directory, long seed,
                             LongConsumer progress) throws IOException {
        long start = System.nanoTime();
        List<Representation> reps = Representation.of(model);
        // Each sentence's ids and, per word, its token, and the index of its first word in corpus order.
        List<ProbedModel.Encoded> encoded = new ArrayList<>(sentences.size());
        int[] firstWord = new int[sentences.size() + 1];
        long dropped = 0;
        for (int s = 0; s < sentences.size(); s++) {
            ProbedModel.Encoded e = model.encode(sentences.get(s).words());
            encoded.add(e);
            firstWord[s + 1] = firstWord[s] + e.wordTokens().length;
            for (int t : e.wordTokens()) if (t < 0) dropped++;
        }
        List<int[]> batches = batches(encoded, model.maxBatch(), seed);
        int stageRows = MIN_STAGE_ROWS;
        for (int[] batch : batches) {
            int words = 0;
            for (int s : batch) words += kept(encoded.get(s));
            stageRows = Math.max(stageRows, words);
        }
        long wordsTotal = (long) firstWord[sentences.size()] - dropped;
        if (wordsTotal > Integer.MAX_VALUE) throw new IllegalArgumentException(wordsTotal + " words exceed one store's rows");
        int[] rowWord = new int[(int) wordsTotal];
        FeatureStore store = FeatureStore.create(directory, reps);
        long tokens = 0, padded = 0;
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            /* stage[r]: (stageRows, dim_r) float16, row-major: the rows of representation r not yet written. */
            MemorySegment[] stage = new MemorySegment[reps.size()];
            long stagingBytes = 0;
            for (Representation r : reps) {
                stage[r.index()] = arena.allocate((long) stageRows * r.dim() * Short.BYTES, TrackedArena.ALIGNMENT);
                stagingBytes += stage[r.index()].byteSize();
            }
            int written = 0, staged = 0, done = 0;
            for (int[] batch : batches) {
                List<int[]> ids = new ArrayList<>(batch.length);
                int words = 0;
                for (int s : batch) {
                    ids.add(encoded.get(s).ids());
                    words += kept(encoded.get(s));
                    tokens += encoded.get(s).ids().length;
                }
                int n = ProbedModel.paddedLength(ids);
                padded += (long) n * batch.length;
                if (staged + words > stageRows) {
                    flush(store, reps, stage, written, staged);
                    written += staged;
                    staged = 0;
                }
                /* rows[k]: the model row (b·n + token) of the batch's k-th kept word. */
                int[] rows = new int[words];
                int k = 0;
                for (int b = 0; b < batch.length; b++) {
                    int[] wordTokens = encoded.get(batch[b]).wordTokens();
                    for (int w = 0; w < wordTokens.length; w++) {
                        if (wordTokens[w] < 0) continue;
                        rows[k] = b * n + wordTokens[w];
                        rowWord[written + staged + k] = firstWord[batch[b]] + w;
                        k++;
                    }
                }
                model.forward(ids, new Copier(model, reps, stage, staged, rows));
                staged += words;
                done += batch.length;
                if (progress != null) progress.accept(done);
            }
            flush(store, reps, stage, written, staged);
            store.finish(rowWord, written + staged);
            double seconds = (System.nanoTime() - start) / 1e9;
            return new Result(store, new Stats(sentences.size(), wordsTotal, dropped, tokens, padded, batches.size(), stagingBytes, seconds));
        } catch (IOException | RuntimeException e) {
            store.delete();
            throw e;
        }
    }

    private static int kept(ProbedModel.Encoded e) {
        int n = 0;
        for (int t : e.wordTokens()) if (t >= 0) n++;
        return n;
    }

    /** Sentence indices in batches: sorted by token count, cut into batches, the batches shuffled by {@code seed}. */
    static List<int[]> batches(List<ProbedModel.Encoded> encoded, int maxBatch, long seed) {
        Integer[] order = IntStream.range(0, encoded.size()).boxed().toArray(Integer[]::new);
        Arrays.sort(order, Comparator.comparingInt(s -> encoded.get(s).ids().length));
        List<int[]> batches = new ArrayList<>();
        for (int i = 0; i < order.length; i += maxBatch) {
            batches.add(Arrays.stream(order, i, Math.min(order.length, i + maxBatch)).mapToInt(Integer::intValue).toArray());
        }
        Collections.shuffle(batches, new Random(seed));
        return batches;
    }

    private static void flush(FeatureStore store, List<Representation> reps, MemorySegment[] stage, int firstRow, int count)
            throws IOException {
        if (count == 0) return;
        for (Representation r : reps) store.write(r, firstRow, count, stage[r.index()]);
    }

    /** Copies one batch's first-token rows into the staging buffers, from row {@code stageRow} on. */
    private static final class Copier implements ForwardObserver {
        private final List<Representation> reps;
        private final MemorySegment[] stage;
        private final int stageRow, heads, layers, headDim;
        private final int[] rows;

        Copier(ProbedModel model, List<Representation> reps, MemorySegment[] stage, int stageRow, int[] rows) {
            this.reps = reps;
            this.stage = stage;
            this.stageRow = stageRow;
            this.rows = rows;
            this.heads = model.heads();
            this.layers = model.layers();
            this.headDim = model.headDim();
        }

        @Override
        public AttentionObserver attention(int layer) {
            return new AttentionObserver() {
                @Override
                public Rows rows(int batch, int head, int firstQuery, int rows, int keys) {
                    return null; // no probabilities: the kernels run as without an observer
                }

                @Override
                public void headOutputs(Matrix concat) {
                    for (int h = 0; h < heads; h++) {
                        Representation r = reps.get(layers + 1 + layer * heads + h);
                        copy(concat, h * headDim, r);
                    }
                }
            };
        }

        @Override
        public void residual(int stageIndex, Matrix hidden) {
            copy(hidden, 0, reps.get(stageIndex));
        }

        /** Columns [col0, col0 + dim) of the kept rows of {@code m}, as float16, into r's staging buffer. */
        private void copy(Matrix m, int col0, Representation r) {
            MemorySegment src = m.segment(), dst = stage[r.index()];
            int dim = r.dim();
            for (int k = 0; k < rows.length; k++) {
                long from = m.index(rows[k], col0) * Float.BYTES, to = (long) (stageRow + k) * dim * Short.BYTES;
                for (int j = 0; j < dim; j++) {
                    float v = src.get(F, from + (long) j * Float.BYTES);
                    if (!(Math.abs(v) <= 65504f)) {
                        throw new IllegalStateException(r.name() + " holds " + v + " at model row " + rows[k] + ", column " + j
                                + ": beyond float16's range (or not finite), so it cannot be stored");
                    }
                    dst.set(S, to + (long) j * Short.BYTES, Float.floatToFloat16(v));
                }
            }
        }
    }
}
