package dev.headroom.model.llama;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * The byte-level vocabulary of the tiny model: ids 0–255 are the bytes of UTF-8 text, and ids
 * from 256 on are special tokens ({@code <bos>} = 256 and {@code <eos>} = 257 there). A prompt is
 * {@code <bos>} followed by its bytes. Decoding drops special tokens; bytes that are not valid
 * UTF-8 become U+FFFD, one per maximal ill-formed subsequence (the JDK's decoder, as Python's
 * {@code errors="replace"} for the cases the model produces: stray continuation bytes and
 * truncated sequences).
 *
 * <p>Works for any Llama-style model whose vocabulary puts the 256 bytes at ids 0–255; models
 * with a BPE or SentencePiece vocabulary need their own tokenizer.
 */
public final class ByteTokenizer {
    private final int vocabSize, bos;
    private final int[] eos;

    /** A byte vocabulary of {@code vocabSize} ids (at least 256) with the given {@code <bos>} (−1: none) and end ids. */
    public ByteTokenizer(int vocabSize, int bos, int... eos) {
        if (vocabSize < 256) {
            throw new IllegalArgumentException("a byte vocabulary needs ids 0-255 for the bytes; vocab_size is " + vocabSize);
        }
        if (bos != -1 && (bos < 256 || bos >= vocabSize)) {
            throw new IllegalArgumentException("<bos> id " + bos + " must be a special id in [256, " + vocabSize + ") or -1");
        }
        for (int e : eos) {
            if (e < 256 || e >= vocabSize) throw new IllegalArgumentException("end id " + e + " must be a special id in [256, " + vocabSize + ")");
        }
        this.vocabSize = vocabSize;
        this.bos = bos;
        this.eos = eos.clone();
    }

    /** The tokenizer of a model's config: its vocabulary, {@code bos_token_id} and {@code eos_token_id}s. */
    public static ByteTokenizer of(LlamaConfig config) {
        return new ByteTokenizer(config.vocabSize(), config.bosTokenId(), config.eosTokenIds());
    }

    public int vocabSize() {
        return vocabSize;
    }

    /** The {@code <bos>} id, or −1. */
    public int bos() {
        return bos;
    }

    public boolean isEos(int id) {
        for (int e : eos) if (e == id) return true;
        return false;
    }

    /** {@code <bos>} (if the vocabulary has one) followed by the UTF-8 bytes of {@code text}. */
    public int[] encode(String text) {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        int start = bos >= 0 ? 1 : 0;
        int[] ids = new int[start + bytes.length];
        if (bos >= 0) ids[0] = bos;
        for (int i = 0; i < bytes.length; i++) ids[start + i] = bytes[i] & 0xFF;
        return ids;
    }

    /** The text of {@code ids}: special tokens dropped, ill-formed UTF-8 as U+FFFD. */
    public String decode(int[] ids) {
        Stream s = stream();
        StringBuilder b = new StringBuilder();
        for (int id : ids) b.append(s.accept(id));
        return b.append(s.finish()).toString();
    }

    /** A decoder for tokens that arrive one at a time (see {@link Stream}). */
    public Stream stream() {
        return new Stream();
    }

    /**
     * Turns tokens into text as they arrive: a character whose UTF-8 bytes span several tokens is
     * returned once its last byte is in, so streamed text never shows half a character (or a
     * U+FFFD that would not be in the whole text). Concatenating every {@link #accept} and
     * {@link #finish} gives {@link #decode} of all the tokens.
     */
    public final class Stream {
        private final CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPLACE).onUnmappableCharacter(CodingErrorAction.REPLACE);
        /** Bytes not yet decoded: at most the 3 leading bytes of an incomplete character. */
        private final ByteBuffer pending = ByteBuffer.allocate(8);
        private final CharBuffer chars = CharBuffer.allocate(16);
        private boolean finished;

        private Stream() {}

        /** The text that token {@code id} completes ("" while a character is incomplete or for special tokens). */
        public String accept(int id) {
            if (finished) throw new IllegalStateException("this token stream is finished");
            if (id < 0 || id >= vocabSize) throw new IllegalArgumentException("token id " + id + " is outside the vocabulary of " + vocabSize);
            if (id >= 256) return "";
            pending.put((byte) id);
            return drain(false);
        }

        /** The end of the stream: an incomplete trailing character becomes U+FFFD. */
        public String finish() {
            if (finished) return "";
            finished = true;
            return drain(true);
        }

        private String drain(boolean end) {
            pending.flip();
            chars.clear();
            CoderResult r = decoder.decode(pending, chars, end);
            if (r.isError()) throw new IllegalStateException("UTF-8 decoding failed: " + r); // cannot happen with REPLACE
            if (end) decoder.flush(chars);
            pending.compact();
            chars.flip();
            return chars.toString();
        }
    }

    @Override
    public String toString() {
        return "ByteTokenizer(vocab " + vocabSize + ", bos " + bos + ", eos " + java.util.Arrays.toString(eos) + ")";
    }
}
