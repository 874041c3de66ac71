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

import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The CLI's file inputs: standard input as --input, --mmap, and a header too large for the heap. */
class FileInputCliTest {
    @TempDir
    Path dir;

    private static final AttentionConfig CONFIG = AttentionConfig.of(16, 4);

    @Test
    void standardInputIsReadAsAnNpyStream() throws Exception {
        try (Arena arena = Arena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(CONFIG, true, 5, arena);
            Path weights = dir.resolve("w.safetensors"), in = dir.resolve("x.npy"), out = dir.resolve("y.npy");
            SafeTensors.write(weights, w.stateDict());
            Tensor x = Tensor.uniform(arena, 6, 1.0, 7, 16);
            Npy.write(in, x);
            InputStream stdin = System.in;
            Object[] res;
            try {
                System.setIn(new ByteArrayInputStream(Files.readAllBytes(in)));
                res = CliTest.run("run", "--weights", weights.toString(), "--input", "-", "--output", out.toString(), "--heads", "4");
            } finally {
                System.setIn(stdin);
            }
            assertEquals(0, res[0], String.valueOf(res[2]));
            try (MultiHeadAttention mha = new MultiHeadAttention(w)) {
                assertArrayEquals(mha.forward(x, Mask.none(), arena).toArray(), Npy.read(out, arena).toArray());
            }
            Object[] both = CliTest.run("run", "--weights", weights.toString(), "--input", "-", "--key-value", "-",
                    "--output", out.toString(), "--heads", "4");
            assertEquals(2, both[0]);
            assertTrue(((String) both[2]).contains("--input and --key-value cannot both be standard input"), (String) both[2]);
        }
    }

    @Test
    void weightsAreCopiedUnlessMmapIsAsked() throws Exception {
        try (Arena arena = Arena.ofShared()) {
            Path weights = dir.resolve("w.safetensors"), in = dir.resolve("x.npy"), out = dir.resolve("y.npy");
            SafeTensors.write(weights, AttentionWeights.random(CONFIG, false, 5, arena).stateDict());
            Npy.write(in, Tensor.uniform(arena, 6, 1.0, 7, 16));
            Object[] copied = CliTest.run("run", "--weights", weights.toString(), "--input", in.toString(), "--output",
                    out.toString(), "--heads", "4");
            assertEquals(0, copied[0], String.valueOf(copied[2]));
            assertTrue(((String) copied[1]).contains("mapped 0 B"), (String) copied[1]);
            Object[] mapped = CliTest.run("run", "--weights", weights.toString(), "--input", in.toString(), "--output",
                    out.toString(), "--heads", "4", "--mmap");
            assertEquals(0, mapped[0], String.valueOf(mapped[2]));
            String size = Files.size(weights) >= 1024 ? "KiB" : Files.size(weights) + " B";
            assertTrue(((String) mapped[1]).matches("(?s).*mapped [0-9.]+ " + size + ".*"), (String) mapped[1]);
        }
    }

    /**
     * A header within the format's limit (60 MB) under a 64 MiB heap: an out-of-memory, said so
     * with what to raise, before anything is read (the file is sparse: only its first 9 bytes exist).
     */
    @Test
    void aHeaderTooLargeForTheHeapSaysSoAndWhatToRaise() throws Exception {
        Path weights = dir.resolve("big.safetensors"), in = dir.resolve("x.npy");
        try (FileChannel ch = FileChannel.open(weights, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(9).order(ByteOrder.LITTLE_ENDIAN).putLong(60_000_000L).put((byte) '{').flip());
            ch.write(ByteBuffer.allocate(1), 8 + 60_000_000L - 1);
        }
        try (Arena arena = Arena.ofConfined()) {
            Npy.write(in, Tensor.uniform(arena, 6, 1.0, 7, 16));
        }
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "--add-modules=jdk.incubator.vector", "-Xmx64m",
                "-cp", System.getProperty("java.class.path"), Main.class.getName(),
                "run", "--weights", weights.toString(), "--input", in.toString(), "--output", dir.resolve("y.npy").toString(),
                "--heads", "4"));
        Process p = new ProcessBuilder(cmd).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(2, TimeUnit.MINUTES));
        assertEquals(2, p.exitValue(), out + err);
        assertTrue(err.contains("headroom: cannot read --weights " + weights + ": its .safetensors header of 60000000 bytes needs up to 343.32 MiB "
                + "of Java heap to read, and only "), err);
        assertTrue(err.contains("This is not a malformed file: raise the maximum heap to at least 512.00 MiB: -Xmx512m for your "
                + "JVM, or HEADROOM_JAVA_OPTS=-Xmx512m for bin/headroom"), err);
    }
}
