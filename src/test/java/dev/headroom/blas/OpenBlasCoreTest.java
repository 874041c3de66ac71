package dev.headroom.blas;

import org.junit.jupiter.api.Test;

import java.util.HashSet;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Who chooses OpenBLAS's kernel (the environment, then -Dheadroom.openblas.core, then OpenBLAS), and what a choice costs. */
class OpenBlasCoreTest {
    private static final Set<String> ZEN5 = Set.of("avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16");

    @Test
    void theEnvironmentIsNeverOverridden() {
        OpenBlasCore.Decision d = OpenBlasCore.decide("Haswell", "SkylakeX");
        assertNull(d.core());
        assertEquals("Haswell", d.requested());
        assertEquals("OPENBLAS_CORETYPE=Haswell in the environment", d.why());
    }

    @Test
    void withoutEitherOpenBlasDetectsAndAPropertyIsPassedOn() {
        assertNull(OpenBlasCore.decide(null, null).core());
        assertNull(OpenBlasCore.decide(null, null).requested());
        assertNull(OpenBlasCore.decide(null, " ").core());
        assertEquals("OpenBLAS's own detection", OpenBlasCore.decide(null, null).why());
        assertEquals("SkylakeX", OpenBlasCore.decide(null, " SkylakeX ").core());
        assertEquals("SkylakeX", OpenBlasCore.decide(null, " SkylakeX ").requested());
    }

    @Test
    void aKernelWithoutAvx512OnACpuWithItIsNamedAsACost() {
        // forced: the way back is to stop forcing; detected: the way forward is the property or a newer OpenBLAS
        assertTrue(OpenBlasCore.cost("Haswell", ZEN5, true).contains("without OPENBLAS_CORETYPE"));
        assertTrue(OpenBlasCore.cost("Haswell", ZEN5, false).contains("-Dheadroom.openblas.core=SkylakeX"));
        assertTrue(OpenBlasCore.cost("Zen", ZEN5, false).contains("Zen kernel"));
        for (boolean forced : new boolean[]{true, false}) {
            assertNull(OpenBlasCore.cost("Cooperlake", ZEN5, forced));
            assertNull(OpenBlasCore.cost("SkylakeX", ZEN5, forced));
            assertNull(OpenBlasCore.cost("SapphireRapids", ZEN5, forced));
            assertNull(OpenBlasCore.cost("Haswell", Set.of("avx2", "fma"), forced)); // nothing better to use
        }
        for (String f : OpenBlasCore.AVX512) { // any one of the five missing: the AVX-512 kernels would not run
            Set<String> flags = new HashSet<>(ZEN5);
            flags.remove(f);
            assertNull(OpenBlasCore.cost("Haswell", flags, true), f);
        }
    }

    @Test
    void thisMachinesFlagsAreRead() {
        Set<String> flags = OpenBlasCore.cpuFlags();
        if (System.getProperty("os.arch").equals("amd64") && java.nio.file.Files.isReadable(java.nio.file.Path.of("/proc/cpuinfo"))) {
            assertTrue(flags.contains("sse2"), "x86-64 always has SSE2; read " + flags);
        }
    }
}
