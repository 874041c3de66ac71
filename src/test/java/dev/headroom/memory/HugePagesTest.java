package dev.headroom.memory;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@link TrackedArena#allocateLarge}: zeroed, writable, counted and released like any
 * allocation, and on Linux with transparent huge pages not disabled, a mapping the kernel
 * reports as eligible for them ({@code /proc/self/smaps}).
 */
class HugePagesTest {
    @Test
    void largeAllocationsAreZeroedWritableCountedAndReleased() {
        long before = OffHeap.currentBytes();
        long size = 5 * HugePages.SIZE + 12_345; // not a whole number of huge pages
        MemorySegment s;
        try (TrackedArena arena = TrackedArena.ofShared()) {
            s = arena.allocateLarge(size);
            assertEquals(size, s.byteSize());
            assertEquals(before + size, OffHeap.currentBytes());
            assertEquals(0, s.address() % TrackedArena.ALIGNMENT);
            for (long at = 0; at < size; at += 4093) assertEquals(0, s.get(ValueLayout.JAVA_BYTE, at), "byte " + at);
            assertEquals(0, s.get(ValueLayout.JAVA_BYTE, size - 1));
            s.set(ValueLayout.JAVA_FLOAT_UNALIGNED, size - 4, 1.5f);
            s.set(ValueLayout.JAVA_FLOAT_UNALIGNED, 0, -2f);
            assertEquals(1.5f, s.get(ValueLayout.JAVA_FLOAT_UNALIGNED, size - 4));
            assertEquals(-2f, s.get(ValueLayout.JAVA_FLOAT_UNALIGNED, 0));
            assertThrows(IndexOutOfBoundsException.class, () -> s.get(ValueLayout.JAVA_BYTE, size));
            // small ones are ordinary allocations
            assertEquals(1000, arena.allocateLarge(1000).byteSize());
        }
        assertEquals(before, OffHeap.currentBytes());
        assertThrows(IllegalStateException.class, () -> s.get(ValueLayout.JAVA_BYTE, 0), "unmapped with its arena");
    }

    @Test
    void aClosedArenaIsRefusedAndCountsNothing() {
        TrackedArena arena = TrackedArena.ofShared();
        arena.close();
        long before = OffHeap.currentBytes();
        assertThrows(IllegalStateException.class, () -> arena.allocateLarge(4 * HugePages.SIZE));
        assertEquals(before, OffHeap.currentBytes());
    }

    @Test
    void onLinuxTheMappingIsEligibleForHugePages() throws IOException {
        Path mode = Path.of("/sys/kernel/mm/transparent_hugepage/enabled");
        assumeTrue(Files.isReadable(mode) && TrackedArena.hugePagesAvailable(), "no transparent huge pages here");
        assumeTrue(!Files.readString(mode).contains("[never]"), "transparent huge pages are disabled on this machine");
        try (TrackedArena arena = TrackedArena.ofShared()) {
            MemorySegment s = arena.allocateLarge(8 * HugePages.SIZE);
            assertEquals(0, s.address() % HugePages.SIZE, "2 MiB aligned");
            String eligible = eligibility(s.address());
            assertNotNull(eligible, "no THPeligible line for the mapping at 0x" + Long.toHexString(s.address()));
            assertTrue(eligible.endsWith("1"), "the mapping is not eligible for huge pages: " + eligible);
        }
    }

    /** The THPeligible line of the mapping holding {@code address} in /proc/self/smaps, or null. */
    private static String eligibility(long address) throws IOException {
        List<String> lines = Files.readAllLines(Path.of("/proc/self/smaps"));
        boolean inside = false;
        for (String line : lines) {
            if (line.matches("^[0-9a-f]+-[0-9a-f]+ .*")) {
                String[] range = line.substring(0, line.indexOf(' ')).split("-");
                inside = Long.parseUnsignedLong(range[0], 16) <= address && address < Long.parseUnsignedLong(range[1], 16);
            } else if (inside && line.startsWith("THPeligible:")) {
                return line.replaceAll("\\s+", " ").trim();
            }
        }
        return null;
    }
}
