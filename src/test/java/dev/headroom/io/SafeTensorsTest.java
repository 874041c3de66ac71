package dev.headroom.io;

import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SafeTensorsTest {
    @TempDir
    Path dir;

    static byte[] file(String json, byte[] data) {
        byte[] h = json.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h).put(data);
        return b.array();
    }

    @Test
    void mapsTensorsWithoutCopying() throws IOException {
        Path f = dir.resolve("w.safetensors");
        Files.write(f, file("{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"a\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,16]}}", NpyTest.floats(1, 2, 3, 4)));
        long mappedBefore = OffHeap.mappedBytes(), allocatedBefore = OffHeap.currentBytes();
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            Map<String, Tensor> t = SafeTensors.open(f, arena);
            assertArrayEquals(new float[]{1, 2}, t.get("b").toArray());
            assertArrayEquals(new float[]{3, 4}, t.get("a").toArray());
            assertArrayEquals(new int[]{1, 2}, t.get("a").shape());
            assertEquals(Files.size(f), OffHeap.mappedBytes() - mappedBefore, "the file is mapped");
            assertEquals(allocatedBefore, OffHeap.currentBytes(), "nothing is allocated");
        }
        assertEquals(mappedBefore, OffHeap.mappedBytes());
    }

    @Test
    void writeThenOpenRoundTrips() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> m = new LinkedHashMap<>();
            m.put("x", Tensor.of(arena, new float[]{1, 2, 3, 4, 5, 6}, 2, 3));
            m.put("y", Tensor.of(arena, new float[]{-1}, 1));
            Path f = dir.resolve("rt.safetensors");
            SafeTensors.write(f, m);
            Map<String, Tensor> back = SafeTensors.open(f, arena);
            assertArrayEquals(m.get("x").toArray(), back.get("x").toArray());
            assertArrayEquals(new int[]{2, 3}, back.get("x").shape());
            assertArrayEquals(new float[]{-1}, back.get("y").toArray());
        }
    }

    private String failure(byte[] content) throws IOException {
        Path f = dir.resolve("bad.safetensors");
        Files.write(f, content);
        long mapped = OffHeap.mappedBytes();
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            String m = assertThrows(TensorFormatException.class, () -> SafeTensors.open(f, arena)).getMessage();
            assertEquals(mapped, OffHeap.mappedBytes(), "a malformed file is refused before it is mapped");
            return m;
        }
    }

    @Test
    void refusesMalformedFiles() throws IOException {
        String ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        assertTrue(failure(new byte[5]).contains("too short"));
        byte[] hugeHeader = file(ok, new byte[8]);
        hugeHeader[3] = 1;
        assertTrue(failure(hugeHeader).contains("header length"));
        assertTrue(failure(file("{\"a\": [", new byte[8])).contains("malformed .safetensors header"));
        assertTrue(failure(file(ok.replace("F32", "BF16"), new byte[8])).contains("dtype BF16"));
        assertTrue(failure(file(ok, new byte[4])).contains("outside the data section"));
        assertTrue(failure(file(ok.replace("[2]", "[3]"), new byte[8])).contains("needs 12 bytes"));
        assertTrue(failure(file("{\"a\":{\"dtype\":\"F32\"}}", new byte[8])).contains("malformed entry"));
        String cut = failure(Arrays.copyOf(file(ok, new byte[8]), 20));
        assertTrue(cut.contains("header length") || cut.contains("outside"), cut);
    }
}
