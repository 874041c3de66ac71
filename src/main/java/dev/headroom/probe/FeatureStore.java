package dev.headroom.probe;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
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
 * over the same sentences finds its labels. That map is written when the store is finished, as
 * {@code words.i32} (rows int32, little-endian), so that a finished store's directory can be
 * {@link #open}ed again, in another process, and stores extracted separately (e.g. by the tasks of
 * a Spark job) {@link #concatenate}d into one.
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

    /** The row → word map of a finished store: (rows) int32, little-endian. */
    static final String WORDS_FILE = "words.i32";

    /**
     * Reopens the finished store in {@code directory} (written by {@link Extraction} or
     * {@link #concatenate}), for reading, with the representations it was written with.
     *
     * @throws IOException naming the file, when the word map or a feature file is missing or its
     *                     size does not match the rows
     */
    public static FeatureStore open(Path directory, List<Representation> representations) throws IOException {
        Path wordsFile = directory.resolve(WORDS_FILE);
        if (!Files.isRegularFile(wordsFile)) {
            throw new IOException(wordsFile + " does not exist: " + directory + " is not a finished feature store");
        }
        long wordBytes = Files.size(wordsFile);
        if (wordBytes % Integer.BYTES != 0 || wordBytes / Integer.BYTES > Integer.MAX_VALUE) {
            throw new IOException(wordsFile + " has " + wordBytes + " bytes, not a whole number of int32 rows");
        }
        int rows = (int) (wordBytes / Integer.BYTES);
        int[] words = new int[rows];
        ByteBuffer.wrap(Files.readAllBytes(wordsFile)).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(words);
        FileChannel[] files = new FileChannel[representations.size()];
        try {
            for (Representation r : representations) {
                Path f = file(directory, r);
                files[r.index()] = FileChannel.open(f, StandardOpenOption.READ);
                long expected = (long) rows * r.dim() * Short.BYTES;
                if (files[r.index()].size() != expected) {
                    throw new IOException(f + " has " + files[r.index()].size() + " bytes; " + rows + " rows of " + r.dim()
                            + " float16 values make " + expected);
                }
            }
        } catch (IOException e) {
            for (FileChannel f : files) if (f != null) f.close();
            throw e;
        }
        FeatureStore store = new FeatureStore(directory, representations, files);
        store.words = words;
        store.rows = rows;
        return store;
    }

    /**
     * A new store in {@code directory} holding the rows of {@code parts} one after the other, in
     * list order; row r of part k maps to word {@code parts[k].word(r) + wordOffsets[k]}: a part's
     * words are numbered from 0 within it, and {@code wordOffsets[k]} is the index (in the whole
     * part's corpus order, every word counted) of part k's first word. The parts are read, neither
     * closed nor deleted; every part must have {@code representations}.
     */
    public static FeatureStore concatenate(Path directory, List<Representation> representations, List<FeatureStore> parts,
                                           int[] wordOffsets) throws IOException {
        if (wordOffsets.length != parts.size()) {
            throw new IllegalArgumentException(parts.size() + " parts but " + wordOffsets.length + " word offsets");
        }
        long total = 0;
        for (int k = 0; k < parts.size(); k++) {
            FeatureStore p = parts.get(k);
            if (!p.representations.equals(representations)) {
                throw new IllegalArgumentException("part " + k + " (" + p.directory + ") has " + p.representations.size()
                        + " representations, not the " + representations.size() + " asked for, or not the same ones");
            }
            if (wordOffsets[k] < 0) throw new IllegalArgumentException("part " + k + "'s word offset is " + wordOffsets[k]);
            total += p.rows;
        }
        if (total > Integer.MAX_VALUE) throw new IllegalArgumentException(total + " rows exceed one store's");
        /* words: (total rows) the concatenated store's row → word map, on the heap */
        int[] words = new int[(int) total];
        FeatureStore store = create(directory, representations);
        try {
            int first = 0;
            for (int k = 0; k < parts.size(); k++) {
                FeatureStore p = parts.get(k);
                for (Representation r : representations) {
                    long bytes = (long) p.rows * r.dim() * Short.BYTES, from = 0;
                    long at = (long) first * r.dim() * Short.BYTES;
                    FileChannel src = p.files[r.index()], dst = store.files[r.index()];
                    while (from < bytes) {
                        long n = src.transferTo(from, bytes - from, dst.position(at + from));
                        if (n <= 0) throw new IOException(file(p.directory, r) + " ends at byte " + from + " of " + bytes);
                        from += n;
                    }
                }
                for (int row = 0; row < p.rows; row++) words[first + row] = p.words[row] + wordOffsets[k];
                first += p.rows;
            }
            store.finish(words, words.length);
            return store;
        } catch (IOException | RuntimeException e) {
            store.delete();
            throw e;
        }
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

    /**
     * Ends writing: the store holds {@code rows} rows, row r being word {@code words[r]}; the map
     * is written to {@value #WORDS_FILE} (4 bytes a row) so that the directory can be reopened.
     */
    void finish(int[] words, int rows) throws IOException {
        ByteBuffer map = ByteBuffer.allocate(rows * Integer.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        map.asIntBuffer().put(words, 0, rows);
        Files.write(directory.resolve(WORDS_FILE), map.array());
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
        Files.deleteIfExists(directory.resolve(WORDS_FILE));
        try (var left = Files.list(directory)) {
            if (left.findAny().isEmpty()) Files.delete(directory);
        }
    }
}
