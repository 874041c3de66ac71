package dev.headroom.spark;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * A Spark standalone cluster on 127.0.0.1 made of this build's jars: one master and some workers,
 * each a JVM of its own started here, each worker with one core. The Spark installation they run
 * is a directory whose {@code jars/} is the build's {@code target/spark-lib} (Spark and its
 * dependencies, as a Spark distribution's jars/ holds them); Headroom reaches the executors the
 * way it reaches a real cluster's, shipped by the driver ({@code spark.jars}). Every wait is
 * bounded; {@link #close()} stops every JVM this started, executors included.
 */
final class LoopbackCluster implements AutoCloseable {
    private static final Duration START = Duration.ofSeconds(90);

    private final Path dir;
    private final int port;
    private final Process master;
    private final List<Process> workers = new ArrayList<>();
    private final Thread reaper = new Thread(this::close, "loopback-cluster-reaper");

    private LoopbackCluster(Path dir, int port, Process master) {
        this.dir = dir;
        this.port = port;
        this.master = master;
        Runtime.getRuntime().addShutdownHook(reaper); // a test JVM that dies leaves no cluster behind
    }

    /** Starts a master and {@code workers} workers (1 core, {@code workerMemory} each) in {@code dir}; returns once all have registered. */
    static LoopbackCluster start(Path dir, int workers, String workerMemory) throws IOException, InterruptedException {
        Path target = Path.of(System.getProperty("headroom.spark.target", "target"));
        Path home = dir.resolve("spark-home");
        Files.createDirectories(home);
        Files.createSymbolicLink(home.resolve("jars"), target.resolve("spark-lib").toAbsolutePath());
        int port = freePort();
        Process master = launch(dir, home, "master", List.of("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                "--port", Integer.toString(port), "--webui-port", Integer.toString(freePort())));
        LoopbackCluster cluster = new LoopbackCluster(dir, port, master);
        try {
            cluster.awaitLog(dir.resolve("master.log"), "I have been elected leader", 1);
            for (int w = 0; w < workers; w++) {
                Path work = dir.resolve("worker" + w);
                Files.createDirectories(work);
                cluster.workers.add(launch(dir, home, "worker" + w, List.of("org.apache.spark.deploy.worker.Worker", "--host",
                        "127.0.0.1", "--cores", "1", "--memory", workerMemory, "--work-dir", work.toString(), "--webui-port",
                        Integer.toString(freePort()), cluster.masterUrl())));
            }
            cluster.awaitLog(dir.resolve("master.log"), "Registering worker", workers);
            return cluster;
        } catch (IOException | InterruptedException | RuntimeException e) {
            cluster.close();
            throw e;
        }
    }

    String masterUrl() {
        return "spark://127.0.0.1:" + port;
    }

    /** Worker w's work directory: work/&lt;app&gt;/&lt;executor&gt;/stderr holds each executor's output. */
    Path workDir(int w) {
        return dir.resolve("worker" + w);
    }

    /** The worker whose executor has id {@code executorId}, if one of them runs it. */
    Optional<Integer> workerRunning(String executorId) {
        for (int w = 0; w < workers.size(); w++) {
            boolean runs = workers.get(w).descendants().anyMatch(p -> {
                String[] args = p.info().arguments().orElse(new String[0]);
                for (int i = 0; i + 1 < args.length; i++) if (args[i].equals("--executor-id") && args[i + 1].equals(executorId)) return true;
                return false;
            });
            if (runs) return Optional.of(w);
        }
        return Optional.empty();
    }

    /** Kills worker w and everything it started (its executor) with SIGKILL, as when its machine dies. */
    void killWorker(int w) {
        Process p = workers.get(w);
        p.descendants().forEach(ProcessHandle::destroyForcibly);
        p.destroyForcibly();
    }

    boolean workerAlive(int w) {
        return workers.get(w).isAlive();
    }

    /** Waits until {@code log} holds {@code line} at least {@code count} times. */
    void awaitLog(Path log, String line, int count) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + START.toNanos();
        while (System.nanoTime() < deadline) {
            if (Files.exists(log) && Files.readString(log).split(java.util.regex.Pattern.quote(line), -1).length - 1 >= count) return;
            if (!master.isAlive()) throw new IllegalStateException("the master exited: " + tail(dir.resolve("master.log")));
            Thread.sleep(200);
        }
        throw new IllegalStateException("no '" + line + "' (" + count + "×) in " + log + " within " + START + ": " + tail(log));
    }

    /** Every executor's directory under worker w's work directory (work/&lt;app&gt;/&lt;executor&gt;). */
    List<Path> executorDirs(int w) throws IOException {
        if (!Files.isDirectory(workDir(w))) return List.of();
        try (Stream<Path> s = Files.walk(workDir(w))) {
            return s.filter(p -> p.getFileName().toString().equals("stderr")).map(Path::getParent).sorted().toList();
        }
    }

    static String tail(Path log) {
        try {
            if (!Files.exists(log)) return "(no " + log + ")";
            List<String> lines = Files.readAllLines(log);
            return String.join("\n", lines.subList(Math.max(0, lines.size() - 15), lines.size()));
        } catch (IOException e) {
            return "(cannot read " + log + ": " + e.getMessage() + ")";
        }
    }

    /** A Spark daemon JVM: this JVM's java, Spark's JVM options for Java 17+, Spark's jars; output to dir/name.log. */
    private static Process launch(Path dir, Path home, String name, List<String> mainAndArgs) throws IOException {
        String java = ProcessHandle.current().info().command().orElseThrow();
        List<String> cmd = new ArrayList<>(List.of(java, "@" + System.getProperty("headroom.spark.jvmOptions", "jvm.options"),
                "-Xmx256m", "-cp", home.resolve("jars") + "/*"));
        cmd.addAll(mainAndArgs);
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve(name + ".log").toFile());
        pb.environment().put("SPARK_HOME", home.toString());
        pb.environment().put("SPARK_LOCAL_IP", "127.0.0.1"); // every socket of the daemons and their executors on loopback
        pb.environment().put("SPARK_SCALA_VERSION", "2.13");
        return pb.start();
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    /** Stops the workers (and their executors) and the master, waiting for each to exit. */
    @Override
    public synchronized void close() {
        List<Process> all = new ArrayList<>(workers);
        all.add(master);
        for (Process p : all) {
            p.descendants().forEach(ProcessHandle::destroy);
            p.destroy();
        }
        for (Process p : all) {
            try {
                if (!p.waitFor(20, java.util.concurrent.TimeUnit.SECONDS)) {
                    p.descendants().forEach(ProcessHandle::destroyForcibly);
                    p.destroyForcibly().waitFor(10, java.util.concurrent.TimeUnit.SECONDS);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                p.destroyForcibly();
            }
        }
        if (Thread.currentThread() != reaper) {
            try {
                Runtime.getRuntime().removeShutdownHook(reaper);
            } catch (IllegalStateException shuttingDown) {
                // the JVM is exiting: the hook is running or about to
            }
        }
    }
}
