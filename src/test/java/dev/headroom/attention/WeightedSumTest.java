package dev.headroom.attention;

import dev.headroom.blas.Blas;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.Arena;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The kernels' weighted sum, {@link Blas#sgemmInSmallBlocks}: out (β·out +) = P·V against a
 * double-precision product, for shapes that the small-matrix split cuts into row blocks (with a
 * short last block) and shapes it leaves as one call, with β = 0 and β = 1, and V as a strided
 * view of a wider buffer, as the kernels pass it.
 */
class WeightedSumTest {

    @ParameterizedTest(name = "m={0} kn={1} d={2} beta={3}")
    @CsvSource({
            "100, 512, 32, 0",   // blocks of 32 rows, the last of 4
            "100, 512, 32, 1",
            "37, 1024, 16, 1",   // blocks of 32 rows
            "9, 1024, 64, 0",    // blocks of 8 rows, the last of 1
            "256, 4096, 64, 0",  // 2 rows would fit: one call
            "1, 512, 32, 0",     // one row
            "7, 33, 5, 1"})      // fits whole: one call
    void matchesDoubleProduct(int m, int kn, int d, int beta) {
        try (Arena arena = TrackedArena.ofShared()) {
            Matrix p = Tensor.uniform(arena, 1, 1, m, kn).matrix();
            // Vᵀ rows d of a (3d, kn + 5) buffer: row stride kn + 5, as a head's rows in Qᵀ Kᵀ Vᵀ
            Matrix buffer = Tensor.uniform(arena, 2, 1, 3 * d, kn + 5).matrix();
            Matrix vT = buffer.rowRange(d, 2 * d).colRange(3, 3 + kn);
            Matrix out = Tensor.uniform(arena, 3, 1, m, d + 2).matrix().colRange(1, 1 + d);
            double[][] expected = new double[m][d], magnitude = new double[m][d];
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < d; j++) {
                    double s = beta * (double) out.get(i, j), a = Math.abs(s);
                    for (int k = 0; k < kn; k++) {
                        double t = (double) p.get(i, k) * vT.get(j, k);
                        s += t;
                        a += Math.abs(t);
                    }
                    expected[i][j] = s;
                    magnitude[i][j] = a;
                }
            }
            Blas.sgemmInSmallBlocks(1f, p, vT, true, beta, out);
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < d; j++) {
                    // a float sum of kn + 1 terms: rounding grows like √kn · 2⁻²⁴ · Σ|terms|
                    double tol = 4 * Math.sqrt(kn + 1) * 0x1p-24 * magnitude[i][j];
                    double err = Math.abs(out.get(i, j) - expected[i][j]);
                    assertTrue(err <= tol, "out[" + i + "][" + j + "] = " + out.get(i, j) + ", expected " + expected[i][j]
                            + " (m=" + m + ", kn=" + kn + ", d=" + d + ", beta=" + beta + ")");
                }
            }
        }
    }

    /** Blocks are either the whole product or at least 8 rows that each fit the small-matrix path. */
    @Test
    void smallPathRowsKeepTheirContract() {
        for (int m : new int[]{0, 1, 7, 8, 100, 256, 5000}) {
            for (int n : new int[]{1, 5, 32, 64}) {
                for (int k : new int[]{1, 33, 512, 1024, 4096}) {
                    int rows = Blas.smallPathRows(m, n, k);
                    String what = "m=" + m + " n=" + n + " k=" + k + ": " + rows + " rows";
                    if (rows != m) {
                        assertTrue(rows >= 8 && rows < m, what);
                        assertTrue((long) rows * n * k <= Blas.SMALL_PATH_MNK, what);
                    }
                }
            }
        }
    }
}
