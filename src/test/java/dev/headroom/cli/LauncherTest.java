package dev.headroom.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code bin/headroom} in a child process: a JDK that fails to start is named with what it said,
 * the next JDK is tried, and when none starts the launcher says why and what to do (it used to
 * exit 1 without a word: set -e with pipefail stopped it at the version probe).
 */
class LauncherTest {
    @TempDir
    Path dir;

    /** {exit code, stdout, stderr} of {@code command} run by bash in the project directory. */
    private static Object[] launch(Map<String, String> env, String command) throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder("bash", "-c", command).directory(new File(System.getProperty("user.dir")));
        Map<String, String> e = pb.environment();
        e.remove("HEADROOM_JAVA_OPTS");
        e.remove("HEADROOM_OPENBLAS");
        e.put("HEADROOM_NO_INSTALL", "1");
        // The classes this test runs on, so the launcher does not build (a nested mvn inside the test run).
        e.put("HEADROOM_CLASSPATH", System.getProperty("java.class.path"));
        // The JDK running this test is on the PATH, so "the next JDK" exists on any machine that runs the tests.
        e.put("PATH", Path.of(System.getProperty("java.home"), "bin") + File.pathSeparator + e.getOrDefault("PATH", "/usr/bin:/bin"));
        e.putAll(env);
        Path out = Files.createTempFile("launcher", ".out"), err = Files.createTempFile("launcher", ".err");
        try {
            Process p = pb.redirectOutput(out.toFile()).redirectError(err.toFile()).start();
            if (!p.waitFor(120, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new AssertionError("bin/headroom did not finish in 120 s: " + Files.readString(err));
            }
            return new Object[]{p.exitValue(), Files.readString(out, StandardCharsets.UTF_8), Files.readString(err, StandardCharsets.UTF_8)};
        } finally {
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
        }
    }

    /** A directory whose bin/java and bin/javac print a line and exit 1, as a broken or half-removed JDK. */
    private Path brokenJdk() throws IOException {
        Path bin = Files.createDirectories(dir.resolve("broken-jdk/bin"));
        for (String tool : List.of("java", "javac")) {
            Path f = bin.resolve(tool);
            Files.writeString(f, "#!/bin/sh\necho 'Error: this JDK is broken on purpose' >&2\nexit 1\n");
            Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rwxr-xr-x"));
        }
        return dir.resolve("broken-jdk");
    }

    @Test
    void aBrokenJavaHomeIsNamedAndTheNextJdkIsUsed() throws Exception {
        Path broken = brokenJdk();
        Object[] res = launch(Map.of("JAVA_HOME", broken.toString()), "exec bin/headroom info");
        String err = (String) res[2];
        assertEquals(0, res[0], "stdout: " + res[1] + "\nstderr: " + err);
        assertTrue(((String) res[1]).contains("floats per vector"), (String) res[1]);
        assertTrue(err.contains("JAVA_HOME=" + broken), err);
        assertTrue(err.contains("exit status 1") && err.contains("Error: this JDK is broken on purpose"), err);
        assertTrue(err.contains("using "), err);
    }

    @Test
    void whenNoJdkStartsTheLauncherSaysWhichItTriedAndWhatToDo() throws Exception {
        String javaHome = System.getProperty("java.home");
        Object[] res = launch(Map.of("JAVA_HOME", javaHome), "ulimit -v 200000; exec bin/headroom info");
        String err = (String) res[2];
        assertNotEquals(0, res[0], err);
        assertEquals("", res[1]);
        assertTrue(err.contains("no JDK 25 or newer could be started"), err);
        assertTrue(err.contains(javaHome + ": "), "names each JDK it tried: " + err);
        assertTrue(err.contains("ulimit -v") && err.contains("200000"), "names the limit and how to raise it: " + err);
        assertTrue(err.contains("HEADROOM_JAVA_OPTS"), err);
    }
}
