package dev.headroom.spark;

import dev.headroom.cli.Main;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.PrintStream;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** The inspect job in local mode against `bin/headroom inspect --model minilm` on the same sentences. */
class InspectJobTest {
    @Test
    void writesTheCommandLinesReportWithTheSameStatistics(@TempDir Path dir) throws Exception {
        List<String> sentences = LocalSpark.sentences().subList(0, 48);
        Files.write(dir.resolve("corpus.txt"), sentences);
        List<String> args = new ArrayList<>(List.of("inspect", "--model", "minilm", "--out", dir.resolve("cli").toString()));
        args.addAll(sentences);
        assertEquals(0, Main.execute(args.toArray(String[]::new)));

        ByteArrayOutputStream log = new ByteArrayOutputStream();
        InspectJob.Result r = InspectJob.run(LocalSpark.session(), Corpus.text(dir.resolve("corpus.txt").toString()),
                dir.resolve("spark"), new InspectJob.Settings(8, 20, 3), new PrintStream(log, true, StandardCharsets.UTF_8));
        System.out.println("inspect job: " + r.metrics());
        assertEquals(48, r.sentences());
        assertEquals(files(dir.resolve("cli")), files(dir.resolve("spark")), "the same report files");
        assertEquals(Files.readString(dir.resolve("cli/roles.txt")), Files.readString(dir.resolve("spark/roles.txt")));

        List<String> cli = Files.readAllLines(dir.resolve("cli/statistics.csv")), spark = Files.readAllLines(dir.resolve("spark/statistics.csv"));
        assertEquals(cli.size(), spark.size());
        assertEquals(cli.getFirst(), spark.getFirst());
        double worst = 0;
        for (int i = 1; i < cli.size(); i++) {
            String[] a = cli.get(i).split(","), b = spark.get(i).split(",");
            assertEquals(a.length, b.length);
            for (int c = 0; c < a.length; c++) {
                if (a[c].equals(b[c])) continue;
                double x = Double.parseDouble(a[c]), y = Double.parseDouble(b[c]); // numbers printed with 4 to 6 decimals
                worst = Math.max(worst, Math.abs(x - y));
                assertEquals(x, y, 2.5e-6, "statistics.csv line " + i + " column " + c + ": " + cli.get(i) + " vs " + spark.get(i));
            }
        }
        System.out.println("inspect job vs CLI: statistics.csv differ by at most " + worst);
    }

    static List<String> files(Path root) throws Exception {
        try (Stream<Path> s = Files.walk(root)) {
            return s.filter(Files::isRegularFile).map(p -> root.relativize(p).toString()).sorted().toList();
        }
    }
}
