package dev.headroom.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** The float vector species every vector kernel uses. */
public final class Vectors {
    /**
     * The preferred species of this CPU (512 bits with AVX-512), or the width in bits given by the
     * system property {@code headroom.vector.bits} (64, 128, 256 or 512), which tests and benchmarks
     * use to run the kernels at other widths.
     */
    public static final VectorSpecies<Float> SPECIES = chooseSpecies();
    public static final ByteOrder ORDER = ByteOrder.nativeOrder();

    private Vectors() {}

    private static VectorSpecies<Float> chooseSpecies() {
        String bits = System.getProperty("headroom.vector.bits");
        if (bits == null || bits.isBlank()) return FloatVector.SPECIES_PREFERRED;
        return switch (bits.trim()) {
            case "64" -> FloatVector.SPECIES_64;
            case "128" -> FloatVector.SPECIES_128;
            case "256" -> FloatVector.SPECIES_256;
            case "512" -> FloatVector.SPECIES_512;
            default -> throw new IllegalArgumentException("headroom.vector.bits must be 64, 128, 256 or 512, got " + bits);
        };
    }

    /**
     * The sum of the lanes in a fixed pairwise order: with L lanes, lane l ← l + (l + L/2) for
     * l &lt; L/2, then the same over the first L/2 lanes, down to one. {@code reduceLanes(ADD)}
     * leaves the order unspecified, and the JIT-compiled and interpreted forms do differ in the
     * last bit; a fixed order makes every result bitwise reproducible, whatever thread or
     * compilation tier runs it. Pairwise rather than left to right: the additions of a level are
     * independent, so a 16-lane sum waits for 4 additions instead of 15 (this sum ends every
     * softmax and LayerNorm row).
     */
    public static float sumLanes(FloatVector v) {
        // each level in the vector: lanes [half, 2·half) slid down onto [0, half) and added, lanes past half ignored. It was
        // toArray and a scalar loop: a new array per call, 2 % of a decode step's garbage (JFR, serve-bench)
        int L = v.length(); // unrolled, each slice by a constant: as a loop, C2 boxed the vectors (JFR)
        assert Integer.bitCount(L) == 1 : L + " lanes"; // float species have 2, 4, 8 or 16 here
        if (L > 16) return sumLanesOfArray(v.toArray()); // wider vectors (SVE): the same order, through an array
        if (L >= 16) v = v.add(v.slice(8));
        if (L >= 8) v = v.add(v.slice(4));
        if (L >= 4) v = v.add(v.slice(2));
        return v.add(v.slice(1)).lane(0);
    }

    private static float sumLanesOfArray(float[] lanes) {
        for (int width = lanes.length; width > 1; width /= 2) {
            int half = width / 2;
            for (int l = 0; l < half; l++) lanes[l] += lanes[l + half];
        }
        return lanes[0];
    }

    /** {@code count} floats from float index {@code offset} ← value (whole vectors, then a scalar tail). */
    public static void fill(MemorySegment x, long offset, long count, float value) {
        int lanes = SPECIES.length();
        long bound = count - count % lanes, j = 0;
        FloatVector v = FloatVector.broadcast(SPECIES, value);
        for (; j < bound; j += lanes) v.intoMemorySegment(x, (offset + j) * Float.BYTES, ORDER);
        for (; j < count; j++) x.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, offset + j, value);
    }

    /** Lanes of {@link #SPECIES}, e.g. 16 floats for 512 bits. */
    public static int lanes() {
        return SPECIES.length();
    }

}
