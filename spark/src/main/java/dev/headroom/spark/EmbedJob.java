package dev.headroom.spark;

import dev.headroom.memory.TrackedArena;
import dev.headroom.model.minilm.EncoderWorkspace;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.tensor.Tensor;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SaveMode;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.util.TaskCompletionListener;
import scala.Tuple2;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

/**
 * Sentence embeddings of a corpus with all-MiniLM-L6-v2, as {@code bin/headroom embed} computes
 * them, written as Parquet rows (id, vector): id as {@link Corpus} numbers the documents, vector
 * the 384 floats of the L2-normalised embedding.
 *
 * <p>Each task takes the model from its JVM's {@link ExecutorModels} and embeds its partition a
 * chunk at a time: a chunk's sentences are sorted by length and run through the encoder in
 * batches of 32 ({@link MiniLmEncoder#embed}), so padding stays as small as within the command
 * line's single sorted list. The embeddings equal the command line's within float rounding: a
 * sentence's last bits depend on the padded length of the batch it lands in (and on the thread
 * count), and a partition's batches are not the whole corpus's.
 */
final class EmbedJob {
    /** (id, vector): the output's schema. */
    static final StructType SCHEMA = new StructType()
            .add("id", DataTypes.LongType, false)
            .add("vector", DataTypes.createArrayType(DataTypes.FloatType, false), false);

    /**
     * @param maxTokens truncation, [CLS] and [SEP] included (0: the tokenizer's 128)
     * @param chunk     sentences a task sorts and embeds at a time
     * @param partitions at least this many partitions of text input
     * @param overwrite replace an existing output directory
     */
    record Settings(int maxTokens, int chunk, int partitions, boolean overwrite) {
        Settings {
            if (maxTokens < 0 || maxTokens > 512) throw new IllegalArgumentException("--max-tokens must be in [1, 512], got " + maxTokens);
            if (chunk < 1) throw new IllegalArgumentException("--chunk must be >= 1, got " + chunk);
            if (partitions < 1) throw new IllegalArgumentException("--partitions must be >= 1, got " + partitions);
        }
    }

    /**
     * What the job did, and where its time went.
     *
     * @param leftoverBytes Headroom's off-heap bytes beyond the loaded models when tasks ended (0 unless a task leaked)
     */
    record Result(long records, long wallNanos, long leftoverBytes, String metrics) {}

    private EmbedJob() {}

    static Result run(SparkSession spark, Corpus corpus, String output, Settings settings) {
        refuseExisting(spark.sparkContext().hadoopConfiguration(), output, settings.overwrite());
        JobMetrics metrics = new JobMetrics(spark.sparkContext(), "embed");
        long t0 = System.nanoTime();
        int maxTokens = settings.maxTokens(), chunk = settings.chunk();
        JavaRDD<Row> rows = corpus.read(spark, settings.partitions()).mapPartitions(docs -> embed(docs, maxTokens, chunk, metrics));
        spark.createDataFrame(rows, SCHEMA).write().mode(settings.overwrite() ? SaveMode.Overwrite : SaveMode.ErrorIfExists)
                .parquet(output);
        long wall = System.nanoTime() - t0;
        return new Result(metrics.records.sum(), wall, metrics.leftoverBytes.sum(), metrics.describe(wall, JobMetrics.localSlots(spark.sparkContext())));
    }

    /** A partition's documents as rows (id, vector), computed chunk by chunk on this executor's model. */
    static Iterator<Row> embed(Iterator<Tuple2<Long, String>> docs, int maxTokens, int chunk, JobMetrics metrics) {
        TaskContext task = TaskContext.get();
        ExecutorModels.taskStarted(task, metrics.leftoverBytes, metrics.measuredTasks);
        long t = System.nanoTime();
        MiniLmEncoder encoder = ExecutorModels.minilm(ExecutorModels.taskThreads(task), maxTokens);
        metrics.loadNanos.add(System.nanoTime() - t);
        // The task's scratch, reused by every chunk; closed when the task ends, before the
        // off-heap check above (Spark calls completion listeners in reverse order).
        EncoderWorkspace ws = new EncoderWorkspace();
        task.addTaskCompletionListener((TaskCompletionListener) done -> ws.close());
        int E = encoder.config().hidden();
        return new Chunks<>(docs, chunk, part -> {
            long start = System.nanoTime();
            List<String> texts = new ArrayList<>(part.size());
            for (Tuple2<Long, String> d : part) texts.add(d._2);
            List<Row> rows = new ArrayList<>(part.size());
            try (TrackedArena arena = TrackedArena.ofShared()) {
                /* (chunk, E): row i is the embedding of part's document i. */
                Tensor out = Tensor.allocate(arena, texts.size(), E);
                encoder.embed(texts, out, ws, MiniLmEncoder.DEFAULT_BATCH);
                for (int i = 0; i < part.size(); i++) {
                    float[] v = out.segment().asSlice((long) i * E * Float.BYTES, (long) E * Float.BYTES).toArray(ValueLayout.JAVA_FLOAT);
                    rows.add(RowFactory.create(part.get(i)._1, v));
                }
            }
            metrics.workNanos.add(System.nanoTime() - start);
            metrics.records.add(part.size());
            return rows;
        }, metrics.readNanos::add);
    }

    /** Refuses an output that exists, before any work, unless it is to be replaced. */
    static void refuseExisting(org.apache.hadoop.conf.Configuration hadoop, String output, boolean overwrite) {
        if (overwrite) return;
        try {
            Path out = new Path(output);
            FileSystem fs = out.getFileSystem(hadoop);
            if (fs.exists(out)) {
                throw new IllegalArgumentException("--output " + output + " exists; remove it or pass --overwrite");
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot check --output " + output + ": " + e.getMessage(), e);
        }
    }
}
