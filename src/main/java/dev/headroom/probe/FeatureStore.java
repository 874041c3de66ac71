package dev.headroom.probe;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;

/**
 * The features of one part of a task, on disk: for every {@link Representation}, one file of
 * (rows, dim) float16 values, little-endian, row-major ({@code r000.f16}, {@code r001.f16}, … by
 * representation index). Row r is the r-th word in extraction order; {@link #word(int)} says
 * which word of the part (its index in corpus order, every word counted) it is, so that any task
 * over the same sentences finds its labels.
 *
 * <p><b>Why float16 files.</b> All 79 representations of all-MiniLM-L6-v2 take 4,992 values per
 * word: 10 KB as float16, 11.6 GB for the 1.16 M words of Brown, twice that as float32. Kept on
 * disk, they cost the process only its staging buffers while written and one block while read; a
 * probe reads only its own file (a head: 64 bytes per word). float16 keeps 11 significant bits,
 * far below the probes' noise; values beyond ±65,504 would become infinite and are refused.
 *
 * <p>Reads and writes go through {@link FileChannel} positional calls (safe from several threads);
 * nothing is mapped, so the files' pages never count in the process's memory. {@link #close()}
 * closes the files; {@link #delete()} also removes them.
 */
public final class FeatureStore implements AutoCloseable {
    private final Path directory;
    private final List<Representation> representations;
    private final FileChannel[] files;
    /** Row → index of its word among the part's words in corpus order; on the heap, 4 bytes per row. */
    private int[] words;
    private int rows;

    private FeatureStore(Path directory, List<Representation> representations, FileChannel[] files) {
        this.directory = directory;
        this.representations = List.copyOf(representations);
        this.files = files;
    }

    /** A new, empty store in {@code directory} (created; existing feature files there are replaced). */
    static FeatureStore create(Path directory, List<Representation> representations) throws IOException {
        Files.createDirectories(directory);
        FileChannel[] files = new FileChannel[representations.size()];
        try {
            for (Representation r : representations) {
                files[r.index()] = FileChannel.open(file(directory, r), StandardOpenOption.CREATE, StandardOpenOption.READ,
                        StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING);
            }
        } catch (IOException e) {
            for (FileChannel f : files) if (f != null) f.close();
            throw e;
        }
        return new FeatureStore(directory, representations, files);
    }

    private static Path file(Path directory, Representation r) {
        return directory.resolve(String.format("r%03d.f16", r.index()));
    }

    public Path directory() {
        return directory;
    }

    public List<Representation> representations() {
        return representations;
    }

    public int rows() {
        return rows;
    }

    /** The part's word (index in corpus order, every word counted) that row {@code row} holds. */
    public int word(int row) {
        return words[row];
    }

    /** Bytes on disk, all files. */
    public long byteSize() {
        long bytes = 0;
        for (Representation r : representations) bytes += (long) rows * r.dim() * Short.BYTES;
        return bytes;
    }

    /** Appends {@code count} rows of representation r from {@code staged} (float16, row-major), at row {@code firstRow}. */
    void write(Representation r, int firstRow, int count, MemorySegment staged) throws IOException {
        long bytes = (long) count * r.dim() * Short.BYTES;
        ByteBuffer buffer = staged.asSlice(0, bytes).asByteBuffer();
        long position = (long) firstRow * r.dim() * Short.BYTES;
        while (buffer.hasRemaining()) position += files[r.index()].write(buffer, position);
    }

    /** Ends writing: the store holds {@code rows} rows, row r being word {@code words[r]}. */
    void finish(int[] words, int rows) {
        this.words = words;
        this.rows = rows;
    }

    /**
     * Reads rows [firstRow, firstRow + count) of representation r into {@code dst} as float16,
     * (count, dim) row-major from byte 0.
     */
    public void read(Representation r, int firstRow, int count, MemorySegment dst) {
        if (firstRow < 0 || count < 0 || firstRow + count > rows) {
            throw new IllegalArgumentException("rows [" + firstRow + ", " + (firstRow + count) + ") outside the store's " + rows);
        }
        long bytes = (long) count * r.dim() * Short.BYTES;
        if (dst.byteSize() < bytes) throw new IllegalArgumentException("buffer of " + dst.byteSize() + " bytes for " + bytes);
        ByteBuffer buffer = dst.asSlice(0, bytes).asByteBuffer();
        long position = (long) firstRow * r.dim() * Short.BYTES;
        try {
            while (buffer.hasRemaining()) {
                int n = files[r.index()].read(buffer, position);
                if (n < 0) throw new IOException(file(directory, r) + " ends at byte " + position + ", before row " + (firstRow + count));
                position += n;
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file(directory, r), e);
        }
    }

    @Override
    public void close() {
        IOException first = null;
        for (FileChannel f : files) {
            try {
                if (f != null) f.close();
            } catch (IOException e) {
                if (first == null) first = e;
            }
        }
        if (first != null) throw new UncheckedIOException("cannot close the feature files in " + directory, first);
    }

    /** Closes the store and deletes its files (and the directory, when that leaves it empty). */
    public void delete() throws IOException {
        close();
        for (Representation r : representations) Files.deleteIfExists(file(directory, r));
        try (var left = Files.list(directory)) {
            if (left.findAny().isEmpty()) Files.delete(directory);
        }
    }
}
