package dev.headroom.model.minilm;

import dev.headroom.model.Models;

import dev.headroom.cli.Main;
import dev.headroom.io.Npy;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code headroom embed}: the .npy it writes is what the API computes, in input order; bad input is a one-line message. */
class EmbedCommandTest {
    @TempDir
    Path dir;

    private static Object[] run(String... args) {
        return dev.headroom.cli.CliTest.run(args);
    }

    @Test
    void writesTheApisEmbeddingsInInputOrder() throws Exception {
        Path input = dir.resolve("sentences.txt"), output = dir.resolve("e.npy");
        Files.writeString(input, "A much longer first sentence, so that sorting by length would reorder it.\n\nShort one.\n");
        Object[] res = run("embed", "--model", "minilm", "--input", input.toString(), "--output", output.toString(),
                "--threads", "2", "Hello, world!");
        assertEquals(0, res[0], String.valueOf(res[2]));
        assertTrue(((String) res[1]).contains("3 embeddings (3, 384) written to"), (String) res[1]);
        List<String> sentences = List.of("A much longer first sentence, so that sorting by length would reorder it.", "Short one.",
                "Hello, world!");
        try (TrackedArena arena = TrackedArena.ofShared(); MiniLmEncoder encoder = Models.minilm(arena, 2)) {
            Tensor expected = encoder.embed(sentences, arena);
            Tensor written = Npy.read(output, arena);
            assertArrayEquals(new int[]{3, 384}, written.shape());
            assertArrayEquals(expected.toArray(), written.toArray(), 1e-6f);
        }
    }

    @Test
    void printsAPreviewWithoutOutputFile() {
        Object[] res = run("embed", "--threads", "1", "--max-tokens", "4", "Hello, world!", "Short");
        assertEquals(0, res[0], String.valueOf(res[2]));
        String out = (String) res[1];
        assertTrue(out.contains("\"Hello, world!\"") && out.contains("4 tokens") && out.contains("3 tokens"), out);
        assertTrue(out.contains("1 reached the limit of 4 tokens"), out);
    }

    @Test
    void badInputIsAOneLineMessage() {
        Object[] res = run("embed", "--model", "bert-large", "x");
        assertEquals(2, res[0]);
        assertEquals("headroom: unknown model 'bert-large'; available: minilm", ((String) res[2]).trim());
        res = run("embed");
        assertEquals(2, res[0]);
        assertTrue(((String) res[2]).contains("no sentences"), (String) res[2]);
    }

    /**
     * A batch far beyond the useful size is run in chunks of the default batch: the embeddings are
     * bitwise those of the default batch (one batch of all 40 sentences pads them to the longest and
     * changes their last bits), and the workspace is the default batch's.
     */
    @Test
    void aHugeBatchGivesTheDefaultBatchsEmbeddings() throws Exception {
        List<String> sentences;
        try (var in = MiniLmEncoder.class.getResourceAsStream("/dev/headroom/model/sentences.txt")) {
            sentences = new String(in.readAllBytes(), StandardCharsets.UTF_8).lines().filter(l -> !l.isBlank()).limit(40).toList();
        }
        Path input = Files.write(dir.resolve("sentences.txt"), sentences), huge = dir.resolve("huge.npy"), byDefault = dir.resolve("default.npy");
        Object[] res = run("embed", "--input", input.toString(), "--output", huge.toString(), "--threads", "2", "--batch", "100000");
        assertEquals(0, res[0], String.valueOf(res[2]));
        res = run("embed", "--input", input.toString(), "--output", byDefault.toString(), "--threads", "2");
        assertEquals(0, res[0], String.valueOf(res[2]));
        try (TrackedArena arena = TrackedArena.ofShared(); MiniLmEncoder encoder = Models.minilm(arena, 2)) {
            assertArrayEquals(Npy.read(byDefault, arena).toArray(), Npy.read(huge, arena).toArray());
            Tensor out = Tensor.allocate(arena, sentences.size(), 384);
            try (EncoderWorkspace hugeWs = new EncoderWorkspace(); EncoderWorkspace defaultWs = new EncoderWorkspace()) {
                encoder.embed(sentences, out, hugeWs, 100_000);
                encoder.embed(sentences, out, defaultWs, MiniLmEncoder.DEFAULT_BATCH);
                assertEquals(defaultWs.byteSize(), hugeWs.byteSize(), "the huge batch's scratch is the default batch's");
            }
        }
    }
}
