package dev.headroom.io;

import dev.headroom.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads and writes NumPy {@code .npy} files (format versions 1.0, 2.0 and 3.0): little-endian
 * float32 ({@code '<f4'}) in C order, and boolean ({@code '|b1'}) for masks. Anything else is
 * refused with a message that says how to convert it in NumPy. Data is copied byte for byte,
 * so this assumes a little-endian machine (x86-64, AArch64), as the bindings do.
 */
public final class Npy {
    private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
    private static final Pattern DESCR = Pattern.compile("'descr'\\s*:\\s*'([^']*)'");
    private static final Pattern FORTRAN = Pattern.compile("'fortran_order'\\s*:\\s*(True|False)");
    private static final Pattern SHAPE = Pattern.compile("'shape'\\s*:\\s*\\(([^)]*)\\)");

    private Npy() {}

    /** The parsed header of an .npy file. */
    public record Header(String descr, int[] shape, long dataOffset) {
        /** Elements of the shape; a product past 2^63 (a corrupt header) is refused in {@link Npy#header}. */
        public long elements() {
            long n = 1;
            for (int d : shape) n = Math.multiplyExact(n, d);
            return n;
        }
    }

    /** Reads a float32 .npy file into a new tensor owned by {@code arena}. */
    public static Tensor read(Path file, Arena arena) throws IOException {
        try (FileChannel ch = open(file)) {
            Header h = header(ch, file);
            if (!h.descr.equals("<f4") && !h.descr.equals("=f4")) {
                throw new TensorFormatException(file + ": dtype '" + h.descr + "' is not supported; Headroom reads "
                        + "little-endian float32 ('<f4'). Convert with np.save(path, a.astype(np.float32)).");
            }
            int[] shape = h.shape.length == 0 ? new int[]{1} : h.shape;
            Tensor t = Tensor.allocate(arena, shape);
            readData(ch, file, h, t.segment());
            return t;
        }
    }

    /**
     * Reads a boolean ('|b1') .npy file into a segment of one byte per element (0 or 1), owned by
     * {@code arena}; returns the segment and writes the shape into {@code shapeOut[0]}.
     */
    public static MemorySegment readBooleans(Path file, Arena arena, int[][] shapeOut) throws IOException {
        try (FileChannel ch = open(file)) {
            Header h = header(ch, file);
            if (!h.descr.equals("|b1")) {
                throw new TensorFormatException(file + ": dtype '" + h.descr + "' is not a boolean mask ('|b1'). "
                        + "Save masks with np.save(path, m.astype(np.bool_)).");
            }
            MemorySegment s = arena.allocate(Math.max(1, h.elements()), 64).asSlice(0, h.elements());
            readData(ch, file, h, s);
            shapeOut[0] = h.shape;
            return s;
        }
    }

    private static FileChannel open(Path file) throws IOException {
        try {
            return FileChannel.open(file, StandardOpenOption.READ);
        } catch (NoSuchFileException e) {
            throw new TensorFormatException(file + ": no such .npy file", e);
        }
    }

