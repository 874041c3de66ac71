package dev.headroom.probe;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The probe on synthetic data: a planted linear feature is found, random labels are not, a seed fixes the result. */
class LinearProbeTest {
    private static final Arena ARENA = Arena.ofShared();
    static final int D = 32, C = 4;

    @AfterAll
    static void close() {
        ARENA.close();
    }

    /** Rows of standard normal features, off-heap, with a scale and offset per feature so that standardisation matters. */
    static Features gaussian(int rows, long seed) {
        MemorySegment data = ARENA.allocate((long) rows * D * Float.BYTES, 64);
        Random r = new Random(seed);
        for (long i = 0; i < (long) rows * D; i++) {
            int j = (int) (i % D);
            data.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) (r.nextGaussian() * (1 + j) + 3 * j));
        }
        return new Features() {
            public int rows() {
                return rows;
            }

            public int dim() {
                return D;
            }

            public void read(int firstRow, int count, MemorySegment dst) {
                MemorySegment.copy(data, (long) firstRow * D * Float.BYTES, dst, 0, (long) count * D * Float.BYTES);
            }
        };
    }

    /** label = argmax_c Σ_j P[c][j]·(x_j − 3j)/(1 + j): a linear function of the features. */
    static int[] planted(Features f, long seed) {
        Random r = new Random(seed);
        double[][] P = new double[C][D];
        for (double[] row : P) for (int j = 0; j < D; j++) row[j] = r.nextGaussian();
        MemorySegment x = ARENA.allocate((long) f.rows() * D * Float.BYTES, 64);
        f.read(0, f.rows(), x);
        int[] labels = new int[f.rows()];
        for (int i = 0; i < f.rows(); i++) {
            double best = Double.NEGATIVE_INFINITY;
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int j = 0; j < D; j++) s += P[c][j] * (x.getAtIndex(ValueLayout.JAVA_FLOAT, (long) i * D + j) - 3 * j) / (1 + j);
                if (s > best) {
                    best = s;
                    labels[i] = c;
                }
            }
        }
        return labels;
    }

    @Test
    void recoversAPlantedLinearFeature() {
        Features train = gaussian(8000, 1), test = gaussian(2000, 2);
        int[] trainLabels = planted(train, 7), testLabels = planted(test, 7);
        LinearProbe.Model model = LinearProbe.train(train, trainLabels, C, 1e-5, LinearProbe.Options.defaults(), 42);
        double accuracy = LinearProbe.evaluate(test, testLabels, model, 512).accuracy();
        System.out.printf("planted feature: test accuracy %.4f after %d steps%n", accuracy, model.steps());
        assertTrue(accuracy > 0.99, "accuracy " + accuracy);
    }

    @Test
    void scoresChanceOnRandomLabels() {
        Features train = gaussian(8000, 3), test = gaussian(4000, 4);
        Random r = new Random(5);
        int[] trainLabels = r.ints(8000, 0, C).toArray(), testLabels = r.ints(4000, 0, C).toArray();
        LinearProbe.Model model = LinearProbe.train(train, trainLabels, C, 1e-4, LinearProbe.Options.defaults(), 42);
        double accuracy = LinearProbe.evaluate(test, testLabels, model, 512).accuracy();
        System.out.printf("random labels: test accuracy %.4f (chance %.2f)%n", accuracy, 1.0 / C);
        // chance is 0.25; the standard error of 4,000 draws is 0.0068, so ±0.03 is over 4 standard errors
        assertEquals(0.25, accuracy, 0.03);
    }

    @Test
    void theSameSeedGivesTheSameProbeAndAnotherSeedAnother() {
        Features train = gaussian(3000, 6);
        int[] labels = planted(train, 8);
        LinearProbe.Options o = LinearProbe.Options.defaults().withMinSteps(300);
        LinearProbe.Model a = LinearProbe.train(train, labels, C, 1e-3, o, 11), b = LinearProbe.train(train, labels, C, 1e-3, o, 11);
        LinearProbe.Model c = LinearProbe.train(train, labels, C, 1e-3, o, 12);
        assertArrayEquals(a.weights(), b.weights());
        assertArrayEquals(a.bias(), b.bias());
        assertFalse(java.util.Arrays.equals(a.weights(), c.weights()));
    }

    @Test
    void unlabelledRowsAreNeitherTrainedOnNorCounted() {
        Features train = gaussian(4000, 9);
        int[] labels = planted(train, 10);
        int[] masked = labels.clone();
        for (int i = 0; i < masked.length; i += 3) masked[i] = -1;
        LinearProbe.Model model = LinearProbe.train(train, masked, C, 1e-4, LinearProbe.Options.defaults().withMinSteps(500), 1);
        Confusion confusion = LinearProbe.evaluate(train, masked, model, 1000);
        assertEquals(4000 - (4000 + 2) / 3, confusion.total());
    }
}
