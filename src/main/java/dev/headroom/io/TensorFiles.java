package dev.headroom.io;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.ReadableByteChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;

/**
 * Opening and reading tensor files so that nothing a file does can crash the process: what kind
 * of file a path names (a missing path or a directory is an error that says so), and reads that
 * notice a file that ends early or shrinks while it is read (rewritten in place, truncated) and
 * turn that into an error naming the file, instead of the zeros or the fault a memory mapping
 * would give.
 */
public final class TensorFiles {
    /** ByteBuffers hold at most 2 GiB, so data moves in chunks of at most this many bytes. */
    static final long CHUNK = 1L << 30;

    private TensorFiles() {}

    /** What a path names, as far as reading it goes. */
    public enum Kind {
        /** A regular file: its size is known before reading, so every declared size is checked first. */
        REGULAR,
        /** A FIFO, character device or socket (a pipe, {@code /dev/stdin}): it can only be read once, in order. */
        STREAM
    }

    /**
     * The kind of {@code file}, following symbolic links; {@code expected} names what it should be
     * in messages ("an .npy file"). A missing path, a directory or one that cannot be read is a
     * {@link TensorFormatException} naming the path.
     */
    public static Kind kind(Path file, String expected) throws IOException {
        BasicFileAttributes attributes;
        try {
            attributes = Files.readAttributes(file, BasicFileAttributes.class);
        } catch (NoSuchFileException e) {
            throw new TensorFormatException(file + ": no such " + expected.replaceFirst("^an? ", ""), e);
        } catch (AccessDeniedException e) {
            throw new TensorFormatException(file + ": permission denied (reading " + expected + ")", e);
        }
        if (attributes.isDirectory()) throw new TensorFormatException(file + ": is a directory, not " + expected);
        return attributes.isRegularFile() ? Kind.REGULAR : Kind.STREAM;
    }

    /**
     * Reads the whole regular file {@code file} into memory {@code arena} owns (file reads, no
     * mapping, so the file may change afterwards without effect). Files over {@code maxBytes}
     * are refused before anything is allocated; {@code limitReason} says why that is the limit.
     */
    public static MemorySegment readAll(Path file, Arena arena, long maxBytes, String limitReason) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size > maxBytes) throw new TensorFormatException(file + ": " + size + " bytes; " + limitReason);
            MemorySegment bytes = arena.allocate(Math.max(1, size), 64).asSlice(0, size);
            copy(ch, 0, bytes, file, "the file", size);
            checkUnchanged(ch, file, size);
            return bytes;
        }
    }

    /**
     * Fills {@code buffer} from {@code channel} at {@code position}. A file that ends first is
     * an error naming it, {@code what} was being read, and the size it was expected to have.
     */
    static void readFully(FileChannel channel, ByteBuffer buffer, long position, Path file, String what, long expectedSize)
            throws IOException {
        long at = position;
        while (buffer.hasRemaining()) {
            int n;
            try {
                n = channel.read(buffer, at);
            } catch (IOException e) {
                throw new IOException(file + ": reading " + what + " at byte " + at + " failed: " + e.getMessage(), e);
            }
            if (n < 0) throw shrank(channel, file, what, at, expectedSize);
            at += n;
        }
    }

    /**
     * Copies {@code destination.byteSize()} bytes of {@code channel} from {@code position} into
     * {@code destination} (off-heap memory the caller owns), in chunks, without a heap copy.
     */
    static void copy(FileChannel channel, long position, MemorySegment destination, Path file, String what, long expectedSize)
            throws IOException {
        for (long off = 0; off < destination.byteSize(); off += CHUNK) {
            ByteBuffer chunk = destination.asSlice(off, Math.min(CHUNK, destination.byteSize() - off)).asByteBuffer();
            readFully(channel, chunk, position + off, file, what, expectedSize);
        }
    }

    /** After a read: the file must still have the size every check was made against. */
    static void checkUnchanged(FileChannel channel, Path file, long expectedSize) throws IOException {
        long now = channel.size();
        if (now != expectedSize) {
            throw new TensorFormatException(file + ": changed while being read (" + expectedSize + " bytes when opened, "
                    + now + " now): was it rewritten in place? No tensor from it was returned");
        }
    }

    private static TensorFormatException shrank(FileChannel channel, Path file, String what, long at, long expectedSize)
            throws IOException {
        return new TensorFormatException(file + ": reading " + what + " at byte " + at + " found the end of the file, but it had "
                + expectedSize + " bytes when opened (" + channel.size() + " now): it shrank while being read "
                + "(truncated or rewritten in place?). No tensor from it was returned");
    }

    /**
     * Fills {@code buffer} from a stream; returns false if the stream ended before any byte of it
     * was read, and throws if it ended part-way.
     */
    static boolean readFully(ReadableByteChannel stream, ByteBuffer buffer, String source, String what) throws IOException {
        int start = buffer.position();
        while (buffer.hasRemaining()) {
            int n = stream.read(buffer);
            if (n < 0) {
                if (buffer.position() == start) return false;
                throw new TensorFormatException(source + ": the stream ended after " + (buffer.position() - start)
                        + " of the " + (buffer.limit() - start) + " bytes of " + what);
            }
        }
        return true;
    }
}
