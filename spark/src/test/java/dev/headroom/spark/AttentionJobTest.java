package dev.headroom.spark;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.cli.Main;
import dev.headroom.io.Npy;
import dev.headroom.io.SafeTensors;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Locale;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The attention job in local mode against `bin/headroom run` (the tiled kernel: n > 4,096) on the same X and weights. */
class AttentionJobTest {
    /** E = 64, 4 heads of 16 sharing 2 key/value heads; n = 4,608 (tiled on one machine), 18 blocks of 256 rows. */
    static final AttentionConfig CONFIG = AttentionConfig.of(64, 4, 2, 16);
    static final int N = 4608;

    /** Writes random weights and X; returns the weights' path. */
    static Path problem(Path dir, long seed) throws Exception {
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            AttentionWeights w = AttentionWeights.random(CONFIG, true, seed, arena);
            SafeTensors.write(dir.resolve("w.safetensors"), w.stateDict());
            Npy.write(dir.resolve("x.npy"), Tensor.uniform(arena, seed + 1, 1, N, CONFIG.dModel()));
        }
        return dir.resolve("w.safetensors");
    }

    static AttentionJob.Settings settings(Path weights, boolean causal, int querySplits, int keySplits) {
        return new AttentionJob.Settings(weights, "", 4, 2, 16, causal, querySplits, keySplits, false);
    }

    @Test
    void equalsTheSingleMachineTiledForward(@TempDir Path dir) throws Exception {
        Path w = problem(dir, 3);
        for (boolean causal : new boolean[]{true, false}) {
            String tag = causal ? "causal" : "bidirectional";
            Path cli = dir.resolve("cli-" + tag + ".npy");
            String[] run = {"run", "--weights", w.toString(), "--input", dir.resolve("x.npy").toString(), "--output", cli.toString(),
                    "--heads", "4", "--kv-heads", "2", "--threads", "2"};
            if (causal) run = append(run, "--causal");
            assertEquals(0, Main.execute(run));
            // one key part per block: a block's attention is the single machine's, bit for bit;
            // three key parts (1,024 + 1,024 + the rest): merged through (O, M, L)
            for (int keySplits : new int[]{1, 3}) {
                Path out = dir.resolve("spark-" + tag + "-" + keySplits + ".npy");
                ByteArrayOutputStream log = new ByteArrayOutputStream();
                AttentionJob.Result r = AttentionJob.run(LocalSpark.session(), dir.resolve("x.npy"), out,
                        settings(w, causal, 5, keySplits), dir, new PrintStream(log, true, StandardCharsets.UTF_8));
                assertEquals(N, r.n());
                assertEquals(5, r.queryBlocks()); // 4,608 / 5 rounded up to 1,024 rows
                double[] d = compare(cli, out);
                System.out.printf(Locale.ROOT, "attention job (%s, %d key parts, %d tasks) vs run: max |Δ| %.3g (max |y| %.3g), "
                        + "%.1f%% of elements bitwise equal; %s%n", tag, r.keyParts(), r.tasks(), d[0], d[1], 100 * d[2], r.metrics());
                assertTrue(d[0] <= 4e-6 * d[1], tag + ", " + keySplits + " key parts: max difference " + d[0]);
            }
        }
    }

    @Test
    void aFailedJobLeavesNoOutputAndNoFilesInTheWorkDirectory(@TempDir Path dir) throws Exception {
        Path w = problem(dir, 4);
        java.nio.file.Files.createDirectories(dir.resolve("work"));
        // 3 key/value heads do not divide 4 heads: refused on the driver, after its work directory was made
        AttentionJob.Settings wrong = new AttentionJob.Settings(w, "", 4, 3, 16, true, 2, 1, false);
        Exception e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> AttentionJob.run(
                LocalSpark.session(), dir.resolve("x.npy"), dir.resolve("y.npy"), wrong, dir.resolve("work"),
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8)));
        assertTrue(e.getMessage().contains("kv_heads (3) must divide heads (4)"), e.getMessage());
        assertTrue(!java.nio.file.Files.exists(dir.resolve("y.npy")), "no Y");
        try (var left = java.nio.file.Files.list(dir.resolve("work"))) {
            assertEquals(0, left.count(), "the driver's Q, K, V files are removed");
        }
    }

    /** {max |a − b|, max |a|, share of equal elements} of two .npy files of one shape. */
    static double[] compare(Path a, Path b) throws Exception {
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            Tensor x = Npy.read(a, arena), y = Npy.read(b, arena);
            assertEquals(x.shapeString(), y.shapeString());
            double diff = 0, max = 0;
            long same = 0;
            for (long i = 0; i < x.size(); i++) {
                diff = Math.max(diff, Math.abs(x.get(i) - y.get(i)));
                max = Math.max(max, Math.abs(x.get(i)));
                if (x.get(i) == y.get(i)) same++;
            }
            return new double[]{diff, max, (double) same / x.size()};
        }
    }

    static String[] append(String[] a, String s) {
        String[] b = java.util.Arrays.copyOf(a, a.length + 1);
        b[a.length] = s;
        return b;
    }
}
