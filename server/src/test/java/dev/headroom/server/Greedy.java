package dev.headroom.server;

import dev.headroom.generate.Generator;
import dev.headroom.generate.Sampling;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What {@code bin/headroom generate --greedy} gives (Generator, greedy, the prompt encoded with
 * {@code <bos>}), and comparisons with served text that allow a parting only at a near tie: the
 * served logits agree with Generator's to float rounding, not bitwise (other batch shapes, other
 * prefill chunks), so where the two best tokens are closer than {@value #NEAR_TIE} either may win.
 */
final class Greedy {
    static final double NEAR_TIE = 1e-3;

    private Greedy() {}

    static Generator.Output generate(String prompt, int maxTokens) {
        return new Generator(TestStack.DECODER, TestStack.TOKENIZER).generate(List.of(new Generator.Request(TestStack.TOKENIZER.encode(prompt),
                maxTokens, Sampling.greedy(), List.of())), Generator.Listener.NONE).outputs().getFirst();
    }

    /** The top-1 minus top-2 logit after {@code ids}, from the whole forward (no cache). */
    static double margin(int[] ids) {
        try (TrackedArena a = TrackedArena.ofShared()) {
            Tensor logits = TestStack.DECODER.logits(ids, a);
            int V = logits.dim(1);
            float best = Float.NEGATIVE_INFINITY, second = Float.NEGATIVE_INFINITY;
            for (int j = 0; j < V; j++) {
                float v = logits.get((long) (ids.length - 1) * V + j);
                if (v > best) {
                    second = best;
                    best = v;
                } else if (v > second) second = v;
            }
            return best - second;
        }
    }

    /**
     * Asserts that {@code served} (text) is Generator's greedy continuation of {@code prompt}, or
     * parts from it only where the top-2 gap of the common prefix is a near tie. The byte model's
     * tokens are the text's UTF-8 bytes, so the texts are compared byte by byte.
     */
    static void assertSameText(String what, String prompt, Generator.Output expected, String served) {
        byte[] e = expected.text().getBytes(java.nio.charset.StandardCharsets.UTF_8), a = served.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        int[] p = TestStack.TOKENIZER.encode(prompt);
        for (int k = 0; k < Math.min(e.length, a.length); k++) {
            if (e[k] == a[k]) continue;
            int[] prefix = new int[p.length + k];
            System.arraycopy(p, 0, prefix, 0, p.length);
            for (int i = 0; i < k; i++) prefix[p.length + i] = a[i] & 0xFF;
            double m = margin(prefix);
            assertTrue(m < NEAR_TIE, what + ": byte " + k + " is " + a[k] + ", expected " + e[k] + ", top-2 gap " + m
                    + "\n served:   " + served + "\n expected: " + expected.text());
            System.out.printf("%s: parts from Generator at byte %d at a near tie (gap %.2e)%n", what, k, m);
            return;
        }
        assertEquals(expected.text(), served, what);
    }
}
