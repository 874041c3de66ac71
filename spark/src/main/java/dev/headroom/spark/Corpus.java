package dev.headroom.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import scala.Tuple2;

import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A corpus of documents (sentences), each with a numeric id, from text files or Parquet.
 *
 * <ul>
 *   <li><b>Text</b>: one document per line, UTF-8; blank lines are skipped, as
 *       {@code bin/headroom embed --input} skips them. Directories are read file by file (hidden
 *       files, {@code _*} and {@code .*}, left out), files in path order; a document's id is its
 *       index among the non-blank lines of all files in that order, so that with one file, id i
 *       is row i of what {@code bin/headroom embed --input file} writes. Bytes that are not UTF-8
 *       become U+FFFD, as Spark's text source reads them (the command line refuses such a file).</li>
 *   <li><b>Parquet</b>: a string column of text ({@code text} by default) and, if present, an
 *       integer id column ({@code id} by default), used as it is; without one, ids are assigned
 *       in the order Spark reads the rows (give an id column when that order matters). Null or
 *       blank texts are skipped.</li>
 * </ul>
 *
 * @param paths      files, directories or globs (Hadoop paths: local, hdfs://, ...)
 * @param format     "text", "parquet", or "auto" (Parquet when a path ends in .parquet or is a
 *                   directory of .parquet files)
 * @param textColumn Parquet's text column
 * @param idColumn   Parquet's id column, when it exists
 */
record Corpus(List<String> paths, String format, String textColumn, String idColumn) implements Serializable {
    Corpus {
        if (paths.isEmpty()) throw new IllegalArgumentException("no input: give at least one file or directory");
        if (!List.of("text", "parquet", "auto").contains(format)) {
            throw new IllegalArgumentException("--format must be text, parquet or auto, got '" + format + "'");
        }
        paths = List.copyOf(paths);
    }

    static Corpus text(String... paths) {
        return new Corpus(Arrays.asList(paths), "text", "text", "id");
    }

    /**
     * The documents as (id, text), in at least {@code partitions} partitions for text (Hadoop
     * splits; Parquet keeps its own), in id order across partitions.
     */
    JavaPairRDD<Long, String> read(SparkSession spark, int partitions) {
        JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        Configuration hadoop = jsc.hadoopConfiguration();
        if (isParquet(hadoop)) return readParquet(spark);
        List<String> files = textFiles(hadoop);
        return jsc.textFile(String.join(",", files), partitions)
                .filter(line -> !line.isBlank())
                .zipWithIndex()
                .mapToPair(t -> new Tuple2<>(t._2, t._1));
    }

    private boolean isParquet(Configuration hadoop) {
        if (!format.equals("auto")) return format.equals("parquet");
        for (String p : paths) {
            if (p.endsWith(".parquet")) return true;
            try {
                Path path = new Path(p);
                FileSystem fs = path.getFileSystem(hadoop);
                if (fs.isDirectory(path)) {
                    for (FileStatus f : fs.listStatus(path)) if (f.getPath().getName().endsWith(".parquet")) return true;
                }
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read the input " + p + ": " + e.getMessage(), e);
            }
        }
        return false;
    }

    /** Every input file, directories expanded (not hidden files), in path order; refuses inputs that match nothing. */
    private List<String> textFiles(Configuration hadoop) {
        List<String> files = new ArrayList<>();
        for (String p : paths) {
            try {
                Path path = new Path(p);
                FileSystem fs = path.getFileSystem(hadoop);
                FileStatus[] matched = fs.globStatus(path);
                if (matched == null || matched.length == 0) throw new IllegalArgumentException("input " + p + " does not exist");
                List<String> found = new ArrayList<>();
                for (FileStatus m : matched) {
                    if (m.isDirectory()) {
                        for (FileStatus f : fs.listStatus(m.getPath())) {
                            String name = f.getPath().getName();
                            if (f.isFile() && !name.startsWith("_") && !name.startsWith(".")) found.add(f.getPath().toString());
                        }
                    } else {
                        found.add(m.getPath().toString());
                    }
                }
                if (found.isEmpty()) throw new IllegalArgumentException("input " + p + " holds no files");
                found.sort(null);
                files.addAll(found);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot list the input " + p + ": " + e.getMessage(), e);
            }
        }
        for (String f : files) {
            if (f.contains(",")) throw new IllegalArgumentException("input file " + f + " has a comma in its path, which Spark's text source cannot take");
        }
        return files;
    }

    private JavaPairRDD<Long, String> readParquet(SparkSession spark) {
        Dataset<Row> df = spark.read().parquet(paths.toArray(String[]::new));
        List<String> columns = Arrays.asList(df.columns());
        if (!columns.contains(textColumn)) {
            throw new IllegalArgumentException("the Parquet input has no column '" + textColumn + "' (it has " + columns
                    + "); name the text column with --text-column");
        }
        StructField text = df.schema().apply(textColumn);
        if (!text.dataType().equals(DataTypes.StringType)) {
            throw new IllegalArgumentException("column '" + textColumn + "' is " + text.dataType().simpleString() + ", not string");
        }
        String textName = textColumn;
        if (columns.contains(idColumn)) {
            return df.select(df.col(idColumn).cast(DataTypes.LongType), df.col(textName)).javaRDD()
                    .filter(r -> !r.isNullAt(0) && !r.isNullAt(1) && !r.getString(1).isBlank())
                    .mapToPair(r -> new Tuple2<>(r.getLong(0), r.getString(1)));
        }
        return df.select(df.col(textName)).javaRDD()
                .filter(r -> !r.isNullAt(0) && !r.getString(0).isBlank())
                .zipWithIndex()
                .mapToPair(t -> new Tuple2<>(t._2, t._1.getString(0)));
    }
}
