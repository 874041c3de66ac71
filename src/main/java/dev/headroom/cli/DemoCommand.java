package dev.headroom.cli;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.blas.OpenBlas;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import picocli.CommandLine.Command;

import java.util.SplittableRandom;
import java.util.concurrent.Callable;

/** {@code headroom demo}: the main job on built-in random weights, no arguments. */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Run multi-head attention at a few sizes on random weights and explain what was computed.")
final class DemoCommand implements Callable<Integer> {
    @Override
    public Integer call() {
        int threads = Runtime.getRuntime().availableProcessors();
        AttentionConfig config = AttentionConfig.of(768, 12);
        System.out.println("Headroom demo: multi-head self-attention, d_model 768, 12 heads of 64 (BERT-base shape),");
        System.out.println("random weights, float32 tensors off the Java heap, matrix work in OpenBLAS " + OpenBlas.coreName()
                + ", " + threads + " threads.");
        double sgemm = SgemmRate.measure(threads, 2048, 3);
        System.out.printf("OpenBLAS's own sgemm rate here: %.0f GFLOP/s.%n%n", sgemm);
        System.out.printf("%7s %8s %10s %9s %12s %16s%n", "n", "mask", "forward", "GFLOP/s", "% of sgemm", "peak off-heap");
        try (TrackedArena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(config, true, 7, arena);
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(threads))) {
                for (int n : new int[]{128, 1024, 4096}) {
                    for (Mask mask : new Mask[]{Mask.none(), Mask.causal()}) {
                        try (TrackedArena run = TrackedArena.ofShared(); Workspace ws = new Workspace()) {
                            Tensor x = Tensor.allocate(run, 1, n, 768), y = Tensor.allocate(run, 1, n, 768);
                            SplittableRandom r = new SplittableRandom(n);
                            for (long i = 0; i < x.size(); i++) x.set(i, (float) r.nextGaussian());
                            mha.forward(x, null, mask, y, ws); // warm-up
                            OffHeap.resetPeak();
                            long best = Long.MAX_VALUE;
                            for (int rep = 0; rep < 3; rep++) {
                                long t0 = System.nanoTime();
                                mha.forward(x, null, mask, y, ws);
                                best = Math.min(best, System.nanoTime() - t0);
                            }
                            double flops = 8.0 * n * 768 * 768 + 4.0 * n * (double) n * 768;
                            if (mask.isCausal()) flops -= 2.0 * n * (double) n * 768; // half the scores are skipped
                            double gf = flops / best;
                            System.out.printf("%7d %8s %8.2f ms %9.1f %11.0f%% %16s%n", n, mask.isCausal() ? "causal" : "none",
                                    best / 1e6, gf, 100 * gf / sgemm, OffHeap.format(OffHeap.peakBytes()));
                        }
                    }
                }
            }
        }
        System.out.println();
        System.out.println("What was computed, for each n: Y = concat_h(softmax(Q_h K_hᵀ / 8 + mask) V_h) W_Oᵀ + b_O with");
        System.out.println("Q, K, V = X W_{Q,K,V}ᵀ + b. Q, K and V come from one projection buffer; each head reads its");
        System.out.println("slice by stride. Scores are formed 256 query rows at a time (they stay in cache), the softmax");
        System.out.println("runs in Java on the Vector API, and the n × n matrix is never stored whole. Causal rows skip");
        System.out.println("the keys they may not see, so causal runs do half the score work. Peak off-heap is every");
        System.out.println("byte Headroom allocated: weights 9 MiB, input, output, projections and per-thread scratch.");
        System.out.println("Time with `bin/headroom bench`; run your own weights with `bin/headroom run --help`.");
        return 0;
    }
}
