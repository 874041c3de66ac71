package dev.headroom.probe;

import dev.headroom.corpus.BrownCorpus;
import dev.headroom.corpus.BrownCorpus.Part;
import dev.headroom.corpus.UniversalTags;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Tasks: the POS labels on Brown, the sample of --max-sentences, the control task and the majority baseline. */
class ProbeTaskTest {
    private static ProbeTask.Sentence s(String words, int... labels) {
        return new ProbeTask.Sentence(List.of(words.split(" ")), labels);
    }

    /** A toy task: "the" is 0, "dog"/"dogs" 1, "runs" 2 except once 1 in train. */
    private static ProbeTask toy() {
        return ProbeTask.of("toy", List.of("DET", "NOUN", "VERB"),
                List.of(s("the dog runs", 0, 1, 2), s("The dogs runs", 0, 1, 1), s("the dog runs", 0, 1, 2)),
                List.of(s("the cat runs", 0, 1, 2)),
                List.of(s("The cat runs fast", 0, 1, 2, -1), s("dogs run", 1, 2)));
    }

    @Test
    void theMajorityBaselineTagsEachTypeWithItsMostFrequentTrainingLabel() {
        ProbeTask.Baseline b = toy().majorityBaseline(Part.TEST);
        // test: The→0 ✓, cat (unseen)→NOUN, the most frequent training label (4 of 9) ✓, runs→2 ✓, fast unscored,
        // dogs→1 ✓, run (unseen)→NOUN ✗ (gold VERB)
        assertEquals(5, b.confusion().total());
        assertEquals(4, b.confusion().correct());
        assertEquals(2, b.unseenWords());
        assertEquals(1, b.unseenCorrect());
        assertEquals(1, b.confusion().counts()[2][1]);
    }

    @Test
    void theControlTaskGivesEveryTypeOneFixedLabelFromTheSeed() {
        ProbeTask task = toy(), a = task.control(7), again = task.control(7);
        assertEquals("toy-control", a.name());
        for (Part p : Part.values()) {
            for (int i = 0; i < task.parts().get(p).size(); i++) {
                assertArrayEquals(a.parts().get(p).get(i).labels(), again.parts().get(p).get(i).labels());
            }
        }
        // one label per (lowercased) type, across parts; unscored words stay unscored
        Map<String, Integer> byType = new HashMap<>();
        for (Part p : Part.values()) {
            for (ProbeTask.Sentence s : a.parts().get(p)) {
                for (int i = 0; i < s.labels().length; i++) {
                    if (s.words().get(i).equals("fast")) {
                        assertEquals(-1, s.labels()[i]);
                        continue;
                    }
                    Integer before = byType.putIfAbsent(ProbeTask.type(s.words().get(i)), s.labels()[i]);
                    if (before != null) assertEquals(before, s.labels()[i], s.words().get(i));
                }
            }
        }
    }

    /** Over many types, the control labels follow the training label distribution. */
    @Test
    void controlLabelsFollowTheTrainingDistribution() {
        List<ProbeTask.Sentence> train = new java.util.ArrayList<>();
        for (int i = 0; i < 20000; i++) train.add(s("w" + i, i % 10 < 7 ? 0 : i % 10 < 9 ? 1 : 2)); // 70 / 20 / 10 %
        ProbeTask task = ProbeTask.of("dist", List.of("a", "b", "c"), train, List.of(s("x", 0)), List.of(s("y", 0)));
        long[] counts = new long[3];
        for (ProbeTask.Sentence s : task.control(3).parts().get(Part.TRAIN)) counts[s.labels()[0]]++;
        assertEquals(0.7, counts[0] / 20000.0, 0.015);
        assertEquals(0.2, counts[1] / 20000.0, 0.015);
        assertEquals(0.1, counts[2] / 20000.0, 0.015);
        long differ = 0;
        List<ProbeTask.Sentence> other = task.control(4).parts().get(Part.TRAIN), first = task.control(3).parts().get(Part.TRAIN);
        for (int i = 0; i < other.size(); i++) if (other.get(i).labels()[0] != first.get(i).labels()[0]) differ++;
        assertTrue(differ > 5000, differ + " labels differ between seeds 3 and 4"); // expected 1 − (0.49 + 0.04 + 0.01) = 46 %
    }

    @Test
    void posOnBrownIsTheSameSampleEveryTimeAndCoversTheParts() throws IOException {
        BrownCorpus corpus = BrownCorpus.open();
        ProbeTask a = ProbeTask.pos(corpus, 100), b = ProbeTask.pos(corpus, 100);
        assertEquals(80, a.parts().get(Part.TRAIN).size());
        assertEquals(10, a.parts().get(Part.DEV).size());
        assertEquals(10, a.parts().get(Part.TEST).size());
        for (Part p : Part.values()) {
            for (int i = 0; i < a.parts().get(p).size(); i++) {
                assertEquals(a.parts().get(p).get(i).words(), b.parts().get(p).get(i).words());
                assertArrayEquals(a.parts().get(p).get(i).labels(), b.parts().get(p).get(i).labels());
            }
        }
        assertEquals(UniversalTags.TAGS, a.classes());
        // the sample draws from the whole part, not its first documents (press, category a)
        java.util.Set<String> first = new java.util.HashSet<>();
        for (BrownCorpus.Sentence s : corpus.sentences("ca01")) first.add(String.join(" ", s.words()));
        long fromCa01 = a.parts().get(Part.TRAIN).stream().filter(s -> first.contains(String.join(" ", s.words()))).count();
        assertTrue(fromCa01 < 5, fromCa01 + " of 80 sampled sentences from ca01");
        ProbeTask all = ProbeTask.pos(corpus, 0);
        assertEquals(913619, all.words(Part.TRAIN));
        assertNotEquals(a.parts().get(Part.TRAIN).getFirst().words(), all.parts().get(Part.TRAIN).getFirst().words());
    }

    @Test
    void labelsOutsideTheClassesAreRefused() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ProbeTask.of("bad", List.of("a", "b"),
                List.of(s("x", 2)), List.of(s("y", 0)), List.of(s("z", 0))));
        assertTrue(e.getMessage().contains("label 2 outside [-1, 2)"), e.getMessage());
    }
}
