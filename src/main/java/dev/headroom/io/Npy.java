package dev.headroom.io;

import dev.headroom.tensor.Tensor;

import dev.headroom.memory.TrackedArena;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.channels.ReadableByteChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Map;

/**
 * Reads and writes NumPy {@code .npy} files (format versions 1.0, 2.0 and 3.0): little-endian
 * float32 ({@code '<f4'}) in C order, and boolean ({@code '|b1'}) for masks. Anything else is
 * refused with a message that says how to convert it in NumPy. Data is copied byte for byte,
 * so this assumes a little-endian machine (x86-64, AArch64), as the bindings do.
 *
 * <p>What is refused, always with a {@link TensorFormatException} naming the file and the rule,
 * before anything is allocated: a header that is not the Python dict literal NumPy writes, with
 * exactly the keys {@code 'descr'}, {@code 'fortran_order'} and {@code 'shape'} (parsed as a
 * literal, not searched for); a shape that is not a tuple of non-negative integers, or whose size
 * overflows; data shorter or longer than the shape needs (an {@code np.save} file ends with its
 * data). A file that shrinks while it is read is an error, never a crash or zeros.
 *
 * <p>Regular files are read with positional reads after every size is checked against the
 * file's size. Streams (standard input, a pipe, a FIFO) are read once, in order, with
 * {@link #read(InputStream, String, Arena)}: their data is first gathered in memory that grows
 * with the bytes actually received, so a header that declares more than the stream holds costs
 * no more than what arrived. Opening a FIFO blocks until a writer opens it (as for any Unix
 * program); a stream is read to its end, so the writer must close it.
 */
public final class Npy {
    private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
    /**
     * NumPy's reader refuses longer headers unless told otherwise ({@code max_header_size} of
     * {@code numpy.lib.format}, 10000): the headers of float and boolean arrays are under 200 bytes.
     */
    static final int MAX_HEADER_BYTES = 10_000;
    /** A stream's data is gathered in chunks that start at 1 MiB and double up to 64 MiB. */
    private static final long FIRST_STREAM_CHUNK = 1 << 20, LARGEST_STREAM_CHUNK = 64 << 20;

    private Npy() {}

    /** The parsed header of an .npy file; {@code dataOffset} is where the data starts (the prefix plus the header). */
    public record Header(String descr, int[] shape, long dataOffset) {
        /** Elements of the shape; {@link Npy#header} refuses shapes whose byte size overflows, so this cannot. */
        public long elements() {
            long n = 1;
            for (int d : shape) n = Math.multiplyExact(n, d);
            return n;
        }

        /** Bytes per element of the dtypes Headroom reads ('f4': 4, 'b1': 1), 0 for any other. */
        public int itemSize() {
            return isFloat(descr) ? Float.BYTES : descr.equals("|b1") ? 1 : 0;
        }
    }

    private static boolean isFloat(String descr) {
        return descr.equals("<f4") || descr.equals("=f4");
    }

    /** Reads a float32 .npy file into a new tensor owned by {@code arena}; a FIFO or device is read as a stream. */
    public static Tensor read(Path file, Arena arena) throws IOException {
        return floats(load(file, arena, true));
    }

    /**
     * Reads a float32 .npy from a stream (standard input, a pipe) to its end, into a new tensor
     * owned by {@code arena}; {@code source} names the stream in messages.
     */
    public static Tensor read(InputStream in, String source, Arena arena) throws IOException {
        return floats(load(Channels.newChannel(in), source, arena, true));
    }

    private static Tensor floats(Loaded loaded) {
        int[] shape = loaded.header.shape.length == 0 ? new int[]{1} : loaded.header.shape;
        return Tensor.wrap(loaded.data, shape);
    }

