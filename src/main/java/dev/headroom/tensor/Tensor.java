package dev.headroom.tensor;

import dev.headroom.memory.TrackedArena;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * A dense float32 tensor in row-major (C) order over a {@link MemorySegment}. A tensor does not
 * own its memory: the arena that allocated the segment (or mapped the file) does, and the
 * tensor is valid while that arena is open.
 */
public final class Tensor {
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private final MemorySegment data;
    private final int[] shape;
    private final long size;

    private Tensor(MemorySegment data, int[] shape) {
        this.data = data;
        this.shape = shape;
        this.size = elementCount(shape);
    }

    /** A zero-filled tensor of {@code shape}, 64-byte aligned, owned by {@code arena}. */
    public static Tensor allocate(Arena arena, int... shape) {
        MemorySegment s = arena.allocate(byteCount(shape), TrackedArena.ALIGNMENT);
        return new Tensor(s, shape.clone());
    }

    /** Views {@code segment} (exactly {@code prod(shape)} floats) as a tensor of {@code shape}. */
    public static Tensor wrap(MemorySegment segment, int... shape) {
        long bytes = byteCount(shape);
        if (segment.byteSize() != bytes) {
            throw new IllegalArgumentException("a tensor of shape " + Arrays.toString(shape) + " needs "
                    + bytes + " bytes, the segment has " + segment.byteSize());
        }
        return new Tensor(segment, shape.clone());
    }

    /** A tensor of {@code shape} in {@code arena} holding {@code values} (row-major). */
    public static Tensor of(Arena arena, float[] values, int... shape) {
        Tensor t = allocate(arena, shape);
        if (values.length != t.size) {
            throw new IllegalArgumentException(values.length + " values do not fill shape " + Arrays.toString(shape));
        }
        MemorySegment.copy(values, 0, t.data, FLOAT, 0, values.length);
        return t;
    }

    /** A tensor of {@code shape} in {@code arena}, uniform in [−bound, bound), from a seeded generator. */
    public static Tensor uniform(Arena arena, long seed, double bound, int... shape) {
        Tensor t = allocate(arena, shape);
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed);
        for (long i = 0; i < t.size; i++) t.set(i, (float) rnd.nextDouble(-bound, bound));
        return t;
    }

    /** Bytes of a float tensor of {@code shape}; a shape whose byte size overflows a long is refused. */
    static long byteCount(int[] shape) {
        try {
            return Math.multiplyExact(elementCount(shape), Float.BYTES);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " has more elements than memory can hold "
                    + "(its byte size overflows 2^63)");
        }
    }

    static long elementCount(int[] shape) {
        if (shape.length == 0) throw new IllegalArgumentException("a tensor needs at least one dimension");
        long n = 1;
        for (int d : shape) {
            if (d < 0) throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    public MemorySegment segment() {
        return data;
    }

    public int rank() {
        return shape.length;
    }

    /** Size of dimension {@code i}; negative {@code i} counts from the end. */
    public int dim(int i) {
        return shape[i < 0 ? shape.length + i : i];
    }

    public int[] shape() {
        return shape.clone();
    }

    /** Number of elements. */
    public long size() {
        return size;
    }

    public long byteSize() {
        return size * Float.BYTES;
    }

    public float get(long index) {
        try {
            return data.getAtIndex(FLOAT, index);
        } catch (IllegalStateException e) {
            throw closed(e);
        }
    }

    public void set(long index, float value) {
        try {
            data.setAtIndex(FLOAT, index, value);
        } catch (IllegalStateException e) {
            throw closed(e);
        }
    }

    /**
     * The JDK says only "Already closed" when a segment's arena was closed (or "Attempted access
     * outside owning thread"): say which tensor. Costs nothing unless thrown.
     */
    private IllegalStateException closed(IllegalStateException e) {
        String why = data.scope().isAlive() ? e.getMessage() : "its arena is closed";
        return new IllegalStateException("tensor " + shapeString() + " cannot be used: " + why, e);
    }

    /** Element at a full multi-index. */
    public float at(int... index) {
        return get(flatIndex(index));
    }

    public long flatIndex(int... index) {
        if (index.length != shape.length) {
            throw new IllegalArgumentException("index " + Arrays.toString(index) + " does not fit shape " + shapeString());
        }
        long flat = 0;
        for (int i = 0; i < shape.length; i++) {
            if (index[i] < 0 || index[i] >= shape[i]) {
                throw new IndexOutOfBoundsException("index " + Arrays.toString(index) + " outside shape " + shapeString());
            }
            flat = flat * shape[i] + index[i];
        }
        return flat;
    }

    /** The same data with another shape of the same element count. */
    public Tensor reshape(int... newShape) {
        if (elementCount(newShape) != size) {
            throw new IllegalArgumentException("cannot reshape " + shapeString() + " to " + Arrays.toString(newShape));
        }
        return new Tensor(data, newShape.clone());
    }

    /** All leading dimensions flattened into rows, the last dimension as columns. */
    public Matrix matrix() {
        int cols = shape[shape.length - 1];
        long rows = cols == 0 ? 0 : size / cols;
        if (rows > Integer.MAX_VALUE) throw new IllegalArgumentException("too many rows for a matrix view: " + rows);
        return Matrix.of(data, 0, (int) rows, cols);
    }

    /** A copy of the elements on the Java heap (for tests, I/O and small results). */
    public float[] toArray() {
        if (size > Integer.MAX_VALUE - 8) throw new IllegalStateException("tensor too large for a float[]: " + shapeString());
        try {
            return data.toArray(FLOAT);
        } catch (IllegalStateException e) {
            throw closed(e);
        }
    }

    public String shapeString() {
        return Arrays.toString(shape).replace('[', '(').replace(']', ')');
    }

    @Override
    public String toString() {
        return "Tensor" + shapeString();
    }
}
