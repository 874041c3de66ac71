package dev.headroom.io;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.foreign.Arena;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Files that change under a running process. Weights are copied by default, so truncating the
 * file while a forward runs changes nothing (tested in a child JVM, since with a mapping the
 * failure is a SIGBUS that kills the JVM); a file that shrinks while it is being copied is an
 * error naming it.
 */
class FileChangeTest {
    @TempDir
    Path dir;

    /**
     * E = 768 without biases, as in the issue, and 2048 tokens: the child's first forward (cold
     * code) takes at least several hundred milliseconds on 2 threads, while the truncation follows
     * its "loaded" within milliseconds, so it happens while the weights are in use.
     */
    private static final int E = 768, HEADS = 12, N = 2048, THREADS = 2;

    @Test
    void weightsTruncatedWhileAForwardRunsChangeNothing() throws Exception {
        Path weights = dir.resolve("w.safetensors"), input = dir.resolve("x.npy"), output = dir.resolve("y.npy");
        float[] reference = writeProblem(weights, input, true);
        Child child = startChild(weights, input, output, "copy");
        child.awaitLine("loaded");
        truncate(weights);
        child.finish();
        assertEquals(0, child.exitCode, child.describe());
        assertTrue(child.stdout.contains("done"), child.describe());
        try (Arena arena = Arena.ofConfined()) {
            assertArrayEquals(reference, Npy.read(output, arena).toArray(), 1e-5f, "the output is the one computed before");
        }
    }

    /**
     * The same with the file mapped ({@link SafeTensors.Load#MAP}, the CLI's --mmap): the child dies,
     * as the Javadoc and README warn. This shows the test above really truncates the file while
     * the weights are in use (if it ever passed here, the timing above would prove nothing).
     */
    @Test
    void theSameTruncationKillsAProcessThatMappedTheWeights() throws Exception {
        Path weights = dir.resolve("w.safetensors"), input = dir.resolve("x.npy"), output = dir.resolve("y.npy");
        writeProblem(weights, input, false);
        Child child = startChild(weights, input, output, "map");
        child.awaitLine("loaded");
        truncate(weights);
        child.finish();
        assertNotEquals(0, child.exitCode, child.describe());
        String report = child.stdout + child.stderr; // the JVM's crash report goes to standard output
        assertTrue(report.contains("SIGBUS") || report.contains("InternalError"), child.describe());
    }

