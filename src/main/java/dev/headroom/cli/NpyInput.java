package dev.headroom.cli;

import dev.headroom.io.Npy;
import dev.headroom.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Path;

/**
 * An .npy named on the command line: a path (a regular file, or a FIFO or device read as a
 * stream), or {@code -} for standard input, read to its end.
 */
final class NpyInput {
    private NpyInput() {}

    static boolean isStandardInput(Path path) {
        return path != null && path.toString().equals("-");
    }

    static Tensor read(Path path, Arena arena) throws IOException {
        return isStandardInput(path) ? Npy.read(System.in, "standard input", arena) : Npy.read(path, arena);
    }
}