    /** Reads and validates the header with positional reads (the channel's position is not used). */
    public static Header header(FileChannel ch, Path file) throws IOException {
        ByteBuffer pre = ByteBuffer.allocate((int) Math.min(12, ch.size())).order(ByteOrder.LITTLE_ENDIAN);
        readFully(ch, pre, 0, file, "the magic string");
        byte[] magic = new byte[Math.min(6, pre.limit())];
        pre.get(0, magic);
        if (!Arrays.equals(magic, MAGIC)) {
            throw new TensorFormatException(file + ": not an .npy file (bad magic " + hex(magic)
                    + ", expected \\x93NUMPY)");
        }
        if (pre.limit() < 10) {
            throw new TensorFormatException(file + ": truncated .npy file (" + ch.size() + " bytes, no room for a header)");
        }
        int major = pre.get(6) & 0xff;
        long headerLen;
        int prefix;
        if (major == 1) {
            headerLen = pre.getShort(8) & 0xffff;
            prefix = 10;
        } else if (major == 2 || major == 3) {
            if (pre.limit() < 12) throw new TensorFormatException(file + ": truncated .npy file (" + ch.size() + " bytes)");
            headerLen = pre.getInt(8) & 0xffffffffL;
            prefix = 12;
        } else {
            throw new TensorFormatException(file + ": unsupported .npy format version " + major + "." + (pre.get(7) & 0xff));
        }
        if (headerLen > 1 << 20) throw new TensorFormatException(file + ": .npy header length " + headerLen + " is implausible");
        ByteBuffer hb = ByteBuffer.allocate((int) headerLen);
        readFully(ch, hb, prefix, file, "the header (" + headerLen + " bytes)");
        String dict = new String(hb.array(), major == 3 ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1).trim();
        Matcher d = DESCR.matcher(dict), f = FORTRAN.matcher(dict), s = SHAPE.matcher(dict);
        if (!dict.startsWith("{") || !d.find() || !f.find() || !s.find()) {
            throw new TensorFormatException(file + ": malformed .npy header: " + dict);
        }
        if (f.group(1).equals("True")) {
            throw new TensorFormatException(file + ": array is in Fortran order; Headroom reads C order. "
                    + "Save it with np.save(path, np.ascontiguousarray(a)).");
        }
        int[] shape = parseShape(s.group(1), file, dict);
        Header header = new Header(d.group(1), shape, prefix + headerLen);
        try {
            if (header.elements() > Long.MAX_VALUE / 8) throw new ArithmeticException();
        } catch (ArithmeticException e) {
            throw new TensorFormatException(file + ": shape " + Arrays.toString(shape) + " in the .npy header is too large");
        }
        long itemSize = header.descr.endsWith("f4") ? 4 : header.descr.endsWith("b1") ? 1 : 0;
        if (itemSize > 0) {
            long need = header.dataOffset + header.elements() * itemSize;
            if (ch.size() < need) {
                throw new TensorFormatException(file + ": truncated: shape " + Arrays.toString(shape) + " of "
                        + header.descr + " needs " + need + " bytes, the file has " + ch.size());
            }
        }
        return header;
    }

    private static int[] parseShape(String text, Path file, String dict) throws TensorFormatException {
        List<Integer> dims = new ArrayList<>();
        for (String part : text.split(",")) {
            String p = part.trim();
            if (p.isEmpty()) continue;
            try {
                long v = Long.parseLong(p.endsWith("L") ? p.substring(0, p.length() - 1) : p);
                if (v < 0 || v > Integer.MAX_VALUE) throw new NumberFormatException();
                dims.add((int) v);
            } catch (NumberFormatException e) {
                throw new TensorFormatException(file + ": malformed shape in .npy header: " + dict);
            }
        }
        return dims.stream().mapToInt(Integer::intValue).toArray();
    }

    /** ByteBuffers hold at most 2 GiB, so data moves in chunks of this many bytes. */
    private static final long CHUNK = 1L << 30;

    private static void readData(FileChannel ch, Path file, Header h, MemorySegment dst) throws IOException {
        for (long off = 0; off < dst.byteSize(); off += CHUNK) {
            ByteBuffer buf = dst.asSlice(off, Math.min(CHUNK, dst.byteSize() - off)).asByteBuffer();
            readFully(ch, buf, h.dataOffset + off, file, "the data");
        }
    }

    private static void readFully(FileChannel ch, ByteBuffer buf, long position, Path file, String what) throws IOException {
        long pos = position;
        while (buf.hasRemaining()) {
            int r = ch.read(buf, pos);
            if (r < 0) {
                throw new TensorFormatException(file + ": truncated while reading " + what + " (file has "
                        + ch.size() + " bytes)");
            }
            pos += r;
        }
        buf.flip();
    }

    /** Writes {@code t} as a version 1.0 float32 C-order .npy file. */
    public static void write(Path file, Tensor t) throws IOException {
        writeRaw(file, "<f4", t.shape(), t.segment());
    }

    /** Writes one byte per element (0/1) as a boolean .npy file. */
    public static void writeBooleans(Path file, MemorySegment bytes, int... shape) throws IOException {
        writeRaw(file, "|b1", shape, bytes);
    }

    private static void writeRaw(Path file, String descr, int[] shape, MemorySegment data) throws IOException {
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
        Path parent = file.toAbsolutePath().getParent();
        if (parent != null) Files.createDirectories(parent);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            while (pre.hasRemaining()) ch.write(pre);
            for (long off = 0; off < data.byteSize(); off += CHUNK) {
                ByteBuffer body = data.asSlice(off, Math.min(CHUNK, data.byteSize() - off)).asByteBuffer();
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
