package dev.headroom.io;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import com.google.protobuf.CodedInputStream;
import com.google.protobuf.ByteString;
import com.google.protobuf.CodedOutputStream;
import com.google.protobuf.UnknownFieldSet;
import dev.headroom.model.minilm.MiniLmWeights;
import dev.headroom.model.Models;
import dev.headroom.model.onnx.OnnxGraph;
import dev.headroom.model.onnx.OnnxInitializer;
import dev.headroom.model.onnx.OnnxModelReader;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.InputStream;
import java.io.StringReader;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.function.Function;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Seeded mutation fuzzing of the three file readers (.npy, .safetensors, ONNX), in this JVM.
 * Each mutant of a small valid file (bit flips, byte changes, truncations, insertions, deletions
 * and edits of the header that keep it parseable) is fed to the reader and classified:
 * <ul>
 *   <li>SAME: accepted, and equal to the original;</li>
 *   <li>DIFFERENT: accepted, different, and valid by an independent check of the format's rules
 *       written here (the data is where the header says, no trailing or unindexed bytes, shapes
 *       match sizes, ...);</li>
 *   <li>REFUSED: a {@link TensorFormatException} whose message names the file;</li>
 *   <li>FAILED: anything else: another exception type, an {@link OutOfMemoryError} or other VM
 *       error, a refusal that does not name the file, an accepted file that breaks a rule, or a
 *       reader that asked for more memory than the file holds (allocation before checking).</li>
 * </ul>
 * NaN and infinities in the data are accepted: the formats allow them (the safetensors README:
 * "Tensor values are not checked against"); checking values is for the layer's finite checks.
 * The ONNX mutants are of all-MiniLM-L6-v2 from the class path: many of its structure (the
 * model with its float weights cut short, so each parse is quick) and a few of the whole file.
 * The test fails on any FAILED mutant and prints the counts per format and outcome. With
 * {@code HEADROOM_FUZZ_REPORT_ONLY=true} in the environment it only prints (to measure another
 * version of the readers).
 * The counts are kept small so that the whole test takes well under a minute on 2 cores.
 */
class FormatFuzzTest {
    private static final long SEED = 0x5EEDF00DL;
    private static final int NPY_MUTANTS = 500, SAFETENSORS_MUTANTS = 500, ONNX_SKELETON_MUTANTS = 500, ONNX_WHOLE_MUTANTS = 32;
    private static final boolean REPORT_ONLY = Boolean.getBoolean("headroom.fuzz.reportOnly")
            || "true".equals(System.getenv("HEADROOM_FUZZ_REPORT_ONLY"));

    enum Outcome { SAME, DIFFERENT, REFUSED, FAILED }

    @TempDir
    Path dir;

    /** Counts per outcome and the first failures, for one format. */
    private static final class Tally {
        final String format;
        final EnumMap<Outcome, Integer> counts = new EnumMap<>(Outcome.class);
        final List<String> failures = new ArrayList<>();

        Tally(String format) {
            this.format = format;
            for (Outcome o : Outcome.values()) counts.put(o, 0);
        }

        void add(Outcome o, String how, String detail) {
            counts.merge(o, 1, Integer::sum);
            if (o == Outcome.FAILED && failures.size() < 12) failures.add(how + " -> " + detail);
        }

        String line() {
            return String.format("%-12s SAME %4d  DIFFERENT %4d  REFUSED %4d  FAILED %4d", format, counts.get(Outcome.SAME),
                    counts.get(Outcome.DIFFERENT), counts.get(Outcome.REFUSED), counts.get(Outcome.FAILED));
        }
    }

    private record Mutant(String how, byte[] bytes) {}

    // ---------------------------------------------------------------- generic mutations

    private static final byte[][] INTERESTING = {
            {0}, {(byte) 0xff}, {0x7f}, {(byte) 0x80}, {'9'}, {'-'}, {'.'}, {','}, {'"'}, {'\''}, {'}'}, {'{'}, {' '},
            {'('}, {')'}, {'['}, {']'}, {'e'}, {'\n'}, {(byte) 0xc3, 0x28}, "99999999999".getBytes(StandardCharsets.US_ASCII),
            "-1".getBytes(StandardCharsets.US_ASCII), ".5".getBytes(StandardCharsets.US_ASCII), {0, 0, 0, 0},
    };

    /** A position: with probability {@code focus} inside [0, focusEnd) (the header), else anywhere. */
    private static int position(SplittableRandom r, int length, int focusEnd, double focus) {
        if (length == 0) return 0;
        return r.nextDouble() < focus ? r.nextInt(Math.max(1, Math.min(focusEnd, length))) : r.nextInt(length);
    }

    private static Mutant generic(SplittableRandom r, byte[] original, int focusEnd, double focus) {
        byte[] b;
        int kind = r.nextInt(5);
        int pos = position(r, original.length, focusEnd, focus);
        switch (kind) {
            case 0 -> {
                b = original.clone();
                int bit = r.nextInt(8);
                b[pos] ^= (byte) (1 << bit);
                return new Mutant("flip bit " + bit + " of byte " + pos, b);
            }
            case 1 -> {
                b = original.clone();
                byte v = r.nextBoolean() ? INTERESTING[r.nextInt(INTERESTING.length)][0] : (byte) r.nextInt(256);
                b[pos] = v;
                return new Mutant("set byte " + pos + " to 0x" + Integer.toHexString(v & 0xff), b);
            }
            case 2 -> {
                int keep = r.nextInt(original.length);
                return new Mutant("truncate to " + keep + " bytes", Arrays.copyOf(original, keep));
            }
            case 3 -> {
                byte[] ins;
                if (r.nextBoolean()) {
                    ins = INTERESTING[r.nextInt(INTERESTING.length)];
                } else {
                    ins = new byte[1 + r.nextInt(8)];
                    for (int i = 0; i < ins.length; i++) ins[i] = (byte) r.nextInt(256);
                }
                pos = Math.min(pos, original.length);
                b = new byte[original.length + ins.length];
                System.arraycopy(original, 0, b, 0, pos);
                System.arraycopy(ins, 0, b, pos, ins.length);
                System.arraycopy(original, pos, b, pos + ins.length, original.length - pos);
                return new Mutant("insert " + ins.length + " bytes at " + pos, b);
            }
            default -> {
                int n = Math.min(1 + r.nextInt(8), original.length - pos);
                b = new byte[original.length - n];
                System.arraycopy(original, 0, b, 0, pos);
                System.arraycopy(original, pos + n, b, pos, original.length - pos - n);
                return new Mutant("delete " + n + " bytes at " + pos, b);
            }
        }
    }

