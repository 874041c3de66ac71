package dev.headroom.spark;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.function.Function;

/**
 * A partition processed in chunks: takes up to {@code size} items from the source, hands them to
 * {@code work} as one list, and yields what it returns before taking the next chunk. A partition
 * of any length runs in the memory of one chunk.
 */
final class Chunks<T, R> implements Iterator<R> {
    private final Iterator<T> source;
    private final int size;
    private final Function<List<T>, List<R>> work;
    private final java.util.function.LongConsumer readNanos;
    private Iterator<R> current = Collections.emptyIterator();

    /** {@code readNanos} is told the time spent taking items from the source (reading the input). */
    Chunks(Iterator<T> source, int size, Function<List<T>, List<R>> work, java.util.function.LongConsumer readNanos) {
        if (size < 1) throw new IllegalArgumentException("chunk size must be >= 1, got " + size);
        this.source = source;
        this.size = size;
        this.work = work;
        this.readNanos = readNanos;
    }

    @Override
    public boolean hasNext() {
        while (!current.hasNext()) {
            long t = System.nanoTime();
            List<T> chunk = new ArrayList<>(size);
            while (chunk.size() < size && source.hasNext()) chunk.add(source.next());
            readNanos.accept(System.nanoTime() - t);
            if (chunk.isEmpty()) break;
            current = work.apply(chunk).iterator();
        }
        return current.hasNext();
    }

    @Override
    public R next() {
        if (!hasNext()) throw new NoSuchElementException();
        return current.next();
    }
}
