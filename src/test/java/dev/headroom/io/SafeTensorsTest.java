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
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
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

    private static final String TWO = "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
            + "\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,16]}}";

    @Test
    void copiesTheDataByDefaultAndCountsItAsAnAllocation() throws IOException {
        Path f = dir.resolve("w.safetensors");
        Files.write(f, file(TWO, NpyTest.floats(1, 2, 3, 4)));
        long mappedBefore = OffHeap.mappedBytes(), allocatedBefore = OffHeap.currentBytes();
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            Map<String, Tensor> t = SafeTensors.open(f, arena);
            assertArrayEquals(new float[]{1, 2}, t.get("b").toArray());
            assertArrayEquals(new float[]{3, 4}, t.get("a").toArray());
            assertArrayEquals(new int[]{1, 2}, t.get("a").shape());
            assertEquals(16, OffHeap.currentBytes() - allocatedBefore, "the data section (16 bytes) is copied");
            assertEquals(16, arena.allocatedBytes());
            assertEquals(mappedBefore, OffHeap.mappedBytes(), "nothing is mapped");
            Files.delete(f);
            assertArrayEquals(new float[]{3, 4}, t.get("a").toArray(), "the copy outlives the file");
        }
        assertEquals(allocatedBefore, OffHeap.currentBytes());
    }

    @Test
    void mapsTensorsWithoutCopyingOnRequest() throws IOException {
        Path f = dir.resolve("w.safetensors");
        Files.write(f, file(TWO, NpyTest.floats(1, 2, 3, 4)));
        long mappedBefore = OffHeap.mappedBytes(), allocatedBefore = OffHeap.currentBytes();
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            Map<String, Tensor> t = SafeTensors.open(f, arena, SafeTensors.Load.MAP);
            assertArrayEquals(new float[]{1, 2}, t.get("b").toArray());
            assertArrayEquals(new float[]{3, 4}, t.get("a").toArray());
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
        return refusal(f);
    }

    /** The message of the refusal of {@code f}, checking that nothing was mapped or allocated first. */
    private static String refusal(Path f) throws IOException {
        long mapped = OffHeap.mappedBytes();
        for (SafeTensors.Load load : SafeTensors.Load.values()) {
            try (TrackedArena arena = TrackedArena.ofConfined()) {
                String m = assertThrows(TensorFormatException.class, () -> SafeTensors.open(f, arena, load)).getMessage();
                assertEquals(mapped, OffHeap.mappedBytes(), "a malformed file is refused before it is mapped");
                assertEquals(0, arena.allocatedBytes(), "a malformed file is refused before anything is allocated");
                assertTrue(m.startsWith(f.toString()), m);
                if (load == SafeTensors.Load.MAP) return m;
            }
        }
        throw new AssertionError();
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
        String missing = failure(file("{\"a\":{\"dtype\":\"F32\"}}", new byte[8]));
        assertTrue(missing.contains("tensor 'a' needs \"dtype\", \"shape\" and \"data_offsets\""), missing);
        String cut = failure(Arrays.copyOf(file(ok, new byte[8]), 20));
        assertTrue(cut.contains("header length") || cut.contains("outside"), cut);
    }

    /** Each rule of the format (huggingface/safetensors README, "Format" and "Notes") with the file that breaks it. */
    @Test
    void refusesWhatTheFormatForbidsNamingTheRule() throws IOException {
        String a = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
        String overlap = failure(file("{" + a + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", new byte[12]));
        assertTrue(overlap.contains("tensor 'b' data_offsets [4, 12] overlap tensor 'a' [0, 8]"), overlap);
        String duplicate = failure(file("{" + a + ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", new byte[16]));
        assertTrue(duplicate.contains("key 'a' appears twice; the format forbids duplicate keys"), duplicate);
        String duplicateMeta = failure(file("{\"__metadata__\":{\"f\":\"pt\",\"f\":\"np\"}," + a + "}", new byte[8]));
        assertTrue(duplicateMeta.contains("__metadata__ key 'f' appears twice"), duplicateMeta);
        String fraction = failure(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[256],\"data_offsets\":[0.5,1024.7]}}", new byte[1024]));
        assertTrue(fraction.contains("holds 0.5; it must hold non-negative whole numbers"), fraction);
        String exponent = failure(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8e0]}}", new byte[8]));
        assertTrue(exponent.contains("holds 8e0"), exponent);
        String partial = failure(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[2,10]}}", new byte[10]));
        assertTrue(partial.contains("data_offsets [2, 10] are not whole F32 elements"), partial);
        String metadata = failure(file("{\"__metadata__\":{\"format\":1}," + a + "}", new byte[8]));
        assertTrue(metadata.contains("__metadata__ value of 'format' is NUMBER; the format allows only strings"), metadata);
        String metadataNotObject = failure(file("{\"__metadata__\":\"pt\"," + a + "}", new byte[8]));
        assertTrue(metadataNotObject.contains("__metadata__ must be an object of strings"), metadataNotObject);
        String overflow = failure(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1073741824,1073741824,4],\"data_offsets\":[0,0]}}",
                new byte[0]));
        assertTrue(overflow.contains("shape [1073741824, 1073741824, 4] overflows"), overflow);
        String hole = failure(file("{" + a + ",\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", new byte[16]));
        assertTrue(hole.contains("4 bytes at [8, 12) of the data section belong to no tensor"), hole);
        String trailing = failure(file("{" + a + "}", new byte[12]));
        assertTrue(trailing.contains("4 bytes after the last tensor's data"), trailing);
        String brace = failure(file(" {" + a + "}", new byte[8]));
        assertTrue(brace.contains("must begin with '{'"), brace);
        String after = failure(file("{" + a + "}x", new byte[8]));
        assertTrue(after.contains("malformed .safetensors header"), after);
        String nestedDuplicate = failure(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],"
                + "\"extra\":[{\"k\":1,\"k\":2}]}}", new byte[8]));
        assertTrue(nestedDuplicate.contains("key 'k' appears twice in a.extra"), nestedDuplicate);
        String deep = failure(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":"
                + "[".repeat(100_000) + "]".repeat(100_000) + "}}", new byte[8]));
        assertTrue(deep.contains("malformed .safetensors header") && deep.contains("esting limit"), deep);
        byte[] latin1 = file("{\"\u00e9\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", new byte[8]);
        latin1[10] = (byte) 0xe9; // the 2-byte UTF-8 é becomes a lone Latin-1 byte
        latin1[11] = '"';
        String utf8 = failure(latin1);
        assertTrue(utf8.contains("not valid UTF-8") || utf8.contains("malformed"), utf8);
    }

    @Test
    void emptyTensorsAndScalarsAreAllowedAsTheFormatSays() throws IOException {
        Path f = dir.resolve("edge.safetensors");
        Files.write(f, file("{\"empty\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
                + "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                + "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8],\"extra\":[1,{}]}}    ", NpyTest.floats(7, 8)));
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> t = SafeTensors.open(f, arena);
            assertEquals(0, t.get("empty").size());
            assertArrayEquals(new float[]{7}, t.get("scalar").toArray());
            assertArrayEquals(new float[]{8}, t.get("x").toArray());
        }
    }

    @Test
    void aHeaderOverTheFormatsLimitIsRefusedBeforeItIsRead() throws IOException {
        // A sparse file: 8 + 100,000,001 bytes that take no disk space.
        Path f = dir.resolve("big.safetensors");
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(9).order(ByteOrder.LITTLE_ENDIAN).putLong(100_000_001L).put((byte) '{').flip());
            ch.write(ByteBuffer.allocate(1), 8 + 100_000_000L);
        }
        String m = refusal(f);
        assertTrue(m.contains("header length 100000001 is more than the format's limit of 100000000 bytes"), m);
    }

    @Test
    void aDirectoryOrAPipeIsNamedAsSuch() throws Exception {
        try (Arena arena = Arena.ofConfined()) {
            String d = assertThrows(TensorFormatException.class, () -> SafeTensors.open(dir, arena)).getMessage();
            assertTrue(d.contains("is a directory, not a .safetensors file"), d);
            Path fifo = dir.resolve("w.safetensors");
            assertEquals(0, new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor());
            String p = assertThrows(TensorFormatException.class, () -> SafeTensors.open(fifo, arena)).getMessage();
            assertTrue(p.contains("must be a regular file"), p);
        }
    }
}
