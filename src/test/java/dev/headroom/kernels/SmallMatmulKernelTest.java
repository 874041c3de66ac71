package dev.headroom.kernels;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The vector small-row product against its scalar twin and a double-precision dot product, at
 * sizes that are not multiples of the lane count or of the kernel's blocks (4 rows × a panel of 2
 * vectors, or 8 rows with 512-bit vectors), from W with padded rows packed at an offset,
 * row-major and transposed outputs, bias and accumulation; nothing outside the outputs is
 * written, and a row's result does not depend on the rows computed with it.
 */
class SmallMatmulKernelTest {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final float SENTINEL = -12345.5f;

    private static MemorySegment random(Arena arena, SplittableRandom rnd, int count) {
        MemorySegment s = arena.allocate((long) count * Float.BYTES);
        for (int i = 0; i < count; i++) s.setAtIndex(F, i, (float) rnd.nextDouble(-2, 2));
        return s;
    }

    private static void check(int m, int n, int k, boolean transposed, boolean bias, boolean accumulate, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        int ldx = k + 3, ldw = k + 5, xOff = 2, wOff = 7, outOff = 3;
        long rowStride = transposed ? 1 : n + 2, colStride = transposed ? m + 1 : 1;
        int outSize = (int) (outOff + (m - 1) * rowStride + (n - 1) * colStride + 1 + 4);
        try (Arena arena = Arena.ofConfined()) {
            // W (n, k) with rows ldw apart, packed at an offset
            MemorySegment x = random(arena, rnd, xOff + m * ldx), w = random(arena, rnd, wOff + n * ldw);
            MemorySegment packed = arena.allocate((SmallMatmul.packedFloats(n, k) + 5) * Float.BYTES);
            SmallMatmul.pack(w, wOff, ldw, n, k, packed, 5);
            MemorySegment b = bias ? random(arena, rnd, n) : null;
            float[] start = new float[outSize];
            for (int i = 0; i < outSize; i++) start[i] = SENTINEL;
            for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) start[(int) (outOff + i * rowStride + j * colStride)] = (float) rnd.nextDouble(-1, 1);
            float[][] results = new float[2][];
            SmallMatmul[] kernels = {SmallMatmul.SCALAR, SmallMatmul.VECTOR};
            for (int q = 0; q < 2; q++) {
                MemorySegment out = arena.allocate((long) outSize * Float.BYTES);
                MemorySegment.copy(start, 0, out, F, 0, outSize);
                kernels[q].apply(x, xOff, ldx, m, k, packed, 5, n, b, accumulate, out, outOff, rowStride, colStride);
                results[q] = out.toArray(F);
            }
            boolean[] isOutput = new boolean[outSize];
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) {
                    int at = (int) (outOff + i * rowStride + j * colStride);
                    isOutput[at] = true;
                    double ref = 0, magnitude = 0;
                    for (int c = 0; c < k; c++) {
                        double t = (double) x.getAtIndex(F, xOff + (long) i * ldx + c) * w.getAtIndex(F, wOff + (long) j * ldw + c);
                        ref += t;
                        magnitude += Math.abs(t);
                    }
                    if (bias) ref += b.getAtIndex(F, j);
                    if (accumulate) ref += start[at];
                    // a float sum of k products errs by at most about k·ε·Σ|terms| (plus the bias and accumulator adds)
                    double tol = (k + 3) * 0x1p-24 * (magnitude + 3) + 1e-7;
                    for (int q = 0; q < 2; q++) {
                        assertTrue(Math.abs(results[q][at] - ref) <= tol, kernels[q].name() + " (" + i + ", " + j + ") = " + results[q][at]
                                + ", double " + ref + " (m " + m + ", n " + n + ", k " + k + ", transposed " + transposed + ")");
                    }
                }
            }
            for (int a = 0; a < outSize; a++) {
                if (!isOutput[a]) {
                    for (int q = 0; q < 2; q++) assertEquals(SENTINEL, results[q][a], kernels[q].name() + " wrote outside the outputs at " + a);
                }
            }
        }
    }

    @Test
    void packingLaysOutPanels() {
        int P = SmallMatmul.panel(), n = P + 3, k = 5;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment w = arena.allocate((long) n * k * Float.BYTES), packed = arena.allocate(SmallMatmul.packedFloats(n, k) * Float.BYTES);
            for (int j = 0; j < n; j++) for (int c = 0; c < k; c++) w.setAtIndex(F, (long) j * k + c, 1000 * j + c);
            SmallMatmul.pack(w, 0, k, n, k, packed, 0);
            assertEquals(2L * k * P, SmallMatmul.packedFloats(n, k));
            assertEquals(1000f * (P + 2) + 4, packed.getAtIndex(F, SmallMatmul.panelOffset(P, k) + 4L * P + 2)); // W[P + 2, 4]
            assertEquals(0f, packed.getAtIndex(F, SmallMatmul.panelOffset(P, k) + 4L * P + 3));                   // padding
            assertEquals(1000f * 3 + 1, packed.getAtIndex(F, 1L * P + 3));                                      // W[3, 1]
        }
    }

    @Test
    void awkwardSizesStridesBiasAndAccumulation() {
        long seed = 0;
        for (int m : new int[]{1, 2, 3, 4, 5, 8, 9, 16, 21, 31, 32}) {
            for (int n : new int[]{1, 3, 17, 34, 47, 130}) {
                for (int k : new int[]{1, 15, 16, 17, 65, 257}) {
                    check(m, n, k, false, false, false, seed++);
                    check(m, n, k, true, true, false, seed++);
                    check(m, n, k, false, true, true, seed++);
                    check(m, n, k, true, false, true, seed++);
                }
            }
        }
    }

    @Test
    void aRowsResultDoesNotDependOnTheRowsBesideIt() {
        // 21 rows: blocks of eight and a padded tail with 512-bit vectors, blocks of four and a single row otherwise; each row
        // again alone and as the first of the product of the rows from it on (another place in its block), row-major with a
        // bias, and transposed onto values it adds to
        SplittableRandom rnd = new SplittableRandom(3);
        int m = 21, n = 75, k = 257;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment x = random(arena, rnd, m * k), w = random(arena, rnd, n * k), b = random(arena, rnd, n);
            MemorySegment start = random(arena, rnd, m * n);
            MemorySegment wt = arena.allocate(SmallMatmul.packedFloats(n, k) * Float.BYTES);
            SmallMatmul.pack(w, 0, k, n, k, wt, 0);
            for (boolean transposed : new boolean[]{false, true}) {
                MemorySegment bias = transposed ? null : b;
                long rowStride = transposed ? 1 : n, colStride = transposed ? m : 1;
                MemorySegment all = arena.allocate((long) m * n * Float.BYTES);
                all.copyFrom(start);
                SmallMatmul.VECTOR.apply(x, 0, k, m, k, wt, 0, n, bias, transposed, all, 0, rowStride, colStride);
                for (int i = 0; i < m; i++) {
                    for (int rows : new int[]{1, m - i}) {
                        MemorySegment part = arena.allocate((long) m * n * Float.BYTES);
                        part.copyFrom(start);
                        // rows i .. i + rows of x into the same places of the output as in the whole product
                        SmallMatmul.VECTOR.apply(x, (long) i * k, k, rows, k, wt, 0, n, bias, transposed, part, i * rowStride, rowStride,
                                colStride);
                        for (int j = 0; j < n; j++) {
                            long at = i * rowStride + j * colStride;
                            assertEquals(Float.floatToIntBits(all.getAtIndex(F, at)), Float.floatToIntBits(part.getAtIndex(F, at)),
                                    "row " + i + " of " + rows + ", output " + j + (transposed ? ", transposed, accumulated" : ""));
                        }
                    }
                }
            }
        }
    }
}
