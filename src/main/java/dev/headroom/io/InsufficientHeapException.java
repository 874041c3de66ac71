package dev.headroom.io;

import dev.headroom.memory.OffHeap;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A file is within its format's limits but the Java heap is too small to read it (a
 * .safetensors header of tens of MB under a small {@code -Xmx}). The file is not malformed: the
 * message says how much heap is needed and how to raise it.
 */
public final class InsufficientHeapException extends IOException {
    private InsufficientHeapException(String message, Throwable cause) {
        super(message, cause);
    }

    /** What to raise, as an -Xmx value: {@code bytes} rounded up to a multiple of 256 MiB. */
    private static String raise(long bytes) {
        long mib = (bytes + (256L << 20) - 1) / (256L << 20) * 256;
        String xmx = mib % 1024 == 0 ? "-Xmx" + mib / 1024 + "g" : "-Xmx" + mib + "m";
        return "raise the maximum heap to at least " + OffHeap.format(mib << 20) + ": " + xmx + " for your JVM, or HEADROOM_JAVA_OPTS="
                + xmx + " for bin/headroom";
    }

    static InsufficientHeapException forHeader(Path file, long headerBytes, long need, long available, long max) {
        return new InsufficientHeapException(file + ": its .safetensors header of " + headerBytes + " bytes needs up to "
                + OffHeap.format(need) + " of Java heap to read, and only " + OffHeap.format(available) + " of the maximum "
                + OffHeap.format(max) + " is free. This is not a malformed file: " + raise(max - available + need), null);
    }

    static InsufficientHeapException forHeader(Path file, long headerBytes, OutOfMemoryError e) {
        long max = Runtime.getRuntime().maxMemory();
        return new InsufficientHeapException(file + ": the Java heap (maximum " + OffHeap.format(max)
                + ") ran out while reading its .safetensors header of " + headerBytes + " bytes. This is not a malformed file: "
                + raise(2 * max), e);
    }
}
