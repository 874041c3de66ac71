package dev.headroom.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PruneStudyTest {
    @Test
    void theDemoRunsWithoutArgumentsAndWritesItsPictures() throws Exception {
        Object[] r = CliTest.run("demo", "--out", dir.resolve("demo").toString());
        assertEquals(0, r[0], String.valueOf(r[2]));
        String out = (String) r[1];
        assertTrue(out.contains("most previous token:") && out.contains("L0H2"), out);
        assertTrue(out.contains("sliding window 512") && out.contains("12.00 GiB"), out);
        assertTrue(Files.size(dir.resolve("demo/grid.png")) > 10_000 && Files.exists(dir.resolve("demo/report.html")));
    }

    @TempDir
    Path dir;

    @Test
    void rankingPruningAndOutputsOnASmallSet() throws Exception {
        Path sentences = dir.resolve("s.txt");
        List<String> all = PruneStudyCommand.builtIn();
        assertEquals(300, all.size());
        Files.write(sentences, all.subList(0, 6));
        Object[] r = CliTest.run("prune-study", "--sentences", sentences.toString(), "--importance-sentences", "6",
                "--steps", "0,50", "--threads", "2", "--out", dir.resolve("out").toString());
        assertEquals(0, r[0], String.valueOf(r[2]));
        List<String> csv = Files.readAllLines(dir.resolve("out/pruning.csv"));
        assertEquals(3, csv.size());
        String[] none = csv.get(1).split(","), half = csv.get(2).split(",");
        assertEquals("0", none[1]);
        assertEquals(1.0, Double.parseDouble(none[3]), 1e-6, "nothing pruned: the same embeddings");
        assertEquals("36", half[1]);
        double cos = Double.parseDouble(half[3]);
        assertTrue(cos < 0.999 && cos > 0.3, "half the heads pruned moves the embeddings: " + cos);
        assertEquals(73, Files.readAllLines(dir.resolve("out/head_importance.csv")).size());
        assertTrue(Files.size(dir.resolve("out/pruning.png")) > 1000);
    }
}
