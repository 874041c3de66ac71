package dev.headroom.blas;

import dev.headroom.blas.generated.cblas_h;
import dev.headroom.tensor.Matrix;

import java.lang.foreign.MemorySegment;

/**
 * The only door to native BLAS. Native code does no bounds checking, so every call here checks
 * shapes, leading dimensions, extents and liveness first and throws an exception that names
 * them; a wrong size becomes an {@link IllegalArgumentException}, never a crashed JVM.
 */
public final class Blas {
    private Blas() {}

    /**
     * The largest m·n·k for which OpenBLAS 0.3.21's SkylakeX-family sgemm (SkylakeX, Cooperlake,
     * SapphireRapids) takes its small-matrix path: the operands are read in place, with no
     * packing and no separate zeroing of C. Measured on this project's machine: 32 × 32 × 512 and
     * 16 × 32 × 1024 run there, 40 × 32 × 512 does not.
     */
    public static final long SMALL_PATH_MNK = 1L << 19;

    /**
     * Rows per call for an m×k by k×n product split into row blocks so that each call takes
     * OpenBLAS's small-matrix path (see {@link #SMALL_PATH_MNK}); {@code m} (one call) when the
     * core has no such path, when the whole product takes it anyway, or when blocks would be
     * under 8 rows. Worth it where a packed call would re-pack a large A for little work per
     * element: a head's weighted sum P·V, whose n is the head width.
     */
    public static int smallPathRows(int m, int n, int k) {
        if (!SmallPath.PRESENT || n <= 0 || k <= 0) return m;
        long rows = SMALL_PATH_MNK / ((long) n * k);
        return rows < 8 || rows >= m ? m : (int) rows;
    }

    /** Whether the loaded OpenBLAS has that path, by its core name (a holder: loading it loads OpenBLAS). */
    private static final class SmallPath {
        static final boolean PRESENT = hasSmallPath(OpenBlas.coreName().toLowerCase(java.util.Locale.ROOT));

        private static boolean hasSmallPath(String core) {
            return core.contains("skylakex") || core.contains("cooperlake") || core.contains("sapphirerapids");
        }
    }

    /**
     * {@code C = alpha · A · op(B) + beta · C} as {@link #sgemm}, in row blocks of
     * {@link #smallPathRows} rows of A and C: one call where OpenBLAS has no small-matrix path.
     */
    public static void sgemmInSmallBlocks(float alpha, Matrix a, Matrix b, boolean transB, float beta, Matrix c) {
        int m = a.rows(), rows = smallPathRows(m, transB ? b.rows() : b.cols(), a.cols());
        if (rows >= m) {
            sgemm(alpha, a, false, b, transB, beta, c);
            return;
        }
        if (c.rows() != m) {
            throw new IllegalArgumentException("sgemm shapes do not match: A has " + m + " rows, C has " + c.rows() + " (A: " + a + ", C: " + c + ")");
        }
        for (int r0 = 0; r0 < m; r0 += rows) {
            int r1 = Math.min(m, r0 + rows);
            sgemm(alpha, a.rowRange(r0, r1), false, b, transB, beta, c.rowRange(r0, r1));
        }
    }

    /**
     * {@code C = alpha · op(A) · op(B) + beta · C}, row-major, where op(X) is X or Xᵀ.
     * op(A) is m×k, op(B) is k×n and C is m×n.
     */
    public static void sgemm(float alpha, Matrix a, boolean transA, Matrix b, boolean transB, float beta, Matrix c) {
        int m = transA ? a.cols() : a.rows();
        int k = transA ? a.rows() : a.cols();
        int kb = transB ? b.cols() : b.rows();
        int n = transB ? b.rows() : b.cols();
        if (k != kb || c.rows() != m || c.cols() != n) {
            throw new IllegalArgumentException("sgemm shapes do not match: op(A) is " + m + "×" + k
                    + (transA ? " (A transposed: " : " (A: ") + a + "), op(B) is " + kb + "×" + n
                    + (transB ? " (B transposed: " : " (B: ") + b + "), C is " + c.rows() + "×" + c.cols());
        }
        checkNative("A", a.segment());
        checkNative("B", b.segment());
        checkNative("C", c.segment());
        if (m == 0 || n == 0) return;
        OpenBlas.load();
        cblas_h.cblas_sgemm(cblas_h.CblasRowMajor(),
                transA ? cblas_h.CblasTrans() : cblas_h.CblasNoTrans(),
                transB ? cblas_h.CblasTrans() : cblas_h.CblasNoTrans(),
                m, n, k, alpha,
                slice(a), a.ld(),
                slice(b), b.ld(),
                beta, slice(c), c.ld());
    }

    /**
     * The same product in raw CBLAS form, for callers that hold segments and offsets (in floats)
     * rather than {@link Matrix} views. Stored A is m×k (k×m when transposed), B is k×n (n×k), C is m×n.
     */
    public static void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                             MemorySegment a, long aOffset, int lda,
                             MemorySegment b, long bOffset, int ldb,
                             float beta, MemorySegment c, long cOffset, int ldc) {
        if (m < 0 || n < 0 || k < 0) {
            throw new IllegalArgumentException("sgemm sizes must be non-negative: m=" + m + ", n=" + n + ", k=" + k);
        }
        Matrix A = transA ? new Matrix(a, aOffset, k, m, lda) : new Matrix(a, aOffset, m, k, lda);
        Matrix B = transB ? new Matrix(b, bOffset, n, k, ldb) : new Matrix(b, bOffset, k, n, ldb);
        Matrix C = new Matrix(c, cOffset, m, n, ldc);
        sgemm(alpha, A, transA, B, transB, beta, C);
    }

    private static void checkNative(String name, MemorySegment s) {
        if (!s.isNative()) {
            throw new IllegalArgumentException("sgemm operand " + name + " must be an off-heap segment, got a heap segment " + s);
        }
        if (!s.scope().isAlive()) {
            throw new IllegalStateException("sgemm operand " + name + " belongs to an arena that is already closed");
        }
    }

    private static MemorySegment slice(Matrix m) {
        return m.segment().asSlice(m.offset() * Float.BYTES);
    }
}
