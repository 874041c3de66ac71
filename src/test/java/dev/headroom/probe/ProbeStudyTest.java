package dev.headroom.probe;

import dev.headroom.cli.CliTest;
import dev.headroom.corpus.BrownCorpus;
import dev.headroom.corpus.BrownCorpus.Part;
import dev.headroom.report.ProbeReport;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A whole study on a small sample of Brown (60 sentences, a few representations, short probes):
 * reproducible with a seed, the stores removed afterwards, the report's files written; and the
 * command line end to end.
 */
class ProbeStudyTest {
    private static ProbeTask pos, control;
    /** Embeddings, the residual after layer 5, L0H2 (previous-token head) and L1H1. */
    private static final Set<Integer> SOME = Set.of(0, 6, 7 + 2, 7 + 12 + 1);

    @TempDir
    Path dir;

    @BeforeAll
    static void tasks() throws Exception {
        pos = ProbeTask.pos(BrownCorpus.open(), 60);
        control = pos.control(5);
    }

    private ProbeStudy.Options options(Path work, long seed) {
        return ProbeStudy.Options.defaults(work).withSeed(seed).withThreads(2).withL2Grid(1e-3, 1e-2)
                .withProbe(LinearProbe.Options.defaults().withMinSteps(150)).withRepresentations(SOME::contains);
    }

    @Test
    void aStudyIsReproducibleWithItsSeedAndLeavesNoFeaturesBehind() throws Exception {
        ProbeStudy.Outcome a, b;
        try (ProbedModel model = MiniLmProbedModel.trained(2)) {
            a = ProbeStudy.run(model, List.of(pos, control), options(dir.resolve("a"), 9), null);
            b = ProbeStudy.run(model, List.of(pos, control), options(dir.resolve("b"), 9), null);
        }
        assertEquals(SOME.size() * 2, a.results().size());
        for (int i = 0; i < a.results().size(); i++) {
            ProbeStudy.Result x = a.results().get(i), y = b.results().get(i);
            assertEquals(x.representation(), y.representation());
            assertEquals(x.l2(), y.l2());
            assertArrayEquals(x.devByL2(), y.devByL2());
            for (int c = 0; c < x.test().classes(); c++) assertArrayEquals(x.test().counts()[c], y.test().counts()[c]);
        }
        assertFalse(Files.exists(dir.resolve("a")), "features deleted, and the directories made for them");
        // sanity of the numbers on 48 training sentences: the last layer's residual beats chance by far
        double residual = a.result("pos", 6).testAccuracy(), controlResidual = a.result("pos-control", 6).testAccuracy();
        System.out.printf("60 sentences: layer 5 residual %.3f, control %.3f, L1H1 %.3f%n", residual, controlResidual,
                a.result("pos", 7 + 13).testAccuracy());
        assertTrue(residual > 0.5, "residual accuracy " + residual);

        ProbeRun run = new ProbeRun("pos", "pos-control", pos.classes(), a, null, pos.majorityBaseline(Part.DEV),
                pos.majorityBaseline(Part.TEST), Map.of("seed", 9));
        Path out = dir.resolve("report");
        List<String> files = new ProbeReport(run).write(out);
        assertEquals(List.of("probes.csv", "heads.csv", "heads.png", "tags.csv", "best-heads-per-tag.csv", "layers.csv", "layers.png", "probe.json"), files);
        List<String> probes = Files.readAllLines(out.resolve("probes.csv"));
        assertEquals(1 + SOME.size() * 2, probes.size());
        assertTrue(probes.get(1).startsWith("minilm,pos,embeddings,0,-1,384,"), probes.get(1));
        BufferedImage heads = ImageIO.read(out.resolve("heads.png").toFile());
        assertTrue(heads.getWidth() > 250 && heads.getHeight() > 300, heads.getWidth() + "×" + heads.getHeight()); // 2 heads a layer here
        String json = Files.readString(out.resolve("probe.json"));
        assertTrue(json.contains("\"majority_baseline\"") && json.contains("\"L1H1\""), json.substring(0, 300));
    }

    @Test
    void theCommandWritesItsFiles() throws Exception {
        Path out = dir.resolve("cli");
        Object[] res = CliTest.run("probe", "--max-sentences", "30", "--no-random", "--min-steps", "20", "--l2", "1e-3",
                "--threads", "2", "--out", out.toString());
        assertEquals(0, res[0], String.valueOf(res[2]));
        String stdout = (String) res[1];
        assertTrue(stdout.contains("majority tag per word (test):") && stdout.contains("best single heads"), stdout);
        for (String f : List.of("probes.csv", "heads.csv", "heads.png", "tags.csv", "best-heads-per-tag.csv", "layers.csv", "layers.png", "probe.json")) {
            assertTrue(Files.isRegularFile(out.resolve(f)), f);
        }
        assertEquals(1 + 79 * 2, Files.readAllLines(out.resolve("probes.csv")).size());
        assertFalse(Files.exists(out.resolve("features")), "features deleted, and the directories made for them");
        Object[] bad = CliTest.run("probe", "--task", "ner", "--out", dir.resolve("x").toString());
        assertEquals(2, bad[0]);
        assertTrue(String.valueOf(bad[2]).contains("unknown task 'ner'; available: pos"), String.valueOf(bad[2]));
    }
}