    /** Random weights and input written to files; returns the forward's output computed here, if asked. */
    private static float[] writeProblem(Path weights, Path input, boolean reference) throws IOException {
        AttentionConfig config = AttentionConfig.of(E, HEADS);
        try (TrackedArena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(config, false, 11, arena);
            SafeTensors.write(weights, w.stateDict());
            Tensor x = Tensor.uniform(arena, 12, 1.0, N, E);
            Npy.write(input, x);
            if (!reference) return null;
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(THREADS))) {
                return mha.forward(x, Mask.none(), arena).toArray();
            }
        }
    }

    private static void truncate(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
            ch.truncate(0);
        }
    }

    /** A child JVM running {@link ForwardChild}, with its output gathered. */
    private static final class Child {
        final Process process;
        final BufferedReader out;
        final StringBuilder lines = new StringBuilder();
        String stdout = "", stderr = "";
        int exitCode = -1;

        Child(Process process) {
            this.process = process;
            this.out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
        }

        void awaitLine(String expected) throws IOException {
            for (String line; (line = out.readLine()) != null; ) {
                lines.append(line).append('\n');
                if (line.equals(expected)) return;
            }
            throw new AssertionError("the child ended before printing '" + expected + "': " + lines
                    + new String(process.getErrorStream().readAllBytes(), StandardCharsets.UTF_8));
        }

        void finish() throws Exception {
            for (String line; (line = out.readLine()) != null; ) lines.append(line).append('\n');
            stdout = lines.toString();
            stderr = new String(process.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(process.waitFor(5, TimeUnit.MINUTES), "the child did not end");
            exitCode = process.exitValue();
        }

        String describe() {
            return "exit " + exitCode + "\nstdout:\n" + stdout + "\nstderr:\n" + stderr;
        }
    }

    private Child startChild(Path weights, Path input, Path output, String mode) throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("--enable-native-access=ALL-UNNAMED");
        cmd.add("--add-modules=jdk.incubator.vector");
        cmd.add("-Xmx1g");
        // A crash report, if any, goes to the test's directory, not the project's.
        cmd.add("-XX:ErrorFile=" + dir.resolve("hs_err_%p.log"));
        cmd.add("-XX:-CreateCoredumpOnCrash");
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(ForwardChild.class.getName());
        cmd.addAll(List.of(weights.toString(), input.toString(), output.toString(), Integer.toString(HEADS),
                Integer.toString(THREADS), mode));
        return new Child(new ProcessBuilder(cmd).directory(dir.toFile()).start());
    }

    // ---------------------------------------------------------------- shrinking while being read

    /** What happens to the file under the reader. */
    @FunctionalInterface
    private interface Change {
        void apply(FileChannel writable) throws IOException;
    }

    /**
     * A channel over a real file that, when a read starts at or past {@code trigger}, first
     * changes the file (truncates it, appends to it), and that reads at most 4096 bytes a call
     * (as a file system may): the file really changes part-way through the copy.
     */
    private static final class ChangingChannel extends FileChannel {
        private final FileChannel inner;
        private final Path file;
        private final long trigger;
        private final Change change;
        private boolean changed;

        ChangingChannel(Path file, long trigger, Change change) throws IOException {
            this.inner = FileChannel.open(file, StandardOpenOption.READ);
            this.file = file;
            this.trigger = trigger;
            this.change = change;
        }

        @Override
        public int read(ByteBuffer dst, long position) throws IOException {
            if (!changed && position >= trigger) {
                try (FileChannel w = FileChannel.open(file, StandardOpenOption.WRITE)) {
                    change.apply(w);
                }
                changed = true;
            }
            ByteBuffer window = dst.slice(dst.position(), Math.min(dst.remaining(), 4096));
            int n = inner.read(window, position);
            if (n > 0) dst.position(dst.position() + n);
            return n;
        }

        @Override
        public long size() throws IOException {
            return inner.size();
        }

        @Override
        protected void implCloseChannel() throws IOException {
            inner.close();
        }

        // Nothing else is used by the readers.
        @Override public int read(ByteBuffer dst) { throw new UnsupportedOperationException(); }
        @Override public long read(ByteBuffer[] dsts, int offset, int length) { throw new UnsupportedOperationException(); }
        @Override public int write(ByteBuffer src) { throw new UnsupportedOperationException(); }
        @Override public long write(ByteBuffer[] srcs, int offset, int length) { throw new UnsupportedOperationException(); }
        @Override public long position() { throw new UnsupportedOperationException(); }
        @Override public FileChannel position(long newPosition) { throw new UnsupportedOperationException(); }
        @Override public FileChannel truncate(long size) { throw new UnsupportedOperationException(); }
        @Override public void force(boolean metaData) { throw new UnsupportedOperationException(); }
        @Override public long transferTo(long position, long count, WritableByteChannel target) { throw new UnsupportedOperationException(); }
        @Override public long transferFrom(ReadableByteChannel src, long position, long count) { throw new UnsupportedOperationException(); }
        @Override public int write(ByteBuffer src, long position) { throw new UnsupportedOperationException(); }
        @Override public MappedByteBuffer map(MapMode mode, long position, long size) { throw new UnsupportedOperationException(); }
        @Override public FileLock lock(long position, long size, boolean shared) { throw new UnsupportedOperationException(); }
        @Override public FileLock tryLock(long position, long size, boolean shared) { throw new UnsupportedOperationException(); }
    }

    @Test
    void aSafetensorsFileThatShrinksWhileBeingCopiedIsAnErrorNamingIt() throws IOException {
        Path f = dir.resolve("w.safetensors");
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> sd = new LinkedHashMap<>();
            sd.put("a", Tensor.uniform(arena, 1, 1, 64, 256));
            SafeTensors.write(f, sd);
        }
        long size = Files.size(f), dataStart = size - 64 * 256 * 4;
        try (TrackedArena arena = TrackedArena.ofConfined();
             ChangingChannel ch = new ChangingChannel(f, dataStart + 8192, w -> w.truncate(dataStart + 10_000))) {
            TensorFormatException e = assertThrows(TensorFormatException.class,
                    () -> SafeTensors.read(ch, f, arena, SafeTensors.Load.COPY));
            assertTrue(e.getMessage().startsWith(f + ": reading the tensor data at byte " + (dataStart + 10_000) + " found the end "
                    + "of the file, but it had " + size + " bytes when opened (" + (dataStart + 10_000) + " now): it shrank while "
                    + "being read"), e.getMessage());
        }
    }

    @Test
    void anNpyFileThatShrinksWhileBeingCopiedIsAnErrorNamingIt() throws IOException {
        Path f = dir.resolve("x.npy");
        try (Arena arena = Arena.ofConfined()) {
            Npy.write(f, Tensor.uniform(arena, 1, 1, 64, 256));
        }
        long size = Files.size(f);
        try (Arena arena = Arena.ofConfined(); ChangingChannel ch = new ChangingChannel(f, 128 + 4096, w -> w.truncate(1000))) {
            TensorFormatException e = assertThrows(TensorFormatException.class, () -> Npy.read(ch, f, arena));
            assertTrue(e.getMessage().startsWith(f + ": reading the data at byte 4224 found the end of the file, but it had " + size
                    + " bytes when opened (1000 now)"), e.getMessage());
        }
    }

    @Test
    void aFileThatGrowsWhileBeingReadIsAnErrorToo() throws IOException {
        Path f = dir.resolve("x.npy");
        try (Arena arena = Arena.ofConfined()) {
            Npy.write(f, Tensor.uniform(arena, 1, 1, 4, 4));
        }
        long size = Files.size(f);
        // Rewritten in place with more data as the data is read: what was read may mix two files.
        try (Arena arena = Arena.ofConfined(); ChangingChannel ch = new ChangingChannel(f, 128, w -> w.write(ByteBuffer.allocate(8), size))) {
            TensorFormatException e = assertThrows(TensorFormatException.class, () -> Npy.read(ch, f, arena));
            assertTrue(e.getMessage().contains("changed while being read (" + size + " bytes when opened, " + (size + 8) + " now)"),
                    e.getMessage());
        }
    }
}
