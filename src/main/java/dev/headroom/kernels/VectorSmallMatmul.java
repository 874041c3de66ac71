package dev.headroom.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * {@link SmallMatmul} on the Vector API. Rows of W are taken two at a time and rows of x four
 * (then two, then one) at a time, so a block keeps up to eight independent multiply-add chains in
 * registers (one chain would wait on each fma's latency) and reads each row of W once per block
 * of x. The accumulators are named variables, not an array, and the lanes are summed in place
 * with {@code reduceLanes} (no helper method): C2 keeps vectors in registers only then.
 * {@link Vectors#sumLanes}'s fixed order costs a store and a scalar loop per output, which took
 * most of the time of a 640 × 256 product with one row (20 µs against 10).
 */
final class VectorSmallMatmul implements SmallMatmul {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Override
    public void apply(MemorySegment x, long xOffset, int ldx, int m, int k, MemorySegment w, long wOffset, int ldw, int n,
                      MemorySegment bias, boolean accumulate, MemorySegment out, long outOffset, long rowStride, long colStride) {
        int j = 0;
        for (; j + 2 <= n; j += 2) {
            long w0 = wOffset + (long) j * ldw, w1 = w0 + ldw;
            int i = 0;
            for (; i + 4 <= m; i += 4) {
                long x0 = xOffset + (long) i * ldx;
                block2x4(x, x0, ldx, k, w, w0, w1, bias, j, accumulate, out, outOffset + i * rowStride, rowStride, colStride);
            }
            if (i + 2 <= m) {
                long x0 = xOffset + (long) i * ldx;
                block2x2(x, x0, ldx, k, w, w0, w1, bias, j, accumulate, out, outOffset + i * rowStride, rowStride, colStride);
                i += 2;
            }
            if (i < m) {
                long x0 = xOffset + (long) i * ldx;
                block2x1(x, x0, k, w, w0, w1, bias, j, accumulate, out, outOffset + i * rowStride, colStride);
            }
        }
        for (; j < n; j++) {
            long w0 = wOffset + (long) j * ldw;
            for (int i = 0; i < m; i++) {
                long at = outOffset + i * rowStride + j * colStride;
                float s = dot(x, xOffset + (long) i * ldx, w, w0, k) + (bias == null ? 0f : bias.getAtIndex(F, j));
                out.setAtIndex(F, at, accumulate ? out.getAtIndex(F, at) + s : s);
            }
        }
    }

    /** Two rows of W (w0, w1: outputs j, j+1) against four rows of x. */
    private static void block2x4(MemorySegment x, long x0, int ldx, int k, MemorySegment w, long w0, long w1, MemorySegment bias,
                                 int j, boolean accumulate, MemorySegment out, long o0, long rowStride, long colStride) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(k);
        long x1 = x0 + ldx, x2 = x1 + ldx, x3 = x2 + ldx;
        FloatVector a00 = FloatVector.zero(SPECIES), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        int c = 0;
        for (; c < bound; c += lanes) {
            FloatVector v0 = load(w, w0 + c), v1 = load(w, w1 + c);
            FloatVector y0 = load(x, x0 + c), y1 = load(x, x1 + c), y2 = load(x, x2 + c), y3 = load(x, x3 + c);
            a00 = v0.fma(y0, a00);
            a01 = v0.fma(y1, a01);
            a02 = v0.fma(y2, a02);
            a03 = v0.fma(y3, a03);
            a10 = v1.fma(y0, a10);
            a11 = v1.fma(y1, a11);
            a12 = v1.fma(y2, a12);
            a13 = v1.fma(y3, a13);
        }
        float b0 = bias == null ? 0f : bias.getAtIndex(F, j), b1 = bias == null ? 0f : bias.getAtIndex(F, j + 1);
        long c0 = j * colStride, c1 = c0 + colStride;
        store(out, o0 + c0, finish(a00.reduceLanes(VectorOperators.ADD), x, x0, w, w0, c, k) + b0, accumulate);
        store(out, o0 + rowStride + c0, finish(a01.reduceLanes(VectorOperators.ADD), x, x1, w, w0, c, k) + b0, accumulate);
        store(out, o0 + 2 * rowStride + c0, finish(a02.reduceLanes(VectorOperators.ADD), x, x2, w, w0, c, k) + b0, accumulate);
        store(out, o0 + 3 * rowStride + c0, finish(a03.reduceLanes(VectorOperators.ADD), x, x3, w, w0, c, k) + b0, accumulate);
        store(out, o0 + c1, finish(a10.reduceLanes(VectorOperators.ADD), x, x0, w, w1, c, k) + b1, accumulate);
        store(out, o0 + rowStride + c1, finish(a11.reduceLanes(VectorOperators.ADD), x, x1, w, w1, c, k) + b1, accumulate);
        store(out, o0 + 2 * rowStride + c1, finish(a12.reduceLanes(VectorOperators.ADD), x, x2, w, w1, c, k) + b1, accumulate);
        store(out, o0 + 3 * rowStride + c1, finish(a13.reduceLanes(VectorOperators.ADD), x, x3, w, w1, c, k) + b1, accumulate);
    }

    /** Two rows of W against two rows of x. */
    private static void block2x2(MemorySegment x, long x0, int ldx, int k, MemorySegment w, long w0, long w1, MemorySegment bias,
                                 int j, boolean accumulate, MemorySegment out, long o0, long rowStride, long colStride) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(k);
        long x1 = x0 + ldx;
        FloatVector a00 = FloatVector.zero(SPECIES), a01 = a00, a10 = a00, a11 = a00;
        int c = 0;
        for (; c < bound; c += lanes) {
            FloatVector v0 = load(w, w0 + c), v1 = load(w, w1 + c), y0 = load(x, x0 + c), y1 = load(x, x1 + c);
            a00 = v0.fma(y0, a00);
            a01 = v0.fma(y1, a01);
            a10 = v1.fma(y0, a10);
            a11 = v1.fma(y1, a11);
        }
        float b0 = bias == null ? 0f : bias.getAtIndex(F, j), b1 = bias == null ? 0f : bias.getAtIndex(F, j + 1);
        long c0 = j * colStride, c1 = c0 + colStride;
        store(out, o0 + c0, finish(a00.reduceLanes(VectorOperators.ADD), x, x0, w, w0, c, k) + b0, accumulate);
        store(out, o0 + rowStride + c0, finish(a01.reduceLanes(VectorOperators.ADD), x, x1, w, w0, c, k) + b0, accumulate);
        store(out, o0 + c1, finish(a10.reduceLanes(VectorOperators.ADD), x, x0, w, w1, c, k) + b1, accumulate);
        store(out, o0 + rowStride + c1, finish(a11.reduceLanes(VectorOperators.ADD), x, x1, w, w1, c, k) + b1, accumulate);
    }

    /** Two rows of W against one row of x. */
    private static void block2x1(MemorySegment x, long x0, int k, MemorySegment w, long w0, long w1, MemorySegment bias, int j,
                                 boolean accumulate, MemorySegment out, long o0, long colStride) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(k);
        FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0;
        int c = 0;
        for (; c < bound; c += lanes) {
            FloatVector y = load(x, x0 + c);
            a0 = load(w, w0 + c).fma(y, a0);
            a1 = load(w, w1 + c).fma(y, a1);
        }
        float b0 = bias == null ? 0f : bias.getAtIndex(F, j), b1 = bias == null ? 0f : bias.getAtIndex(F, j + 1);
        store(out, o0 + j * colStride, finish(a0.reduceLanes(VectorOperators.ADD), x, x0, w, w0, c, k) + b0, accumulate);
        store(out, o0 + (j + 1) * colStride, finish(a1.reduceLanes(VectorOperators.ADD), x, x0, w, w1, c, k) + b1, accumulate);
    }

    /** One output: the same chain as the blocks compute, for a last odd row of W. */
    private static float dot(MemorySegment x, long x0, MemorySegment w, long w0, int k) {
        int lanes = SPECIES.length(), bound = SPECIES.loopBound(k);
        FloatVector a = FloatVector.zero(SPECIES);
        int c = 0;
        for (; c < bound; c += lanes) a = load(w, w0 + c).fma(load(x, x0 + c), a);
        return finish(a.reduceLanes(jdk.incubator.vector.VectorOperators.ADD), x, x0, w, w0, c, k);
    }

    /** The lanes' sum plus the scalar tail [c, k), in index order. */
    private static float finish(float sum, MemorySegment x, long x0, MemorySegment w, long w0, int c, int k) {
        for (; c < k; c++) sum = Math.fma(x.getAtIndex(F, x0 + c), w.getAtIndex(F, w0 + c), sum);
        return sum;
    }

    private static void store(MemorySegment out, long at, float value, boolean accumulate) {
        out.setAtIndex(F, at, accumulate ? out.getAtIndex(F, at) + value : value);
    }

    private static FloatVector load(MemorySegment s, long floatIndex) {
        return FloatVector.fromMemorySegment(SPECIES, s, floatIndex * Float.BYTES, ORDER);
    }

    @Override
    public String name() {
        return "vector(" + SPECIES.vectorBitSize() + "-bit)";
    }
}
