package dev.headroom.kernels;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * {@link SmallMatmul} on the Vector API: for each block of four rows of x and each panel, eight
 * accumulators (four rows × the panel's two vectors) stay in registers while the panel is read
 * in order (named variables, not an array: C2 keeps vectors in registers only then; eight leave
 * room on 256-bit machines' sixteen registers); the rows left over (m mod 4) one at a time. A
 * partial last panel and non-contiguous outputs are stored lane by lane.
 */
final class VectorSmallMatmul implements SmallMatmul {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Override
    public void apply(MemorySegment x, long xOffset, int ldx, int m, int k, MemorySegment packed, long packedOffset, int n,
                      MemorySegment bias, boolean accumulate, MemorySegment out, long outOffset, long rowStride, long colStride) {
        int P = 2 * SPECIES.length(), i0 = 0;
        for (; i0 + 4 <= m; i0 += 4) {
            long x0 = xOffset + (long) i0 * ldx, o0 = outOffset + i0 * rowStride;
            for (int j = 0; j < n; j += P) {
                fourRows(x, x0, ldx, k, packed, packedOffset + (long) (j / P) * k * P, Math.min(P, n - j), bias, j, accumulate,
                        out, o0, rowStride, colStride);
            }
        }
        for (; i0 < m; i0++) {
            long x0 = xOffset + (long) i0 * ldx, o0 = outOffset + i0 * rowStride;
            for (int j = 0; j < n; j += P) {
                oneRow(x, x0, k, packed, packedOffset + (long) (j / P) * k * P, Math.min(P, n - j), bias, j, accumulate, out, o0,
                        colStride);
            }
        }
    }

    /**
     * Rows x0 … x0 + 3·ldx against the panel at {@code base} (outputs j … j + valid): eight
     * accumulators. A method of its own, without branches on the row count in its loop: C2 keeps
     * the vectors in registers only while a method stays small (one method with the row count
     * tested inside the loop ran a decode of the tiny model at batch 8 in 430-540 ms in one JVM and
     * 240-260 in another).
     */
    private static void fourRows(MemorySegment x, long x0, int ldx, int k, MemorySegment packed, long base, int valid, MemorySegment bias,
                                 int j, boolean accumulate, MemorySegment out, long o0, long rowStride, long colStride) {
        int L = SPECIES.length(), P = 2 * L;
        long x1 = x0 + ldx, x2 = x1 + ldx, x3 = x2 + ldx;
        FloatVector a00 = FloatVector.zero(SPECIES), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        for (int c = 0; c < k; c++) {
            long w = base + (long) c * P;
            FloatVector v0 = load(packed, w), v1 = load(packed, w + L);
            FloatVector b0 = FloatVector.broadcast(SPECIES, x.getAtIndex(F, x0 + c));
            FloatVector b1 = FloatVector.broadcast(SPECIES, x.getAtIndex(F, x1 + c));
            FloatVector b2 = FloatVector.broadcast(SPECIES, x.getAtIndex(F, x2 + c));
            FloatVector b3 = FloatVector.broadcast(SPECIES, x.getAtIndex(F, x3 + c));
            a00 = v0.fma(b0, a00);
            a01 = v1.fma(b0, a01);
            a10 = v0.fma(b1, a10);
            a11 = v1.fma(b1, a11);
            a20 = v0.fma(b2, a20);
            a21 = v1.fma(b2, a21);
            a30 = v0.fma(b3, a30);
            a31 = v1.fma(b3, a31);
        }
        write(a00, a01, valid, bias, j, accumulate, out, o0, colStride);
        write(a10, a11, valid, bias, j, accumulate, out, o0 + rowStride, colStride);
        write(a20, a21, valid, bias, j, accumulate, out, o0 + 2 * rowStride, colStride);
        write(a30, a31, valid, bias, j, accumulate, out, o0 + 3 * rowStride, colStride);
    }

    /** One row against one panel: the same chain per output as {@link #fourRows}, so a row's result does not depend on its block. */
    private static void oneRow(MemorySegment x, long x0, int k, MemorySegment packed, long base, int valid, MemorySegment bias, int j,
                               boolean accumulate, MemorySegment out, long o0, long colStride) {
        int L = SPECIES.length(), P = 2 * L;
        FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0;
        for (int c = 0; c < k; c++) {
            long w = base + (long) c * P;
            FloatVector b = FloatVector.broadcast(SPECIES, x.getAtIndex(F, x0 + c));
            a0 = load(packed, w).fma(b, a0);
            a1 = load(packed, w + L).fma(b, a1);
        }
        write(a0, a1, valid, bias, j, accumulate, out, o0, colStride);
    }

    /**
     * Outputs [j, j + valid) of one row, from the panel's two accumulators, at {@code row} + j·colStride:
     * plus the bias, then stored or added; whole vectors when the panel is complete and contiguous.
     */
    private static void write(FloatVector a0, FloatVector a1, int valid, MemorySegment bias, int j, boolean accumulate,
                              MemorySegment out, long row, long colStride) {
        int L = SPECIES.length();
        if (valid == 2 * L && colStride == 1) {
            if (bias != null) {
                a0 = a0.add(load(bias, j));
                a1 = a1.add(load(bias, j + L));
            }
            if (accumulate) {
                a0 = a0.add(load(out, row + j));
                a1 = a1.add(load(out, row + j + L));
            }
            a0.intoMemorySegment(out, (row + j) * Float.BYTES, ORDER);
            a1.intoMemorySegment(out, (row + j + L) * Float.BYTES, ORDER);
            return;
        }
        float[] lanes = new float[2 * L];
        a0.intoArray(lanes, 0);
        a1.intoArray(lanes, L);
        for (int l = 0; l < valid; l++) {
            float v = lanes[l] + (bias == null ? 0f : bias.getAtIndex(F, j + l));
            long at = row + (j + l) * colStride;
            out.setAtIndex(F, at, accumulate ? out.getAtIndex(F, at) + v : v);
        }
    }

    private static FloatVector load(MemorySegment s, long floatIndex) {
        return FloatVector.fromMemorySegment(SPECIES, s, floatIndex * Float.BYTES, ORDER);
    }

    @Override
    public String name() {
        return "vector(" + SPECIES.vectorBitSize() + "-bit)";
    }
}
