package dev.headroom.cli;

import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.inspect.LayerInspection;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.DecoderWorkspace;
import dev.headroom.model.llama.InductionHeads;
import dev.headroom.model.llama.LlamaModel;
import dev.headroom.report.AttentionReport;
import dev.headroom.tensor.Tensor;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/** Head inspection of the tiny decoder: its causal attention on given texts, and its induction heads. */
final class TinyInspection {
    static final String DEFAULT_TEXT = "The jury said it did find that many of Georgia's registration and election laws are outmoded.";
    /** Repeated random strings for the induction measurement: 8 sequences of 100 letters, twice (201 tokens with <bos>). */
    static final int INDUCTION_SEQUENCES = 8, INDUCTION_LENGTH = 100;
    static final long INDUCTION_SEED = 2022;

    private TinyInspection() {}

    /**
     * Every layer's capture and statistics for the texts, each {@code <bos>} + its bytes, as one
     * batch: shorter texts are padded at the end with {@code <eos>}, which causal attention keeps
     * every real token from seeing, and padded rows are left out of the statistics.
     */
    static ModelInspection.Result inspect(LlamaModel model, List<String> texts, TrackedArena arena) {
        ByteTokenizer tok = ByteTokenizer.of(model.config());
        int[][] encoded = texts.stream().map(tok::encode).toArray(int[][]::new);
        int n = Arrays.stream(encoded).mapToInt(e -> e.length).max().orElse(1), B = encoded.length;
        if (n > model.config().maxPositions()) {
            throw new IllegalArgumentException("a text of " + (n - 1) + " bytes makes " + n + " tokens with <bos>; the tiny model's "
                    + "context is " + model.config().maxPositions() + " tokens");
        }
        int pad = model.config().eosTokenIds()[0];
        int[] ids = new int[B * n], lengths = new int[B];
        List<List<String>> labels = new ArrayList<>();
        for (int b = 0; b < B; b++) {
            Arrays.fill(ids, b * n, (b + 1) * n, pad);
            System.arraycopy(encoded[b], 0, ids, b * n, encoded[b].length);
            lengths[b] = encoded[b].length;
            labels.add(InductionHeads.labels(Arrays.copyOfRange(ids, b * n, (b + 1) * n), model.config()));
        }
        List<AttentionReport.Layer> layers = new ArrayList<>();
        try (DecoderWorkspace ws = new DecoderWorkspace()) {
            model.forward(ids, B, new int[]{0}, Tensor.allocate(arena, 1, model.config().vocabSize()), ws, new LlamaModel.LayerHooks() {
                @Override
                public void beforeAttention(int layer, MultiHeadAttention attention, Tensor input, Mask mask) {
                    LayerInspection.Result r = LayerInspection.run(attention, input, mask, labels, null, lengths, arena, null);
                    layers.add(new AttentionReport.Layer(r.capture(), r.statistics().summaries()));
                }
            });
        }
        return new ModelInspection.Result(layers, labels.getFirst());
    }

    static int run(List<String> texts, boolean induction, Path out, PrintStream log) throws IOException {
        try (TrackedArena arena = TrackedArena.ofShared(); LlamaModel model = Models.tiny(Runtime.getRuntime().availableProcessors())) {
            if (induction) {
                if (!texts.isEmpty()) throw new IllegalArgumentException("--induction makes its own sequences; give no text with it");
                InductionHeads.Result r = InductionHeads.measure(model, INDUCTION_SEQUENCES, INDUCTION_LENGTH, INDUCTION_SEED, arena);
                report(r, log);
                writeInduction(r, out, log);
                return 0;
            }
            List<String> text = texts.isEmpty() ? List.of(DEFAULT_TEXT) : texts;
            ModelInspection.Result r = inspect(model, text, arena);
            log.printf("tiny byte decoder, %d layers × %d heads (causal), on %d text(s); the first has %d tokens%n",
                    r.layers().size(), model.config().heads(), text.size(), r.tokens().size());
            InspectCommand.write(out, "tiny decoder: \"" + text.getFirst() + "\"", r.tokens(), r.layers(), log);
            ModelInspection.summarize(r.layers(), log, true);
        }
        return 0;
    }

    /** The table of every head's scores and the losses on the two copies. */
    static void report(InductionHeads.Result r, PrintStream log) {
        log.printf(Locale.ROOT, "induction on %d random strings of %d letters, each repeated once (<bos> s s), seed %d:%n",
                r.sequences(), r.length(), INDUCTION_SEED);
        log.printf(Locale.ROOT, "  loss on the first copy %.3f bits/token, on the second %.3f (in-context copying gains %.3f)%n",
                r.firstCopyBits(), r.secondCopyBits(), r.firstCopyBits() - r.secondCopyBits());
        log.println("  head   induction  prefix-match  duplicate  previous  ablated: +bits on 2nd copy");
        for (InductionHeads.Head h : r.heads()) {
            log.printf(Locale.ROOT, "  %-5s  %9.3f  %12.3f  %9.3f  %8.3f  %+8.3f%s%n", h.name(), h.induction(), h.prefixMatching(),
                    h.duplicateToken(), h.previousToken(), h.ablationBits(), h.isInductionHead() ? "  induction head" : "");
        }
        List<InductionHeads.Head> found = r.inductionHeads();
        InductionHeads.Head best = r.strongest();
        log.printf(Locale.ROOT, "  induction heads (induction score >= %.1f): %s; strongest %s (%.3f)%n", InductionHeads.THRESHOLD,
                found.isEmpty() ? "none" : String.join(", ", found.stream().map(InductionHeads.Head::name).toList()),
                best.name(), best.induction());
    }

    /** induction.csv, the strongest head's heatmap and the grid of every head on sequence 0. */
    static void writeInduction(InductionHeads.Result r, Path out, PrintStream log) throws IOException {
        CliFiles.write(out, "the induction report", () -> {
            Files.createDirectories(out);
            StringBuilder csv = new StringBuilder("layer,head,induction,prefix_matching,duplicate_token,previous_token,ablation_bits\n");
            for (InductionHeads.Head h : r.heads()) {
                csv.append(String.format(Locale.ROOT, "%d,%d,%.5f,%.5f,%.5f,%.5f,%.5f%n", h.layer(), h.head(), h.induction(),
                        h.prefixMatching(), h.duplicateToken(), h.previousToken(), h.ablationBits()));
            }
            Files.writeString(out.resolve("induction.csv"), csv.toString());
            AttentionReport report = new AttentionReport("tiny decoder on a repeated random string", r.tokens(), r.layers());
            InductionHeads.Head best = r.strongest();
            report.writeHeadPng(out.resolve("induction_head.png"), best.layer(), best.head());
            report.writeGridPng(out.resolve("induction_grid.png"));
        });
        log.println("wrote induction.csv, induction_head.png (the strongest head " + r.strongest().name() + " on sequence 0), "
                + "induction_grid.png to " + out);
    }
}
