package dev.headroom.generate;

import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.LlamaConfig;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A sequence's bookkeeping without a model: what it feeds, what it streams, when it ends. */
class DecodingTest {
    /** Byte vocabulary 260 (bos 256, eos 257), context 12. */
    private static final LlamaConfig CONFIG = new LlamaConfig(16, 32, 1, 2, 1, 8, 1e-5, 10000, 260, 12, true, false, 256, new int[]{257});
    private static final ByteTokenizer TOKENIZER = ByteTokenizer.of(CONFIG);

    private static Decoding decoding(String prompt, int maxTokens, String... stops) {
        return new Decoding(new Generator.Request(TOKENIZER.encode(prompt), maxTokens, Sampling.greedy(), List.of(stops)), CONFIG, TOKENIZER);
    }

    @Test
    void feedsThePromptThenEachSampledTokenAndRecomputesAfterTheCacheIsDropped() {
        Decoding d = decoding("abcd", 10);
        assertEquals(5, d.pending());
        assertArrayEquals(new int[]{256, 'a'}, d.feed(2));
        assertArrayEquals(new int[]{'b', 'c', 'd'}, d.feed(3));
        assertEquals(0, d.pending());
        d.accept('x', Decoding.Sink.NONE);
        assertEquals(1, d.pending());
        assertArrayEquals(new int[]{'x'}, d.feed(1));
        d.accept('y', Decoding.Sink.NONE);
        assertArrayEquals(new int[]{256, 'a', 'b', 'c', 'd', 'x', 'y'}, d.context());
        d.setCached(0); // preempted: the whole context goes through the model again
        assertEquals(7, d.pending());
        assertArrayEquals(d.context(), d.feed(7));
        assertThrows(IllegalArgumentException.class, () -> d.feed(1));
        assertThrows(IllegalArgumentException.class, () -> d.setCached(8));
    }

    @Test
    void streamsTextAndEndsAtStopStringsBudgetsAndTheContext() {
        List<String> streamed = new ArrayList<>();
        Decoding d = decoding("ab", 10, "zz");
        for (int t : new int[]{'h', 'i', 'z'}) d.accept(t, (token, text) -> streamed.add(text));
        assertEquals(List.of("h", "i", ""), streamed); // "z" may begin the stop string: held
        d.accept('z', (token, text) -> streamed.add(text));
        assertEquals(Generator.Finish.STOP_STRING, d.finish());
        assertEquals("hi", d.text());

        Decoding budget = decoding("ab", 2);
        budget.accept('q', Decoding.Sink.NONE);
        assertNull(budget.finish());
        budget.accept('r', Decoding.Sink.NONE);
        assertEquals(Generator.Finish.MAX_TOKENS, budget.finish());
        assertThrows(IllegalStateException.class, () -> budget.accept('s', Decoding.Sink.NONE));

        Decoding context = decoding("abcdefghij", 100); // 11 of 12 positions
        context.accept('k', Decoding.Sink.NONE);
        assertEquals(Generator.Finish.CONTEXT, context.finish());
        assertEquals(Generator.Finish.CONTEXT, decoding("abcdefghijk", 5).finishBeforeStart());
        assertEquals(Generator.Finish.MAX_TOKENS, decoding("a", 0).finishBeforeStart());

        Decoding eos = decoding("a", 5);
        List<Integer> tokens = new ArrayList<>();
        eos.accept(0xC3, (token, text) -> tokens.add(token)); // the first byte of "é": no text yet
        eos.accept(257, (token, text) -> tokens.add(token));
        assertEquals(Generator.Finish.EOS, eos.finish());
        assertEquals(List.of(0xC3, 257, -1), tokens); // the incomplete character is released at the end, as U+FFFD
        assertTrue(eos.text().endsWith("\uFFFD"), eos.text());
    }
}
