package dev.headroom.spark;

import org.apache.spark.sql.SparkSession;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

/** One local-mode session for every test class of this JVM (starting one costs seconds), and the test corpus. */
final class LocalSpark {
    private static SparkSession session;

    private LocalSpark() {}

    /** local[2]: two task slots, the machine's two cores; no web UI. */
    static synchronized SparkSession session() {
        if (session == null) {
            session = Sessions.open("headroom-spark tests", "local[2]", Map.of("spark.ui.enabled", "false",
                    "spark.sql.shuffle.partitions", "4", "spark.driver.host", "127.0.0.1", "spark.driver.bindAddress", "127.0.0.1"));
            Runtime.getRuntime().addShutdownHook(new Thread(() -> session.stop()));
        }
        return session;
    }

    /** The library's 300 built-in sentences (4 to 82 tokens). */
    static List<String> sentences() throws IOException {
        try (InputStream in = LocalSpark.class.getResourceAsStream("/dev/headroom/model/sentences.txt")) {
            if (in == null) throw new IOException("the built-in sentences are not on the class path");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8).lines().filter(l -> !l.isBlank()).toList();
        }
    }
}