    private static <T> T pick(SplittableRandom r, List<T> list) {
        return list.get(r.nextInt(list.size()));
    }

    private static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) n += p.length;
        byte[] out = new byte[n];
        int at = 0;
        for (byte[] p : parts) {
            System.arraycopy(p, 0, out, at, p.length);
            at += p.length;
        }
        return out;
    }

    private static byte[] floatBytes(int n, long seed) {
        ByteBuffer b = ByteBuffer.allocate(n * 4).order(ByteOrder.LITTLE_ENDIAN);
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = 0; i < n; i++) b.putFloat((float) r.nextDouble(-2, 2));
        return b.array();
    }

    // ---------------------------------------------------------------- .npy

    private static final String NPY_DICT = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }";

    /** An .npy file with {@code dict} as header, padded as numpy pads (to 64 bytes, ending in a newline). */
    private static byte[] npy(int major, String dict, boolean pad, byte[] data) {
        String header = dict;
        int prefix = major == 1 ? 10 : 12;
        if (pad) {
            int total = prefix + dict.length() + 1;
            header = dict + " ".repeat((64 - total % 64) % 64) + "\n";
        }
        byte[] h = header.getBytes(major == 3 ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1);
        ByteBuffer pre = ByteBuffer.allocate(prefix).order(ByteOrder.LITTLE_ENDIAN);
        pre.put(new byte[]{(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', (byte) major, 0});
        if (major == 1) pre.putShort((short) h.length);
        else pre.putInt(h.length);
        return concat(pre.array(), h, data);
    }

    private static final List<String[]> NPY_EDITS = List.of(
            new String[]{"\\(3, 5\\)", "()"}, new String[]{"\\(3, 5\\)", "(15,)"}, new String[]{"\\(3, 5\\)", "(3, 5, 1)"},
            new String[]{"\\(3, 5\\)", "(5, 3)"}, new String[]{"\\(3, 5\\)", "(3,5)"}, new String[]{"\\(3, 5\\)", "(3, 5,)"},
            new String[]{"\\(3, 5\\)", "(15)"}, new String[]{"\\(3, 5\\)", "(-3, 5)"}, new String[]{"\\(3, 5\\)", "(2147483648, 5)"},
            new String[]{"\\(3, 5\\)", "(1099511627776, 1099511627776, 64)"}, new String[]{"\\(3, 5\\)", "(3, 5, 0)"},
            new String[]{"\\(3, 5\\)", "(0,)"}, new String[]{"\\(3, 5\\)", "(30, 5)"}, new String[]{"\\(3, 5\\)", "(3L, 5L)"},
            new String[]{"\\(3, 5\\)", "[3, 5]"}, new String[]{"\\(3, 5\\)", "(3.0, 5)"}, new String[]{"\\(3, 5\\)", "(3, 5"},
            new String[]{"\\(3, 5\\)", "(03, 5)"}, new String[]{"\\(3, 5\\)", "(3,, 5)"}, new String[]{"\\(3, 5\\)", "(1, 15)"},
            new String[]{"<f4", "<f8"}, new String[]{"<f4", ">f4"}, new String[]{"<f4", "|b1"}, new String[]{"<f4", "<i4"},
            new String[]{"'<f4'", "\"<f4\""}, new String[]{"'<f4'", "'<f4"}, new String[]{"'<f4'", "['<f4']"},
            new String[]{"False", "True"}, new String[]{"False", "0"}, new String[]{"False", "None"}, new String[]{"False", "'False'"},
            new String[]{", \\}$", ", 'shape': (15,), }"}, new String[]{", \\}$", ", 'descr': '<f4'}"}, new String[]{", \\}$", ", 'extra': 1, }"},
            new String[]{"'fortran_order': False, ", ""}, new String[]{"'descr': '<f4', ", ""}, new String[]{"'shape'", "'Shape'"},
            new String[]{"'shape'", "\"shape\""}, new String[]{"'shape'", "shape"}, new String[]{"^\\{", "["}, new String[]{"\\}$", "]"},
            new String[]{"\\}$", ""}, new String[]{"\\}$", "} x"}, new String[]{"\\}$", "}}"}, new String[]{"\\}$", "} #"},
            new String[]{"\\}$", "}\0"}, new String[]{"^\\{", " {"}, new String[]{": ", ":\n"}, new String[]{", ", " , "},
            new String[]{"'descr'", "'descr' 'x'"}, new String[]{"'<f4'", "'<f4' '<f4'"}, new String[]{"'<f4'", "'<\\f4'"});

    private Mutant npyMutant(SplittableRandom r, byte[] data) {
        byte[] original = npy(1, NPY_DICT, true, data);
        int kind = r.nextInt(10);
        if (kind < 6) return generic(r, original, 74, 0.8);
        if (kind < 9) {
            String[] e = pick(r, NPY_EDITS);
            String dict = NPY_DICT.replaceFirst(e[0], java.util.regex.Matcher.quoteReplacement(e[1]));
            int major = r.nextInt(6) == 0 ? 1 + r.nextInt(3) : 1;
            return new Mutant("header edit " + Arrays.toString(e) + " (version " + major + ")", npy(major, dict, r.nextInt(4) != 0, data));
        }
        return switch (r.nextInt(6)) {
            case 0 -> new Mutant("4 trailing bytes", concat(original, new byte[4]));
            case 1 -> new Mutant("1 trailing byte", concat(original, new byte[]{1}));
            case 2 -> new Mutant("one float missing", Arrays.copyOf(original, original.length - 4));
            case 3 -> {
                byte[] b = original.clone();
                b[7] = 1;
                yield new Mutant("version 1.1", b);
            }
            case 4 -> {
                byte[] b = original.clone();
                b[6] = 2;
                yield new Mutant("version 2.0 with a 2-byte length", b);
            }
            default -> {
                byte[] b = original.clone();
                b[8] = (byte) 0xff;
                b[9] = (byte) 0xff;
                yield new Mutant("header length 65535", b);
            }
        };
    }

    /** Why an accepted .npy mutant is not a valid file whose data is what was read, or null if it is. */
    static String npyViolation(byte[] file, Tensor t) {
        if (file.length < 10) return "accepted a file of " + file.length + " bytes";
        byte[] magic = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
        if (!Arrays.equals(Arrays.copyOf(file, 6), magic)) return "accepted a bad magic string";
        int major = file[6], minor = file[7];
        if (minor != 0 || major < 1 || major > 3) return "accepted version " + major + "." + minor;
        ByteBuffer b = ByteBuffer.wrap(file).order(ByteOrder.LITTLE_ENDIAN);
        int prefix = major == 1 ? 10 : 12;
        if (file.length < prefix) return "accepted a file without a header length";
        long headerLength = major == 1 ? b.getShort(8) & 0xffff : b.getInt(8) & 0xffffffffL;
        if (prefix + headerLength > file.length) return "accepted a header running past the end";
        String header = new String(file, prefix, (int) headerLength,
                major == 3 ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1);
        String s = header.strip();
        if (!header.substring(header.indexOf(s) + s.length()).chars().allMatch(c -> c == ' ' || c == '\n')) {
            return "accepted a header padded with other than spaces and a newline";
        }
        // Python literal rules for the three keys; whitespace between tokens is allowed.
        String compact = s.replaceAll("[ \\t\\n\\r\\f]", "");
        if (!compact.startsWith("{") || !compact.endsWith("}")) return "accepted a header that is not a dict: " + header;
        String inner = compact.substring(1, compact.length() - 1);
        if (inner.endsWith(",")) inner = inner.substring(0, inner.length() - 1);
        List<String> items = new ArrayList<>();
        int depth = 0, start = 0;
        for (int i = 0; i < inner.length(); i++) {
            char c = inner.charAt(i);
            if (c == '(') depth++;
            else if (c == ')') depth--;
            else if (c == ',' && depth == 0) {
                items.add(inner.substring(start, i));
                start = i + 1;
            }
        }
        items.add(inner.substring(start));
        Map<String, String> dict = new LinkedHashMap<>();
        for (String item : items) {
            int colon = item.indexOf(':');
            if (colon < 0) return "accepted a dict item without a colon: " + header;
            String key = item.substring(0, colon), value = item.substring(colon + 1);
            if (!key.matches("'[a-z_]+'|\"[a-z_]+\"")) return "accepted key " + key;
            if (dict.put(key.substring(1, key.length() - 1), value) != null) return "accepted a duplicate key " + key;
        }
        if (!dict.keySet().equals(Set.of("descr", "fortran_order", "shape"))) return "accepted keys " + dict.keySet();
        if (!dict.get("descr").matches("'<f4'|\"<f4\"")) return "accepted descr " + dict.get("descr");
        if (!dict.get("fortran_order").equals("False")) return "accepted fortran_order " + dict.get("fortran_order");
        String shape = dict.get("shape");
        String dim = major < 3 ? "(0|[1-9][0-9]*)L?" : "(0|[1-9][0-9]*)";
        if (!shape.matches("\\(\\)|\\(" + dim + ",\\)|\\(" + dim + "(," + dim + ")+,?\\)")) return "accepted shape " + shape;
        List<Integer> dims = new ArrayList<>();
        BigInteger elements = BigInteger.ONE;
        for (String d : shape.substring(1, shape.length() - 1).split(",")) {
            if (d.isEmpty()) continue;
            BigInteger v = new BigInteger(d.replace("L", ""));
            elements = elements.multiply(v);
            dims.add(v.intValueExact());
        }
        BigInteger expected = BigInteger.valueOf(prefix + headerLength).add(elements.shiftLeft(2));
        if (!expected.equals(BigInteger.valueOf(file.length))) {
            return "accepted a file of " + file.length + " bytes where header and shape " + shape + " make " + expected;
        }
        int[] expectedShape = dims.isEmpty() ? new int[]{1} : dims.stream().mapToInt(Integer::intValue).toArray();
        if (!Arrays.equals(expectedShape, t.shape())) return "read shape " + Arrays.toString(t.shape()) + " for " + shape;
        if (t.byteSize() != elements.longValueExact() * 4) return "tensor of " + t.byteSize() + " bytes for shape " + shape;
        MemorySegment tail = MemorySegment.ofArray(file).asSlice(file.length - t.byteSize());
        if (tail.mismatch(t.segment()) != -1) return "the data read differs from the file's data";
        return null;
    }

    // ---------------------------------------------------------------- .safetensors

    private static final String ST_META = "\"__metadata__\":{\"format\":\"pt\"}";
    private static final String ST_A = "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}";
    private static final String ST_B = "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[24,40]}";
    private static final String ST_C = "\"c\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[40,44]}";
    private static final String ST_HEADER = "{" + ST_META + "," + ST_A + "," + ST_B + "," + ST_C + "}";

    private static byte[] safetensors(String header, boolean pad, long declaredLength, byte[] data) {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        if (pad) h = concat(h, " ".repeat((8 - h.length % 8) % 8).getBytes(StandardCharsets.US_ASCII));
        ByteBuffer pre = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(declaredLength < 0 ? h.length : declaredLength);
        return concat(pre.array(), h, data);
    }

    private static final List<String[]> ST_EDITS = List.of(
            new String[]{"[0,24]", "[0.5,24.7]"}, new String[]{"[0,24]", "[0,24.0]"}, new String[]{"[0,24]", "[0e0,24]"},
            new String[]{"[24,40]", "[20,36]"}, new String[]{"[24,40]", "[28,44]"}, new String[]{"[24,40]", "[26,42]"},
            new String[]{"[0,24]", "[-4,20]"}, new String[]{"[0,24]", "[0,18446744073709551616]"}, new String[]{"[0,24]", "[24,0]"},
            new String[]{"[0,24]", "[0,24,48]"}, new String[]{"[0,24]", "[0]"}, new String[]{"[0,24]", "\"0,24\""},
            new String[]{"[40,44]", "[40,40]"}, new String[]{"[40,44]", "[44,48]"}, new String[]{"[24,40]", "[0,16]"},
            new String[]{"[2,3]", "[1073741824,1073741824,4]"}, new String[]{"[2,3]", "[-1,6]"}, new String[]{"[2,3]", "[6]"},
            new String[]{"[2,3]", "[3,2]"}, new String[]{"[2,3]", "[2,3.0]"}, new String[]{"[2,3]", "[2147483648]"},
            new String[]{"[2,3]", "[2,3,0]"}, new String[]{"[2,3]", "[4611686018427387904,4]"}, new String[]{"[2,3]", "[1,2,3]"},
            new String[]{"\"F32\"", "\"F16\""}, new String[]{"\"F32\"", "\"f32\""}, new String[]{"\"F32\"", "32"},
            new String[]{"{\"format\":\"pt\"}", "{\"format\":1}"}, new String[]{"{\"format\":\"pt\"}", "{\"a\":{\"b\":\"c\"}}"},
            new String[]{"{\"format\":\"pt\"}", "\"pt\""}, new String[]{"{\"format\":\"pt\"}", "[]"}, new String[]{"{\"format\":\"pt\"}", "null"},
            new String[]{"{\"format\":\"pt\"}", "{\"format\":\"pt\",\"format\":\"np\"}"}, new String[]{"{\"format\":\"pt\"}", "{}"},
            new String[]{"\"b\":", "\"a\":"}, new String[]{"\"c\":", "\"b\":"}, new String[]{"\"dtype\":\"F32\",", "\"dtype\":\"F32\",\"dtype\":\"F32\","},
            new String[]{"\"dtype\":\"F32\",", ""}, new String[]{"\"dtype\":\"F32\",", "\"dtype\":\"F32\",\"extra\":1,"},
            new String[]{"\"shape\"", "\"Shape\""}, new String[]{"\"data_offsets\"", "\"offsets\""}, new String[]{"[40,44]}}", "[40,44]}}x"},
            new String[]{"[40,44]}}", "[40,44]}}\0"}, new String[]{"[40,44]}}", "[40,44]}} \n\t"}, new String[]{"{\"__meta", " {\"__meta"}, new String[]{"{\"__meta", "[\"__meta"},
            new String[]{"[40,44]}}", "[40,44]},}"}, new String[]{"\"a\"", "\"\\u00e9\""}, new String[]{"\"a\"", "a"}, new String[]{"\"a\"", "'a'"},
            new String[]{"\"a\"", "\"\\uD800\""}, new String[]{"[0,24]", "[NaN,24]"}, new String[]{"[0,24]", "[0,Infinity]"},
            new String[]{"[0,24]", "[00,24]"}, new String[]{"[0,24]", "[0,+24]"}, new String[]{"\"F32\"", "'F32'"},
            new String[]{"[40,44]}}", "[40,44]}} // comment"}, new String[]{",\"b\"", ",/*x*/\"b\""}, new String[]{"\"a\":", "\"a\" :"});

    private Mutant safetensorsMutant(SplittableRandom r, byte[] data) {
        byte[] original = safetensors(ST_HEADER, true, -1, data);
        int kind = r.nextInt(10);
        if (kind < 5) return generic(r, original, 8 + ST_HEADER.length(), 0.8);
        if (kind < 9) {
            String[] e = pick(r, ST_EDITS);
            int at = ST_HEADER.indexOf(e[0]);
            String header = ST_HEADER.substring(0, at) + e[1] + ST_HEADER.substring(at + e[0].length());
            return new Mutant("header edit " + Arrays.toString(e), safetensors(header, r.nextBoolean(), -1, data));
        }
        return switch (r.nextInt(7)) {
            case 0 -> new Mutant("4 unindexed bytes at the end", concat(original, new byte[4]));
            case 1 -> new Mutant("one float missing", Arrays.copyOf(original, original.length - 4));
            case 2 -> new Mutant("header length + 1", safetensors(ST_HEADER, true, headerLength(original) + 1, data));
            case 3 -> new Mutant("header length - 1", safetensors(ST_HEADER, true, headerLength(original) - 1, data));
            case 4 -> new Mutant("header length 2^63", safetensors(ST_HEADER, true, Long.MIN_VALUE, data));
            case 5 -> new Mutant("header length 100,000,001", safetensors(ST_HEADER, true, 100_000_001, data));
            default -> new Mutant("header length 0", safetensors(ST_HEADER, true, 0, data));
        };
    }

    private static long headerLength(byte[] file) {
        return ByteBuffer.wrap(file).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
    }

    /** The names of every object in the JSON, with a duplicate reported; an independent strict walk. */
    private static String duplicateKey(JsonReader in) throws IOException {
        JsonToken t = in.peek();
        if (t == JsonToken.BEGIN_OBJECT) {
            in.beginObject();
            Set<String> seen = new HashSet<>();
            while (in.hasNext()) {
                String name = in.nextName();
                if (!seen.add(name)) return name;
                String inner = duplicateKey(in);
                if (inner != null) return inner;
            }
            in.endObject();
        } else if (t == JsonToken.BEGIN_ARRAY) {
            in.beginArray();
            while (in.hasNext()) {
                String inner = duplicateKey(in);
                if (inner != null) return inner;
            }
            in.endArray();
        } else {
            in.skipValue();
        }
        return null;
    }

    private static final Pattern WHOLE = Pattern.compile("0|[1-9][0-9]*");

    /** Why an accepted .safetensors mutant breaks the format's rules or was read wrong, or null. */
    static String safetensorsViolation(byte[] file, Map<String, Tensor> read) {
        if (file.length < 8) return "accepted " + file.length + " bytes";
        long n = headerLength(file);
        if (n < 0 || n > 100_000_000L) return "accepted header length " + n;
        if (8 + n > file.length) return "accepted a header running past the end";
        String header;
        try {
            header = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(file, 8, (int) n)).toString();
        } catch (CharacterCodingException e) {
            return "accepted a header that is not UTF-8";
        }
        if (!header.startsWith("{")) return "accepted a header not starting with '{'";
        JsonObject root;
        try {
            JsonReader strict = new JsonReader(new StringReader(header));
            strict.setStrictness(Strictness.STRICT);
            String dup = duplicateKey(strict);
            if (dup != null) return "accepted duplicate key '" + dup + "'";
            if (strict.peek() != JsonToken.END_DOCUMENT) return "accepted text after the JSON object";
            JsonReader again = new JsonReader(new StringReader(header));
            again.setStrictness(Strictness.STRICT);
            root = JsonParser.parseReader(again).getAsJsonObject();
        } catch (IOException | RuntimeException e) {
            return "accepted a header that is not strict JSON: " + e.getMessage();
        }
        long dataSize = file.length - 8 - n;
        record Span(String name, long begin, long end) {}
        List<Span> spans = new ArrayList<>();
        for (Map.Entry<String, JsonElement> e : root.entrySet()) {
            if (e.getKey().equals("__metadata__")) {
                if (!e.getValue().isJsonObject()) return "accepted __metadata__ " + e.getValue();
                for (Map.Entry<String, JsonElement> m : e.getValue().getAsJsonObject().entrySet()) {
                    if (!m.getValue().isJsonPrimitive() || !m.getValue().getAsJsonPrimitive().isString()) {
                        return "accepted a non-string metadata value " + m.getValue();
                    }
                }
                continue;
            }
            if (!e.getValue().isJsonObject()) return "accepted entry " + e.getValue();
            JsonObject o = e.getValue().getAsJsonObject();
            JsonElement dtype = o.get("dtype"), shape = o.get("shape"), offsets = o.get("data_offsets");
            if (dtype == null || !dtype.isJsonPrimitive() || !dtype.getAsJsonPrimitive().isString() || !dtype.getAsString().equals("F32")) {
                return "accepted dtype " + dtype;
            }
            if (shape == null || !shape.isJsonArray() || offsets == null || !offsets.isJsonArray() || offsets.getAsJsonArray().size() != 2) {
                return "accepted entry " + o;
            }
            BigInteger count = BigInteger.ONE;
            List<Integer> dims = new ArrayList<>();
            for (JsonElement d : shape.getAsJsonArray()) {
                if (!d.isJsonPrimitive() || !WHOLE.matcher(d.getAsJsonPrimitive().toString()).matches()) return "accepted dimension " + d;
                BigInteger v = new BigInteger(d.toString());
                if (v.bitLength() > 31) return "accepted dimension " + v + " past int";
                dims.add(v.intValue());
                count = count.multiply(v);
            }
            JsonArray off = offsets.getAsJsonArray();
            for (JsonElement x : off) {
                if (!x.isJsonPrimitive() || !WHOLE.matcher(x.getAsJsonPrimitive().toString()).matches()) return "accepted offset " + x;
            }
            BigInteger begin = new BigInteger(off.get(0).toString()), end = new BigInteger(off.get(1).toString());
            if (!end.subtract(begin).equals(count.shiftLeft(2))) return "accepted offsets " + off + " for shape " + shape;
            spans.add(new Span(e.getKey(), begin.longValueExact(), end.longValueExact()));
            Tensor t = read.get(e.getKey());
            if (t == null) return "tensor '" + e.getKey() + "' missing from what was read";
            int[] expected = dims.isEmpty() ? new int[]{1} : dims.stream().mapToInt(Integer::intValue).toArray();
            if (!Arrays.equals(expected, t.shape())) return "read shape " + Arrays.toString(t.shape()) + " for " + shape;
            if (end.longValueExact() <= dataSize) {
                MemorySegment src = MemorySegment.ofArray(file).asSlice(8 + n + begin.longValueExact(), t.byteSize());
                if (src.mismatch(t.segment()) != -1) return "tensor '" + e.getKey() + "' read differs from its bytes";
            }
        }
        if (spans.size() != read.size()) return "read " + read.size() + " tensors, the header has " + spans.size();
        spans.sort(Comparator.comparingLong(Span::begin).thenComparingLong(Span::end));
        long at = 0;
        for (Span s : spans) {
            if (s.begin != at) return "accepted data_offsets that " + (s.begin < at ? "overlap" : "leave a hole") + " at '" + s.name + "'";
            at = s.end;
        }
        if (at != dataSize) return "accepted a data section of " + dataSize + " bytes indexed to " + at;
        return null;
    }

    // ---------------------------------------------------------------- ONNX

    /** Where, in the MiniLM file, raw tensor data lies (boring to mutate) and where dims are (interesting). */
    private record OnnxLayout(List<long[]> rawData, List<long[]> dims) {}

    private static OnnxLayout layout(byte[] model) throws IOException {
        List<long[]> raw = new ArrayList<>(), dims = new ArrayList<>();
        CodedInputStream in = CodedInputStream.newInstance(model);
        in.setSizeLimit(Integer.MAX_VALUE);
        walk(in, 0, raw, dims);
        return new OnnxLayout(raw, dims);
    }

    /** Walks ModelProto (0) → graph (1) → initializer / node (2) → attribute (3) → tensor (4). */
    private static void walk(CodedInputStream in, int level, List<long[]> raw, List<long[]> dims) throws IOException {
        for (int tag; (tag = in.readTag()) != 0; ) {
            int field = tag >>> 3, wire = tag & 7;
            if (level == 4 && field == 1 && wire == 0) {
                long at = in.getTotalBytesRead();
                in.readInt64();
                dims.add(new long[]{at, in.getTotalBytesRead()});
            } else if (level == 4 && field == 1 && wire == 2) {
                int limit = in.pushLimit(in.readRawVarint32());
                while (in.getBytesUntilLimit() > 0) {
                    long at = in.getTotalBytesRead();
                    in.readInt64();
                    dims.add(new long[]{at, in.getTotalBytesRead()});
                }
                in.popLimit(limit);
            } else if (level == 4 && field == 9 && wire == 2) {
                int length = in.readRawVarint32();
                raw.add(new long[]{in.getTotalBytesRead(), in.getTotalBytesRead() + length});
                in.skipRawBytes(length);
            } else if (wire == 2 && ((level == 0 && field == 7) || (level == 1 && (field == 5 || field == 1))
                    || (level == 2 && field == 5) || (level == 3 && field == 5))) {
                int next = level == 1 && field == 5 ? 4 : level + 1;
                int limit = in.pushLimit(in.readRawVarint32());
                walk(in, next, raw, dims);
                in.popLimit(limit);
            } else {
                in.skipField(tag);
            }
        }
    }

    /** A position outside raw tensor data (the model's structure). */
    private static int structurePosition(SplittableRandom r, OnnxLayout layout, int length) {
        for (int attempt = 0; ; attempt++) {
            int p = r.nextInt(length);
            boolean inRaw = false;
            for (long[] s : layout.rawData) if (p >= s[0] && p < s[1]) inRaw = true;
            if (!inRaw || attempt > 1000) return p;
        }
    }

    private static byte[] varint(long value) throws IOException {
        byte[] out = new byte[10];
        CodedOutputStream o = CodedOutputStream.newInstance(out);
        o.writeUInt64NoTag(value);
        return Arrays.copyOf(out, 10 - o.spaceLeft());
    }

    /** An ONNX mutation applied in place to {@code model} (so 90 MB is not copied); returns the undo. */
    private record InPlace(String how, int at, byte[] saved) {}

    private static InPlace onnxInPlace(SplittableRandom r, byte[] model, OnnxLayout layout, boolean dimension) throws IOException {
        int kind = dimension ? 0 : r.nextInt(4);
        if (kind == 0) {
            // A dimension rewritten as another varint of the same length: the byte length of the
            // file does not change, only what it declares (as in the issue's 3.2 GB and 136 GB cases).
            long[] d = pick(r, layout.dims);
            int len = (int) (d[1] - d[0]);
            long max = len >= 9 ? Long.MAX_VALUE : (1L << (7 * len)) - 1, min = len == 1 ? 0 : 1L << (7 * (len - 1));
            long value = r.nextInt(3) == 0 ? max : min + (long) (r.nextDouble() * (max - min));
            byte[] v = varint(value);
            if (v.length != len) v = varint(max);
            byte[] saved = Arrays.copyOfRange(model, (int) d[0], (int) d[1]);
            System.arraycopy(v, 0, model, (int) d[0], len);
            return new InPlace("dimension at byte " + d[0] + " set to " + value, (int) d[0], saved);
        }
        int pos = r.nextInt(3) == 0 ? r.nextInt(model.length) : structurePosition(r, layout, model.length);
        byte[] saved = {model[pos]};
        if (kind == 1) {
            int bit = r.nextInt(8);
            model[pos] ^= (byte) (1 << bit);
            return new InPlace("flip bit " + bit + " of byte " + pos, pos, saved);
        }
        byte v = (byte) r.nextInt(256);
        model[pos] = v;
        return new InPlace("set byte " + pos + " to 0x" + Integer.toHexString(v & 0xff), pos, saved);
    }

    private static final class OnnxOriginal {
        final Arena arena = Arena.ofConfined();
        final OnnxGraph graph;

        OnnxOriginal(byte[] model) throws IOException {
            graph = OnnxModelReader.read(model, "original.onnx", arena);
        }
    }

    /** Why an accepted ONNX mutant was read inconsistently, or null; "same" when equal to the original. */
    private static String onnxViolation(OnnxGraph g, OnnxGraph original) {
        boolean same = g.constants().keySet().equals(original.constants().keySet()) && g.nodes().size() == original.nodes().size()
                && g.inputs().equals(original.inputs()) && g.outputs().equals(original.outputs());
        for (OnnxInitializer c : g.constants().values()) {
            BigInteger count = BigInteger.ONE;
            for (long d : c.dims()) {
                if (d < 0) return c.describe() + " accepted with a negative dimension";
                count = count.multiply(BigInteger.valueOf(d));
            }
            if (c.dataType() == OnnxInitializer.FLOAT) {
                if (c.floats() == null) return c.describe() + " has no data";
                if (!BigInteger.valueOf(c.floats().size()).equals(count)) {
                    return c.describe() + " read as " + c.floats().size() + " floats";
                }
                if (c.floats().byteSize() != c.floats().size() * 4) return c.describe() + " byte size " + c.floats().byteSize();
            }
            if (c.integers() != null && !BigInteger.valueOf(c.integers().length).equals(count)) {
                return c.describe() + " read as " + c.integers().length + " integers";
            }
            OnnxInitializer o = original.constants().get(c.name());
            if (o == null || o.dataType() != c.dataType() || !Arrays.equals(o.dims(), c.dims())
                    || (c.floats() == null) != (o.floats() == null) || !Arrays.equals(o.integers(), c.integers())
                    || (c.floats() != null && c.floats().segment().mismatch(o.floats().segment()) != -1)) {
                same = false;
            }
        }
        if (same) {
            for (int i = 0; i < g.nodes().size(); i++) {
                var a = g.nodes().get(i);
                var b = original.nodes().get(i);
                if (!a.opType().equals(b.opType()) || !a.inputs().equals(b.inputs()) || !a.outputs().equals(b.outputs())
                        || !a.name().equals(b.name()) || !a.attributes().keySet().equals(b.attributes().keySet())) {
                    same = false;
                    break;
                }
            }
        }
        return same ? "same" : null;
    }

    // ---------------------------------------------------------------- running and classifying

    /** Thrown by {@link BoundedArena} instead of allocating more than the file holds. */
    private static final class AllocationBeforeCheck extends RuntimeException {
        AllocationBeforeCheck(String message) {
            super(message);
        }
    }

    /**
     * An arena that refuses to allocate more, in all, than the bytes of the file being read
     * (plus a little): what a reader keeps comes from the file, so asking for more means it
     * allocated on the strength of a declared size before checking the bytes are there.
     * Refusing (instead of allocating gigabytes) keeps the fuzz run fast on any reader.
     */
    private static final class BoundedArena implements Arena {
        private final Arena arena = Arena.ofConfined();
        private final long limit;
        private long allocated;

        BoundedArena(long fileBytes) {
            this.limit = fileBytes + 4096;
        }

        @Override
        public MemorySegment allocate(long byteSize, long byteAlignment) {
            if (byteSize > limit - allocated) {
                throw new AllocationBeforeCheck("asked to allocate " + byteSize + " bytes (" + allocated + " already) for a file of "
                        + (limit - 4096) + " bytes");
            }
            allocated += byteSize;
            return arena.allocate(byteSize, byteAlignment);
        }

        @Override
        public MemorySegment.Scope scope() {
            return arena.scope();
        }

        @Override
        public void close() {
            arena.close();
        }
    }

    private interface Reader<T> {
        T read(Path file, Arena arena) throws IOException;
    }

    /** Runs one mutant through {@code reader}; classifies accepted results with {@code check}. */
    private <T> void classify(Tally tally, String how, Path file, Reader<T> reader, Function<T, String> check) throws IOException {
        try (Arena arena = new BoundedArena(Files.size(file))) {
            T result;
            try {
                result = reader.read(file, arena);
            } catch (TensorFormatException e) {
                boolean named = e.getMessage() != null && e.getMessage().contains(file.getFileName().toString());
                tally.add(named ? Outcome.REFUSED : Outcome.FAILED, how, "message without the file name: " + e.getMessage());
                return;
            } catch (Exception | VirtualMachineError e) {
                tally.add(Outcome.FAILED, how, e.toString());
                return;
            }
            String v;
            try {
                v = check.apply(result);
            } catch (RuntimeException e) {
                v = "checking the result threw " + e;
            }
            if (v == null) tally.add(Outcome.DIFFERENT, how, null);
            else if (v.equals("same")) tally.add(Outcome.SAME, how, null);
            else tally.add(Outcome.FAILED, how, v);
        }
    }

    private static void report(Tally tally, long startNanos) {
        System.out.println("fuzz " + tally.line() + String.format("  (%.1f s)", (System.nanoTime() - startNanos) / 1e9));
        for (String f : tally.failures) System.out.println("  FAILED " + f);
    }

    @Test
    void npyMutants() throws IOException {
        long start = System.nanoTime();
        SplittableRandom r = new SplittableRandom(SEED);
        byte[] data = floatBytes(15, 1);
        byte[] original = npy(1, NPY_DICT, true, data);
        Tally tally = new Tally(".npy");
        Path file = dir.resolve("mutant.npy");
        for (int i = 0; i < NPY_MUTANTS; i++) {
            Mutant m = npyMutant(r, data);
            Files.write(file, m.bytes);
            classify(tally, m.how, file, Npy::read, t -> {
                String v = npyViolation(m.bytes, t);
                if (v != null) return v;
                return Arrays.equals(m.bytes, original) || (Arrays.equals(t.shape(), new int[]{3, 5})
                        && MemorySegment.ofArray(data).mismatch(t.segment()) == -1) ? "same" : null;
            });
        }
        report(tally, start);
        if (!REPORT_ONLY) assertEquals(0, tally.counts.get(Outcome.FAILED), tally.line() + "\n" + String.join("\n", tally.failures));
    }

    @Test
    void safetensorsMutants() throws IOException {
        long start = System.nanoTime();
        SplittableRandom r = new SplittableRandom(SEED + 1);
        byte[] data = floatBytes(11, 2);
        Tally tally = new Tally(".safetensors");
        Path file = dir.resolve("mutant.safetensors");
        for (int i = 0; i < SAFETENSORS_MUTANTS; i++) {
            Mutant m = safetensorsMutant(r, data);
            Files.write(file, m.bytes);
            classify(tally, m.how, file, SafeTensors::open, map -> {
                String v = safetensorsViolation(m.bytes, map);
                if (v != null) return v;
                Tensor a = map.get("a"), b = map.get("b"), c = map.get("c");
                boolean same = map.size() == 3 && a != null && b != null && c != null
                        && Arrays.equals(a.shape(), new int[]{2, 3}) && Arrays.equals(b.shape(), new int[]{4})
                        && MemorySegment.ofArray(data).asSlice(0, 24).mismatch(a.segment()) == -1
                        && MemorySegment.ofArray(data).asSlice(24, 16).mismatch(b.segment()) == -1
                        && MemorySegment.ofArray(data).asSlice(40, 4).mismatch(c.segment()) == -1;
                return same ? "same" : null;
            });
        }
        report(tally, start);
        if (!REPORT_ONLY) assertEquals(0, tally.counts.get(Outcome.FAILED), tally.line() + "\n" + String.join("\n", tally.failures));
    }

    /**
     * MiniLM's structure without its weights: the same ModelProto, graph, nodes, attributes,
     * names and integer constants, with every float initializer cut to its first few values (and
     * its dims to match). The reader parses it in a millisecond, so hundreds of mutants of the
     * model's structure cost little; the full model is fuzzed below where its size matters.
     */
    static byte[] skeleton(byte[] model) throws IOException {
        UnknownFieldSet m = UnknownFieldSet.parseFrom(model);
        UnknownFieldSet graph = UnknownFieldSet.parseFrom(m.getField(7).getLengthDelimitedList().getFirst());
        UnknownFieldSet.Field.Builder initializers = UnknownFieldSet.Field.newBuilder();
        for (ByteString t : graph.getField(5).getLengthDelimitedList()) initializers.addLengthDelimited(shrink(t));
        UnknownFieldSet small = graph.toBuilder().clearField(5).addField(5, initializers.build()).build();
        return m.toBuilder().clearField(7)
                .addField(7, UnknownFieldSet.Field.newBuilder().addLengthDelimited(small.toByteString()).build())
                .build().toByteArray();
    }

    private static ByteString shrink(ByteString tensor) throws IOException {
        UnknownFieldSet t = UnknownFieldSet.parseFrom(tensor);
        if (!t.hasField(9) || t.getField(2).getVarintList().isEmpty() || t.getField(2).getVarintList().getFirst() != OnnxInitializer.FLOAT) {
            return tensor;
        }
        ByteString raw = t.getField(9).getLengthDelimitedList().getFirst();
        int keep = Math.min(raw.size() / 4, 6);
        return t.toBuilder().clearField(1).clearField(9)
                .addField(1, UnknownFieldSet.Field.newBuilder().addVarint(keep).build())
                .addField(9, UnknownFieldSet.Field.newBuilder().addLengthDelimited(raw.substring(0, keep * 4)).build())
                .build().toByteString();
    }

    private static byte[] miniLm() throws IOException {
        try (InputStream in = Models.resource(Models.MINILM_ONNX)) {
            return in.readAllBytes();
        }
    }

    @Test
    void onnxMutantsOfMiniLmStructure() throws IOException {
        long start = System.nanoTime();
        byte[] model = skeleton(miniLm());
        fuzzOnnx(new Tally("ONNX skeleton"), model, ONNX_SKELETON_MUTANTS, new SplittableRandom(SEED + 2), false, start);
    }

    /**
     * The whole 90 MB model, fewer mutants (each costs a parse of 90 MB and, when accepted, the
     * mapping to MiniLM's layers): dimensions rewritten in place, the issue's case of one or two
     * changed bytes that declared gigabytes, and a few changes anywhere.
     */
    @Test
    void onnxMutantsOfTheWholeMiniLm() throws IOException {
        long start = System.nanoTime();
        fuzzOnnx(new Tally("ONNX whole"), miniLm(), ONNX_WHOLE_MUTANTS, new SplittableRandom(SEED + 3), true, start);
    }

    private static void fuzzOnnx(Tally tally, byte[] model, int count, SplittableRandom r, boolean whole, long start)
            throws IOException {
        OnnxLayout layout = layout(model);
        OnnxOriginal original = new OnnxOriginal(model);
        try {
            for (int i = 0; i < count; i++) {
                InPlace undo = null;
                Mutant m;
                if (whole || r.nextInt(3) != 0) {
                    undo = onnxInPlace(r, model, layout, whole && i % 8 != 7);
                    m = new Mutant(undo.how, model);
                } else {
                    int focus = layout.rawData.isEmpty() ? model.length : (int) layout.rawData.getFirst()[0];
                    m = generic(r, model, focus, 0.5);
                }
                try {
                    classifyOnnx(tally, m, original.graph, whole);
                } finally {
                    if (undo != null) System.arraycopy(undo.saved, 0, model, undo.at, undo.saved.length);
                }
            }
        } finally {
            original.arena.close();
        }
        report(tally, start);
        if (!REPORT_ONLY) assertEquals(0, tally.counts.get(Outcome.FAILED), tally.line() + "\n" + String.join("\n", tally.failures));
    }

    /** The reader, then (for accepted graphs) the mapping to MiniLM's layers, which also must refuse cleanly. */
    private static void classifyOnnx(Tally tally, Mutant m, OnnxGraph original, boolean mapLayers) {
        try (Arena arena = new BoundedArena(m.bytes.length); Arena mapped = Arena.ofConfined()) {
            OnnxGraph g;
            try {
                g = OnnxModelReader.read(m.bytes, "mutant.onnx", arena);
            } catch (TensorFormatException e) {
                tally.add(e.getMessage().startsWith("mutant.onnx") ? Outcome.REFUSED : Outcome.FAILED, m.how, e.getMessage());
                return;
            } catch (Exception | VirtualMachineError e) {
                tally.add(Outcome.FAILED, m.how, e.toString());
                return;
            }
            String v = onnxViolation(g, original);
            if (v != null && !v.equals("same")) {
                tally.add(Outcome.FAILED, m.how, v);
                return;
            }
            try {
                if (mapLayers) MiniLmWeights.fromOnnx(g, mapped);
            } catch (TensorFormatException e) {
                tally.add(e.getMessage().startsWith("mutant.onnx") ? Outcome.REFUSED : Outcome.FAILED, m.how, e.getMessage());
                return;
            } catch (Exception | VirtualMachineError e) {
                tally.add(Outcome.FAILED, m.how, "mapping the accepted graph: " + e);
                return;
            }
            tally.add(v == null ? Outcome.DIFFERENT : Outcome.SAME, m.how, null);
        }
    }
}
