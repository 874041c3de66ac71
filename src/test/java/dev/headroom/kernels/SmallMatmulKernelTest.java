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
 * sizes that are not multiples of the lane count or of the kernel's 2 × 4 blocks, with padded
 * leading dimensions, offsets, row-major and transposed outputs, bias and accumulation; nothing
 * outside the outputs is written.
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
            MemorySegment x = random(arena, rnd, xOff + m * ldx), w = random(arena, rnd, wOff + n * ldw);
            MemorySegment b = bias ? random(arena, rnd, n) : null;
            float[] start = new float[outSize];
            for (int i = 0; i < outSize; i++) start[i] = SENTINEL;
            for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) start[(int) (outOff + i * rowStride + j * colStride)] = (float) rnd.nextDouble(-1, 1);
            float[][] results = new float[2][];
            SmallMatmul[] kernels = {SmallMatmul.SCALAR, SmallMatmul.VECTOR};
            for (int q = 0; q < 2; q++) {
                MemorySegment out = arena.allocate((long) outSize * Float.BYTES);
                MemorySegment.copy(start, 0, out, F, 0, outSize);
                kernels[q].apply(x, xOff, ldx, m, k, w, wOff, ldw, n, b, accumulate, out, outOff, rowStride, colStride);
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
    void awkwardSizesStridesBiasAndAccumulation() {
        long seed = 0;
        for (int m : new int[]{1, 2, 3, 4, 5, 7, 8, 9}) {
            for (int n : new int[]{1, 2, 3, 17, 34}) {
                for (int k : new int[]{1, 3, 15, 16, 17, 65, 256, 257}) {
                    check(m, n, k, false, false, false, seed++);
                    check(m, n, k, true, true, false, seed++);
                    check(m, n, k, false, true, true, seed++);
                }
            }
        }
    }
}
