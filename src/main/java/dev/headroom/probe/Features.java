package dev.headroom.probe;

import dev.headroom.memory.TrackedArena;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Rows of features a probe streams through, block by block: one representation of the words of one
 * part. Implementations read from wherever the features live ({@link #of} reads a store's file); a
 * probe never holds more than a block of them.
 */
public interface Features {
    int rows();

    int dim();

    /**
     * Writes rows [firstRow, firstRow + count) into {@code dst} as float32, (count, dim) row-major
     * from byte 0. One thread at a time per instance.
     */
    void read(int firstRow, int count, MemorySegment dst);

    /**
     * Representation {@code r} of {@code store}, converted from float16, reading at most
     * {@code maxRows} rows at a time through a scratch buffer allocated in {@code arena}
     * ((maxRows, dim) float16).
     */
    static Features of(FeatureStore store, Representation r, Arena arena, int maxRows) {
        /* halves: (maxRows, dim) float16, the block as read from the file. */
        MemorySegment halves = arena.allocate((long) maxRows * r.dim() * Short.BYTES, TrackedArena.ALIGNMENT);
        return new Features() {
            @Override
            public int rows() {
                return store.rows();
            }

            @Override
            public int dim() {
                return r.dim();
            }

            @Override
            public void read(int firstRow, int count, MemorySegment dst) {
                if (count > maxRows) throw new IllegalArgumentException(count + " rows asked, at most " + maxRows + " at a time");
                store.read(r, firstRow, count, halves);
                long values = (long) count * r.dim();
                for (long i = 0; i < values; i++) {
                    dst.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i,
                            Float.float16ToFloat(halves.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i)));
                }
            }
        };
    }
}
