package dev.headroom.generate;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class StopTextTest {
    @Test
    void aStopStringSplitAcrossPiecesIsNeverReleased() {
        StopText t = new StopText(List.of("END", "\n\n"));
        assertEquals("abc ", t.add("abc E"));   // "E" may begin "END": held
        assertEquals("", t.add("N"));           // "EN" still may
        assertEquals("", t.add("D and more"));  // "END": stop; nothing after it
        assertTrue(t.stopped());
        assertEquals("abc ", t.text());
        assertEquals("", t.add("ignored"));
    }

    @Test
    void heldTextThatDoesNotBecomeAStopStringIsReleased() {
        StopText t = new StopText(List.of("END"));
        assertEquals("x", t.add("xE"));
        assertEquals("EX", t.add("X"));         // "EX" cannot begin "END"
        assertEquals("", t.add("EN"));
        assertEquals("EN", t.finish());          // the sequence ended otherwise
        assertEquals("xEXEN", t.text());
    }

    @Test
    void theEarliestStopStringWins() {
        StopText t = new StopText(List.of("cd", "b"));
        assertEquals("a", t.add("abcd"));
        assertEquals("a", t.text());
        StopText none = new StopText(List.of());
        assertEquals("anything", none.add("anything"));
    }
}
