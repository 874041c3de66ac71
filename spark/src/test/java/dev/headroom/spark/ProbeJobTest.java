package dev.headroom.spark;

import dev.headroom.corpus.BrownCorpus;
import dev.headroom.corpus.BrownCorpus.Part;
import dev.headroom.memory.TrackedArena;
import dev.headroom.probe.Extraction;
import dev.headroom.probe.FeatureStore;
import dev.headroom.probe.LinearProbe;
import dev.headroom.probe.MiniLmProbedModel;
import dev.headroom.probe.ProbeStudy;
import dev.headroom.probe.ProbeTask;
import dev.headroom.probe.Representation;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The probe job in local mode (local[2], 200 Brown sentences in 3 partitions a part, short
 * probes on a few representations) against one machine: every word's features equal a
 * single-machine {@link Extraction} of the same part within one float16 step of the value plus
 * 2e-5 of the row's largest |value| (the partitions' batches pad differently, which moves
 * float32's last bits at the row's scale and, now and then, the float16 they round to), and the probes the job trained equal {@link ProbeStudy#train} on the stores the job
 * assembled, bitwise (same trainer, seeds, rows).
 */
class ProbeJobTest {
    /** Embeddings, the residual after layer 5, L0H2 and L1H1 (as ProbeStudyTest). */
    private static final Set<Integer> SOME = Set.of(0, 6, 7 + 2, 7 + 12 + 1);
    private static final long SEED = 3;
    /**
     * float32's difference between two batchings of a sentence, relative to the row's largest value:
     * EmbedJobTest sees below 1e-5 on unit-norm embeddings; a row's small values can therefore move
     * by more than their own float16 step (the first run, with one step alone, failed on a value
     * of 9.6e-5 two steps apart). Twice EmbedJobTest's bound, for margin; the printed share of the
     * allowance is near 1 whenever a value crossed a float16 rounding boundary (one whole step).
     */
    private static final double FLOAT32_RELATIVE = 2e-5;

    @Test
    void featuresEqualOneMachinesExtractionAndProbesEqualTheStudysTraining(@TempDir Path dir) throws Exception {
        BrownCorpus corpus = BrownCorpus.open();
        ProbeStudy.Options study = ProbeStudy.Options.defaults(dir.resolve("work")).withSeed(SEED).withThreads(2).withL2Grid(1e-4, 1e-3)
                .withProbe(LinearProbe.Options.defaults().withEpochs(1).withMinSteps(40)).withKeepFeatures(true)
                .withRepresentations(SOME::contains);
        ProbeJob.Result job = ProbeJob.run(LocalSpark.session(), corpus, dir.resolve("out"), new ProbeJob.Settings(200, study, false, 3, 1),
                System.out);
        assertEquals(List.of("probes.csv", "heads.csv", "heads.png", "tags.csv", "best-heads-per-tag.csv", "layers.csv", "layers.png",
                "probe.json"), job.files());
        for (String f : job.files()) assertTrue(Files.size(dir.resolve("out").resolve(f)) > 0, f);
        assertFalse(Files.exists(dir.resolve("work/minilm/train/parts")), "the tasks' parts deleted once assembled");

        ProbeTask pos = ProbeTask.pos(corpus, 200), control = pos.control(SEED);
        List<Representation> reps = Representation.all(6, 12, 32, 384);
        Map<Part, FeatureStore> stores = new EnumMap<>(Part.class);
        try {
            for (Part p : Part.values()) stores.put(p, FeatureStore.open(dir.resolve("work/minilm").resolve(p.label()), reps));

            // 1. Every word's 79 representations against one machine's extraction of the same part.
            long values = 0, bitwise = 0;
            double worst = 0; // the largest difference as a share of what is allowed
            try (MiniLmProbedModel model = MiniLmProbedModel.trained(1)) {
                for (Part p : Part.values()) {
                    FeatureStore alone = Extraction.run(model, pos.parts().get(p), dir.resolve("alone").resolve(p.label()),
                            SEED + p.ordinal(), null).store();
                    FeatureStore spark = stores.get(p);
                    try {
                        assertEquals(alone.rows(), spark.rows(), p.label() + " rows");
                        assertEquals(job.run().trained().extraction().get(p).words(), spark.rows(), p.label() + " words in the stats");
                        int[] aloneRow = new int[spark.rows()]; // word → row of `alone`
                        java.util.Arrays.fill(aloneRow, -1);
                        for (int r = 0; r < alone.rows(); r++) aloneRow[alone.word(r)] = r;
                        try (TrackedArena arena = TrackedArena.ofConfined()) {
                            for (Representation rep : reps) {
                                /* a, b: (rows, dim) float16, row-major: the whole representation of each store. */
                                MemorySegment a = arena.allocate((long) alone.rows() * rep.dim() * Short.BYTES);
                                MemorySegment b = arena.allocate((long) spark.rows() * rep.dim() * Short.BYTES);
                                alone.read(rep, 0, alone.rows(), a);
                                spark.read(rep, 0, spark.rows(), b);
                                for (int r = 0; r < spark.rows(); r++) {
                                    int ra = aloneRow[spark.word(r)];
                                    assertTrue(ra >= 0, p.label() + ": word " + spark.word(r) + " of the job's store is not in one machine's");
                                    float rowMax = 0; // the largest |value| of one machine's row: the scale of float32's error
                                    for (int j = 0; j < rep.dim(); j++) {
                                        rowMax = Math.max(rowMax, Math.abs(Float.float16ToFloat(
                                                a.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, (long) ra * rep.dim() + j))));
                                    }
                                    for (int j = 0; j < rep.dim(); j++) {
                                        short x = a.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, (long) ra * rep.dim() + j);
                                        short y = b.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, (long) r * rep.dim() + j);
                                        values++;
                                        if (x == y) {
                                            bitwise++;
                                            continue;
                                        }
                                        float fx = Float.float16ToFloat(x), fy = Float.float16ToFloat(y);
                                        // one float16 step of the value, plus float32's difference between batchings at the row's scale
                                        double allowed = Math.max(step16(fx), step16(fy)) + FLOAT32_RELATIVE * rowMax;
                                        double share = Math.abs(fx - fy) / allowed;
                                        worst = Math.max(worst, share);
                                        assertTrue(share <= 1, p.label() + " " + rep.name() + " word " + spark.word(r) + " column " + j
                                                + ": one machine " + fx + ", the job " + fy + ", " + Math.abs(fx - fy) + " apart, more than "
                                                + allowed + " (one float16 step + " + FLOAT32_RELATIVE + " × the row's largest |value| " + rowMax + ")");
                                    }
                                }
                            }
                        }
                    } finally {
                        alone.delete();
                    }
                }
            }
            System.out.printf("probe job vs one machine: %d of %d feature values bitwise equal; the largest difference %.2f of the "
                    + "allowance%n", bitwise, values, worst);
            assertTrue(bitwise > values / 2, bitwise + " of " + values + " bitwise equal");

            // 2. The job's probes against the study's training on the same stores.
            List<ProbeStudy.Result> again = ProbeStudy.train("minilm", List.of(pos, control), stores, study, null);
            List<ProbeStudy.Result> got = job.run().trained().results();
            assertEquals(SOME.size() * 2, got.size());
            assertEquals(again.size(), got.size());
            for (int i = 0; i < got.size(); i++) {
                ProbeStudy.Result x = again.get(i), y = got.get(i);
                String what = y.task() + " " + y.representation().name();
                assertEquals(x.representation(), y.representation(), what);
                assertEquals(x.l2(), y.l2(), what);
                assertArrayEquals(x.devByL2(), y.devByL2(), what);
                assertEquals(x.testAccuracy(), y.testAccuracy(), what);
                for (int c = 0; c < x.test().classes(); c++) assertArrayEquals(x.test().counts()[c], y.test().counts()[c], what);
            }
            double residual = job.run().trained().result("pos", 6).testAccuracy();
            System.out.printf("probe job, 200 sentences: layer 5 residual test accuracy %.3f; %s%n", residual, job.metrics());
            assertTrue(residual > 0.5, "layer 5 residual accuracy " + residual);
        } finally {
            for (FeatureStore s : stores.values()) s.close();
        }
    }

    @Test
    void theExecutorsUntrainedEncoderIsTheCommandLines(@TempDir Path dir) throws Exception {
        List<ProbeTask.Sentence> sentences = ProbeTask.pos(BrownCorpus.open(), 20).parts().get(Part.TRAIN).subList(0, 12);
        List<Representation> reps = Representation.all(6, 12, 32, 384);
        try (MiniLmProbedModel cli = MiniLmProbedModel.random(1, 5); MiniLmProbedModel executor = ExecutorModels.probed(false, 1, 5)) {
            assertEquals(cli.name(), executor.name());
            FeatureStore a = Extraction.run(cli, sentences, dir.resolve("cli"), 7, null).store();
            FeatureStore b = Extraction.run(executor, sentences, dir.resolve("executor"), 7, null).store();
            try (TrackedArena arena = TrackedArena.ofConfined()) {
                assertEquals(a.rows(), b.rows());
                for (Representation rep : reps) {
                    /* (rows, dim) float16, row-major, in the same row order (same sentences, seed and batches) */
                    MemorySegment x = arena.allocate((long) a.rows() * rep.dim() * Short.BYTES);
                    MemorySegment y = arena.allocate((long) b.rows() * rep.dim() * Short.BYTES);
                    a.read(rep, 0, a.rows(), x);
                    b.read(rep, 0, b.rows(), y);
                    assertEquals(-1, x.mismatch(y), rep.name() + ": the untrained encoders differ");
                }
            } finally {
                a.delete();
                b.delete();
            }
        }
        // a different seed is a different encoder (the comparison above can fail)
        try (MiniLmProbedModel other = ExecutorModels.probed(false, 1, 6); MiniLmProbedModel cli = MiniLmProbedModel.random(1, 5)) {
            FeatureStore a = Extraction.run(cli, sentences.subList(0, 2), dir.resolve("a"), 7, null).store();
            FeatureStore b = Extraction.run(other, sentences.subList(0, 2), dir.resolve("b"), 7, null).store();
            try (TrackedArena arena = TrackedArena.ofConfined()) {
                Representation last = reps.get(6);
                MemorySegment x = arena.allocate((long) a.rows() * last.dim() * Short.BYTES), y = arena.allocate(x.byteSize());
                a.read(last, 0, a.rows(), x);
                b.read(last, 0, b.rows(), y);
                assertTrue(x.mismatch(y) >= 0, "seeds 5 and 6 gave the same untrained encoder");
            } finally {
                a.delete();
                b.delete();
            }
        }
    }

    @Test
    void theCommandRefusesBadOptionsBeforeSparkStarts(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("file"), "x");
        assertEquals(2, SparkMain.execute("probe", "--out", dir.resolve("file").toString()));
        assertEquals(2, SparkMain.execute("probe", "--threads", "0", "--out", dir.resolve("o").toString()));
        assertFalse(Files.exists(dir.resolve("o")));
    }

    /** The distance from |v| to the next float16 (normal or subnormal). */
    private static double step16(float v) {
        float a = Math.abs(v);
        return a < 0x1p-14f ? 0x1p-24 : Math.scalb(1.0, Math.getExponent(a) - 10);
    }
}
