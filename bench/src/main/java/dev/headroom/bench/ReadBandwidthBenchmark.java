package dev.headroom.bench;

import dev.headroom.runtime.ReadBandwidth;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.concurrent.TimeUnit;

/**
 * The physical limit of memory-bound kernels: one streaming read of a 1 GiB buffer on
 * {@code threads} threads ({@link ReadBandwidth}). Bytes per second = {@link ReadBandwidth#DEFAULT_BYTES}
 * over the time of an operation.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@State(Scope.Benchmark)
public class ReadBandwidthBenchmark {
    @Param({"1", "2"})
    public int threads;

    private ReadBandwidth bandwidth;

    @Setup(Level.Trial)
    public void setUp() {
        bandwidth = new ReadBandwidth(ReadBandwidth.DEFAULT_BYTES, threads);
    }

    @Benchmark
    public float read() {
        return bandwidth.readOnce();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        bandwidth.close();
    }
}
