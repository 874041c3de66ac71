package dev.headroom.cli;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.io.Npy;
import dev.headroom.io.SafeTensors;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

public class CliTest {
    @TempDir
    Path dir;

    /** Runs the CLI in this JVM and returns {exit code, stdout, stderr}. */
    public static Object[] run(String... args) {
        PrintStream out = System.out, err = System.err;
        ByteArrayOutputStream o = new ByteArrayOutputStream(), e = new ByteArrayOutputStream();
        System.setOut(new PrintStream(o, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(e, true, StandardCharsets.UTF_8));
        try {
            int code = Main.execute(args);
            return new Object[]{code, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8)};
        } finally {
            System.setOut(out);
            System.setErr(err);
        }
    }

    @Test
    void runWritesWhatTheApiComputes() throws Exception {
        AttentionConfig c = AttentionConfig.of(24, 6).withKvHeads(2);
        try (Arena arena = Arena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 3, arena);
            Path weights = dir.resolve("w.safetensors");
            SafeTensors.write(weights, w.stateDict());
            Tensor x = Tensor.allocate(arena, 2, 9, 24);
            SplittableRandom r = new SplittableRandom(1);
            for (long i = 0; i < x.size(); i++) x.set(i, (float) r.nextGaussian());
            Path in = dir.resolve("x.npy"), outFile = dir.resolve("y.npy");
            Npy.write(in, x);
            Object[] res = run("run", "--weights", weights.toString(), "--input", in.toString(), "--output",
                    outFile.toString(), "--heads", "6", "--kv-heads", "2", "--causal", "--key-lengths", "9,4", "--threads", "2");
            assertEquals(0, res[0], String.valueOf(res[2]));
            assertTrue(((String) res[1]).contains("output (2, 9, 24)"), (String) res[1]);
            assertTrue(((String) res[1]).contains("peak"), (String) res[1]);
            try (MultiHeadAttention mha = new MultiHeadAttention(w)) {
                Tensor expect = mha.forward(x, Mask.causal().withKeyLengths(9, 4), arena);
                assertArrayEquals(expect.toArray(), Npy.read(outFile, arena).toArray());
            }
        }
    }

    /**
     * A forward that runs longer than --progress-after shows a bar on stderr (here after 0 s, so a
     * tiny one does); stdout and the output file are as without it, and by default a short forward
     * shows none.
     */
    @Test
    void aLongForwardShowsProgressOnStderrOnly() throws Exception {
        AttentionConfig c = AttentionConfig.of(16, 4);
        try (Arena arena = Arena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(c, true, 5, arena);
            Path weights = dir.resolve("w.safetensors");
            SafeTensors.write(weights, w.stateDict());
            Tensor x = Tensor.uniform(arena, 7, 1, 3, 40, 16);
            Path in = dir.resolve("x.npy"), withBar = dir.resolve("bar.npy"), without = dir.resolve("plain.npy");
            Npy.write(in, x);
            Object[] res = run("run", "--weights", weights.toString(), "--input", in.toString(), "--output", withBar.toString(),
                    "--heads", "4", "--threads", "1", "--progress-after", "0");
            assertEquals(0, res[0], String.valueOf(res[2]));
            String err = (String) res[2], out = (String) res[1];
            assertTrue(err.contains("forward") && err.contains("100%") && err.contains("480/480"), "3 × 4 heads × 40 rows: " + err);
            assertTrue(!out.contains("%") && out.contains("written to"), out);
            Object[] plain = run("run", "--weights", weights.toString(), "--input", in.toString(), "--output", without.toString(),
                    "--heads", "4", "--threads", "1");
            assertEquals(0, plain[0], String.valueOf(plain[2]));
            assertEquals("", plain[2], "a short forward shows no bar");
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(1))) {
                float[] expect = mha.forward(x, Mask.none(), arena).toArray();
                assertArrayEquals(expect, Npy.read(withBar, arena).toArray());
                assertArrayEquals(expect, Npy.read(without, arena).toArray());
            }
        }
    }

    @Test
    void inspectWritesStatisticsRolesPicturesAndTheReport() throws Exception {
        AttentionConfig c = AttentionConfig.of(16, 4);
        try (Arena arena = Arena.ofShared()) {
            Path weights = dir.resolve("w");
            AttentionWeights.random(c, true, 3, arena).saveNpy(weights);
            Tensor x = Tensor.allocate(arena, 9, 16);
            for (long i = 0; i < x.size(); i++) x.set(i, (float) Math.sin(i));
            Path in = dir.resolve("x.npy"), tokens = dir.resolve("tokens.txt"), out = dir.resolve("inspect");
            Npy.write(in, x);
            Files.writeString(tokens, "[CLS]\nthe\ncat\n,\nthe\ncat\nsat\n.\n[SEP]\n");
            Object[] res = run("inspect", "--weights", weights.toString(), "--input", in.toString(), "--tokens", tokens.toString(),
                    "--heads", "4", "--out", out.toString());
            assertEquals(0, res[0], String.valueOf(res[2]));
            for (String f : new String[]{"statistics.csv", "statistics.json", "roles.txt", "grid.png", "report.html",
                    "attention.json", "redundancy_jsd.csv", "heads/layer0_head03.png"}) {
                assertTrue(Files.size(out.resolve(f)) > 0, f);
            }
            assertEquals(4, Files.readAllLines(out.resolve("roles.txt")).size());
            assertTrue(Files.readString(out.resolve("statistics.csv")).lines().skip(1).allMatch(l -> !l.contains("NaN,NaN,NaN")));
            Object[] wrongTokens = run("inspect", "--weights", weights.toString(), "--input", in.toString(), "--tokens",
                    in.toString(), "--heads", "4", "--out", out.toString());
            assertEquals(2, wrongTokens[0]);
        }
    }

    @Test
    void badInputIsAMessageNotAStackTrace() throws Exception {
        Path bad = dir.resolve("bad.npy");
        Files.writeString(bad, "not numpy");
        Path weights = Files.createDirectories(dir.resolve("w"));
        Object[] res = run("run", "--weights", weights.toString(), "--input", bad.toString(), "--output",
                dir.resolve("y.npy").toString(), "--heads", "2");
        assertEquals(2, res[0]);
        String err = (String) res[2];
        assertTrue(err.startsWith("headroom: ") && err.contains("not an .npy file"), err);
        assertTrue(!err.contains("\tat "), "no stack trace: " + err);
    }

    @Test
    void infoNamesTheLibraryAndVectorWidth() {
        Object[] res = run("info");
        assertEquals(0, res[0]);
        String out = (String) res[1];
        assertTrue(out.contains("OpenBLAS") && out.contains("libopenblas") && out.contains("floats per vector"), out);
    }
}
