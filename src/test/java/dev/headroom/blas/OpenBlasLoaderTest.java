package dev.headroom.blas;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * How OpenBLAS is found, in fresh JVMs (a loaded library cannot be unloaded in this one): an
 * explicit path that is wrong is an error naming it and the package to install, not a silent
 * fallback or a crash; a path to a file that is not OpenBLAS is refused the same way.
 */
class OpenBlasLoaderTest {
    @TempDir
    Path dir;

    private static String[] run(String... properties) throws Exception {
        return run(Map.of(), properties);
    }

    /** {@code headroom info} in a child JVM with {@code env} added to this one's environment (and OPENBLAS_CORETYPE removed unless given). */
    private static String[] run(Map<String, String> env, String... properties) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("--enable-native-access=ALL-UNNAMED");
        cmd.add("--add-modules=jdk.incubator.vector");
        cmd.addAll(List.of(properties));
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add("dev.headroom.cli.Main");
        cmd.add("info");
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(false);
        pb.environment().remove(OpenBlasCore.ENV);
        pb.environment().putAll(env);
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        return new String[]{Integer.toString(p.exitValue()), out, err};
    }

    @Test
    void aWrongExplicitPathNamesItAndThePackage() throws Exception {
        String[] r = run("-D" + OpenBlas.PATH_PROPERTY + "=" + dir.resolve("libnothing.so"));
        assertEquals("2", r[0], r[2]);
        assertTrue(r[2].contains("libnothing.so") && r[2].contains("apt-get install libopenblas0-pthread"), r[2]);
    }

    @Test
    void aLibraryThatIsNotOpenBlasIsRefused() throws Exception {
        Path libm = Path.of("/lib/x86_64-linux-gnu/libm.so.6");
        if (!Files.exists(libm)) libm = Path.of("/usr/lib/x86_64-linux-gnu/libm.so.6");
        String[] r = run("-D" + OpenBlas.PATH_PROPERTY + "=" + libm);
        assertEquals("2", r[0], r[2]);
        assertTrue(r[2].contains("does not export OpenBLAS") || r[2].contains("could not be loaded"), r[2]);
    }

    @Test
    void theSystemLibraryIsFoundWithoutConfiguration() throws Exception {
        String[] r = run();
        assertEquals("0", r[0], r[2]);
        assertTrue(r[1].contains("libopenblas.so"), r[1]);
    }

    /** The core line of {@code headroom info}'s output. */
    private static String coreLine(String[] r) {
        assertEquals("0", r[0], r[2]);
        return r[1].lines().filter(l -> l.startsWith("OpenBLAS core")).findFirst().orElseThrow(() -> new AssertionError(r[1]));
    }

    /** Forcing a kernel needs an x86-64 DYNAMIC_ARCH OpenBLAS (Debian's is one); elsewhere the forced names do not exist. */
    private static void assumeKernelsCanBeForced() {
        assumeTrue(System.getProperty("os.arch").equals("amd64") && OpenBlas.config().contains("DYNAMIC_ARCH"),
                "not an x86-64 DYNAMIC_ARCH OpenBLAS: " + OpenBlas.config());
    }

    @Test
    void theCoreLineSaysWhoChoseTheKernelAndWhatAForcedOneCosts() throws Exception {
        assumeKernelsCanBeForced();
        String own = coreLine(run());
        assertTrue(own.contains("(OpenBLAS's own detection"), own);
        // Haswell named in the environment on a CPU with AVX-512: it runs, and the line names the cost
        String forced = coreLine(run(Map.of(OpenBlasCore.ENV, "Haswell")));
        assertTrue(forced.contains("Haswell (" + OpenBlasCore.ENV + "=Haswell in the environment"), forced);
        assertEquals(OpenBlasCore.cpuFlags().containsAll(OpenBlasCore.AVX512), forced.contains("does not use"), forced);
    }

    @Test
    void aCoreNamedByTheUserIsTheOneThatRunsAndTheEnvironmentComesFirst() throws Exception {
        assumeKernelsCanBeForced();
        // Nehalem (SSE4.2) runs on any x86-64 CPU this project runs on; info calls no product
        String named = coreLine(run("-D" + OpenBlasCore.PROPERTY + "=Nehalem"));
        assertTrue(named.contains("Nehalem (-D" + OpenBlasCore.PROPERTY + "=Nehalem"), named);
        String env = coreLine(run(Map.of(OpenBlasCore.ENV, "Nehalem"), "-D" + OpenBlasCore.PROPERTY + "=SkylakeX"));
        assertTrue(env.contains("Nehalem (" + OpenBlasCore.ENV + "=Nehalem in the environment"), env);
        String unknown = coreLine(run("-D" + OpenBlasCore.PROPERTY + "=Zen9"));
        assertTrue(unknown.contains("-D" + OpenBlasCore.PROPERTY + "=Zen9, but the library runs") && unknown.contains("a name it does not know"),
                unknown);
        // a name in the environment that OpenBLAS does not know is reported the same way
        String unknownEnv = coreLine(run(Map.of(OpenBlasCore.ENV, "Zen9")));
        assertTrue(unknownEnv.contains(OpenBlasCore.ENV + "=Zen9 in the environment, but the library runs"), unknownEnv);
    }
}
