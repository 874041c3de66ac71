package dev.headroom.probe;

import dev.headroom.attention.AttentionObserver;
import dev.headroom.corpus.BrownCorpus;
import dev.headroom.corpus.BrownCorpus.Part;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.ForwardObserver;
import dev.headroom.model.minilm.EncoderWorkspace;
import dev.headroom.model.tokenizer.TokenBatch;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Extraction from all-MiniLM-L6-v2: the right rows, the plain path untouched, memory that does not grow with the corpus. */
class ExtractionTest {
    private static MiniLmProbedModel model;
    private static BrownCorpus corpus;

    @TempDir
    Path dir;

    @BeforeAll
    static void load() throws Exception {
        model = MiniLmProbedModel.trained(2);
        corpus = BrownCorpus.open();
    }

    @AfterAll
    static void close() {
        model.close();
    }

    @Test
    void labelsGoOnEachWordsFirstPiece() {
        ProbedModel.Encoded e = model.encode(List.of("``", "Unbelievably", ",", "dogs", "''"));
        var tokenizer = model.encoder().tokenizer();
        List<String> pieces = new ArrayList<>();
        for (int id : e.ids()) pieces.add(tokenizer.token(id));
        assertEquals("[CLS]", pieces.getFirst());
        assertEquals("[SEP]", pieces.getLast());
        assertEquals("\"", pieces.get(e.wordTokens()[0])); // TeX quotes reach the model as "
        assertEquals(tokenizer.tokenize("unbelievably").getFirst(), pieces.get(e.wordTokens()[1]));
        assertTrue(tokenizer.tokenize("unbelievably").size() > 1, "a word of several pieces");
        assertEquals(",", pieces.get(e.wordTokens()[2]));
        assertEquals(e.wordTokens()[1] + tokenizer.tokenize("unbelievably").size() + 1, e.wordTokens()[3]);
        // the same ids as the tokenizer gives the sentence as text
        assertArrayEquals(tokenizer.withMaxLength(512).encode("\" Unbelievably , dogs \""), e.ids());
    }

    /** An observer leaves the output as the plain call computes it, bit for bit. */
    @Test
    void observingDoesNotChangeTheOutput() {
        List<int[]> batch = new ArrayList<>();
        for (BrownCorpus.Sentence s : firstSentences(5)) batch.add(model.encode(s.words()).ids());
        TokenBatch tokens = TokenBatch.padded(model.encoder().tokenizer().padId(), batch.toArray(int[][]::new));
        try (TrackedArena arena = TrackedArena.ofShared(); EncoderWorkspace ws = new EncoderWorkspace()) {
            Tensor plain = model.encoder().lastHiddenState(tokens, arena);
            Tensor observed = Tensor.allocate(arena, plain.shape());
            int[] calls = new int[2];
            model.encoder().forward(tokens, observed, ws, new ForwardObserver() {
                @Override
                public AttentionObserver attention(int layer) {
                    return new AttentionObserver() {
                        public Rows rows(int b, int h, int q, int r, int k) {
                            return null;
                        }

                        public void headOutputs(Matrix concat) {
                            calls[0]++;
                            assertEquals(tokens.batch() * tokens.length(), concat.rows());
                            assertEquals(384, concat.cols());
                        }
                    };
                }

                @Override
                public void residual(int stage, Matrix hidden) {
                    calls[1]++;
                }
            });
            assertArrayEquals(plain.toArray(), observed.toArray());
            assertArrayEquals(new int[]{6, 7}, calls);
        }
    }

