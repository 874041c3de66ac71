package dev.headroom.attention;

import java.lang.foreign.MemorySegment;

/**
 * Computes one {@link HeadBlock}: out = softmax(scale · Q Kᵀ + mask) · V. The runtime does the
 * projections, splits the work into blocks of query rows, gives each worker thread its own
 * scratch, and does the output projection; a kernel only attends. Kernels must be stateless
 * (one instance serves all threads).
 */
public interface AttentionKernel {
    String name();

    /** Floats of scratch one worker needs for blocks of up to {@code rows} queries against {@code keys} keys. */
    long scratchFloats(int rows, int keys);

    /** Attends one block, writing {@code block.out()}; {@code scratch} is this worker's alone. */
    void attend(HeadBlock block, MemorySegment scratch);
}
