package dev.headroom.spark;

import dev.headroom.cli.Main;
import dev.headroom.io.Npy;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The embed job in local mode against `bin/headroom embed` on the same sentences. */
class EmbedJobTest {
    @Test
    void equalsTheCommandLineOnTheSameSentences(@TempDir Path dir) throws Exception {
        List<String> sentences = LocalSpark.sentences().subList(0, 120);
        // two files and blank lines: ids run over the non-blank lines of the files in path order
        List<String> first = new ArrayList<>(sentences.subList(0, 50));
        first.add(7, "");
        first.add("   ");
        Files.createDirectories(dir.resolve("in"));
        Files.write(dir.resolve("in/a.txt"), first);
        Files.write(dir.resolve("in/b.txt"), sentences.subList(50, 120));
        Files.write(dir.resolve("all.txt"), sentences);

        assertEquals(0, Main.execute("embed", "--input", dir.resolve("all.txt").toString(), "--output",
                dir.resolve("cli.npy").toString(), "--threads", "1"));
        SparkSession spark = LocalSpark.session();
        EmbedJob.Result r = EmbedJob.run(spark, Corpus.text(dir.resolve("in").toString()), dir.resolve("out").toString(),
                new EmbedJob.Settings(0, 32, 3, false));
        assertEquals(120, r.records());
        List<Row> rows = spark.read().parquet(dir.resolve("out").toString()).orderBy("id").collectAsList();
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            Tensor cli = Npy.read(dir.resolve("cli.npy"), arena);
            assertEquals(120, rows.size());
            double worst = 0;
            int identical = 0;
            for (int i = 0; i < rows.size(); i++) {
                assertEquals(i, rows.get(i).getLong(0));
                List<Float> v = rows.get(i).getList(1);
                assertEquals(384, v.size());
                boolean same = true;
                for (int j = 0; j < 384; j++) {
                    float expected = cli.at(i, j);
                    worst = Math.max(worst, Math.abs(expected - v.get(j)));
                    same &= expected == v.get(j);
                }
                if (same) identical++;
            }
            System.out.printf("embed job vs CLI: max |difference| %.3g, %d of %d embeddings bitwise equal; %s%n", worst, identical,
                    rows.size(), r.metrics());
            assertTrue(worst < 1e-5, "max difference " + worst);
        }
    }

    @Test
    void readsParquetWithItsOwnIdsOrNumbersItsRows(@TempDir Path dir) throws Exception {
        List<String> sentences = LocalSpark.sentences().subList(100, 140);
        Files.write(dir.resolve("all.txt"), sentences);
        assertEquals(0, Main.execute("embed", "--input", dir.resolve("all.txt").toString(), "--output",
                dir.resolve("cli.npy").toString(), "--threads", "1"));
        SparkSession spark = LocalSpark.session();
        org.apache.spark.sql.types.StructType schema = new org.apache.spark.sql.types.StructType()
                .add("doc", org.apache.spark.sql.types.DataTypes.LongType).add("body", org.apache.spark.sql.types.DataTypes.StringType);
        List<Row> in = new ArrayList<>();
        for (int i = sentences.size() - 1; i >= 0; i--) in.add(org.apache.spark.sql.RowFactory.create(1000L + 3 * i, sentences.get(i)));
        in.add(org.apache.spark.sql.RowFactory.create(5L, "  ")); // blank: skipped
        spark.createDataFrame(in, schema).repartition(3).write().parquet(dir.resolve("in.parquet").toString());
        EmbedJob.run(spark, new Corpus(List.of(dir.resolve("in.parquet").toString()), "auto", "body", "doc"),
                dir.resolve("out").toString(), new EmbedJob.Settings(0, 64, 2, false));
        // without an id column, rows are numbered in the order Spark reads them: one file, written in order
        spark.createDataFrame(in.subList(0, sentences.size()), schema).coalesce(1).write().parquet(dir.resolve("plain.parquet").toString());
        EmbedJob.run(spark, new Corpus(List.of(dir.resolve("plain.parquet").toString()), "parquet", "body", "id"),
                dir.resolve("out-plain").toString(), new EmbedJob.Settings(0, 64, 2, false));
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            Tensor cli = Npy.read(dir.resolve("cli.npy"), arena);
            List<Row> rows = spark.read().parquet(dir.resolve("out").toString()).orderBy("id").collectAsList();
            List<Row> plain = spark.read().parquet(dir.resolve("out-plain").toString()).orderBy("id").collectAsList();
            assertEquals(sentences.size(), rows.size());
            assertEquals(sentences.size(), plain.size());
            for (int i = 0; i < sentences.size(); i++) {
                assertEquals(1000L + 3 * i, rows.get(i).getLong(0));
                int reversed = sentences.size() - 1 - i; // plain's row i is sentence `reversed`
                assertEquals(i, plain.get(i).getLong(0));
                List<Float> v = rows.get(i).getList(1), w = plain.get(i).getList(1);
                for (int j = 0; j < 384; j++) {
                    assertEquals(cli.at(i, j), v.get(j), 1e-5f, "id " + (1000 + 3 * i));
                    assertEquals(cli.at(reversed, j), w.get(j), 1e-5f, "row " + i);
                }
            }
        }
    }
}
