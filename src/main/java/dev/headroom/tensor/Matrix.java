package dev.headroom.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A row-major float32 matrix view into a segment, in CBLAS terms: {@code rows × cols}, element
 * (i, j) at float index {@code offset + i·ld + j}. Views do not own memory; per-head Q/K/V
 * views are such strided views into one projection buffer.
 *
 * <p>The constructor checks that every element lies inside the segment, so whatever is built
 * from a {@code Matrix} can be handed to native code without a second bounds check.
 */
public record Matrix(MemorySegment segment, long offset, int rows, int cols, int ld) {
    public static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED;

    public Matrix {
        if (rows < 0 || cols < 0) {
            throw new IllegalArgumentException("matrix shape must be non-negative, got (" + rows + ", " + cols + ")");
        }
        if (ld < Math.max(1, cols)) {
            throw new IllegalArgumentException("leading dimension ld=" + ld + " is smaller than cols=" + cols);
        }
        if (offset < 0) throw new IllegalArgumentException("offset must be >= 0, got " + offset);
        long floats = segment.byteSize() / Float.BYTES;
        long end = rows == 0 || cols == 0 ? offset : offset + (long) (rows - 1) * ld + cols;
        if (end > floats) {
            throw new IllegalArgumentException("matrix (" + rows + ", " + cols + ") with ld=" + ld + " at offset "
                    + offset + " needs " + end + " floats, but the segment holds " + floats);
        }
    }

    /** A dense row-major matrix over the whole of {@code segment} from float index {@code offset}. */
    public static Matrix of(MemorySegment segment, long offset, int rows, int cols) {
        return new Matrix(segment, offset, rows, cols, cols);
    }

    public float get(int i, int j) {
        return segment.getAtIndex(FLOAT, index(i, j));
    }

    public void set(int i, int j, float v) {
        segment.setAtIndex(FLOAT, index(i, j), v);
    }

    /** Float index of element (i, j) in {@link #segment()}. */
    public long index(int i, int j) {
        assert i >= 0 && i < rows && j >= 0 && j < cols : "(" + i + ", " + j + ") outside (" + rows + ", " + cols + ")";
        return offset + (long) i * ld + j;
    }

    /**
     * Every row ← {@code cols} floats of {@code vector} from float index {@code vectorOffset} (a bias
     * broadcast over rows, before an sgemm with beta = 1 adds onto it).
     */
    public void fillRows(MemorySegment vector, long vectorOffset) {
        long bytes = (long) cols * Float.BYTES;
        for (int i = 0; i < rows; i++) MemorySegment.copy(vector, vectorOffset * Float.BYTES, segment, index(i, 0) * Float.BYTES, bytes);
    }

    /** Rows [r0, r1) as a view. */
    public Matrix rowRange(int r0, int r1) {
        checkRange("row", r0, r1, rows);
        return new Matrix(segment, offset + (long) r0 * ld, r1 - r0, cols, ld);
    }

    /** Columns [c0, c1) as a view with the same leading dimension. */
    public Matrix colRange(int c0, int c1) {
        checkRange("column", c0, c1, cols);
        return new Matrix(segment, offset + c0, rows, c1 - c0, ld);
    }

    private static void checkRange(String what, int from, int to, int size) {
        if (from < 0 || to < from || to > size) {
            throw new IndexOutOfBoundsException(what + " range [" + from + ", " + to + ") outside [0, " + size + ")");
        }
    }

    @Override
    public String toString() {
        return "Matrix(" + rows + "×" + cols + ", ld=" + ld + ", offset=" + offset + ")";
    }
}