    /**
     * The store holds, for every word, the rows of its first piece: checked against each sentence
     * run alone (no padding, batch of one), for the last residual stage and two heads. The batched,
     * padded and shuffled extraction must find the same values (within float16 rounding, and the
     * last bits a batch's padded length changes).
     */
    @Test
    void theStoreHoldsEachWordsFirstPieceRows() throws Exception {
        List<ProbeTask.Sentence> sentences = sentences(40);
        Extraction.Result result = Extraction.run(model, sentences, dir.resolve("store"), 3, null);
        FeatureStore store = result.store();
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            List<Representation> reps = store.representations();
            assertEquals(7 + 72, reps.size());
            int words = 0;
            for (ProbeTask.Sentence s : sentences) words += s.words().size();
            assertEquals(words, store.rows());
            assertEquals(words, result.stats().words());
            assertEquals(0, result.stats().droppedWords());
            Representation last = reps.get(6), l0h2 = reps.get(7 + 2), l5h11 = reps.get(7 + 5 * 12 + 11);
            int[] rowOf = new int[words];
            for (int r = 0; r < store.rows(); r++) rowOf[store.word(r)] = r;
            MemorySegment row = arena.allocate(384 * Float.BYTES);
            int firstWord = 0;
            double worst = 0;
            for (ProbeTask.Sentence s : sentences) {
                ProbedModel.Encoded e = model.encode(s.words());
                float[][][] alone = runAlone(e.ids(), new int[]{2, 5 * 12 + 11});
                for (int w = 0; w < s.words().size(); w++) {
                    int r = rowOf[firstWord + w], token = e.wordTokens()[w];
                    Representation[] check = {last, l0h2, l5h11};
                    for (int c = 0; c < 3; c++) {
                        Features.of(store, check[c], arena, 1).read(r, 1, row);
                        for (int j = 0; j < check[c].dim(); j++) {
                            float expected = alone[c][token][j], got = row.getAtIndex(ValueLayout.JAVA_FLOAT, j);
                            double err = Math.abs(expected - got);
                            worst = Math.max(worst, err / (1 + Math.abs(expected)));
                            assertEquals(expected, got, 2e-3 * (1 + Math.abs(expected)),
                                    check[c].name() + ", word " + w + " '" + s.words().get(w) + "', feature " + j);
                        }
                    }
                }
                firstWord += s.words().size();
            }
            System.out.printf("store vs sentences run alone: worst relative difference %.2e%n", worst);
        } finally {
            store.delete();
        }
    }

    /** Layer 5's residual (after the last layer) and the outputs of heads {@code heads} (layer·12 + head) of one unpadded sentence. */
    private static float[][][] runAlone(int[] ids, int[] heads) {
        float[][][] out = new float[1 + heads.length][][];
        model.forward(List.of(ids), new ForwardObserver() {
            @Override
            public AttentionObserver attention(int layer) {
                return new AttentionObserver() {
                    public Rows rows(int b, int h, int q, int r, int k) {
                        return null;
                    }

                    public void headOutputs(Matrix concat) {
                        for (int i = 0; i < heads.length; i++) {
                            if (heads[i] / 12 != layer) continue;
                            out[1 + i] = columns(concat, (heads[i] % 12) * 32, 32);
                        }
                    }
                };
            }

            @Override
            public void residual(int stage, Matrix hidden) {
                if (stage == 6) out[0] = columns(hidden, 0, 384);
            }
        });
        return out;
    }

    private static float[][] columns(Matrix m, int c0, int width) {
        float[][] rows = new float[m.rows()][width];
        for (int i = 0; i < m.rows(); i++) for (int j = 0; j < width; j++) rows[i][j] = m.get(i, c0 + j);
        return rows;
    }

    /**
     * Extraction's memory does not grow with the corpus. Both corpora hold sentences of exactly 25
     * tokens, so that every batch has the same shape (what the model's scratch is sized by) and fits
     * the minimum staging: the off-heap peak beyond what the model already holds is the same for 64
     * and for 256 sentences, while the store on disk grows fourfold.
     */
    @Test
    void memoryIsBoundedWhateverTheCorpusSize() throws Exception {
        List<ProbeTask.Sentence> large = new ArrayList<>();
        for (ProbeTask.Sentence s : sentences(45409)) {
            if (model.encode(s.words()).ids().length == 25) large.add(s);
            if (large.size() == 256) break;
        }
        List<ProbeTask.Sentence> small = large.subList(0, 64);
        Extraction.run(model, small, dir.resolve("warm"), 1, null).store().delete(); // the model's workspace grows to this shape
        long[] peak = new long[2], disk = new long[2], staging = new long[2];
        List<List<ProbeTask.Sentence>> corpora = List.of(small, large);
        for (int i = 0; i < 2; i++) {
            OffHeap.resetPeak();
            long before = OffHeap.currentBytes();
            Extraction.Result r = Extraction.run(model, corpora.get(i), dir.resolve("m" + i), 1, null);
            peak[i] = OffHeap.peakBytes() - before;
            disk[i] = r.store().byteSize();
            staging[i] = r.stats().stagingBytes();
            System.out.printf("%d sentences, %d words: off-heap peak +%.2f MiB (staging %.2f MiB), store %.2f MiB on disk%n",
                    corpora.get(i).size(), r.stats().words(), peak[i] / 1048576.0, staging[i] / 1048576.0, disk[i] / 1048576.0);
            r.store().delete();
        }
        assertTrue(disk[1] > 3.5 * disk[0], "the store grows with the corpus: " + disk[0] + " → " + disk[1] + " bytes");
        assertEquals(Extraction.MIN_STAGE_ROWS * 4992L * Short.BYTES, staging[1]);
        assertEquals(peak[0], peak[1], "off-heap peak beyond the model's own memory, " + peak[0] + " → " + peak[1] + " bytes");
        assertTrue(peak[1] < disk[1], "the features (" + disk[1] + " bytes) are not held in memory (peak " + peak[1] + ")");
    }

    private static List<BrownCorpus.Sentence> firstSentences(int n) {
        try {
            return corpus.sentences("cb01").subList(0, n);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static List<ProbeTask.Sentence> train;

    /** The first n training sentences of the whole corpus. */
    private static synchronized List<ProbeTask.Sentence> sentences(int n) throws Exception {
        if (train == null) train = ProbeTask.pos(corpus, 0).parts().get(Part.TRAIN);
        return train.subList(0, n);
    }
}
