package dev.headroom.io;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.headroom.memory.TrackedArena;
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
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The {@code .safetensors} format: an 8-byte little-endian header length N, N bytes of JSON
 * ({@code {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}}), then
 * the data. {@link #open} memory-maps the file into the caller's arena and returns tensors that
 * are views of the mapping: nothing is copied. Only F32 tensors are accepted.
 */
public final class SafeTensors {
    private SafeTensors() {}

    /** Maps {@code file} read-only into {@code arena}; the tensors are valid while the arena is open. */
    public static Map<String, Tensor> open(Path file, Arena arena) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) throw new TensorFormatException(file + ": too short for .safetensors (" + size + " bytes)");
            ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            while (len.hasRemaining()) if (ch.read(len, len.position()) < 0) break;
            long headerLen = len.getLong(0);
            if (headerLen <= 0 || headerLen > size - 8) {
                throw new TensorFormatException(file + ": .safetensors header length " + headerLen
                        + " does not fit a file of " + size + " bytes");
            }
            if (headerLen > 100L << 20) throw new TensorFormatException(file + ": header of " + headerLen + " bytes is implausible");
            ByteBuffer hb = ByteBuffer.allocate((int) headerLen);
            while (hb.hasRemaining()) if (ch.read(hb, 8 + hb.position()) < 0) break;
            JsonObject header;
            try {
                JsonElement e = JsonParser.parseString(new String(hb.array(), StandardCharsets.UTF_8));
                if (!e.isJsonObject()) throw new JsonParseException("not a JSON object");
                header = e.getAsJsonObject();
            } catch (JsonParseException | IllegalStateException e) {
                throw new TensorFormatException(file + ": malformed .safetensors header: " + e.getMessage(), e);
            }
            long dataStart = 8 + headerLen, dataSize = size - dataStart;
            // Every entry is checked before the file is mapped: a malformed file leaves nothing in the arena.
            Map<String, Entry> entries = new LinkedHashMap<>();
            for (Map.Entry<String, JsonElement> e : header.entrySet()) {
                if (e.getKey().equals("__metadata__")) continue;
                entries.put(e.getKey(), entry(file, e.getKey(), e.getValue(), dataSize));
            }
            MemorySegment mapped = arena instanceof TrackedArena tracked
                    ? tracked.map(ch, 0, size)
                    : ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            Map<String, Tensor> tensors = new LinkedHashMap<>();
            entries.forEach((name, e) -> tensors.put(name,
                    Tensor.wrap(mapped.asSlice(dataStart + e.begin, e.end - e.begin), e.shape)));
            return Collections.unmodifiableMap(tensors);
        } catch (NoSuchFileException e) {
            throw new TensorFormatException(file + ": no such .safetensors file", e);
        }
    }

    /** One validated header entry: shape and byte range within the data section. */
    private record Entry(int[] shape, long begin, long end) {}

    private static Entry entry(Path file, String name, JsonElement spec, long dataSize) throws TensorFormatException {
        try {
            JsonObject o = spec.getAsJsonObject();
            String dtype = o.get("dtype").getAsString();
            if (!dtype.equals("F32")) {
                throw new TensorFormatException(file + ": tensor '" + name + "' has dtype " + dtype
                        + "; Headroom reads F32 only (in PyTorch: {k: v.float() for k, v in state_dict.items()})");
            }
            JsonArray shapeJson = o.getAsJsonArray("shape");
            int[] shape = new int[Math.max(1, shapeJson.size())];
            shape[0] = 1;
            long count = 1;
            for (int i = 0; i < shapeJson.size(); i++) {
                long d = shapeJson.get(i).getAsLong();
                if (d < 0 || d > Integer.MAX_VALUE) throw new TensorFormatException(file + ": tensor '" + name + "' has dimension " + d);
                shape[i] = (int) d;
                count *= d;
            }
            JsonArray off = o.getAsJsonArray("data_offsets");
            long begin = off.get(0).getAsLong(), end = off.get(1).getAsLong();
            if (begin < 0 || end < begin || end > dataSize) {
                throw new TensorFormatException(file + ": tensor '" + name + "' has data_offsets [" + begin + ", " + end
                        + "] outside the data section of " + dataSize + " bytes (truncated file?)");
            }
            if (end - begin != count * Float.BYTES) {
                throw new TensorFormatException(file + ": tensor '" + name + "' of shape " + shapeJson + " needs "
                        + count * Float.BYTES + " bytes but data_offsets span " + (end - begin));
            }
            return new Entry(shape, begin, end);
        } catch (RuntimeException e) {
            throw new TensorFormatException(file + ": malformed entry for tensor '" + name + "': " + spec, e);
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
