package dev.headroom.cli;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionKernel;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.DenseKernel;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.TiledKernel;
import dev.headroom.attention.Workspace;
import dev.headroom.blas.OpenBlas;
import dev.headroom.inspect.AttentionCapture;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.generate.Generator;
import dev.headroom.generate.Sampling;
import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.InductionHeads;
import dev.headroom.model.llama.LlamaModel;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.model.Models;
import dev.headroom.report.AttentionReport;
import dev.headroom.sparse.AttentionPattern;
import dev.headroom.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;

/**
 * {@code headroom demo}, no arguments: a real trained model (all-MiniLM-L6-v2) on Headroom's
 * attention — sentence embeddings, what its 72 heads do on a sentence, pictures — a
 * long-sequence memory comparison of the dense, tiled and sliding-window kernels, and the tiny
 * decoder trained here generating text over the KV cache, with its strongest induction head.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "all-MiniLM-L6-v2 on Headroom: embeddings, what its heads do (with pictures), long-sequence memory, and a "
                + "decoder trained here generating text, with its strongest induction head.")
final class DemoCommand implements Callable<Integer> {
    static final String SENTENCE = "Sarah gave Emma her notebook because she trusted her.";
    static final String PROMPT = "The jury said";

    @Option(names = "--out", defaultValue = "demo-output", description = "Where the pictures go (default ${DEFAULT-VALUE}).")
    Path out;

    @Override
    public Integer call() throws Exception {
        PrintStream o = System.out;
        CliFiles.checkOutputDirectory(out, "--out");
        int threads = Runtime.getRuntime().availableProcessors();
        o.printf("Headroom demo: all-MiniLM-L6-v2 (6 layers × 12 heads, d_model 384, from its Maven Central jar) with%n"
                + "Headroom's attention, float32 off the Java heap, OpenBLAS %s, %d threads.%n%n", OpenBlas.coreName(), threads);
        try (TrackedArena arena = TrackedArena.ofShared(); MiniLmEncoder encoder = Models.minilm(arena, threads)) {
            embeddings(o, encoder, arena);
            heads(o, encoder, arena);
        }
        longSequences(o, threads);
        o.println();
        decoder(o, threads);
        o.println();
        o.println("What ran: the encoder's embeddings, LayerNorms, GELU feed-forward and pooling in Java over OpenBLAS, and each");
        o.println("layer's attention in Headroom (Q/K/V from one projection buffer, per-head strided views, Vector API softmax,");
        o.println("key padding for batches). The model is checked against ONNX Runtime in the tests (hidden states within 1e-4).");
        o.println("The decoder: RMSNorm and SwiGLU on the Vector API, RoPE and grouped-query attention over the paged KV cache;");
        o.println("its logits are checked against PyTorch's in the tests (within 1e-4 of the logit scale).");
        o.println("Next: `bin/headroom inspect --model minilm \"your sentence\"`, `bin/headroom prune-study`, `bin/headroom bench --long`.");
        return 0;
    }

    private static void embeddings(PrintStream o, MiniLmEncoder encoder, TrackedArena arena) throws Exception {
        List<String> set = PruneStudyCommand.builtIn();
        List<String> pick = List.of(set.get(0), set.get(1), "Emma lent Sarah a notebook since she trusted her.",
                "A fast brown fox leaps over a sleepy dog.", "Photosynthesis converts sunlight into chemical energy.");
        long t0 = System.nanoTime();
        Tensor e = encoder.embed(pick, arena);
        double ms = (System.nanoTime() - t0) / 1e6;
        o.printf("1. Sentence embeddings (%d sentences in %.0f ms, 384 floats each). Cosine similarity:%n", pick.size(), ms);
        for (int a = 0; a < pick.size(); a++) {
            StringBuilder row = new StringBuilder(String.format(Locale.ROOT, "   %-55s", abbreviate(pick.get(a), 55)));
            for (int b = 0; b < pick.size(); b++) {
                double dot = 0;
                for (int j = 0; j < 384; j++) dot += (double) e.get((long) a * 384 + j) * e.get((long) b * 384 + j);
                row.append(String.format(Locale.ROOT, " %5.2f", dot));
            }
            o.println(row);
        }
        o.println();
    }

    private void heads(PrintStream o, MiniLmEncoder encoder, TrackedArena arena) throws Exception {
        o.printf("2. What the 72 heads do on \"%s\"%n", SENTENCE);
        ModelInspection.Result r = ModelInspection.inspect(encoder, List.of(SENTENCE), arena);
        o.println("   tokens: " + String.join(" ", r.tokens()));
        ModelInspection.summarize(r.layers(), indented(o), false);
        // Which heads link the pronoun "she" to either name: the ambiguity the sentence is known for.
        int she = r.tokens().indexOf("she"), sarah = r.tokens().indexOf("sarah"), emma = r.tokens().indexOf("emma");
        if (she >= 0 && sarah >= 0 && emma >= 0) {
            StringBuilder s = new StringBuilder("   from \"she\": heads with the most attention on a name:");
            record Link(String head, double sarah, double emma) {}
            List<Link> links = new java.util.ArrayList<>();
            for (int l = 0; l < r.layers().size(); l++) {
                AttentionCapture c = r.layers().get(l).capture();
                for (int h = 0; h < 12; h++) links.add(new Link("L" + l + "H" + h, c.get(0, h, she, sarah), c.get(0, h, she, emma)));
            }
            links.sort((x, y) -> Double.compare(Math.max(y.sarah, y.emma), Math.max(x.sarah, x.emma)));
            for (Link k : links.subList(0, 4)) s.append(String.format(Locale.ROOT, " %s (sarah %.2f, emma %.2f)", k.head, k.sarah, k.emma));
            o.println(s);
        }
        InspectCommand.write(out, "all-MiniLM-L6-v2: \"" + SENTENCE + "\"", r.tokens(), r.layers(), new PrintStream(PrintStream.nullOutputStream()));
        Path grid = out.resolve("grid.png");
        CliFiles.write(grid, "the grid of heads", () -> new AttentionReport("all-MiniLM-L6-v2", r.tokens(), r.layers()).writeGridPng(grid));
        o.printf("   pictures: %s (all heads), %s (open in a browser: pick a layer and head), %s, roles.txt, statistics.csv%n%n",
                out.resolve("grid.png"), out.resolve("report.html"), out.resolve("heads"));
    }

    /** The tiny decoder trained here: a short generation with its speeds, and its strongest induction head. */
    private void decoder(PrintStream o, int threads) throws Exception {
        o.println("4. A decoder trained here (tools/tiny: 2.8M parameters, bytes, 1961 American prose from the Brown corpus;");
        o.println("   fluent-looking, not knowledgeable), generating through Headroom's paged KV cache:");
        try (TrackedArena arena = TrackedArena.ofShared(); LlamaModel model = Models.tiny(threads)) {
            ByteTokenizer tok = ByteTokenizer.of(model.config());
            Generator.Result r = new Generator(model, tok).generate(List.of(new Generator.Request(tok.encode(PROMPT), 160,
                    new Sampling(0.8, 40, 0.95, 1961), List.of("\n"))), Generator.Listener.NONE);
            o.println("   \"" + PROMPT + r.outputs().getFirst().text() + "\"");
            Generator.Stats s = r.stats();
            o.printf(Locale.ROOT, "   (temperature 0.8, top-k 40, top-p 0.95, seed 1961; prompt %d tokens at %.0f tokens/s, %d generated at %.0f "
                            + "tokens/s in the decode steps; the decoder's first run in this JVM, so the JIT is still compiling it)%n", s.promptTokens(),
                    s.promptTokensPerSecond(), s.generatedTokens(), s.generatedTokensPerSecond());
            InductionHeads.Result ind = InductionHeads.measure(model, 4, TinyInspection.INDUCTION_LENGTH, TinyInspection.INDUCTION_SEED,
                    arena, false);
            InductionHeads.Head best = ind.strongest();
            Path picture = out.resolve("tiny_induction_head.png");
            CliFiles.write(picture, "the induction head's picture",
                    () -> new AttentionReport("tiny decoder", ind.tokens(), ind.layers()).writeHeadPng(picture, best.layer(), best.head()));
            o.printf(Locale.ROOT, "   Induction heads (Olsson et al. 2022) on random letters repeated twice: loss %.2f bits/token on the first%n"
                            + "   copy, %.2f on the second; strongest head %s puts %.0f%% of its attention on the letter after the earlier%n"
                            + "   occurrence of the current one (%s): %s%n", ind.firstCopyBits(), ind.secondCopyBits(), best.name(),
                    100 * best.induction(), best.isInductionHead() ? "an induction head" : "below the " + InductionHeads.THRESHOLD
                            + " of an induction head", picture);
        }
        o.println("   More: `bin/headroom generate \"prompt\"`, `bin/headroom inspect --model tiny --induction`.");
    }

    private static void longSequences(PrintStream o, int threads) {
        AttentionConfig config = AttentionConfig.of(768, 12);
        o.println("3. Long sequences (one layer, d_model 768, 12 heads, random weights): peak off-heap memory and time");
        o.printf("   %7s %-22s %10s %14s %18s%n", "n", "kernel", "seconds", "peak off-heap", "n×n scores would be");
        try (TrackedArena arena = TrackedArena.ofShared()) {
            AttentionWeights w = AttentionWeights.random(config, true, 7, arena);
            for (int n : new int[]{1024, 4096, 16384}) {   // 1,024 warms the JIT up and is not printed
                record Run(String name, AttentionKernel kernel, Mask mask) {}
                for (Run run : List.of(new Run("dense (full rows)", DenseKernel.INSTANCE, Mask.none()),
                        new Run("tiled exact", new TiledKernel(1024), Mask.none()),
                        new Run("sliding window 512", null, Mask.pattern(AttentionPattern.slidingWindow(512))))) {
                    OffHeap.resetPeak(); // from here: the weights, then everything this run allocates
                    try (TrackedArena run2 = TrackedArena.ofShared(); Workspace ws = new Workspace();
                         MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults()
                                 .withThreads(threads).withKernel(run.kernel))) {
                        Tensor x = Tensor.allocate(run2, 1, n, 768), y = Tensor.allocate(run2, 1, n, 768);
                        SplittableRandom rnd = new SplittableRandom(n);
                        for (long i = 0; i < x.size(); i++) x.set(i, (float) rnd.nextGaussian());
                        mha.prepare(x, null, run.mask, ws);
                        long t0 = System.nanoTime();
                        mha.forward(x, null, run.mask, y, ws);
                        double s = (System.nanoTime() - t0) / 1e9;
                        if (n == 1024) continue;
                        o.printf(Locale.ROOT, "   %7d %-22s %10.2f %14s %18s%n", n, run.name, s,
                                OffHeap.format(OffHeap.peakBytes()), OffHeap.format(4L * 12 * n * n));
                    }
                }
            }
        }
        o.println("   (peak off-heap: weights, input, output, Q/K/V, concatenated heads and per-thread scratch; the n×n column is");
        o.println("    what materialising one float score matrix per head would take, as PyTorch's MultiheadAttention does)");
    }

    /** {@code o} with every println indented by three spaces (the demo's sections). */
    static PrintStream indented(PrintStream o) {
        return new PrintStream(o, true) {
            @Override
            public void println(String x) {
                super.println("   " + x);
            }
        };
    }

    static String abbreviate(String s, int max) {
        return s.length() <= max ? s : s.substring(0, max - 1) + "…";
    }
}