    /**
     * Reads a boolean ('|b1') .npy file into a segment of one byte per element (0 or 1), owned by
     * {@code arena}; returns the segment and writes the shape into {@code shapeOut[0]}.
     */
    public static MemorySegment readBooleans(Path file, Arena arena, int[][] shapeOut) throws IOException {
        Loaded loaded = load(file, arena, false);
        shapeOut[0] = loaded.header.shape;
        return loaded.data;
    }

    /** What was read: the header and the data, in the caller's arena. */
    private record Loaded(Header header, MemorySegment data) {}

    private static Loaded load(Path file, Arena arena, boolean wantFloats) throws IOException {
        if (TensorFiles.kind(file, "an .npy file") == TensorFiles.Kind.STREAM) {
            try (InputStream in = Files.newInputStream(file)) {
                return load(Channels.newChannel(in), file.toString(), arena, wantFloats);
            }
        }
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            return load(ch, file, arena, wantFloats);
        }
    }

    /** A float32 .npy from an open channel of a regular file (tests give one that changes the file under the reader). */
    static Tensor read(FileChannel ch, Path file, Arena arena) throws IOException {
        return floats(load(ch, file, arena, true));
    }

    private static Loaded load(FileChannel ch, Path file, Arena arena, boolean wantFloats) throws IOException {
        long size = ch.size();
        Header h = header(ch, file);
        checkDtype(h, file.toString(), wantFloats);
        MemorySegment data = allocate(arena, h);
        TensorFiles.copy(ch, h.dataOffset, data, file, "the data", size);
        TensorFiles.checkUnchanged(ch, file, size);
        return new Loaded(h, data);
    }

    private static MemorySegment allocate(Arena arena, Header h) {
        long bytes = h.elements() * h.itemSize();
        return arena.allocate(Math.max(1, bytes), 64).asSlice(0, bytes);
    }

    private static void checkDtype(Header h, String source, boolean wantFloats) throws TensorFormatException {
        if (wantFloats && !isFloat(h.descr)) {
            throw new TensorFormatException(source + ": dtype '" + h.descr + "' is not supported; Headroom reads "
                    + "little-endian float32 ('<f4'). Convert with np.save(path, a.astype(np.float32)).");
        }
        if (!wantFloats && !h.descr.equals("|b1")) {
            throw new TensorFormatException(source + ": dtype '" + h.descr + "' is not a boolean mask ('|b1'). "
                    + "Save masks with np.save(path, m.astype(np.bool_)).");
        }
    }

    /**
     * Reads and validates the header of a regular file with positional reads (the channel's
     * position is not used), and checks that the file holds exactly the data the shape needs.
     */
    public static Header header(FileChannel ch, Path file) throws IOException {
        long size = ch.size();
        String source = file.toString();
        ByteBuffer pre = ByteBuffer.allocate((int) Math.min(12, size)).order(ByteOrder.LITTLE_ENDIAN);
        TensorFiles.readFully(ch, pre, 0, file, "the magic string", size);
        int prefix = prefix(pre.flip(), source, size + " bytes");
        long headerLength = headerLength(pre, prefix);
        if (prefix + headerLength > size) {
            throw new TensorFormatException(source + ": truncated .npy file: the header of " + headerLength
                    + " bytes runs past the end of the file (" + size + " bytes)");
        }
        ByteBuffer hb = ByteBuffer.allocate((int) headerLength);
        TensorFiles.readFully(ch, hb, prefix, file, "the header (" + headerLength + " bytes)", size);
        Header h = parseHeader(hb.array(), pre.get(6), prefix, source);
        if (h.itemSize() > 0) {
            long need = h.dataOffset + h.elements() * h.itemSize();
            if (size < need) {
                throw new TensorFormatException(source + ": truncated: shape " + Arrays.toString(h.shape) + " of "
                        + h.descr + " needs " + need + " bytes, the file has " + size);
            }
            if (size > need) {
                throw new TensorFormatException(source + ": " + (size - need) + " bytes after the data that shape "
                        + Arrays.toString(h.shape) + " of " + h.descr + " needs (" + need + " bytes in all, the file has "
                        + size + "); an .npy file ends with its data");
            }
        }
        return h;
    }

    /** Checks the magic string and version in {@code pre}; returns the prefix length (10 or 12). */
    private static int prefix(ByteBuffer pre, String source, String available) throws TensorFormatException {
        byte[] magic = new byte[Math.min(6, pre.limit())];
        pre.get(0, magic);
        if (!Arrays.equals(magic, MAGIC)) {
            throw new TensorFormatException(source + ": not an .npy file (bad magic " + hex(magic)
                    + ", expected \\x93NUMPY)");
        }
        if (pre.limit() < 10) {
            throw new TensorFormatException(source + ": truncated .npy file (" + available + ", no room for a header)");
        }
        int major = pre.get(6) & 0xff, minor = pre.get(7) & 0xff;
        if (major < 1 || major > 3 || minor != 0) {
            throw new TensorFormatException(source + ": unsupported .npy format version " + major + "." + minor
                    + " (NumPy writes 1.0, 2.0 and 3.0)");
        }
        int prefix = major == 1 ? 10 : 12;
        if (pre.limit() < prefix) {
            throw new TensorFormatException(source + ": truncated .npy file (" + available + ", no room for a header)");
        }
        return prefix;
    }

    private static long headerLength(ByteBuffer pre, int prefix) {
        return prefix == 10 ? pre.getShort(8) & 0xffff : pre.getInt(8) & 0xffffffffL;
    }

    private static Header parseHeader(byte[] bytes, int major, int prefix, String source) throws TensorFormatException {
        if (bytes.length > MAX_HEADER_BYTES) {
            throw new TensorFormatException(source + ": .npy header of " + bytes.length + " bytes is longer than "
                    + MAX_HEADER_BYTES + ", NumPy's own limit (max_header_size); the header of a float or boolean array is "
                    + "under 200 bytes");
        }
        String text;
        if (major == 3) {
            try {
                text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString();
            } catch (CharacterCodingException e) {
                throw new TensorFormatException(source + ": the header of a version 3.0 .npy file must be UTF-8", e);
            }
        } else {
            text = new String(bytes, StandardCharsets.ISO_8859_1);
        }
        Map<String, Object> dict = new HeaderParser(text, source, major < 3).dict();
        for (String key : dict.keySet()) {
            if (!KEYS.contains(key)) {
                throw new TensorFormatException(source + ": .npy header has key '" + key + "'; it must have exactly the keys "
                        + "'descr', 'fortran_order' and 'shape': " + HeaderParser.quote(text));
            }
        }
        for (String key : KEYS) {
            if (!dict.containsKey(key)) {
                throw new TensorFormatException(source + ": .npy header has no '" + key + "'; it must have exactly the keys "
                        + "'descr', 'fortran_order' and 'shape': " + HeaderParser.quote(text));
            }
        }
        if (!(dict.get("descr") instanceof String descr)) {
            throw new TensorFormatException(source + ": .npy header's 'descr' is not a dtype string (structured arrays are "
                    + "not supported): " + HeaderParser.quote(text));
        }
        if (!(dict.get("fortran_order") instanceof Boolean fortran)) {
            throw new TensorFormatException(source + ": .npy header's 'fortran_order' must be True or False: " + HeaderParser.quote(text));
        }
        if (!(dict.get("shape") instanceof long[] dims)) {
            throw new TensorFormatException(source + ": .npy header's 'shape' must be a tuple of integers, e.g. (3, 4) or (5,): "
                    + HeaderParser.quote(text));
        }
        if (fortran) {
            throw new TensorFormatException(source + ": array is in Fortran order; Headroom reads C order. "
                    + "Save it with np.save(path, np.ascontiguousarray(a)).");
        }
        int[] shape = new int[dims.length];
        long elements = 1;
        for (int i = 0; i < dims.length; i++) {
            if (dims[i] < 0 || dims[i] > Integer.MAX_VALUE) {
                throw new TensorFormatException(source + ": .npy shape " + Arrays.toString(dims) + " has dimension " + dims[i]
                        + (dims[i] < 0 ? " (negative)" : " (Headroom's dimensions are at most 2^31 - 1)"));
            }
            shape[i] = (int) dims[i];
            elements = multiplyOrMinusOne(elements, dims[i]);
        }
        if (elements < 0 || multiplyOrMinusOne(elements, 8) < 0) {
            throw new TensorFormatException(source + ": .npy shape " + Arrays.toString(dims) + " has more elements than "
                    + "any file can hold (its byte size overflows 2^63)");
        }
        return new Header(descr, shape, prefix + (long) bytes.length);
    }

    private static final java.util.List<String> KEYS = java.util.List.of("descr", "fortran_order", "shape");

    private static long multiplyOrMinusOne(long a, long b) {
        try {
            return a < 0 ? -1 : Math.multiplyExact(a, b);
        } catch (ArithmeticException e) {
            return -1;
        }
    }

    /**
     * The header: the Python literal of a dict, as {@code repr} writes it and
     * {@code ast.literal_eval} reads it. Values are strings ('…' or "…", no escapes), True and
     * False, and tuples of integers ({@code ()}, {@code (5,)}, {@code (3, 4)}, a trailing comma
     * allowed; {@code (5)} is an integer, not a tuple). Versions 1.0 and 2.0 allow Python 2's
     * {@code L} suffix, which NumPy strips too. After the closing brace only whitespace may follow.
     */
    private static final class HeaderParser {
        private final String text, source;
        private final boolean longSuffix;
        private int pos;

        HeaderParser(String text, String source, boolean longSuffix) {
            this.text = text;
            this.source = source;
            this.longSuffix = longSuffix;
        }

        static String quote(String text) {
            String t = text.strip();
            return t.length() > 200 ? t.substring(0, 200) + "…" : t;
        }

        private TensorFormatException error(String what) {
            return new TensorFormatException(source + ": malformed .npy header (not the Python dict literal NumPy writes): "
                    + what + " at character " + pos + " of " + quote(text));
        }

        private void whitespace() {
            while (pos < text.length() && " \t\n\r\f".indexOf(text.charAt(pos)) >= 0) pos++;
        }

        private boolean at(char c) {
            return pos < text.length() && text.charAt(pos) == c;
        }

        private void expect(char c) throws TensorFormatException {
            if (!at(c)) throw error("expected '" + c + "'" + (pos < text.length() ? ", found '" + text.charAt(pos) + "'" : ", found the end"));
            pos++;
        }

        Map<String, Object> dict() throws TensorFormatException {
            Map<String, Object> dict = new java.util.LinkedHashMap<>();
            whitespace();
            expect('{');
            whitespace();
            while (!at('}')) {
                int keyAt = pos;
                String key = string();
                whitespace();
                expect(':');
                whitespace();
                Object value = value();
                if (dict.put(key, value) != null) {
                    pos = keyAt;
                    throw error("key '" + key + "' appears twice");
                }
                whitespace();
                if (at(',')) {
                    pos++;
                    whitespace();
                } else if (!at('}')) {
                    throw error("expected ',' or '}'");
                }
            }
            pos++;
            whitespace();
            if (pos != text.length()) throw error("text after the closing brace");
            return dict;
        }

        private Object value() throws TensorFormatException {
            if (at('\'') || at('"')) return string();
            if (at('(')) return tuple();
            if (text.startsWith("True", pos) || text.startsWith("False", pos)) {
                boolean v = text.startsWith("True", pos);
                pos += v ? 4 : 5;
                if (pos < text.length() && Character.isLetterOrDigit(text.charAt(pos))) throw error("unknown name");
                return v;
            }
            if (at('-') || pos < text.length() && Character.isDigit(text.charAt(pos))) return integer();
            throw error("expected a string, True, False, an integer or a tuple");
        }

        private String string() throws TensorFormatException {
            if (!at('\'') && !at('"')) throw error("expected a quoted string");
            char quote = text.charAt(pos++);
            int end = text.indexOf(quote, pos);
            if (end < 0) throw error("unterminated string");
            String s = text.substring(pos, end);
            if (s.indexOf('\\') >= 0 || s.indexOf('\n') >= 0) throw error("escape sequence or line break in a string");
            pos = end + 1;
            return s;
        }

        private long[] tuple() throws TensorFormatException {
            expect('(');
            whitespace();
            java.util.List<Long> values = new java.util.ArrayList<>();
            boolean comma = false;
            while (!at(')')) {
                values.add(integer());
                whitespace();
                comma = at(',');
                if (comma) {
                    pos++;
                    whitespace();
                } else if (!at(')')) {
                    throw error("expected ',' or ')' in the shape");
                }
            }
            if (values.size() == 1 && !comma) throw error("(" + values.getFirst() + ") is an integer, not a tuple: write ("
                    + values.getFirst() + ",)");
            pos++;
            return values.stream().mapToLong(Long::longValue).toArray();
        }

        private long integer() throws TensorFormatException {
            int start = pos;
            if (at('-')) pos++;
            int digits = pos;
            while (pos < text.length() && text.charAt(pos) >= '0' && text.charAt(pos) <= '9') pos++;
            if (pos == digits) throw error("expected an integer");
            String number = text.substring(digits, pos);
            if (number.length() > 1 && number.charAt(0) == '0' && !number.matches("0+")) {
                pos = start;
                throw error("integer with a leading zero (not a Python 3 literal)");
            }
            if (longSuffix && at('L')) pos++;
            if (pos < text.length() && (Character.isLetterOrDigit(text.charAt(pos)) || text.charAt(pos) == '.')) {
                throw error("not an integer");
            }
            if (number.length() > 18) {
                throw new TensorFormatException(source + ": .npy header holds the integer " + text.substring(start, pos)
                        + ", too large for a dimension (Headroom's dimensions are at most 2^31 - 1)");
            }
            long v = Long.parseLong(number);
            return text.charAt(start) == '-' ? -v : v;
        }
    }

    /**
     * Reads an .npy from a stream: prefix, header, then the data into memory that grows with the
     * bytes that arrive, then the end of the stream (trailing bytes are refused).
     */
    private static Loaded load(ReadableByteChannel in, String source, Arena arena, boolean wantFloats) throws IOException {
        // Up to 12 bytes: the magic string, the version and the header length (2 or 4 bytes).
        ByteBuffer pre = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN).limit(10);
        while (pre.hasRemaining() && in.read(pre) >= 0) {
            if (pre.position() == 10 && (pre.get(6) == 2 || pre.get(6) == 3)) pre.limit(12);
        }
        if (pre.position() == 0) throw new TensorFormatException(source + ": empty stream, not an .npy file");
        int prefix = prefix(pre.flip(), source, "the stream ended after " + pre.limit() + " bytes");
        long headerLength = headerLength(pre, prefix);
        if (headerLength > MAX_HEADER_BYTES) {
            throw new TensorFormatException(source + ": .npy header of " + headerLength + " bytes is longer than "
                    + MAX_HEADER_BYTES + ", NumPy's own limit (max_header_size)");
        }
        ByteBuffer hb = ByteBuffer.allocate((int) headerLength);
        if (!TensorFiles.readFully(in, hb, source, "the header (" + headerLength + " bytes)") && headerLength > 0) {
            throw new TensorFormatException(source + ": the stream ended before the .npy header (" + headerLength + " bytes)");
        }
        Header h = parseHeader(hb.array(), pre.get(6), prefix, source);
        checkDtype(h, source, wantFloats);
        long bytes = h.elements() * h.itemSize();
        // Gather the data in chunks allocated as bytes arrive, in a tracked arena of this call.
        try (TrackedArena gathered = TrackedArena.ofConfined()) {
            java.util.List<MemorySegment> chunks = new java.util.ArrayList<>();
            long received = 0, chunk = FIRST_STREAM_CHUNK;
            while (received < bytes) {
                MemorySegment c = gathered.allocate(Math.min(chunk, bytes - received), 1);
                ByteBuffer b = c.asByteBuffer();
                while (b.hasRemaining()) {
                    if (in.read(b) < 0) {
                        throw new TensorFormatException(source + ": the stream ended after " + (received + b.position())
                                + " of the " + bytes + " data bytes that shape " + Arrays.toString(h.shape) + " of "
                                + h.descr + " needs");
                    }
                }
                chunks.add(c);
                received += c.byteSize();
                chunk = Math.min(LARGEST_STREAM_CHUNK, chunk * 2);
            }
            if (in.read(ByteBuffer.allocate(1)) >= 0) {
                throw new TensorFormatException(source + ": more bytes after the " + bytes + " data bytes that shape "
                        + Arrays.toString(h.shape) + " of " + h.descr + " needs; an .npy file ends with its data");
            }
            MemorySegment data = allocate(arena, h);
            long at = 0;
            for (MemorySegment c : chunks) {
                MemorySegment.copy(c, 0, data, at, c.byteSize());
                at += c.byteSize();
            }
            return new Loaded(h, data);
        }
    }

    /** Writes {@code t} as a version 1.0 float32 C-order .npy file. */
    public static void write(Path file, Tensor t) throws IOException {
        writeRaw(file, "<f4", t.shape(), t.segment());
    }

    /** Writes one byte per element (0/1) as a boolean .npy file. */
    public static void writeBooleans(Path file, MemorySegment bytes, int... shape) throws IOException {
        writeRaw(file, "|b1", shape, bytes);
    }

    /**
     * A version 1.0 .npy header for C-order data of {@code descr} (a NumPy dtype string such as
     * {@code "<f4"}) and {@code shape}: magic, version, length and the dict, padded with spaces
     * and a newline to a multiple of 64 bytes as NumPy writes it; ready to be written (flipped).
     */
    public static ByteBuffer header(String descr, int... shape) {
        StringBuilder sh = new StringBuilder();
        for (int d : shape) sh.append(d).append(", ");
        String shapeText = shape.length == 1 ? "(" + shape[0] + ",)"
                : "(" + (sh.length() == 0 ? "" : sh.substring(0, sh.length() - 2)) + ")";
        String dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shapeText + ", }";
        // Pad with spaces and a newline so that magic + length + header is a multiple of 64 bytes.
        int total = 10 + dict.length() + 1;
        int pad = (64 - total % 64) % 64;
        String header = dict + " ".repeat(pad) + "\n";
        ByteBuffer pre = ByteBuffer.allocate(10 + header.length()).order(ByteOrder.LITTLE_ENDIAN);
        pre.put(MAGIC).put((byte) 1).put((byte) 0).putShort((short) header.length());
        pre.put(header.getBytes(StandardCharsets.ISO_8859_1)).flip();
        return pre;
    }

    private static void writeRaw(Path file, String descr, int[] shape, MemorySegment data) throws IOException {
        ByteBuffer pre = header(descr, shape);
        Path parent = file.toAbsolutePath().getParent();
        if (parent != null) Files.createDirectories(parent);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            while (pre.hasRemaining()) ch.write(pre);
            for (long off = 0; off < data.byteSize(); off += TensorFiles.CHUNK) {
                ByteBuffer body = data.asSlice(off, Math.min(TensorFiles.CHUNK, data.byteSize() - off)).asByteBuffer();
                while (body.hasRemaining()) ch.write(body);
            }
        }
    }

    private static String hex(byte[] b) {
        StringBuilder s = new StringBuilder();
        for (byte x : b) s.append(String.format("%02x", x));
        return s.toString();
    }
}
