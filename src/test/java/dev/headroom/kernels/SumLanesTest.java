package dev.headroom.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link Vectors#sumLanes} adds a vector's lanes in its documented pairwise order, bit for bit, at
 * every width (2 to 16 lanes, whatever width the build runs at), on inputs whose sum depends on
 * the order: what the softmax, RMSNorm and LayerNorm kernels' reproducibility rests on.
 */
class SumLanesTest {
    /** The documented order, plainly: lane l += lane l + half, halving the width down to one. */
    private static float pairwise(float[] lanes) {
        float[] a = lanes.clone();
        for (int width = a.length; width > 1; width /= 2) {
            for (int l = 0; l < width / 2; l++) a[l] += a[l + width / 2];
        }
        return a[0];
    }

    @Test
    void itAddsInThePairwiseOrderAtEveryWidth() {
        SplittableRandom rnd = new SplittableRandom(5);
        for (VectorSpecies<Float> species : List.of(FloatVector.SPECIES_64, FloatVector.SPECIES_128, FloatVector.SPECIES_256,
                FloatVector.SPECIES_512)) {
            int L = species.length(), ordersDiffer = 0;
            for (int trial = 0; trial < 2000; trial++) {
                float[] a = new float[L];
                // magnitudes over 40 binary orders, both signs: the order of the additions shows in the last bits
                for (int l = 0; l < L; l++) a[l] = (float) (rnd.nextDouble(-1, 1) * Math.scalb(1.0, rnd.nextInt(-20, 21)));
                float expected = pairwise(a), got = Vectors.sumLanes(FloatVector.fromArray(species, a, 0));
                assertEquals(Float.floatToRawIntBits(expected), Float.floatToRawIntBits(got),
                        L + " lanes, trial " + trial + ": " + got + " against " + expected);
                float leftToRight = 0;
                for (float x : a) leftToRight += x;
                if (leftToRight != expected) ordersDiffer++;
            }
            if (L > 2) assertTrue(ordersDiffer > 0, "at " + L + " lanes the inputs never told the two orders apart");
        }
    }
}
