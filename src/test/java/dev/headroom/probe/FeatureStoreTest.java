package dev.headroom.probe;

import dev.headroom.memory.TrackedArena;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Stores written in parts, reopened from their directories and concatenated in order. */
class FeatureStoreTest {
    /** Two representations, a residual stream of width 3 and a head of width 2 (only their shapes matter here). */
    private static final List<Representation> REPS = List.of(new Representation(0, 0, -1, 3), new Representation(1, 0, 0, 2));

    /** Value of (row, column) of representation r in part k: distinct in every place, exact in float16. */
    private static float value(int k, int row, int r, int j) {
        return k * 100 + row * 10 + r * 4 + j;
    }

    private static FeatureStore part(Path dir, int k, int rows, int[] words) throws IOException {
        FeatureStore s = FeatureStore.create(dir, REPS);
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            for (Representation r : REPS) {
                /* (rows, dim) float16, row-major */
                MemorySegment staged = arena.allocate((long) rows * r.dim() * Short.BYTES);
                for (int i = 0; i < rows; i++) {
                    for (int j = 0; j < r.dim(); j++) {
                        staged.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, (long) i * r.dim() + j, Float.floatToFloat16(value(k, i, r.index(), j)));
                    }
                }
                s.write(r, 0, rows, staged);
            }
        }
        s.finish(words, rows);
        return s;
    }

    @Test
    void partsReopenedAndConcatenatedKeepTheirRowsAndWordsInOrder(@TempDir Path dir) throws IOException {
        part(dir.resolve("p0"), 0, 3, new int[]{2, 0, 1}).close();
        part(dir.resolve("p1"), 1, 2, new int[]{1, 0}).close();
        FeatureStore p0 = FeatureStore.open(dir.resolve("p0"), REPS), p1 = FeatureStore.open(dir.resolve("p1"), REPS);
        assertEquals(3, p0.rows());
        assertEquals(2, p0.word(0));
        try (FeatureStore all = FeatureStore.concatenate(dir.resolve("all"), REPS, List.of(p0, p1), new int[]{0, 5})) {
            assertEquals(5, all.rows());
            int[] words = {2, 0, 1, 6, 5};
            for (int row = 0; row < 5; row++) assertEquals(words[row], all.word(row), "row " + row);
        }
        p0.delete();
        p1.delete();
        assertFalse(Files.exists(dir.resolve("p0")), "a part's files and its directory deleted");
        try (FeatureStore all = FeatureStore.open(dir.resolve("all"), REPS); TrackedArena arena = TrackedArena.ofConfined()) {
            for (Representation r : REPS) {
                MemorySegment got = arena.allocate((long) 5 * r.dim() * Short.BYTES);
                all.read(r, 0, 5, got);
                for (int row = 0; row < 5; row++) {
                    int k = row < 3 ? 0 : 1, i = row < 3 ? row : row - 3;
                    for (int j = 0; j < r.dim(); j++) {
                        assertEquals(value(k, i, r.index(), j),
                                Float.float16ToFloat(got.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, (long) row * r.dim() + j)),
                                "representation " + r.index() + ", row " + row + ", column " + j);
                    }
                }
            }
        }
    }

    @Test
    void aDirectoryThatIsNoFinishedStoreIsRefusedByName(@TempDir Path dir) throws IOException {
        IOException none = assertThrows(IOException.class, () -> FeatureStore.open(dir.resolve("nothing"), REPS));
        assertTrue(none.getMessage().contains("words.i32"), none.getMessage());
        part(dir.resolve("p"), 0, 3, new int[]{0, 1, 2}).close();
        Files.write(dir.resolve("p/r001.f16"), new byte[6]); // 3 rows of 2 float16 make 12 bytes
        IOException truncated = assertThrows(IOException.class, () -> FeatureStore.open(dir.resolve("p"), REPS));
        assertTrue(truncated.getMessage().contains("has 6 bytes") && truncated.getMessage().contains("make 12"), truncated.getMessage());
    }
}
