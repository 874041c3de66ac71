package dev.headroom.attention;

import dev.headroom.tensor.Matrix;
import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicReferenceArray;

import static dev.headroom.kernels.Vectors.ORDER;
import static dev.headroom.kernels.Vectors.SPECIES;

/**
 * Rotary position embedding (RoPE, Su et al. 2021), applied to Q and K before attention (and
 * before K is cached): in each head, feature pair (a_i, b_i) of the first {@code rotaryDims}
 * features turns by the angle p·θ^(−2i/R) at position p, i &lt; R/2:
 * <pre>
 *   a' = a·cos − b·sin,   b' = b·cos + a·sin
 * </pre>
 * so that q_p · k_j depends on p − j only. Features past R are left alone (partial rotary, as
 * GPT-NeoX's {@code rotary_pct}). Two layouts pair the features differently:
 * <ul>
 *   <li>{@link Layout#PAIRS}: (2i, 2i+1), adjacent features, as in Meta's Llama code and
 *       llama2.c;</li>
 *   <li>{@link Layout#HALVES}: (i, i + R/2), first half with second half, as Hugging Face's
 *       {@code rotate_half} (their Llama checkpoints are permuted to this layout).</li>
 * </ul>
 * Angles are computed in double precision (p·θ^(−2i/R) loses nothing at long positions), then
 * rounded to float. The vector rotation and its scalar twin {@link #rotateScalar} do the same
 * float arithmetic.
 *
 * <p>The cos and sin of positions below {@value #TABLE_POSITIONS} are computed once and kept (as
 * Hugging Face's and vLLM's rotary layers keep a cos/sin cache): a decode step turns the queries
 * and keys of every layer at the same few positions, and computing 2·(R/2) sines and cosines per
 * token per layer again made RoPE 3.4 % of a profiled 32-row {@code DecoderBenchmark} (1.4 % with
 * the table; docs/results/serve-bench-zen4-2/rope-profile.txt). The table is filled in
 * chunks of {@value #TABLE_CHUNK} positions as they are first used, so it holds (R/2)·8 bytes per
 * position up to the furthest position met; its values are the same expression's, bit for bit.
 * One instance serves every layer of a model.
 */
public final class RotaryEmbedding {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    /** Which features of a head rotate together. */
    public enum Layout {
        /** (2i, 2i + 1): Meta's reference Llama code, llama2.c. */
        PAIRS,
        /** (i, i + R/2): Hugging Face's {@code rotate_half}. */
        HALVES
    }

    /** Where a column (token) of a features × tokens matrix sits. */
    @FunctionalInterface
    public interface ColumnPositions {
        long of(int column);
    }

    private final double theta;
    private final int rotaryDims;
    private final Layout layout;
    /** θ^(−2i/R) for i < R/2. */
    private final double[] inverseFrequency;

    /** Positions [0, TABLE_POSITIONS) have their cos and sin kept once computed. */
    static final int TABLE_POSITIONS = 8192;
    /** Positions per chunk of the table, computed together when one of them is first used. */
    static final int TABLE_CHUNK = 256;
    /**
     * Chunk k: (TABLE_CHUNK, R/2, 2) floats, the (float) cos and sin of p·θ^(−2i/R) for positions
     * p in [k·TABLE_CHUNK, (k+1)·TABLE_CHUNK), position-major, then pair i, then cos, sin; null until
     * first used. Two threads may compute the same chunk at once: the values are the same, and the
     * first stored is kept.
     */
    private final AtomicReferenceArray<float[]> table = new AtomicReferenceArray<>(TABLE_POSITIONS / TABLE_CHUNK);

    public RotaryEmbedding(double theta, int rotaryDims, Layout layout) {
        if (!(theta > 1) || !Double.isFinite(theta)) throw new IllegalArgumentException("RoPE base θ must be finite and > 1, got " + theta);
        if (rotaryDims < 2 || rotaryDims % 2 != 0) {
            throw new IllegalArgumentException("rotary dimensions must be even and >= 2, got " + rotaryDims);
        }
        if (layout == null) throw new IllegalArgumentException("RoPE layout must be given");
        this.theta = theta;
        this.rotaryDims = rotaryDims;
        this.layout = layout;
        inverseFrequency = new double[rotaryDims / 2];
        for (int i = 0; i < inverseFrequency.length; i++) inverseFrequency[i] = Math.pow(theta, -2.0 * i / rotaryDims);
    }

    public double theta() {
        return theta;
    }

    public int rotaryDims() {
        return rotaryDims;
    }

    public Layout layout() {
        return layout;
    }

    /** Pairs per head, R/2: the rows of the angle tables. */
    public int pairs() {
        return rotaryDims / 2;
    }

    /** The two features of pair i within a head. */
    public int first(int i) {
        return layout == Layout.PAIRS ? 2 * i : i;
    }

    public int second(int i) {
        return layout == Layout.PAIRS ? 2 * i + 1 : i + rotaryDims / 2;
    }

    /** The angle of pair i at position p, in radians. */
    public double angle(long p, int i) {
        return p * inverseFrequency[i];
    }

    /**
     * Fills the angle tables for {@code columns} tokens at {@code positions}: cos and sin, each
     * (R/2, columns) floats, row i over the columns, from float index 0 of the segments.
     */
    public void angles(ColumnPositions positions, int columns, MemorySegment cos, MemorySegment sin) {
        angles(positions, columns, cos, sin, columns);
    }

