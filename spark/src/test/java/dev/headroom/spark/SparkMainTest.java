package dev.headroom.spark;

import org.apache.spark.launcher.JavaModuleOptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The command line's refusals (before Spark starts) and the JVM options every Spark JVM gets. */
class SparkMainTest {
    @Test
    void jvmOptionsAreSparksOwnListForJava17AndLater() throws Exception {
        // bin/headroom spark and the cluster test start JVMs with @spark/jvm.options; Spark's launcher would give them these
        List<String> file = Files.readAllLines(Path.of("jvm.options")).stream().filter(l -> !l.isBlank()).toList();
        assertEquals(List.of(JavaModuleOptions.defaultModuleOptionArray()), file,
                "spark/jvm.options must be Spark's JavaModuleOptions of this Spark version");
    }

    /** Every job's --help prints without picocli's "Could not format" warning (a bare % sign in a description). */
    @Test
    void everyHelpFormats() {
        assertEquals(List.of(), dev.headroom.cli.HelpText.unformattable(new picocli.CommandLine(new SparkMain())));
    }

    @Test
    void refusesAnExistingOutputBeforeStartingSpark(@TempDir Path dir) throws Exception {
        Files.createDirectories(dir.resolve("out"));
        Files.writeString(dir.resolve("in.txt"), "a sentence\n");
        String err = run(2, "embed", "--input", dir.resolve("in.txt").toString(), "--output", dir.resolve("out").toString());
        assertTrue(err.contains("--output " + dir.resolve("out") + " exists; remove it or pass --overwrite"), err);
        Files.writeString(dir.resolve("y.npy"), "");
        err = run(2, "attention", "--weights", dir.resolve("missing.safetensors").toString(), "--heads", "2", "--input",
                dir.resolve("in.txt").toString(), "--output", dir.resolve("y.npy").toString());
        assertTrue(err.contains("--weights " + dir.resolve("missing.safetensors") + " does not exist"), err);
        err = run(2, "attention", "--weights", dir.resolve("in.txt").toString(), "--heads", "2", "--input",
                dir.resolve("in.txt").toString(), "--output", dir.resolve("y.npy").toString());
        assertTrue(err.contains("--output " + dir.resolve("y.npy") + " exists"), err);
    }

    /** Runs the command line, checks its exit code, returns what it printed on stderr. */
    static String run(int expected, String... args) {
        PrintStream saved = System.err;
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        try {
            assertEquals(expected, SparkMain.execute(args), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setErr(saved);
        }
        return err.toString(StandardCharsets.UTF_8);
    }
}
