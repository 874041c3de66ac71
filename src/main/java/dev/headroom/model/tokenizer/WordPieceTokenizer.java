package dev.headroom.model.tokenizer;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.headroom.io.TensorFormatException;

import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.text.Normalizer;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * BERT's uncased WordPiece tokenizer, configured from a Hugging Face {@code tokenizer.json}
 * (model WordPiece, normalizer BertNormalizer, pre-tokenizer BertPreTokenizer, post-processor
 * [CLS] … [SEP]). Text goes through, in this order (the order of the {@code tokenizers} library,
 * which produced the model's training ids):
 * <ol>
 *   <li><b>special tokens</b>: exact occurrences of the added tokens that are not normalised
 *       ([CLS], [SEP], [MASK], …) are cut out of the raw text first and map to their ids;</li>
 *   <li><b>cleanup</b>: NUL, U+FFFD and other characters (Unicode category C*: control, format,
 *       unassigned, private use) are dropped, except tab, newline and carriage return, which
 *       with every other white space character become a plain space;</li>
 *   <li><b>Chinese characters</b> (the CJK Unified Ideograph blocks) get a space on each side,
 *       so each is a word;</li>
 *   <li><b>accent stripping</b>: NFD decomposition, then every non-spacing mark (Mn) is dropped
 *       ({@code strip_accents} null means "when lowercasing", as here);</li>
 *   <li><b>lowercasing</b>, character by character (full Unicode mappings, no context);</li>
 *   <li><b>pre-tokenising</b>: split on white space, and every punctuation character (ASCII
 *       punctuation or Unicode category P*) becomes a word of its own;</li>
 *   <li><b>WordPiece</b>, greedy longest-match-first: a word is cut into the longest vocabulary
 *       entry from its start, then the longest {@code ##}-prefixed entry from there, and so on;
 *       a word with a piece that matches nothing, or longer than
 *       {@code max_input_chars_per_word} characters, becomes a single [UNK];</li>
 *   <li><b>[CLS] pieces [SEP]</b>, truncated (pieces dropped from the right) so that the whole
 *       is at most {@link #maxLength()} tokens.</li>
 * </ol>
 * The default maximum is {@code truncation.max_length} of the tokenizer.json (128 for
 * all-MiniLM-L6-v2, the length it was trained at), else 512; {@link #withMaxLength} changes it
 * (the model's position table allows 512; sentence-transformers uses 256 for this model).
 * Batches are padded to their longest sequence, not to the file's fixed padding: padded
 * positions are masked and do not change the real tokens' results.
 *
 * <p>Why written here rather than a library: the Java bindings of Hugging Face's
 * {@code tokenizers} (DJL) load a native library that they download on first use, which this
 * project cannot do (nothing may be fetched at run time), and the BERT pipeline is short and
 * fully specified by the file above. Immutable and thread-safe.
 */
public final class WordPieceTokenizer {
    /** The largest number of positions a BERT-style model has; used when the file sets no truncation. */
    public static final int DEFAULT_MAX_LENGTH = 512;

    private final Map<String, Integer> vocab;
    private final String[] tokensById;
    private final String continuingPrefix;
    private final int unkId, clsId, sepId, padId;
    private final int maxInputCharsPerWord;
    private final boolean cleanText, handleChineseChars, stripAccents, lowercase;
    /** Added tokens matched verbatim in raw text, longest first (so "[MASK]" wins over a prefix of it). */
    private final List<String> specialTokens;
    private final int maxLength;

    private WordPieceTokenizer(Map<String, Integer> vocab, String continuingPrefix, String unk, String cls, String sep,
                               String pad, int maxInputCharsPerWord, boolean cleanText, boolean handleChineseChars,
                               boolean stripAccents, boolean lowercase, List<String> specialTokens, int maxLength) {
        this.vocab = vocab;
        int size = 0;
        for (int id : vocab.values()) size = Math.max(size, id + 1);
        this.tokensById = new String[size];
        vocab.forEach((token, id) -> tokensById[id] = token);
        this.continuingPrefix = continuingPrefix;
        this.unkId = idOf(vocab, unk, "unk_token");
        this.clsId = idOf(vocab, cls, "[CLS] token");
        this.sepId = idOf(vocab, sep, "[SEP] token");
        this.padId = idOf(vocab, pad, "padding token");
        this.maxInputCharsPerWord = maxInputCharsPerWord;
        this.cleanText = cleanText;
        this.handleChineseChars = handleChineseChars;
        this.stripAccents = stripAccents;
        this.lowercase = lowercase;
        this.specialTokens = specialTokens.stream().sorted(Comparator.comparingInt(String::length).reversed()).toList();
        if (maxLength < 2) throw new IllegalArgumentException("maximum length must leave room for [CLS] and [SEP], got " + maxLength);
        this.maxLength = maxLength;
    }

    private static int idOf(Map<String, Integer> vocab, String token, String role) {
        Integer id = vocab.get(token);
        if (id == null) throw new IllegalArgumentException("the " + role + " '" + token + "' is not in the vocabulary");
        return id;
    }

    /** Reads a tokenizer.json; {@code source} names it in messages. */
    public static WordPieceTokenizer fromJson(InputStream json, String source) throws IOException {
        try (Reader r = new InputStreamReader(json, StandardCharsets.UTF_8)) {
            return fromJson(JsonParser.parseReader(r), source);
        } catch (JsonParseException e) {
            throw new TensorFormatException(source + ": not valid JSON: " + e.getMessage(), e);
        }
    }

    static WordPieceTokenizer fromJson(JsonElement root, String source) throws TensorFormatException {
        try {
            JsonObject o = root.getAsJsonObject();
            JsonObject model = o.getAsJsonObject("model");
            require(source, model != null && "WordPiece".equals(string(model, "type")), "model.type",
                    "WordPiece", model == null ? "no model" : string(model, "type"));
            JsonObject normalizer = o.getAsJsonObject("normalizer");
            require(source, normalizer != null && "BertNormalizer".equals(string(normalizer, "type")), "normalizer.type",
                    "BertNormalizer", normalizer == null ? "none" : string(normalizer, "type"));
            JsonObject pre = o.getAsJsonObject("pre_tokenizer");
            require(source, pre != null && "BertPreTokenizer".equals(string(pre, "type")), "pre_tokenizer.type",
                    "BertPreTokenizer", pre == null ? "none" : string(pre, "type"));

            Map<String, Integer> vocab = new HashMap<>();
            for (Map.Entry<String, JsonElement> e : model.getAsJsonObject("vocab").entrySet()) {
                vocab.put(e.getKey(), e.getValue().getAsInt());
            }
            String unk = string(model, "unk_token");
            String prefix = model.has("continuing_subword_prefix") ? string(model, "continuing_subword_prefix") : "##";
            int maxChars = model.has("max_input_chars_per_word") ? model.get("max_input_chars_per_word").getAsInt() : 100;

            boolean lowercase = bool(normalizer, "lowercase", true);
            boolean strip = normalizer.has("strip_accents") && !normalizer.get("strip_accents").isJsonNull()
                    ? normalizer.get("strip_accents").getAsBoolean() : lowercase;

            List<String> specials = new ArrayList<>();
            if (o.has("added_tokens") && o.get("added_tokens").isJsonArray()) {
                for (JsonElement e : o.getAsJsonArray("added_tokens")) {
                    JsonObject t = e.getAsJsonObject();
                    if (!bool(t, "normalized", false)) specials.add(string(t, "content"));
                }
            }
            int maxLength = DEFAULT_MAX_LENGTH;
            JsonElement truncation = o.get("truncation");
            if (truncation != null && truncation.isJsonObject() && truncation.getAsJsonObject().has("max_length")) {
                maxLength = truncation.getAsJsonObject().get("max_length").getAsInt();
            }
            String pad = "[PAD]";
            JsonElement padding = o.get("padding");
            if (padding != null && padding.isJsonObject() && padding.getAsJsonObject().has("pad_token")) {
                pad = string(padding.getAsJsonObject(), "pad_token");
            }
            return new WordPieceTokenizer(vocab, prefix, unk, "[CLS]", "[SEP]", pad, maxChars,
                    bool(normalizer, "clean_text", true), bool(normalizer, "handle_chinese_chars", true), strip,
                    lowercase, specials, maxLength);
        } catch (RuntimeException e) {
            throw new TensorFormatException(source + ": not a BERT WordPiece tokenizer.json: " + e.getMessage(), e);
        }
    }

    private static void require(String source, boolean ok, String field, String expected, String found)
            throws TensorFormatException {
        if (!ok) {
            throw new TensorFormatException(source + ": " + field + " must be " + expected + " for a BERT WordPiece tokenizer, found "
                    + found);
        }
    }

    private static String string(JsonObject o, String key) {
        JsonElement e = o.get(key);
        return e == null || e.isJsonNull() ? null : e.getAsString();
    }

    private static boolean bool(JsonObject o, String key, boolean otherwise) {
        JsonElement e = o.get(key);
        return e == null || e.isJsonNull() ? otherwise : e.getAsBoolean();
    }

    /** The same tokenizer truncating to {@code maxLength} tokens, [CLS] and [SEP] included. */
    public WordPieceTokenizer withMaxLength(int maxLength) {
        return new WordPieceTokenizer(vocab, continuingPrefix, tokensById[unkId], tokensById[clsId], tokensById[sepId],
                tokensById[padId], maxInputCharsPerWord, cleanText, handleChineseChars, stripAccents, lowercase,
                specialTokens, maxLength);
    }

    /** Tokens per sequence after truncation, [CLS] and [SEP] included. */
    public int maxLength() {
        return maxLength;
    }

    public int vocabularySize() {
        return tokensById.length;
    }

    public int padId() {
        return padId;
    }

    public int unknownId() {
        return unkId;
    }

    /** The vocabulary entry of {@code id}. */
    public String token(int id) {
        if (id < 0 || id >= tokensById.length || tokensById[id] == null) {
            throw new IllegalArgumentException("token id " + id + " is not in the vocabulary of " + tokensById.length);
        }
        return tokensById[id];
    }

    /** The id of a vocabulary entry, or the [UNK] id. */
    public int id(String token) {
        return vocab.getOrDefault(token, unkId);
    }

    /** [CLS] pieces [SEP], truncated to {@link #maxLength()}. */
    public int[] encode(String text) {
        List<Integer> pieces = pieceIds(text);
        int kept = Math.min(pieces.size(), maxLength - 2);
        int[] ids = new int[kept + 2];
        ids[0] = clsId;
        for (int i = 0; i < kept; i++) ids[i + 1] = pieces.get(i);
        ids[kept + 1] = sepId;
        return ids;
    }

    /** Every text encoded and right-padded with [PAD] to the longest; lengths are the attention lengths. */
    public TokenBatch encodeBatch(List<String> texts) {
        int[][] sequences = new int[texts.size()][];
        for (int b = 0; b < sequences.length; b++) sequences[b] = encode(texts.get(b));
        return TokenBatch.padded(padId, sequences);
    }

    /** The word pieces of {@code text} as strings, without [CLS]/[SEP] and without truncation. */
    public List<String> tokenize(String text) {
        return pieceIds(text).stream().map(this::token).toList();
    }

    // ---- the pipeline ----

    /** Ids of the word pieces of {@code text}, special tokens included where they occur verbatim. */
    private List<Integer> pieceIds(String text) {
        List<Integer> out = new ArrayList<>();
        int start = 0;
        while (start <= text.length()) {
            // The earliest special token from here (the longest one where several start together).
            int at = text.length();
            String special = null;
            for (String s : specialTokens) {
                int i = text.indexOf(s, start);
                if (i >= 0 && i < at) {
                    at = i;
                    special = s;
                }
            }
            for (String word : preTokenize(normalize(text.substring(start, at)))) wordPiece(word, out);
            if (special == null) break;
            out.add(vocab.get(special));
            start = at + special.length();
        }
        return out;
    }

    /** BertNormalizer: cleanup, Chinese characters, accents, lowercase (in the library's order). */
    String normalize(String text) {
        StringBuilder s = new StringBuilder(text.length());
        text.codePoints().forEach(c -> {
            if (cleanText) {
                if (c == 0 || c == 0xFFFD || isControl(c)) return;
                if (isWhitespace(c)) c = ' ';
            }
            if (handleChineseChars && isChinese(c)) s.append(' ').appendCodePoint(c).append(' ');
            else s.appendCodePoint(c);
        });
        String result = s.toString();
        if (stripAccents) {
            StringBuilder stripped = new StringBuilder(result.length());
            Normalizer.normalize(result, Normalizer.Form.NFD).codePoints().forEach(c -> {
                if (Character.getType(c) != Character.NON_SPACING_MARK) stripped.appendCodePoint(c);
            });
            result = stripped.toString();
        }
        if (lowercase) {
            StringBuilder lower = new StringBuilder(result.length());
            // Character by character, as the library does: String.toLowerCase on the whole text
            // would apply context rules (final sigma) that it does not.
            result.codePoints().forEach(c -> {
                if (c < 128) lower.append((char) (c >= 'A' && c <= 'Z' ? c + 32 : c));
                else lower.append(new String(Character.toChars(c)).toLowerCase(Locale.ROOT));
            });
            result = lower.toString();
        }
        return result;
    }

    /** BertPreTokenizer: words split at white space; each punctuation character a word of its own. */
    static List<String> preTokenize(String text) {
        List<String> words = new ArrayList<>();
        StringBuilder word = new StringBuilder();
        text.codePoints().forEach(c -> {
            if (isSplitWhitespace(c) || isPunctuation(c)) {
                if (!word.isEmpty()) words.add(word.toString());
                word.setLength(0);
                if (isPunctuation(c)) words.add(new String(Character.toChars(c)));
            } else {
                word.appendCodePoint(c);
            }
        });
        if (!word.isEmpty()) words.add(word.toString());
        return words;
    }

    /** Greedy longest-match-first WordPiece of one word, appended to {@code out}. */
    private void wordPiece(String word, List<Integer> out) {
        int[] chars = word.codePoints().toArray();
        if (chars.length > maxInputCharsPerWord) {
            out.add(unkId);
            return;
        }
        List<Integer> pieces = new ArrayList<>();
        int start = 0;
        while (start < chars.length) {
            Integer match = null;
            int end = chars.length;
            for (; end > start; end--) {
                String piece = new String(chars, start, end - start);
                match = vocab.get(start > 0 ? continuingPrefix + piece : piece);
                if (match != null) break;
            }
            if (match == null) {
                out.add(unkId); // one unmatched piece makes the whole word unknown
                return;
            }
            pieces.add(match);
            start = end;
        }
        out.addAll(pieces);
    }

    // ---- character classes, as the tokenizers library defines them ----

    /** Unicode category C* (control, format, surrogate, private use, unassigned), except \t \n \r. */
    static boolean isControl(int c) {
        if (c == '\t' || c == '\n' || c == '\r') return false;
        int type = Character.getType(c);
        return type == Character.CONTROL || type == Character.FORMAT || type == Character.SURROGATE
                || type == Character.PRIVATE_USE || type == Character.UNASSIGNED;
    }

    /** The cleanup's white space: \t \n \r and the Unicode White_Space property. */
    static boolean isWhitespace(int c) {
        return c == '\t' || c == '\n' || c == '\r' || isSplitWhitespace(c);
    }

    /** The Unicode White_Space property (Rust's {@code char::is_whitespace}), where words are split. */
    static boolean isSplitWhitespace(int c) {
        return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680
                || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
    }

    /** ASCII punctuation (which includes $ + < = > ^ ` | ~) or Unicode category P*. */
    static boolean isPunctuation(int c) {
        if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
        return switch (Character.getType(c)) {
            case Character.CONNECTOR_PUNCTUATION, Character.DASH_PUNCTUATION, Character.START_PUNCTUATION,
                 Character.END_PUNCTUATION, Character.INITIAL_QUOTE_PUNCTUATION, Character.FINAL_QUOTE_PUNCTUATION,
                 Character.OTHER_PUNCTUATION -> true;
            default -> false;
        };
    }

    /** The CJK Unified Ideograph blocks (not Hangul, Hiragana or Katakana, which are written with spaces). */
    static boolean isChinese(int c) {
        return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF)
                || (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF)
                || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
    }
}