    /** As {@link #angles(ColumnPositions, int, MemorySegment, MemorySegment)} with rows {@code stride} floats apart. */
    public void angles(ColumnPositions positions, int columns, MemorySegment cos, MemorySegment sin, int stride) {
        int pairs = inverseFrequency.length;
        float[] outside = null; // (R/2, 2): a position past the table's, computed here
        for (int t = 0; t < columns; t++) {
            long p = positions.of(t);
            float[] row;
            int at;
            if (p >= 0 && p < TABLE_POSITIONS) {
                row = tableChunk((int) (p / TABLE_CHUNK));
                at = (int) (p % TABLE_CHUNK) * pairs * 2;
            } else {
                if (outside == null) outside = new float[2 * pairs];
                cosSin(p, outside, 0);
                row = outside;
                at = 0;
            }
            for (int i = 0; i < pairs; i++) {
                cos.setAtIndex(F, (long) i * stride + t, row[at + 2 * i]);
                sin.setAtIndex(F, (long) i * stride + t, row[at + 2 * i + 1]);
            }
        }
    }

    /** The (float) cos and sin of position p's angles p·θ^(−2i/R), pair i's at out[at + 2i] and out[at + 2i + 1]. */
    private void cosSin(long p, float[] out, int at) {
        for (int i = 0; i < inverseFrequency.length; i++) {
            double a = p * inverseFrequency[i];
            out[at + 2 * i] = (float) Math.cos(a);
            out[at + 2 * i + 1] = (float) Math.sin(a);
        }
    }

    /** Chunk k of the table ({@link #table}), computed now if no thread has yet. */
    private float[] tableChunk(int k) {
        float[] chunk = table.get(k);
        if (chunk != null) return chunk;
        int pairs = inverseFrequency.length;
        chunk = new float[TABLE_CHUNK * pairs * 2];
        for (int u = 0; u < TABLE_CHUNK; u++) cosSin((long) k * TABLE_CHUNK + u, chunk, u * pairs * 2);
        return table.compareAndSet(k, null, chunk) ? chunk : table.get(k);
    }

    /**
     * Rotates every head of {@code xT} in place: (heads·d, T), features × tokens, head h in rows
     * [h·d, (h+1)·d), with angle tables from {@link #angles} for the same T columns.
     */
    public void rotate(Matrix xT, int heads, int headDim, MemorySegment cos, MemorySegment sin) {
        check(xT, heads, headDim);
        int T = xT.cols(), lanes = SPECIES.length(), bound = SPECIES.loopBound(T);
        MemorySegment x = xT.segment();
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < pairs(); i++) {
                long a = xT.index(h * headDim + first(i), 0), b = xT.index(h * headDim + second(i), 0), c = (long) i * T;
                int t = 0;
                for (; t < bound; t += lanes) {
                    FloatVector xa = FloatVector.fromMemorySegment(SPECIES, x, (a + t) * Float.BYTES, ORDER);
                    FloatVector xb = FloatVector.fromMemorySegment(SPECIES, x, (b + t) * Float.BYTES, ORDER);
                    FloatVector vc = FloatVector.fromMemorySegment(SPECIES, cos, (c + t) * Float.BYTES, ORDER);
                    FloatVector vs = FloatVector.fromMemorySegment(SPECIES, sin, (c + t) * Float.BYTES, ORDER);
                    xa.mul(vc).sub(xb.mul(vs)).intoMemorySegment(x, (a + t) * Float.BYTES, ORDER);
                    xb.mul(vc).add(xa.mul(vs)).intoMemorySegment(x, (b + t) * Float.BYTES, ORDER);
                }
                for (; t < T; t++) rotatePair(x, a + t, b + t, cos.getAtIndex(F, c + t), sin.getAtIndex(F, c + t));
            }
        }
    }

    /** The scalar twin of {@link #rotate}: the same float arithmetic, one element at a time. */
    public void rotateScalar(Matrix xT, int heads, int headDim, MemorySegment cos, MemorySegment sin) {
        check(xT, heads, headDim);
        int T = xT.cols();
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < pairs(); i++) {
                for (int t = 0; t < T; t++) {
                    rotatePair(xT.segment(), xT.index(h * headDim + first(i), t), xT.index(h * headDim + second(i), t),
                            cos.getAtIndex(F, (long) i * T + t), sin.getAtIndex(F, (long) i * T + t));
                }
            }
        }
    }

    private static void rotatePair(MemorySegment x, long a, long b, float c, float s) {
        float xa = x.getAtIndex(F, a), xb = x.getAtIndex(F, b);
        x.setAtIndex(F, a, xa * c - xb * s);
        x.setAtIndex(F, b, xb * c + xa * s);
    }

    private void check(Matrix xT, int heads, int headDim) {
        if (rotaryDims > headDim) {
            throw new IllegalArgumentException("RoPE rotates " + rotaryDims + " dimensions but heads are " + headDim + " wide");
        }
        if (xT.rows() != heads * headDim) {
            throw new IllegalArgumentException("RoPE input has " + xT.rows() + " feature rows, expected heads·d = " + heads + "·"
                    + headDim);
        }
    }

    @Override
    public String toString() {
        return "rope(θ=" + theta + ", " + rotaryDims + " dims, " + layout.name().toLowerCase() + ")";
    }
}
