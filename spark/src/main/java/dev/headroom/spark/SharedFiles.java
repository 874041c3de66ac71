package dev.headroom.spark;

import org.apache.spark.SparkContext;
import org.apache.spark.SparkFiles;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Files the driver has and every executor must read (a weights file, the projected keys and
 * values of the attention job). In local mode the executor is the driver's JVM and reads them in
 * place; on a cluster they are shipped with {@link SparkContext#addFile}, which each executor
 * fetches once from the driver, so no shared file system is needed. A handle names the file
 * either way and travels in task closures (a short string, never the data).
 */
final class SharedFiles {
    private static final String LOCAL = "local:", SHIPPED = "shipped:";

    private SharedFiles() {}

    /** Makes {@code file} (a file or a directory) readable by every executor; returns its handle. */
    static String share(SparkContext sc, Path file) {
        Path absolute = file.toAbsolutePath();
        if (sc.isLocal()) return LOCAL + absolute;
        sc.addFile(absolute.toString(), Files.isDirectory(absolute));
        return SHIPPED + absolute.getFileName();
    }

    /** Where this executor reads the file of {@code handle}. */
    static Path resolve(String handle) {
        if (handle.startsWith(LOCAL)) return Path.of(handle.substring(LOCAL.length()));
        if (handle.startsWith(SHIPPED)) return Path.of(SparkFiles.get(handle.substring(SHIPPED.length())));
        throw new IllegalArgumentException("not a shared file handle: " + handle);
    }
}
