package dev.headroom.model.tokenizer;

import dev.headroom.model.Models;

import com.google.gson.JsonParser;
import dev.headroom.io.TensorFormatException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The MiniLM tokenizer on known sentences. Expected ids come from an implementation we did not
 * write: Hugging Face's tokenizers.js 0.2.0 on the same tokenizer.json (its {@code encode}, which
 * does not truncate). Where that library and the Rust {@code tokenizers} crate disagree (it
 * lowercases whole strings, so a final Σ becomes ς; Rust lowercases character by character), we
 * follow Rust and test no such case.
 */
class WordPieceTokenizerTest {
    private static WordPieceTokenizer tokenizer;

    @BeforeAll
    static void load() throws Exception {
        tokenizer = Models.minilmTokenizer();
    }

    private static void assertIds(String text, int... expected) {
        assertArrayEquals(expected, tokenizer.withMaxLength(512).encode(text),
                () -> "ids of " + text + ": pieces " + tokenizer.tokenize(text));
    }

    @Test
    void helloWorld() {
        assertIds("Hello, world!", 101, 7592, 1010, 2088, 999, 102);
        assertIds("The quick brown fox jumps over the lazy dog.", 101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102);
    }

    @Test
    void emptyAndBlankStringsAreClsSep() {
        assertIds("", 101, 102);
        assertIds("   \t\n ", 101, 102);
        assertIds("  leading and trailing  ", 101, 2877, 1998, 12542, 102);
    }

    @Test
    void accentsAreStrippedAndTextLowercased() {
        assertIds("Café naïve résumé", 101, 7668, 15743, 13746, 102);
        assertIds("e\u0301cole CAFÉ", 101, 12431, 7668, 102);               // combining acute, upper case
        assertIds("ÀÉÎÕÜ Ångström İstanbul", 101, 29347, 3695, 2226, 17076, 15687, 9960, 102);
        assertEquals(List.of("cafe", "naive", "resume"), tokenizer.tokenize("Café naïve résumé"));
    }

    @Test
    void wordPiecesUseTheContinuationPrefix() {
        assertIds("unaffable", 101, 14477, 20961, 3468, 102);
        assertEquals(List.of("una", "##ffa", "##ble"), tokenizer.tokenize("unaffable"));
        assertIds("supercalifragilisticexpialidocious antidisestablishmentarianism", 101, 3565, 9289, 10128, 29181, 24411,
                4588, 10288, 19312, 21273, 10085, 6313, 3424, 10521, 4355, 7875, 13602, 3672, 12199, 2964, 102);
    }

    @Test
    void unknownCharactersAndOverlongWordsBecomeUnk() {
        assertIds("I like 😀 and ☃ snowmen", 101, 1045, 2066, 100, 1998, 100, 4586, 3549, 102);
        assertIds("a".repeat(101), 101, 100, 102);                          // over max_input_chars_per_word = 100
        int[] hundred = new int[52];
        hundred[0] = 101;
        hundred[1] = 13360;
        Arrays.fill(hundred, 2, 50, 11057);
        hundred[50] = 2050;
        hundred[51] = 102;
        assertIds("a".repeat(100), hundred);                               // exactly 100: still word pieces
    }

    @Test
    void chineseCharactersAreSplitAndPunctuationIsolated() {
        assertIds("我爱北京天安门", 101, 1855, 100, 1781, 1755, 1811, 1820, 100, 102);
        assertIds("Don't stop-believing... $100 + 5% = ~win~", 101, 2123, 1005, 1056, 2644, 1011, 8929, 1012, 1012, 1012, 1002,
                2531, 1009, 1019, 1003, 1027, 1066, 2663, 1066, 102);
        assertIds("Ωmega ﬁne ½ ①", 101, 1179, 4168, 3654, 1984, 2638, 1092, 100, 102);
    }

    @Test
    void controlCharactersAreDroppedAndWhitespaceNormalised() {
        assertIds("x\u0000y\uFFFDz\u0007w", 101, 1060, 2100, 2480, 2860, 102);
        assertIds("tab\there\nnew line\u00a0nbsp\u200bzero-width", 101, 21628, 2182, 2047, 2240, 1050, 5910, 2361, 6290, 2080,
                1011, 9381, 102);
    }

    @Test
    void specialTokensInTextMapToTheirIds() {
        assertIds("hello [MASK] world", 101, 7592, 103, 2088, 102);
        assertIds("foo[SEP]bar", 101, 29379, 102, 3347, 102);
    }

    @Test
    void truncatesToTheFilesMaximumOrAChosenOne() {
        String text = "x ".repeat(600);
        assertEquals(128, tokenizer.maxLength(), "tokenizer.json says truncation.max_length = 128");
        int[] ids = tokenizer.encode(text);
        assertEquals(128, ids.length);
        int[] ids512 = tokenizer.withMaxLength(512).encode(text);
        assertEquals(512, ids512.length);
        for (int[] t : List.of(ids, ids512)) {
            assertEquals(101, t[0]);
            assertEquals(102, t[t.length - 1]);
            for (int i = 1; i < t.length - 1; i++) assertEquals(1060, t[i], "'x' is 1060");
        }
        // Exactly at the limit: nothing is cut.
        assertEquals(512, tokenizer.withMaxLength(512).encode("x ".repeat(510)).length);
        assertEquals(8, tokenizer.withMaxLength(512).encode("x ".repeat(6)).length);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> tokenizer.withMaxLength(1));
        assertTrue(e.getMessage().contains("1"), e.getMessage());
    }

    @Test
    void batchesArePaddedToTheLongestWithLengths() {
        TokenBatch b = tokenizer.encodeBatch(List.of("Hello, world!", "", "The quick brown fox jumps over the lazy dog."));
        assertEquals(3, b.batch());
        assertEquals(12, b.length());
        assertArrayEquals(new int[]{6, 2, 12}, b.lengths());
        assertArrayEquals(new int[]{101, 7592, 1010, 2088, 999, 102, 0, 0, 0, 0, 0, 0}, Arrays.copyOfRange(b.ids(), 0, 12));
        assertArrayEquals(new int[]{101, 102}, b.sequence(1));
        long[] mask = b.attentionMask();
        assertEquals(1L, mask[12 + 1]);
        assertEquals(0L, mask[12 + 2]);
        TokenBatch empty = tokenizer.encodeBatch(Collections.emptyList());
        assertEquals(0, empty.batch());
    }

    @Test
    void refusesAFileThatIsNotBertWordPiece() {
        String bpe = "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}, \"normalizer\": null, \"pre_tokenizer\": null}";
        TensorFormatException e = assertThrows(TensorFormatException.class,
                () -> WordPieceTokenizer.fromJson(JsonParser.parseString(bpe), "bpe.json"));
        assertTrue(e.getMessage().contains("model.type must be WordPiece") && e.getMessage().contains("BPE"), e.getMessage());
        List<String> lines = new ArrayList<>();
        lines.add("{\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"vocab\": {\"[UNK]\": 0}},");
        lines.add("\"normalizer\": {\"type\": \"BertNormalizer\"}, \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}");
        e = assertThrows(TensorFormatException.class,
                () -> WordPieceTokenizer.fromJson(JsonParser.parseString(String.join("", lines)), "tiny.json"));
        assertTrue(e.getMessage().contains("[CLS]"), e.getMessage());
    }
}
