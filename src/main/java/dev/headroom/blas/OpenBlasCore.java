package dev.headroom.blas;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * Which of its CPU kernels a DYNAMIC_ARCH OpenBLAS runs, and why: OpenBLAS reads
 * {@code OPENBLAS_CORETYPE} once, in its load-time constructor, and otherwise detects the CPU
 * (OpenBLAS 0.3.21 picks Cooperlake on an AMD EPYC Zen 5 by its feature fallback).
 *
 * <p>Why it matters: a kernel named in the environment is used whatever the CPU can do. Forcing
 * the AVX2 {@code Haswell} kernel on a CPU with AVX-512 halves sgemm (JMH {@code SgemmBenchmark},
 * 2048³ on 2 threads, AMD EPYC Zen 5: 95 against 47 ms with Cooperlake), and every product of a
 * decode step with it. Headroom does not override the environment; it says what ran and why
 * ({@link OpenBlas#coreChoice()}, {@code headroom info}, the bench headers) and names the cost.
 *
 * <p>The system property {@value #PROPERTY} names a kernel for one JVM when the environment does
 * not (for measuring, or an application that cannot set its environment before the JVM starts);
 * it is set with libc's {@code setenv} through the FFM linker before the library loads, written by
 * hand as in {@code dev.headroom.memory.HugePages}. A kernel changes which instructions run, not
 * what is computed: results may differ in the last bits between kernels, as between machines.
 * glibc's {@code setenv} is not safe against a {@code getenv} running at the same moment in another
 * thread: it runs once, only when the property is given, just before OpenBLAS first loads; give it
 * at start-up, not to a process whose other native threads may read the environment then.
 */
final class OpenBlasCore {
    /** The system property naming a kernel (Haswell, SkylakeX, …) when the environment does not. */
    static final String PROPERTY = "headroom.openblas.core";
    static final String ENV = "OPENBLAS_CORETYPE";
    /** The features of OpenBLAS's AVX-512 kernels (its {@code support_avx512}: F, CD, BW, DQ, VL). */
    static final Set<String> AVX512 = Set.of("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl");
    /** OpenBLAS's x86-64 kernels that use AVX-512 for sgemm. */
    private static final Set<String> AVX512_CORES = Set.of("skylakex", "cooperlake", "sapphirerapids");

    private OpenBlasCore() {}

    /**
     * What to do before loading: set {@code core} (null: set nothing); {@code requested} is the
     * kernel asked for, by the environment or the property (null: OpenBLAS detects); {@code why}
     * says who decided.
     */
    record Decision(String core, String requested, String why) {
        static Decision leave(String requested, String why) {
            return new Decision(null, requested, why);
        }
    }

    /** The decision for an environment value {@code env} and a system property {@code property} (null: unset). */
    static Decision decide(String env, String property) {
        if (env != null) return Decision.leave(env.strip(), ENV + "=" + env + " in the environment");
        if (property == null || property.isBlank()) return Decision.leave(null, "OpenBLAS's own detection");
        return new Decision(property.strip(), property.strip(), "-D" + PROPERTY + "=" + property.strip());
    }

    /**
     * What a run on {@code core} leaves on the table: a sentence when the CPU has AVX-512
     * ({@code cpuFlags}) and the kernel does not use it, else null; {@code forced}: the kernel was
     * asked for (by the environment or the property), else OpenBLAS detected it.
     */
    static String cost(String core, Set<String> cpuFlags, boolean forced) {
        if (!cpuFlags.containsAll(AVX512) || AVX512_CORES.contains(core.toLowerCase(Locale.ROOT))) return null;
        return "this CPU has AVX-512, which the " + core + " kernel does not use (on an AMD EPYC Zen 5 it halved sgemm); "
                + (forced ? "without " + ENV + " and -D" + PROPERTY + ", OpenBLAS chooses"
                          : "-D" + PROPERTY + "=SkylakeX or a newer OpenBLAS runs its AVX-512 kernel");
    }

    /** The first CPU's flags from {@code /proc/cpuinfo}; empty where there is none (not Linux) or it cannot be read. */
    static Set<String> cpuFlags() {
        Path cpuinfo = Path.of("/proc/cpuinfo");
        if (!Files.isReadable(cpuinfo)) return Set.of();
        try (var lines = Files.lines(cpuinfo)) {
            return lines.filter(l -> l.startsWith("flags")).findFirst()
                    .map(l -> Arrays.stream(l.substring(l.indexOf(':') + 1).trim().split("\\s+")).collect(Collectors.toUnmodifiableSet()))
                    .orElse(Set.of());
        } catch (IOException | UncheckedIOException e) {
            return Set.of();
        }
    }

    /**
     * Applies {@link #decide} for this process before OpenBLAS is loaded; returns what was decided,
     * with {@code why} telling when setting the variable failed (OpenBLAS then detects for itself).
     */
    static Decision applyBeforeLoading() {
        Decision d = decide(System.getenv(ENV), System.getProperty(PROPERTY));
        if (d.core() == null) return d;
        String failure = setenv(ENV, d.core());
        return failure == null ? d : Decision.leave(null, "OpenBLAS's own detection (setting " + ENV + "=" + d.core() + " failed: " + failure + ")");
    }

    /** libc's {@code setenv(name, value, 1)}; null when it worked, else why not. */
    private static String setenv(String name, String value) {
        try {
            Linker linker = Linker.nativeLinker();
            MemorySegment symbol = linker.defaultLookup().find("setenv").orElse(null);
            if (symbol == null) return "libc has no setenv";
            MethodHandle setenv = linker.downcallHandle(symbol,
                    FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
            try (Arena arena = Arena.ofConfined()) {
                int rc = (int) setenv.invokeExact(arena.allocateFrom(name), arena.allocateFrom(value), 1);
                return rc == 0 ? null : "setenv returned " + rc;
            }
        } catch (Throwable e) {
            return e.toString();
        }
    }
}
