package dev.headroom.spark;

import dev.headroom.blas.OpenBlas;
import org.apache.spark.SparkConf;
import org.apache.spark.sql.SparkSession;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The SparkSession of a job: local mode unless a master is given, with what Headroom's executors
 * need wherever they run.
 *
 * <ul>
 *   <li><b>JVM flags</b>: Headroom needs the Vector API module and native access
 *       ({@link #EXECUTOR_FLAGS}); Spark 4.2 puts both in its own list of executor options for
 *       Java 17+, an older Spark 4 does not, so they are added to
 *       {@code spark.executor.extraJavaOptions} either way (after any the user gives).</li>
 *   <li><b>OpenBLAS</b>: an explicit library (the {@code headroom.openblas} property or the
 *       {@code HEADROOM_OPENBLAS} variable of the driver) is given to the executors the same two
 *       ways; otherwise each executor searches its machine's system library as the driver did.</li>
 *   <li><b>Code</b>: on a cluster, this module's jar and the library with its dependencies
 *       ({@code app-lib/} beside the jar) are shipped to the executors ({@code spark.jars});
 *       Spark itself is the cluster's.</li>
 *   <li>{@code spark.driver.maxResultSize} 0 (no limit) unless given: the attention job streams
 *       each task's rows to its output file as they arrive, and the total of all results is the
 *       whole output.</li>
 * </ul>
 */
final class Sessions {
    /** What every executor JVM needs to run Headroom. */
    static final String EXECUTOR_FLAGS = "--add-modules=jdk.incubator.vector --enable-native-access=ALL-UNNAMED";
    /** A comma-separated list of jars to ship instead of this module's jar and app-lib/ (tests). */
    static final String JARS_PROPERTY = "headroom.spark.jars";

    private Sessions() {}

    /** A session named {@code app} on {@code master} ("local[*]", "local[2]", "spark://host:7077", ...), with {@code conf} on top. */
    static SparkSession open(String app, String master, Map<String, String> conf) {
        SparkConf c = new SparkConf().setAppName(app).setMaster(master);
        c.set("spark.driver.maxResultSize", "0");
        String blas = System.getProperty(OpenBlas.PATH_PROPERTY);
        if (blas == null || blas.isBlank()) blas = System.getenv(OpenBlas.PATH_ENV);
        String flags = EXECUTOR_FLAGS;
        if (blas != null && !blas.isBlank()) {
            String absolute = Path.of(blas).toAbsolutePath().toString();
            flags += " -D" + OpenBlas.PATH_PROPERTY + "=" + absolute;
            c.set("spark.executorEnv." + OpenBlas.PATH_ENV, absolute);
        }
        for (Map.Entry<String, String> e : conf.entrySet()) c.set(e.getKey(), e.getValue());
        c.set("spark.executor.extraJavaOptions", (c.get("spark.executor.extraJavaOptions", "") + " " + flags).strip());
        if (!master.startsWith("local")) {
            List<String> jars = new ArrayList<>(appJars());
            String given = c.get("spark.jars", "");
            if (!given.isBlank()) jars.add(given);
            c.set("spark.jars", String.join(",", jars));
        }
        return SparkSession.builder().config(c).getOrCreate();
    }

    /** The jars a cluster's executors need: this module's and app-lib/*.jar beside it. */
    static List<String> appJars() {
        String given = System.getProperty(JARS_PROPERTY);
        if (given != null && !given.isBlank()) return List.of(given.split(","));
        Path self;
        try {
            self = Path.of(Sessions.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException("cannot tell where headroom-spark's classes come from: " + e.getMessage(), e);
        }
        Path lib = self.resolveSibling("app-lib");
        if (!Files.isRegularFile(self) || !Files.isDirectory(lib)) {
            throw new IllegalStateException("cannot ship Headroom to a cluster: its classes come from " + self + ", not from "
                    + "headroom-spark.jar with app-lib/ beside it; build them with `mvn -f spark/pom.xml package` "
                    + "(or name the jars in -D" + JARS_PROPERTY + "=a.jar,b.jar)");
        }
        List<String> jars = new ArrayList<>(List.of(self.toString()));
        try (Stream<Path> files = Files.list(lib)) {
            files.filter(f -> f.toString().endsWith(".jar")).sorted().forEach(f -> jars.add(f.toString()));
        } catch (IOException e) {
            throw new IllegalStateException("cannot list " + lib + ": " + e.getMessage(), e);
        }
        return jars;
    }
}
