package dev.headroom.io;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import com.google.gson.stream.MalformedJsonException;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;

import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.channels.ReadableByteChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * The {@code .safetensors} format: an 8-byte little-endian header length N, N bytes of JSON
 * ({@code {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}}), then
 * the data. Only F32 tensors are accepted.
 *
 * <p>{@link #open(Path, Arena)} <b>copies</b> the data into memory the caller's arena owns (one
 * allocation of the data section's size, read with file reads, counted by a {@link TrackedArena}
 * in {@link dev.headroom.memory.OffHeap#currentBytes()}): once it returns, nothing that happens
 * to the file (truncated, rewritten, deleted) can affect the tensors or the process.
 * {@link Load#MAP} maps the file instead (nothing copied, pages shared with the page cache,
 * counted in {@link dev.headroom.memory.OffHeap#mappedBytes()}); see there for its risk.
 *
 * <p>Every rule of the format is checked before anything is allocated or mapped, and a file
 * that breaks one is refused with a {@link TensorFormatException} naming the file and the rule
 * (the rules of huggingface/safetensors' README, "Format" and "Notes"): the header is at most
 * 100,000,000 bytes (the reference's MAX_HEADER_SIZE), is UTF-8, starts with '{', is one strict
 * JSON object followed by nothing but whitespace, and has no duplicate keys at any level;
 * {@code __metadata__} is an object of string values; each tensor has a dtype, a shape of
 * non-negative integers whose byte size does not overflow, and {@code data_offsets} of two
 * non-negative integers (no fractions, no exponents) a whole number of elements apart; the
 * tensors' byte ranges neither overlap nor leave holes, and cover the data section exactly (the
 * byte buffer "needs to be entirely indexed, and cannot contain holes"). Other keys in a tensor's
 * entry are ignored, as the reference implementation ignores them.
 */
public final class SafeTensors {
    /** The largest header the reference implementation reads (MAX_HEADER_SIZE, 100 MB). */
    public static final long MAX_HEADER_BYTES = 100_000_000L;
    /**
     * Java heap a header needs, per header byte, while it is parsed and its tensors are made, at
     * most: a header of a million minimal entries (57.9 MB, {@code "7":{"dtype":"F32","shape":[0],
     * "data_offsets":[0,0]}}) was read with -Xmx320m and not with -Xmx280m, about 5.5 bytes per
     * byte; longer names cost less per byte.
     */
    static final int HEAP_BYTES_PER_HEADER_BYTE = 6;

    private SafeTensors() {}

    /** How the data gets into memory. */
    public enum Load {
        /**
         * Read the data into one allocation in the caller's arena (the default). Costs the file's
         * size in memory and one read; afterwards the file can change or vanish without effect.
         */
        COPY,
        /**
         * Map the file read-only into the caller's arena: nothing is copied and the pages are
         * shared with the page cache (and with other processes mapping the same file). <b>Risk:</b>
         * the tensors are the file; if it is truncated or rewritten in place while they are in use
         * (a checkpoint saved over the one being served), reading a vanished page raises SIGBUS:
         * native code (OpenBLAS) then kills the JVM, and Java code gets an {@link InternalError}.
         * Use only for files nothing writes while the arena is open (as with llama.cpp's
         * {@code --mmap}). Replacing the file by renaming a new one over it is safe in both modes.
         */
        MAP
    }

    /** Reads {@code file}, copying its tensors into {@code arena} ({@link Load#COPY}). */
    public static Map<String, Tensor> open(Path file, Arena arena) throws IOException {
        return open(file, arena, Load.COPY);
    }

    /**
     * Reads {@code file} into {@code arena}, copied or mapped as {@code load} says; the tensors
     * are valid while the arena is open.
     *
     * @throws TensorFormatException the file is missing, not a regular file, or breaks a rule of
     *                               the format (see the class comment), or it shrank while it was copied
     * @throws InsufficientHeapException the header is within the format's limit but the Java heap
     *                               is too small to parse it (raise -Xmx)
     */
    public static Map<String, Tensor> open(Path file, Arena arena, Load load) throws IOException {
        if (TensorFiles.kind(file, "a .safetensors file") == TensorFiles.Kind.STREAM) {
            throw new TensorFormatException(file + ": .safetensors weights must be a regular file (this is a pipe, FIFO or "
                    + "device): the header's sizes are checked against the file's size before anything is allocated; "
                    + "save the stream to a file first");
        }
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            return read(ch, file, arena, load);
        }
    }

    /** {@link #open(Path, Arena, Load)} on an open channel (tests give one that changes the file under the reader). */
    static Map<String, Tensor> read(FileChannel ch, Path file, Arena arena, Load load) throws IOException {
        long size = ch.size();
        if (size < 8) throw new TensorFormatException(file + ": too short for .safetensors (" + size + " bytes)");
        ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
        TensorFiles.readFully(ch, len, 0, file, "the header length", size);
        long headerLen = len.getLong(0);
        if (headerLen < 0 || headerLen > MAX_HEADER_BYTES) {
            throw new TensorFormatException(file + ": .safetensors header length " + Long.toUnsignedString(headerLen)
                    + " is more than the format's limit of " + MAX_HEADER_BYTES + " bytes (MAX_HEADER_SIZE)");
        }
        if (headerLen < 2 || headerLen > size - 8) {
            throw new TensorFormatException(file + ": .safetensors header length " + headerLen
                    + " does not fit a file of " + size + " bytes" + (headerLen < 2 ? " (a JSON object needs 2)" : ""));
        }
        checkHeap(file, headerLen);
        long dataStart = 8 + headerLen, dataSize = size - dataStart;
        Map<String, Entry> entries;
        try {
            entries = new HeaderReader(file, ch, headerLen, size).read();
            checkLayout(file, entries, dataSize);
        } catch (OutOfMemoryError e) {
            // Only this call's parse allocated on the heap: unwinding has made it garbage, so the JVM can go on.
            throw InsufficientHeapException.forHeader(file, headerLen, e);
        }
        // Every rule has been checked: only now is memory allocated or the file mapped.
        MemorySegment data;
        if (load == Load.MAP) {
            MemorySegment mapped = arena instanceof TrackedArena tracked
                    ? tracked.map(ch, 0, size)
                    : ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            data = mapped.asSlice(dataStart, dataSize);
        } else {
            data = arena.allocate(Math.max(1, dataSize), TrackedArena.ALIGNMENT).asSlice(0, dataSize);
            TensorFiles.copy(ch, dataStart, data, file, "the tensor data", size);
            TensorFiles.checkUnchanged(ch, file, size);
        }
        try {
            Map<String, Tensor> tensors = new LinkedHashMap<>();
            entries.forEach((name, e) -> tensors.put(name, Tensor.wrap(data.asSlice(e.begin, e.end - e.begin), e.shape)));
            return Collections.unmodifiableMap(tensors);
        } catch (OutOfMemoryError e) {
            throw InsufficientHeapException.forHeader(file, headerLen, e);
        }
    }

    /** Refuses up front a header the heap cannot parse, so the JVM does not run out of memory half-way. */
    private static void checkHeap(Path file, long headerLen) throws InsufficientHeapException {
        Runtime rt = Runtime.getRuntime();
        long available = rt.maxMemory() - (rt.totalMemory() - rt.freeMemory());
        long need = headerLen * HEAP_BYTES_PER_HEADER_BYTE;
        if (need > available) throw InsufficientHeapException.forHeader(file, headerLen, need, available, rt.maxMemory());
    }

    /** One validated header entry: shape and byte range within the data section. */
    private record Entry(String name, int[] shape, long begin, long end) {}

    /** Sorted by offset, the tensors must tile the data section exactly: no overlap, no hole, nothing after. */
    private static void checkLayout(Path file, Map<String, Entry> entries, long dataSize) throws TensorFormatException {
        List<Entry> sorted = new ArrayList<>(entries.values());
        sorted.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
        long at = 0;
        Entry previous = null;
        for (Entry e : sorted) {
            if (e.end > dataSize) {
                throw new TensorFormatException(file + ": tensor '" + e.name + "' has data_offsets [" + e.begin + ", " + e.end
                        + "] outside the data section of " + dataSize + " bytes (truncated file?)");
            }
            if (e.begin < at) {
                throw new TensorFormatException(file + ": tensor '" + e.name + "' data_offsets [" + e.begin + ", " + e.end
                        + "] overlap tensor '" + previous.name + "' [" + previous.begin + ", " + previous.end
                        + "]; the format forbids overlapping tensors");
            }
            if (e.begin > at) {
                throw new TensorFormatException(file + ": " + (e.begin - at) + " bytes at [" + at + ", " + e.begin
                        + ") of the data section belong to no tensor (before '" + e.name + "'); the format requires the "
                        + "data to be entirely indexed, without holes");
            }
            at = e.end;
            previous = e;
        }
        if (at != dataSize) {
            throw new TensorFormatException(file + ": the data section has " + (dataSize - at) + " bytes after the last tensor's "
                    + "data (" + at + " of " + dataSize + " bytes indexed); the format requires the data to be entirely "
                    + "indexed, without trailing bytes");
        }
    }

    /**
     * Parses the header with Gson's streaming {@link JsonReader} in strict mode, straight from
     * the file (decoded as strict UTF-8): nothing but the entries is kept, duplicate keys are
     * seen (a tree parser keeps the last), and numbers are checked as written, so
     * {@code 24.0}, {@code 2.4e1} or {@code 0.5} are refused instead of truncated.
     */
    private static final class HeaderReader {
        private static final Pattern WHOLE = Pattern.compile("0|[1-9][0-9]*");
        private final Path file;
        private final FileChannel ch;
        private final long headerLen, size;
        private JsonReader json;

        HeaderReader(Path file, FileChannel ch, long headerLen, long size) {
            this.file = file;
            this.ch = ch;
            this.headerLen = headerLen;
            this.size = size;
        }

        private TensorFormatException malformed(String what) {
            String where = json == null ? "" : " (" + json.getPath() + ")";
            return new TensorFormatException(file + ": malformed .safetensors header" + where + ": " + what);
        }

        Map<String, Entry> read() throws IOException {
            ByteBuffer first = ByteBuffer.allocate(1);
            TensorFiles.readFully(ch, first, 8, file, "the header", size);
            if (first.get(0) != '{') {
                throw new TensorFormatException(file + ": .safetensors header must begin with '{' (0x7B), found 0x"
                        + Integer.toHexString(first.get(0) & 0xff));
            }
            CharsetDecoder utf8 = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT);
            json = new JsonReader(Channels.newReader(new Region(), utf8, -1));
            json.setStrictness(Strictness.STRICT);
            try {
                Map<String, Entry> entries = new LinkedHashMap<>();
                boolean metadataSeen = false;
                json.beginObject();
                while (json.hasNext()) {
                    String name = json.nextName();
                    if (entries.containsKey(name) || (metadataSeen && name.equals("__metadata__"))) {
                        throw malformed("key '" + name + "' appears twice; the format forbids duplicate keys");
                    }
                    if (name.equals("__metadata__")) {
                        metadata();
                        metadataSeen = true;
                    } else {
                        entries.put(name, entry(name));
                    }
                }
                json.endObject();
                if (json.peek() != JsonToken.END_DOCUMENT) throw malformed("text after the header's JSON object");
                return entries;
            } catch (CharacterCodingException e) {
                throw new TensorFormatException(file + ": .safetensors header is not valid UTF-8 (" + e + ")", e);
            } catch (MalformedJsonException | IllegalStateException | NumberFormatException | EOFException e) {
                String m = e.getMessage() == null ? e.toString() : e.getMessage();
                throw malformed(m.replace("Use JsonReader.setStrictness(Strictness.LENIENT) to accept malformed JSON", "not strict JSON")
                        .replaceAll("\\s*See https://\\S+", ""));
            }
        }

        /** {@code __metadata__}: free-form, but only strings to strings. */
        private void metadata() throws IOException {
            if (json.peek() != JsonToken.BEGIN_OBJECT) throw malformed("__metadata__ must be an object of strings, found " + json.peek());
            json.beginObject();
            Set<String> seen = new HashSet<>();
            while (json.hasNext()) {
                String key = json.nextName();
                if (!seen.add(key)) throw malformed("__metadata__ key '" + key + "' appears twice; the format forbids duplicate keys");
                if (json.peek() != JsonToken.STRING) {
                    throw malformed("__metadata__ value of '" + key + "' is " + json.peek() + "; the format allows only strings");
                }
                json.nextString();
            }
            json.endObject();
        }

        private Entry entry(String name) throws IOException {
            if (json.peek() != JsonToken.BEGIN_OBJECT) throw malformed("tensor '" + name + "' must be an object, found " + json.peek());
            json.beginObject();
            String dtype = null;
            long[] dims = null, offsets = null;
            Set<String> seen = new HashSet<>();
            while (json.hasNext()) {
                String key = json.nextName();
                if (!seen.add(key)) throw malformed("key '" + key + "' appears twice in tensor '" + name + "'");
                switch (key) {
                    case "dtype" -> {
                        if (json.peek() != JsonToken.STRING) throw malformed("tensor '" + name + "' dtype must be a string");
                        dtype = json.nextString();
                    }
                    case "shape" -> dims = integers("shape of tensor '" + name + "'");
                    case "data_offsets" -> offsets = integers("data_offsets of tensor '" + name + "'");
                    default -> skipChecked(name + "." + key);
                }
            }
            json.endObject();
            if (dtype == null || dims == null || offsets == null) {
                throw malformed("tensor '" + name + "' needs \"dtype\", \"shape\" and \"data_offsets\"; it has " + seen);
            }
            if (!dtype.equals("F32")) {
                throw new TensorFormatException(file + ": tensor '" + name + "' has dtype " + dtype
                        + "; Headroom reads F32 only (in PyTorch: {k: v.float() for k, v in state_dict.items()})");
            }
            int[] shape = new int[Math.max(1, dims.length)];
            shape[0] = 1;
            long bytes = Float.BYTES;
            for (int i = 0; i < dims.length; i++) {
                if (dims[i] > Integer.MAX_VALUE) {
                    throw malformed("tensor '" + name + "' has dimension " + dims[i] + " (Headroom's dimensions are at most 2^31 - 1)");
                }
                shape[i] = (int) dims[i];
                bytes = multiplyOrMinusOne(bytes, dims[i]);
                if (bytes < 0) {
                    throw malformed("tensor '" + name + "' shape " + Arrays.toString(dims) + " overflows: its byte size is "
                            + "more than 2^63");
                }
            }
            if (offsets.length != 2) throw malformed("tensor '" + name + "' data_offsets must be [begin, end], got " + Arrays.toString(offsets));
            long begin = offsets[0], end = offsets[1];
            if (begin % Float.BYTES != 0 || end % Float.BYTES != 0) {
                throw malformed("tensor '" + name + "' data_offsets [" + begin + ", " + end + "] are not whole F32 elements "
                        + "(multiples of 4 bytes)");
            }
            if (end < begin || end - begin != bytes) {
                throw new TensorFormatException(file + ": tensor '" + name + "' of shape " + Arrays.toString(dims) + " needs "
                        + bytes + " bytes but data_offsets [" + begin + ", " + end + "] span " + (end - begin));
            }
            return new Entry(name, shape, begin, end);
        }

        /**
         * Skips a value the format does not define (an unknown key of a tensor entry, ignored as
         * the reference implementation ignores it), still refusing duplicate keys inside it.
         * Recursion is bounded by the reader's nesting limit (Gson's default, 255 levels).
         */
        private void skipChecked(String where) throws IOException {
            switch (json.peek()) {
                case BEGIN_OBJECT -> {
                    json.beginObject();
                    Set<String> seen = new HashSet<>();
                    while (json.hasNext()) {
                        String key = json.nextName();
                        if (!seen.add(key)) throw malformed("key '" + key + "' appears twice in " + where);
                        skipChecked(where + "." + key);
                    }
                    json.endObject();
                }
                case BEGIN_ARRAY -> {
                    json.beginArray();
                    while (json.hasNext()) skipChecked(where);
                    json.endArray();
                }
                default -> json.skipValue();
            }
        }

        /** An array of non-negative integers written as such (digits only). */
        private long[] integers(String what) throws IOException {
            if (json.peek() != JsonToken.BEGIN_ARRAY) throw malformed(what + " must be an array of integers, found " + json.peek());
            json.beginArray();
            List<Long> values = new ArrayList<>();
            while (json.hasNext()) {
                if (json.peek() != JsonToken.NUMBER) throw malformed(what + " holds " + json.peek() + ", not an integer");
                String number = json.nextString();
                if (!WHOLE.matcher(number).matches()) {
                    throw malformed(what + " holds " + number + "; it must hold non-negative whole numbers (no sign, "
                            + "fraction or exponent)");
                }
                if (number.length() > 18) throw malformed(what + " holds " + number + ", which is too large");
                values.add(Long.parseLong(number));
            }
            json.endArray();
            return values.stream().mapToLong(Long::longValue).toArray();
        }

        /** The header's bytes, [8, 8 + headerLen), as a channel over positional reads. */
        private final class Region implements ReadableByteChannel {
            private long at = 8;

            @Override
            public int read(ByteBuffer dst) throws IOException {
                long left = 8 + headerLen - at;
                if (left <= 0) return -1;
                ByteBuffer window = dst.slice(dst.position(), (int) Math.min(dst.remaining(), left));
                TensorFiles.readFully(ch, window, at, file, "the header", size);
                int n = window.position();
                dst.position(dst.position() + n);
                at += n;
                return n;
            }

            @Override
            public boolean isOpen() {
                return true;
            }

            @Override
            public void close() {}
        }
    }

    private static long multiplyOrMinusOne(long a, long b) {
        try {
            return Math.multiplyExact(a, b);
        } catch (ArithmeticException e) {
            return -1;
        }
    }

    /** Writes {@code tensors} (in iteration order) as a .safetensors file of F32 tensors. */
    public static void write(Path file, Map<String, Tensor> tensors) throws IOException {
        JsonObject header = new JsonObject();
        long offset = 0;
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            JsonObject o = new JsonObject();
            o.addProperty("dtype", "F32");
            JsonArray shape = new JsonArray();
            for (int d : e.getValue().shape()) shape.add(d);
            o.add("shape", shape);
            JsonArray offs = new JsonArray();
            offs.add(offset);
            offset += e.getValue().byteSize();
            offs.add(offset);
            o.add("data_offsets", offs);
            header.add(e.getKey(), o);
        }
        byte[] json = header.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) / 8 * 8; // the reference writer pads the header to 8 bytes with spaces
        ByteBuffer pre = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        pre.putLong(padded).put(json);
        while (pre.hasRemaining()) pre.put((byte) ' ');
        pre.flip();
        Path parent = file.toAbsolutePath().getParent();
        if (parent != null) Files.createDirectories(parent);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            while (pre.hasRemaining()) ch.write(pre);
            for (Tensor t : tensors.values()) {
                ByteBuffer b = t.segment().asByteBuffer();
                while (b.hasRemaining()) ch.write(b);
            }
        }
    }

}
