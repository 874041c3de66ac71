package dev.headroom.blas;

import dev.headroom.blas.generated.cblas_h;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * Finds and loads OpenBLAS, and exposes its threading controls. Once loaded, OpenBLAS runs each
 * call on one thread until {@link #setThreads} says otherwise.
 *
 * <p>The jextract bindings were generated without {@code --library}, so they look symbols up
 * with {@code SymbolLookup.loaderLookup()}: whatever this class loads with {@link System#load}
 * is what they call. The library is chosen at run time, in this order:
 * <ol>
 *   <li>the system property {@value #PATH_PROPERTY} (a path to the shared library),</li>
 *   <li>the environment variable {@value #PATH_ENV},</li>
 *   <li>the system library: {@code libopenblas.so.0} or {@code libopenblas.so} in
 *       {@code LD_LIBRARY_PATH}, {@code java.library.path} and the usual system directories.</li>
 * </ol>
 * A path given explicitly that does not load is an error; it does not fall back silently.
 *
 * <p>Before loading, {@link OpenBlasCore} applies {@code -Dheadroom.openblas.core} when the
 * environment names no kernel; {@link #coreChoice()} says which kernel ran, why, and what it costs.
 */
public final class OpenBlas {
    public static final String PATH_PROPERTY = "headroom.openblas";
    public static final String PATH_ENV = "HEADROOM_OPENBLAS";
    static final String INSTALL_HINT =
            "Install OpenBLAS with `apt-get install libopenblas0-pthread` (Debian/Ubuntu), or point "
            + "-D" + PATH_PROPERTY + "=/path/to/libopenblas.so (or " + PATH_ENV + ") at the library.";

    private static final List<String> SYSTEM_NAMES = List.of("libopenblas.so.0", "libopenblas.so");
    private static final List<String> SYSTEM_DIRS = List.of(
            "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib",
            "/opt/OpenBLAS/lib");

    private static volatile Path loadedFrom;
    /** What {@link OpenBlasCore} decided before loading (set with {@link #loadedFrom}). */
    private static volatile OpenBlasCore.Decision coreDecision;

    private OpenBlas() {}

    /** Loads OpenBLAS if it is not loaded yet; returns the file it was loaded from. */
    public static Path load() {
        Path path = loadedFrom;
        if (path != null) return path;
        synchronized (OpenBlas.class) {
            if (loadedFrom == null) {
                coreDecision = OpenBlasCore.applyBeforeLoading();
                loadedFrom = locateAndLoad();
            }
            return loadedFrom;
        }
    }

    private static Path locateAndLoad() {
        String explicit = System.getProperty(PATH_PROPERTY);
        String source = "system property " + PATH_PROPERTY;
        if (explicit == null || explicit.isBlank()) {
            explicit = System.getenv(PATH_ENV);
            source = "environment variable " + PATH_ENV;
        }
        if (explicit != null && !explicit.isBlank()) {
            Path p = Path.of(explicit).toAbsolutePath();
            if (!Files.isRegularFile(p)) {
                throw new OpenBlasNotFoundException("OpenBLAS not found: " + source + " is '" + explicit
                        + "', which is not a file. " + INSTALL_HINT);
            }
            return loadFile(p, source);
        }
        List<Path> tried = new ArrayList<>();
        for (Path dir : searchDirectories()) {
            for (String name : SYSTEM_NAMES) {
                Path p = dir.resolve(name);
                tried.add(p);
                if (Files.isRegularFile(p)) return loadFile(p, "system library");
            }
        }
        throw new OpenBlasNotFoundException("OpenBLAS not found: none of " + tried.size()
                + " candidate files exists (first ones: " + tried.subList(0, Math.min(4, tried.size()))
                + "). " + INSTALL_HINT);
    }

    private static Path loadFile(Path p, String source) {
        try {
            System.load(p.toString());
        } catch (UnsatisfiedLinkError e) {
            throw new OpenBlasNotFoundException("OpenBLAS at " + p + " (from " + source
                    + ") could not be loaded: " + e.getMessage() + ". " + INSTALL_HINT, e);
        }
        try {
            // Touch one symbol now, so a library that is not OpenBLAS fails here, clearly.
            cblas_h.openblas_get_num_threads();
        } catch (RuntimeException | LinkageError e) {
            throw new OpenBlasNotFoundException("The library at " + p + " (from " + source
                    + ") loaded but does not export OpenBLAS's openblas_get_num_threads: " + e
                    + ". " + INSTALL_HINT, e);
        }
        // Headroom splits work over its own workers and runs every sgemm on one OpenBLAS thread, so
        // the process-wide count is set here, once, when the library is loaded (not by each layer);
        // only code that measures OpenBLAS's own threading changes it, with setThreads.
        cblas_h.openblas_set_num_threads(1);
        return p;
    }

    private static Set<Path> searchDirectories() {
        Set<Path> dirs = new LinkedHashSet<>();
        addPathList(dirs, System.getenv("LD_LIBRARY_PATH"));
        addPathList(dirs, System.getProperty("java.library.path"));
        for (String d : SYSTEM_DIRS) dirs.add(Path.of(d));
        return dirs;
    }

    private static void addPathList(Set<Path> dirs, String list) {
        if (list == null) return;
        for (String part : list.split(java.io.File.pathSeparator)) {
            if (!part.isBlank()) dirs.add(Path.of(part));
        }
    }

    /** The file OpenBLAS was loaded from (loading it if needed). */
    public static Path path() {
        return load();
    }

    /** OpenBLAS's build configuration string, e.g. {@code "OpenBLAS 0.3.21 DYNAMIC_ARCH ..."}. */
    public static String config() {
        load();
        return cString(cblas_h.openblas_get_config());
    }

    /** The CPU kernel OpenBLAS picked at load time, e.g. {@code "SkylakeX"}. */
    public static String coreName() {
        load();
        return cString(cblas_h.openblas_get_corename());
    }

    /**
     * The kernel OpenBLAS runs, why, and what it leaves on the table, e.g. {@code "Cooperlake
     * (OpenBLAS's own detection)"} or {@code "Haswell (OPENBLAS_CORETYPE=Haswell in the
     * environment; this CPU has AVX-512, which the Haswell kernel does not use: ...)"}.
     */
    public static String coreChoice() {
        String core = coreName();
        OpenBlasCore.Decision d = coreDecision;
        StringBuilder s = new StringBuilder(core).append(" (").append(d.why());
        if (d.requested() != null && !d.requested().equalsIgnoreCase(core)) {
            s.append(", but the library runs ").append(core)
                    .append(": a name it does not know, not a DYNAMIC_ARCH build, or loaded before Headroom could set it");
        }
        String cost = OpenBlasCore.cost(core, OpenBlasCore.cpuFlags(), d.requested() != null);
        if (cost != null) s.append("; ").append(cost);
        return s.append(')').toString();
    }

    /** The number of threads OpenBLAS uses for one call. */
    public static int threads() {
        load();
        return cblas_h.openblas_get_num_threads();
    }

    /** The number of processors OpenBLAS sees. */
    public static int processors() {
        load();
        return cblas_h.openblas_get_num_procs();
    }

    /**
     * Sets how many threads OpenBLAS uses for one call. This is process-wide: OpenBLAS 0.3.21
     * has no per-call setting.
     */
    public static void setThreads(int threads) {
        if (threads < 1) throw new IllegalArgumentException("OpenBLAS threads must be >= 1, got " + threads);
        load();
        cblas_h.openblas_set_num_threads(threads);
    }

    private static String cString(MemorySegment p) {
        if (p.equals(MemorySegment.NULL)) return "";
        return p.reinterpret(4096).getString(0);
    }
}
