package dev.headroom.bench;

import java.net.URISyntaxException;
import java.nio.file.Path;
import java.security.CodeSource;

/**
 * Where the benchmark build put things, found from where these classes were loaded rather than
 * from the working directory: {@code bench/target/benchmarks.jar} (or {@code bench/target/classes})
 * gives {@code bench/target}, which holds {@code native/libheadroom_ref.so}; results go to
 * {@code bench/results}.
 */
public final class BenchPaths {
    /** Overrides the directory the report writes its CSV into. */
    public static final String RESULTS_PROPERTY = "headroom.bench.results";

    private BenchPaths() {}

    /** {@code bench/target}: the directory of benchmarks.jar, or the parent of target/classes. */
    public static Path targetDirectory() {
        CodeSource source = BenchPaths.class.getProtectionDomain().getCodeSource();
        if (source == null || source.getLocation() == null) {
            throw new IllegalStateException("cannot tell where " + BenchPaths.class.getName() + " was loaded from");
        }
        try {
            return Path.of(source.getLocation().toURI()).toAbsolutePath().getParent();
        } catch (URISyntaxException e) {
            throw new IllegalStateException("the code source " + source.getLocation() + " is not a file path", e);
        }
    }

    /** {@code bench/results}, or the directory in {@value #RESULTS_PROPERTY}. */
    public static Path resultsDirectory() {
        String explicit = System.getProperty(RESULTS_PROPERTY);
        if (explicit != null && !explicit.isBlank()) return Path.of(explicit).toAbsolutePath();
        return targetDirectory().getParent().resolve("results");
    }
}
