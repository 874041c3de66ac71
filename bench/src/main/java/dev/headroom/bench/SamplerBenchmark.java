package dev.headroom.bench;

import dev.headroom.generate.Sampler;
import dev.headroom.generate.Sampling;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * One sampled token from the logits of one row, as the server's engine thread samples every
 * running stream's row after each step: the tiny decoder's vocabulary (258) or a real one's,
 * serve-bench's settings (temperature 0.8, top-k 40; {@code topK = 0}: no top-k; {@code topP}
 * below 1: top-p). The logits are drawn once, Gaussian with a spread like the tiny model's. Measured (AMD EPYC Zen 5, {@code java -jar
 * bench/target/benchmarks.jar SamplerBenchmark -f 1}, twice): 1.87 µs with top-k 40, 3.4–3.7 µs
 * without; in a 32-stream server the same call, with its row's copy, took 6.7 µs on the engine
 * thread. Selecting the top k instead of sorting all 258 keys gave 1.56–1.70 µs: not kept then.
 * At real vocabularies the sort was what a token cost (AMD EPYC Zen 4, {@code -p topK=40 -f 2 -wi 3
 * -i 3}, docs/results/sampler/): 2,588 µs at 49,152 ids (SmolLM's), 7,106 at 128,256 (Llama 3's),
 * 3.7 at 258; with top-k found by a heap of k (Sampler.topByDecreasingLogit), 112, 329 and 2.0.
 * Without top-k ({@code -p topK=0}), 3,059 and 8,603 µs at 49,152 and 128,256 ids before, 637 and
 * 1,773 with the head of the sorted order taken by the same heap (top-p 0.95: 1,689 and 2,968).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 2)
@State(Scope.Thread)
public class SamplerBenchmark {
    /** The tiny decoder's, SmolLM's and Llama 3's vocabularies. */
    @Param({"258", "49152", "128256"})
    public int vocabulary;

    @Param({"40", "0"})
    public int topK;

    /** Top-p's mass (1 = off). */
    @Param({"1.0"})
    public double topP;

    private float[] logits;
    private Sampler sampler;

    @Setup
    public void setUp() {
        SplittableRandom rnd = new SplittableRandom(5);
        logits = new float[vocabulary];
        for (int i = 0; i < vocabulary; i++) logits[i] = (float) (3 * rnd.nextGaussian());
        sampler = new Sampler(new Sampling(0.8, topK, topP, 42));
    }

    @Benchmark
    public int next() {
        return sampler.next(logits);
    }
}
