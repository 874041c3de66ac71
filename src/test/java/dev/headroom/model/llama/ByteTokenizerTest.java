package dev.headroom.model.llama;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class ByteTokenizerTest {
    private final ByteTokenizer tok = new ByteTokenizer(258, 256, 257);

    @Test
    void promptsAreBosThenUtf8Bytes() {
        assertArrayEquals(new int[]{256, 67, 97, 102, 0xC3, 0xA9}, tok.encode("Caf\u00e9"));
        assertArrayEquals(new int[]{256}, tok.encode(""));
        assertArrayEquals(new int[]{72, 105}, new ByteTokenizer(256, -1).encode("Hi"));
        assertEquals("Caf\u00e9", tok.decode(new int[]{256, 67, 97, 102, 0xC3, 0xA9, 257}));
    }

    @Test
    void streamedTextShowsOnlyWholeCharacters() {
        String text = "a\u00e9\u2014\uD83D\uDE00b"; // 1-, 2-, 3- and 4-byte characters
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        ByteTokenizer.Stream s = tok.stream();
        StringBuilder seen = new StringBuilder();
        String[] expected = {"a", "", "\u00e9", "", "", "\u2014", "", "", "", "\uD83D\uDE00", "b"};
        for (int i = 0; i < bytes.length; i++) {
            String out = s.accept(bytes[i] & 0xFF);
            assertEquals(expected[i], out, "after byte " + i);
            seen.append(out);
        }
        assertEquals("", s.accept(257));
        assertEquals("", s.finish());
        assertEquals(text, seen.toString());
    }

    @Test
    void illFormedBytesBecomeReplacementCharacters() {
        // a stray continuation byte, a truncated 3-byte sequence followed by ASCII, and a truncated end
        int[] ids = {0x80, 0x41, 0xE2, 0x80, 0x42, 0xC3};
        assertEquals("\uFFFDA\uFFFDB\uFFFD", tok.decode(ids));
        ByteTokenizer.Stream s = tok.stream();
        StringBuilder b = new StringBuilder();
        for (int id : ids) b.append(s.accept(id));
        assertEquals("\uFFFDA\uFFFDB", b.toString()); // the last byte might still begin a character
        assertEquals("\uFFFD", s.finish());
    }

    @Test
    void badIdsAndVocabulariesAreRefused() {
        assertEquals("token id 258 is outside the vocabulary of 258",
                assertThrows(IllegalArgumentException.class, () -> tok.stream().accept(258)).getMessage());
        assertEquals("a byte vocabulary needs ids 0-255 for the bytes; vocab_size is 100",
                assertThrows(IllegalArgumentException.class, () -> new ByteTokenizer(100, -1)).getMessage());
        assertEquals("<bos> id 65 must be a special id in [256, 258) or -1",
                assertThrows(IllegalArgumentException.class, () -> new ByteTokenizer(258, 65)).getMessage());
    }
}
