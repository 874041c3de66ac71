package dev.headroom.cli;

import dev.headroom.inspect.HeadRole;
import dev.headroom.inspect.HeadSummary;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.model.Models;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The trained model's heads do what inspection says, on real text: numbers that would move if the
 * statistics, the roles or the model wiring broke (measured once with `bin/headroom inspect
 * --model minilm`, asserted with margins).
 */
class ModelInspectionTest {
    @Test
    void miniLmHasAPreviousTokenHeadANextTokenHeadAndClsHeads() throws Exception {
        try (TrackedArena arena = TrackedArena.ofShared(); MiniLmEncoder encoder = Models.minilm(arena, 2)) {
            ModelInspection.Result r = ModelInspection.inspect(encoder,
                    List.of("The quick brown fox jumps over the lazy dog.", "Sarah gave Emma her notebook because she trusted her."), arena);
            assertEquals(6, r.layers().size());
            assertEquals("[CLS]", r.tokens().getFirst());
            HeadSummary previous = r.layers().get(0).summaries()[2], next = r.layers().get(1).summaries()[8];
            assertEquals(HeadRole.PREVIOUS_TOKEN, previous.role(), previous.describe());
            assertTrue(previous.previous() > 0.8, previous.describe());
            assertTrue(next.next() > 0.4 && next.argmaxOffset() == 1, next.describe());
            long cls = r.layers().stream().flatMap(l -> java.util.Arrays.stream(l.summaries()))
                    .filter(s -> s.role() == HeadRole.FIRST_TOKEN).count();
            assertTrue(cls >= 20, cls + " heads attend mostly to [CLS]");
        }
    }
}
