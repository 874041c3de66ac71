package dev.headroom.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code inspect --model tiny}: texts (batched, padded) and {@code --induction}, with their files. */
class TinyInspectionTest {
    @TempDir
    Path dir;

    @Test
    void textsGetTheReportOfEveryHead() throws Exception {
        Path out = dir.resolve("tiny");
        Object[] r = CliTest.run("inspect", "--model", "tiny", "Once upon a time, there was a jury.", "A dog.", "--out", out.toString());
        assertEquals(0, r[0], (String) r[2]);
        String o = (String) r[1];
        assertTrue(o.contains("tiny byte decoder, 4 layers × 4 heads (causal), on 2 text(s); the first has 36 tokens"), o);
        assertTrue(o.contains("layer 3 head  3 ") && o.contains("most first token (<bos>):") && !o.contains("next token"), o);
        for (String f : List.of("statistics.csv", "roles.txt", "grid.png", "report.html", "attention.json", "heads/layer3_head03.png")) {
            assertTrue(Files.size(out.resolve(f)) > 0, f);
        }
        // the statistics count the first text's 36 rows and the second's 7, not the padding
        String csv = Files.readString(out.resolve("statistics.csv"));
        assertTrue(csv.lines().skip(1).allMatch(l -> l.contains(",43,")), csv);
        assertEquals(17, csv.lines().count());
    }

    @Test
    void inductionWritesItsTableAndPictures() throws Exception {
        Path out = dir.resolve("induction");
        Object[] r = CliTest.run("inspect", "--model", "tiny", "--induction", "--out", out.toString());
        assertEquals(0, r[0], (String) r[2]);
        String o = (String) r[1];
        assertTrue(o.contains("induction on 8 random strings of 100 letters, each repeated once (<bos> s s), seed 2022:"), o);
        assertTrue(o.matches("(?s).*loss on the first copy [0-9.]+ bits/token, on the second [0-9.]+ .*"), o);
        assertTrue(o.contains("L3H3 ") && o.contains("strongest L"), o);
        assertEquals(17, Files.readString(out.resolve("induction.csv")).lines().count());
        assertTrue(Files.size(out.resolve("induction_head.png")) > 0 && Files.size(out.resolve("induction_grid.png")) > 0);
        r = CliTest.run("inspect", "--model", "tiny", "--induction", "some text", "--out", out.toString());
        assertEquals("headroom: --induction makes its own sequences; give no text with it" + System.lineSeparator(), r[2]);
        r = CliTest.run("inspect", "--model", "minilm", "--induction", "--out", out.toString());
        assertEquals("headroom: --induction needs a decoder: --model tiny" + System.lineSeparator(), r[2]);
    }
}
