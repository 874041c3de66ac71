package dev.headroom.cli;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.io.Npy;
import dev.headroom.io.SafeTensors;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

/** Failures a person can act on: each names the file, what was being done with it and why, on one line. */
class CliMessagesTest {
    @TempDir
    Path dir;
    Path weights, input;

    @BeforeEach
    void tinyLayer() throws Exception {
        AttentionConfig c = AttentionConfig.of(8, 2);
        try (Arena arena = Arena.ofShared()) {
            weights = dir.resolve("w.safetensors");
            SafeTensors.write(weights, AttentionWeights.random(c, true, 3, arena).stateDict());
            input = dir.resolve("x.npy");
            Npy.write(input, Tensor.uniform(arena, 3, 1, 5, 8));
        }
    }

    /** The one-line message of a failing command, after checking it failed with status 2 and printed no stack trace. */
    private static String failure(String... args) {
        Object[] res = CliTest.run(args);
        String err = ((String) res[2]).trim();
        assertEquals(2, res[0], "stdout: " + res[1] + "\nstderr: " + err);
        assertTrue(err.startsWith("headroom: "), err);
        assertFalse(err.contains("\n"), "one line: " + err);
        return err;
    }

    private String run(Path output) {
        return failure("run", "--weights", weights.toString(), "--input", input.toString(), "--heads", "2",
                "--output", output.toString());
    }

    @Test
    void textThatIsNotUtf8NamesTheFileTheLineAndTheByte() throws Exception {
        Path text = dir.resolve("sentences.txt");
        Files.write(text, new byte[]{'o', 'k', '\n', 'b', 'a', 'd', ' ', (byte) 0xFF, 'x', '\n'});
        String err = failure("embed", "--input", text.toString());
        assertTrue(err.contains("--input " + text) && err.contains("must be UTF-8"), err);
        assertTrue(err.contains("line 2 (byte 5 of the line, byte offset 7 in the file) holds 0xFF"), err);
    }

    @Test
    void anOutputUnderAFileSaysWhichPathIsAFile() throws Exception {
        Path file = Files.writeString(dir.resolve("afile"), "x");
        String err = run(file.resolve("y.npy"));
        assertEquals("headroom: cannot write --output " + file.resolve("y.npy") + ": " + file + " is a file, not a directory", err);
        err = failure("embed", "--output", file.resolve("sub/e.npy").toString(), "a sentence");
        assertTrue(err.contains(file + " is a file, not a directory"), err);
        err = failure("inspect", "--model", "minilm", "--out", file.toString(), "a sentence");
        assertEquals("headroom: cannot write into --out " + file + ": it is a file, not a directory", err);
    }

    @Test
    void anOutputThatIsADirectoryAsksForAFileName() {
        String err = run(dir);
        assertEquals("headroom: --output " + dir + " is a directory; give a file name, e.g. " + dir.resolve("out.npy"), err);
    }

    @Test
    void anOutputInADirectoryThatIsNotWritableSaysWhoMayWriteIt() throws Exception {
        Path locked = Files.createDirectories(dir.resolve("locked"));
        Files.setPosixFilePermissions(locked, PosixFilePermissions.fromString("r-xr-xr-x"));
        try {
            assumeFalse(Files.isWritable(locked), "running as root: every directory is writable");
            String err = run(locked.resolve("y.npy"));
            assertTrue(err.contains("directory " + locked + " is not writable by user " + System.getProperty("user.name")), err);
            assertTrue(err.contains("r-xr-xr-x"), err);
        } finally {
            Files.setPosixFilePermissions(locked, PosixFilePermissions.fromString("rwxr-xr-x"));
        }
    }

    @Test
    void kernelFilesAreRefusedAsOutputsBeforeAnyWork() {
        assumeFalse(!Files.exists(Path.of("/proc/version")), "Linux only");
        // It used to compute, then fail with the bare "Input/output error" (as root) and no path.
        String err = run(Path.of("/proc/version"));
        assertTrue(err.startsWith("headroom: cannot write --output /proc/version: "), err);
        assertTrue(err.contains("proc file system") || err.contains("not writable"), err);
    }

    @Test
    void anIoFailureNamesTheFileAndTheOperation() {
        Path y = dir.resolve("y.npy");
        String err = Main.message(new java.io.IOException("Input/output error"), null);
        assertEquals("I/O error (IOException): Input/output error", err);
        Exception wrapped = org.junit.jupiter.api.Assertions.assertThrows(CliFiles.FileProblem.class,
                () -> CliFiles.write(y, "the output", () -> { throw new java.io.IOException("Input/output error"); }));
        assertEquals("cannot write the output to " + y + ": Input/output error", Main.message(wrapped, null));
        wrapped = org.junit.jupiter.api.Assertions.assertThrows(CliFiles.FileProblem.class,
                () -> CliFiles.read(y, "--input", () -> { throw new java.nio.file.AccessDeniedException(y.toString()); }));
        assertEquals("cannot read --input " + y + ": permission denied", Main.message(wrapped, null));
        assertEquals("I/O error on " + y + ": no such file or directory",
                Main.message(new java.io.UncheckedIOException(new java.nio.file.NoSuchFileException(y.toString())), null));
    }

    @Test
    void anInputThatIsADirectoryOrMissingIsNamedWithTheOption() throws Exception {
        String err = failure("run", "--weights", weights.toString(), "--input", dir.toString(), "--heads", "2",
                "--output", dir.resolve("y.npy").toString());
        assertTrue(err.startsWith("headroom: cannot read --input " + dir + ": "), err);
        Path notNpy = Files.writeString(dir.resolve("text.npy"), "hello");
        err = failure("run", "--weights", weights.toString(), "--input", notNpy.toString(), "--heads", "2",
                "--output", dir.resolve("y.npy").toString());
        assertTrue(err.startsWith("headroom: cannot read --input " + notNpy + ": not an .npy file"), "the path once: " + err);
        err = failure("run", "--weights", dir.resolve("missing.safetensors").toString(), "--input", input.toString(),
                "--heads", "2", "--output", dir.resolve("y.npy").toString());
        assertTrue(err.contains(dir.resolve("missing.safetensors").toString()), err);
        err = failure("embed", "--input", dir.resolve("missing.txt").toString());
        assertEquals("headroom: cannot read --input " + dir.resolve("missing.txt") + ": no such file or directory", err);
    }

    @Test
    void moreThreadsThanProcessorsAreClampedWithOneWarningLine() {
        int processors = Runtime.getRuntime().availableProcessors(), asked = processors * 32;
        Object[] res = CliTest.run("run", "--weights", weights.toString(), "--input", input.toString(), "--heads", "2",
                "--output", dir.resolve("y.npy").toString(), "--threads", Integer.toString(asked));
        assertEquals(0, res[0], String.valueOf(res[2]));
        assertEquals("headroom: warning: --threads " + asked + " is more than the " + processors + " processors available; using "
                + processors + " (extra threads would only take turns on them)", ((String) res[2]).trim());
        assertTrue(((String) res[1]).contains(" on " + processors + " threads"), (String) res[1]);
        String err = failure("run", "--weights", weights.toString(), "--input", input.toString(), "--heads", "2",
                "--output", dir.resolve("y.npy").toString(), "--threads", "0");
        assertEquals("headroom: --threads must be at least 1, got 0", err);
    }
}
