package dev.headroom.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/** Finds NaN and ±∞ in float data (input checking). */
public final class Finite {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private Finite() {}

    /** Index of the first non-finite float among {@code count} floats from float index 0, or −1. */
    public static long firstNonFinite(MemorySegment x, long count) {
        int lanes = SPECIES.length();
        long bound = count - count % lanes;
        long i = 0;
        for (; i < bound; i += lanes) {
            // x − x is 0 for finite x and NaN for NaN and ±∞.
            FloatVector v = FloatVector.fromMemorySegment(SPECIES, x, i * Float.BYTES, ORDER);
            if (v.sub(v).test(VectorOperators.IS_NAN).anyTrue()) break;
        }
        for (; i < count; i++) {
            if (!Float.isFinite(x.getAtIndex(F, i))) return i;
        }
        return -1;
    }
}
