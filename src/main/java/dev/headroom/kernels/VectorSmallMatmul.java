package dev.headroom.kernels;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * {@link SmallMatmul} on the Vector API, one panel at a time (so that it stays in the first-level
 * cache while every block of rows reads it): for each block of eight rows of x (with 512-bit
 * vectors, whose 32 registers hold sixteen accumulators) or four (eight accumulators: room on
 * 256-bit machines' sixteen registers), the accumulators (rows × the panel's two vectors) stay
 * in registers while the panel is read in order (named variables, not an array: C2 keeps vectors
 * in registers only then). With 512-bit vectors every product of more than four rows runs in
 * blocks of eight, the last one padded with zero rows; otherwise blocks of four, then single rows.
 * A partial last panel and non-contiguous outputs are stored lane by lane.
 *
 * <p>Products of the tiny decoder's decode step, every weight of the step in turn, one thread
 * ({@code DecodeStepBoundBenchmark}, AMD EPYC Zen 5, OpenBLAS 0.3.21's Cooperlake kernel): 32
 * rows 1.12-1.22 ms here against sgemm's 2.00 (148-161 against 90 GFLOP/s), 8 rows 0.35 against
 * 1.15, 64 rows 2.1-2.9 against 2.8 (noisy; {@code java -jar bench/target/benchmarks.jar
 * DecodeStepBoundBenchmark -p rows=8,32,64 -p threads=1}); before the panels went outer, each
 * block of rows re-read all of W and 32 rows took longer here than in sgemm.
 */
final class VectorSmallMatmul implements SmallMatmul {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    /**
     * Panels outer: a panel (k × P floats, 32 KB for k = 256 at 512 bits) stays in the core's
     * first-level cache while every block of rows reads it, so W comes from memory once per call;
     * with the rows outer, each block re-read all of W.
     *
     * <p>More than four rows with 512-bit vectors run in blocks of eight rows, the last one padded
     * with zero rows whose sums are not written (up to four rows, fourRows and oneRow do as much
     * work). Fewer rows in a block of their own cost more per row: one row's two chains, each
     * waiting on its previous multiply-add, leave the FMA units mostly idle, and four rows' eight
     * chains half of them (steps of 33-63 rows in the server, then in this kernel, spent a third of
     * their product time in the rows past the last eight). The rows of x are copied to this
     * thread's array first, so that the kernels' reads of them are plain array reads: with
     * memory-segment reads the eight-row kernel's compiled form was larger, and the larger a Vector
     * API method, the likelier C2 falls back to the API's Java implementation (FloatSpecies.rvOp in
     * profiles; 32 rows of the step then took 7-11 ms instead of 1.2); and the one- and four-row
     * kernels, which are bound by reading W when it comes from memory, read it at well under the
     * streaming rate in that form (one row at half of it, four rows at about 0.4: {@link #oneRow},
     * {@link #fourRows}).
     */
    @Override
    public void apply(MemorySegment x, long xOffset, int ldx, int m, int k, MemorySegment packed, long packedOffset, int n,
                      MemorySegment bias, boolean accumulate, MemorySegment out, long outOffset, long rowStride, long colStride) {
        int P = 2 * SPECIES.length();
        boolean eights = EIGHT_ROWS && m > 4;
        float[] xs = rows(x, xOffset, ldx, m, k, eights ? (m + 7) / 8 * 8 : m), acc = ACCUMULATORS.get();
        for (int j = 0; j < n; j += P) {
            long panel = packedOffset + (long) (j / P) * k * P;
            int valid = Math.min(P, n - j), i0 = 0;
            if (eights) {
                for (; i0 < m; i0 += 8) {
                    eightRows(xs, i0 * k, k, packed, panel, acc);
                    writeRows(acc, Math.min(8, m - i0), valid, bias, j, accumulate, out, outOffset + i0 * rowStride, rowStride, colStride);
                }
                continue;
            }
            for (; i0 + 4 <= m; i0 += 4) {
                fourRows(xs, i0 * k, k, packed, panel, acc);
                writeRows(acc, 4, valid, bias, j, accumulate, out, outOffset + i0 * rowStride, rowStride, colStride);
            }
            for (; i0 < m; i0++) {
                oneRow(xs, i0 * k, k, packed, panel, acc);
                writeRows(acc, 1, valid, bias, j, accumulate, out, outOffset + i0 * rowStride, rowStride, colStride);
            }
        }
    }

    /**
     * Per thread, grown as needed and never shrunk (freed with the thread): the rows of x, row-major
     * (row i from i·k), then zero rows up to the eight-row kernel's last block. On the heap, not off-heap: C2 compiles plain array
     * reads into a kernel small enough to keep its vectors (see {@link #apply}).
     */
    private static final ThreadLocal<float[][]> ROWS = ThreadLocal.withInitial(() -> new float[][]{new float[0]});

    /** Rows [0, m) of x, k floats each, into this thread's array (row i from i·k), then zero rows up to {@code padded} rows. */
    private static float[] rows(MemorySegment x, long xOffset, int ldx, int m, int k, int padded) {
        float[][] holder = ROWS.get();
        int size = Math.multiplyExact(padded, k); // an array holds at most 2³¹ − 1 floats
        if (holder[0].length < size) holder[0] = new float[size];
        float[] xs = holder[0];
        for (int i = 0; i < m; i++) MemorySegment.copy(x, F, (xOffset + (long) i * ldx) * Float.BYTES, xs, i * k, k);
        java.util.Arrays.fill(xs, m * k, size, 0f);
        return xs;
    }

    /** Per thread: (8, P) sums of one {@link #eightRows}, {@link #fourRows} or {@link #oneRow} call, row r from r·P (freed with the thread). */
    private static final ThreadLocal<float[]> ACCUMULATORS = ThreadLocal.withInitial(() -> new float[16 * SPECIES.length()]);

    /** Eight rows at a time (sixteen accumulators) only with 512-bit vectors, which come with 32 registers. */
    private static final boolean EIGHT_ROWS = SPECIES.vectorBitSize() >= 512;

    /**
     * Rows x0 … x0 + 7·k of {@code xs} against the panel at {@code base}: sixteen accumulators, two loads of the
     * panel and eight broadcasts for sixteen multiply-adds per input c (four rows give eight), the
     * same chain per output as {@link #fourRows}.
     */
    private static void eightRows(float[] xs, int x0, int k, MemorySegment packed, long base, float[] acc) {
        int L = SPECIES.length(), P = 2 * L;
        int x1 = x0 + k, x2 = x1 + k, x3 = x2 + k, x4 = x3 + k, x5 = x4 + k, x6 = x5 + k, x7 = x6 + k;
        FloatVector a00 = FloatVector.zero(SPECIES), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        FloatVector a40 = a00, a41 = a00, a50 = a00, a51 = a00, a60 = a00, a61 = a00, a70 = a00, a71 = a00;
        for (int c = 0; c < k; c++) {
            long w = base + (long) c * P;
            FloatVector v0 = load(packed, w), v1 = load(packed, w + L);
            FloatVector b = FloatVector.broadcast(SPECIES, xs[x0 + c]);
            a00 = v0.fma(b, a00);
            a01 = v1.fma(b, a01);
            b = FloatVector.broadcast(SPECIES, xs[x1 + c]);
            a10 = v0.fma(b, a10);
            a11 = v1.fma(b, a11);
            b = FloatVector.broadcast(SPECIES, xs[x2 + c]);
            a20 = v0.fma(b, a20);
            a21 = v1.fma(b, a21);
            b = FloatVector.broadcast(SPECIES, xs[x3 + c]);
            a30 = v0.fma(b, a30);
            a31 = v1.fma(b, a31);
            b = FloatVector.broadcast(SPECIES, xs[x4 + c]);
            a40 = v0.fma(b, a40);
            a41 = v1.fma(b, a41);
            b = FloatVector.broadcast(SPECIES, xs[x5 + c]);
            a50 = v0.fma(b, a50);
            a51 = v1.fma(b, a51);
            b = FloatVector.broadcast(SPECIES, xs[x6 + c]);
            a60 = v0.fma(b, a60);
            a61 = v1.fma(b, a61);
            b = FloatVector.broadcast(SPECIES, xs[x7 + c]);
            a70 = v0.fma(b, a70);
            a71 = v1.fma(b, a71);
        }
        // to the array first: with eight writes inlined here the method was too large for C2, which fell back to the
        // Vector API's Java implementation (FloatSpecies.rvOp in profiles; 32 rows of the step took 7-11 ms instead of 1.2)
        a00.intoArray(acc, 0);
        a01.intoArray(acc, L);
        a10.intoArray(acc, P);
        a11.intoArray(acc, P + L);
        a20.intoArray(acc, 2 * P);
        a21.intoArray(acc, 2 * P + L);
        a30.intoArray(acc, 3 * P);
        a31.intoArray(acc, 3 * P + L);
        a40.intoArray(acc, 4 * P);
        a41.intoArray(acc, 4 * P + L);
        a50.intoArray(acc, 5 * P);
        a51.intoArray(acc, 5 * P + L);
        a60.intoArray(acc, 6 * P);
        a61.intoArray(acc, 6 * P + L);
        a70.intoArray(acc, 7 * P);
        a71.intoArray(acc, 7 * P + L);
    }

    /**
     * Outputs [j, j + valid) of {@code rows} rows from the sums a kernel left in {@code acc} (row r's from r·P), at
     * o0 + r·rowStride + (j + l)·colStride: plus the bias, then stored or added; whole vectors when the panel is complete
     * and contiguous, one float at a time otherwise (the sums are already in an array). No vector is passed to or
     * returned from a method here: a vector argument of a call C2 does not inline is boxed, and a separate {@code
     * write(FloatVector, FloatVector, ...)} was not inlined: a 32-row decode step of the tiny decoder allocated 4.3 MB
     * (one of batch 1, 124 kB), young collections of 6 ms every second or so in the server (JMH -prof gc, JFR).
     */
    private static void writeRows(float[] acc, int rows, int valid, MemorySegment bias, int j, boolean accumulate, MemorySegment out,
                                  long o0, long rowStride, long colStride) {
        int L = SPECIES.length(), P = 2 * L;
        if (valid == P && colStride == 1) {
            for (int r = 0; r < rows; r++) {
                FloatVector a0 = FloatVector.fromArray(SPECIES, acc, r * P), a1 = FloatVector.fromArray(SPECIES, acc, r * P + L);
                long row = o0 + r * rowStride;
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
            }
            return;
        }
        for (int r = 0; r < rows; r++) {
            long row = o0 + r * rowStride;
            for (int l = 0; l < valid; l++) {
                float v = bias == null ? acc[r * P + l] : acc[r * P + l] + bias.getAtIndex(F, j + l); // as the vector branch: −0 stays −0
                long at = row + (j + l) * colStride;
                out.setAtIndex(F, at, accumulate ? out.getAtIndex(F, at) + v : v);
            }
        }
    }

    /**
     * Rows x0 … x0 + 3·k of {@code xs} against the panel at {@code base}, sums to {@code acc} as {@link #eightRows} leaves
     * them: eight accumulators. A method of its own, without branches on the row count in its loop: C2 keeps
     * the vectors in registers only while a method stays small (one method with the row count
     * tested inside the loop ran a decode of the tiny model at batch 8 in 430-540 ms in one JVM and
     * 240-260 in another). The loop walks the panel by its byte offset, as {@link #oneRow} does and
     * for the same reason: four rows of a step of SmolLM-135M's shape on one thread took
     * 47-54 ms with the panel indexed by c and x read from its segment, 18.3-19.0 in this form
     * (about the one-row step's time: bound by reading W), the tiny decoder's 387-439 µs, 258-270
     * ({@code DecodeStepBoundBenchmark.packedOneThread -p rows=4 -p threads=1}, two alternating
     * pairs of JVMs, AMD EPYC Zen 4, a noisy phase); with 256-bit vectors eight rows (two blocks of
     * four, {@code -p rows=8 -Dheadroom.vector.bits=256}, one run each) 62.5 and 0.87 ms, now 41.9
     * and 0.58 ({@code docs/results/serve-smol/four-rows-ab/}).
     */
    private static void fourRows(float[] xs, int x0, int k, MemorySegment packed, long base, float[] acc) {
        int L = SPECIES.length(), P = 2 * L, V = SPECIES.vectorByteSize();
        int x1 = x0 + k, x2 = x1 + k, x3 = x2 + k;
        FloatVector a00 = FloatVector.zero(SPECIES), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        long end = (base + (long) k * P) * Float.BYTES;
        int c = 0;
        for (long at = base * Float.BYTES; at < end; at += 2L * V, c++) {
            FloatVector v0 = FloatVector.fromMemorySegment(SPECIES, packed, at, ORDER), v1 = FloatVector.fromMemorySegment(SPECIES, packed, at + V, ORDER);
            FloatVector b0 = FloatVector.broadcast(SPECIES, xs[x0 + c]);
            FloatVector b1 = FloatVector.broadcast(SPECIES, xs[x1 + c]);
            FloatVector b2 = FloatVector.broadcast(SPECIES, xs[x2 + c]);
            FloatVector b3 = FloatVector.broadcast(SPECIES, xs[x3 + c]);
            a00 = v0.fma(b0, a00);
            a01 = v1.fma(b0, a01);
            a10 = v0.fma(b1, a10);
            a11 = v1.fma(b1, a11);
            a20 = v0.fma(b2, a20);
            a21 = v1.fma(b2, a21);
            a30 = v0.fma(b3, a30);
            a31 = v1.fma(b3, a31);
        }
        a00.intoArray(acc, 0);
        a01.intoArray(acc, L);
        a10.intoArray(acc, P);
        a11.intoArray(acc, P + L);
        a20.intoArray(acc, 2 * P);
        a21.intoArray(acc, 2 * P + L);
        a30.intoArray(acc, 3 * P);
        a31.intoArray(acc, 3 * P + L);
    }

    /**
     * One row, x0 … x0 + k − 1 of {@code xs}, against one panel: the same chain per output as
     * {@link #fourRows}, so a row's result does not depend on its block. A single stream's decode
     * step runs here, bound by reading W from memory: the loop walks the panel by its byte offset,
     * two steps of c a turn, and reads x from an array. In the form of the other kernels (offset
     * c·P from the loop's index, x read from its segment) C2's code read W at half the rate of a
     * plain streaming sum: on one thread (AMD EPYC Zen 4, {@code DecodeStepBoundBenchmark
     * .packedOneThread -p rows=1 -p threads=1}, alternating JVMs, {@code docs/results/serve-smol/one-row-ab/})
     * the products of a step of SmolLM-135M's shape (425 MB, {@code -p config=docs/results/serve-smol/config.json})
     * took 33.3 ms (12.8 GB/s), now 15.9-16.9 (25-27 GB/s, the thread's streaming read rate); the
     * tiny decoder's (11 MB, mostly cached) 162-172 µs, now 157-170.
     */
    private static void oneRow(float[] xs, int x0, int k, MemorySegment packed, long base, float[] acc) {
        int L = SPECIES.length(), V = SPECIES.vectorByteSize();
        FloatVector a0 = FloatVector.zero(SPECIES), a1 = a0;
        long at = base * Float.BYTES, end = (base + (long) k * 2 * L) * Float.BYTES, pairs = at + (long) (k & ~1) * 2 * V;
        int c = x0;
        for (; at < pairs; at += 4L * V, c += 2) { // two steps of c a turn: the same chains, in the same order
            FloatVector b = FloatVector.broadcast(SPECIES, xs[c]);
            a0 = FloatVector.fromMemorySegment(SPECIES, packed, at, ORDER).fma(b, a0);
            a1 = FloatVector.fromMemorySegment(SPECIES, packed, at + V, ORDER).fma(b, a1);
            b = FloatVector.broadcast(SPECIES, xs[c + 1]);
            a0 = FloatVector.fromMemorySegment(SPECIES, packed, at + 2L * V, ORDER).fma(b, a0);
            a1 = FloatVector.fromMemorySegment(SPECIES, packed, at + 3L * V, ORDER).fma(b, a1);
        }
        if (at < end) {
            FloatVector b = FloatVector.broadcast(SPECIES, xs[c]);
            a0 = FloatVector.fromMemorySegment(SPECIES, packed, at, ORDER).fma(b, a0);
            a1 = FloatVector.fromMemorySegment(SPECIES, packed, at + V, ORDER).fma(b, a1);
        }
        a0.intoArray(acc, 0);
        a1.intoArray(acc, L);
    }

    private static FloatVector load(MemorySegment s, long floatIndex) {
        return FloatVector.fromMemorySegment(SPECIES, s, floatIndex * Float.BYTES, ORDER);
    }

    @Override
    public String name() {
        return "vector(" + SPECIES.vectorBitSize() + "-bit)";
    }
}
