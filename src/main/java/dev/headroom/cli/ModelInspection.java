package dev.headroom.cli;

import dev.headroom.inspect.HeadRole;
import dev.headroom.inspect.HeadSummary;
import dev.headroom.inspect.LayerInspection;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.minilm.EncoderWorkspace;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.model.Models;
import dev.headroom.model.tokenizer.TokenBatch;
import dev.headroom.report.AttentionReport;
import dev.headroom.tensor.Tensor;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.ToDoubleFunction;

/** Head inspection of a whole built-in model (all-MiniLM-L6-v2, or the tiny decoder: {@link TinyInspection}) on given sentences. */
final class ModelInspection {
    private ModelInspection() {}

    /** Every layer's capture and statistics for the sentences (batched, padded), and the first sentence's tokens. */
    record Result(List<AttentionReport.Layer> layers, List<String> tokens) {}

    static Result inspect(MiniLmEncoder encoder, List<String> sentences, TrackedArena arena) {
        TokenBatch batch = encoder.tokenizer().encodeBatch(sentences);
        int n = batch.length();
        List<List<String>> tokens = new ArrayList<>();
        for (int b = 0; b < batch.batch(); b++) {
            List<String> t = new ArrayList<>();
            for (int i = 0; i < n; i++) t.add(i < batch.lengths()[b] ? encoder.tokenizer().token(batch.ids()[b * n + i]) : "[PAD]");
            tokens.add(t);
        }
        List<AttentionReport.Layer> layers = new ArrayList<>();
        Tensor hidden = Tensor.allocate(arena, batch.batch(), n, encoder.config().hidden());
        try (EncoderWorkspace ws = new EncoderWorkspace()) {
            encoder.lastHiddenState(batch, hidden, ws, (layer, mha, input, mask) -> {
                LayerInspection.Result r = LayerInspection.run(mha, input, mask, tokens, null, batch.lengths(), arena, null);
                layers.add(new AttentionReport.Layer(r.capture(), r.statistics().summaries()));
            });
        }
        return new Result(layers, tokens.getFirst());
    }

    static int run(String model, List<String> sentences, boolean induction, Path out, PrintStream log) throws IOException {
        if (model.equals("tiny")) return TinyInspection.run(sentences, induction, out, log);
        if (!model.equals("minilm")) throw new IllegalArgumentException("unknown model '" + model + "'; known: minilm, tiny");
        if (induction) throw new IllegalArgumentException("--induction needs a decoder: --model tiny");
        List<String> text = sentences.isEmpty() ? List.of("The quick brown fox jumps over the lazy dog.") : sentences;
        try (TrackedArena arena = TrackedArena.ofShared();
             MiniLmEncoder encoder = Models.minilm(arena, Runtime.getRuntime().availableProcessors())) {
            Result r = inspect(encoder, text, arena);
            log.printf("all-MiniLM-L6-v2, %d layers × %d heads, on %d sentence(s); tokens of the first: %s%n",
                    r.layers.size(), encoder.config().heads(), text.size(), String.join(" ", r.tokens));
            InspectCommand.write(out, "all-MiniLM-L6-v2: \"" + text.getFirst() + "\"", r.tokens, r.layers, log);
            summarize(r.layers, log, false);
        }
        return 0;
    }

    /**
     * Role counts and the heads that stand out most for each kind of attention; a causal decoder
     * has no next-token attention to rank, and its first token is {@code <bos>}.
     */
    static void summarize(List<AttentionReport.Layer> layers, PrintStream log, boolean causal) {
        List<HeadSummary> all = new ArrayList<>();
        List<String> names = new ArrayList<>();
        for (int l = 0; l < layers.size(); l++) {
            for (HeadSummary s : layers.get(l).summaries()) {
                all.add(s);
                names.add("L" + l + "H" + s.head());
            }
        }
        Map<HeadRole, Integer> counts = new EnumMap<>(HeadRole.class);
        for (HeadSummary s : all) counts.merge(s.role(), 1, Integer::sum);
        log.println("primary roles: " + counts);
        top(log, all, names, "previous token", HeadSummary::previous);
        if (!causal) top(log, all, names, "next token", HeadSummary::next);
        top(log, all, names, causal ? "delimiters (punctuation)" : "delimiters ([CLS], [SEP], punctuation)", HeadSummary::delimiter);
        top(log, all, names, causal ? "first token (<bos>)" : "first token ([CLS])", HeadSummary::first);
        top(log, all, names, "self", HeadSummary::self);
        top(log, all, names, "normalized entropy (broad)", HeadSummary::normalizedEntropy);
    }

    private static void top(PrintStream log, List<HeadSummary> all, List<String> names, String what, ToDoubleFunction<HeadSummary> f) {
        List<Integer> idx = new ArrayList<>();
        for (int i = 0; i < all.size(); i++) if (!Double.isNaN(f.applyAsDouble(all.get(i)))) idx.add(i);
        idx.sort(Comparator.comparingDouble(i -> -f.applyAsDouble(all.get(i))));
        StringBuilder s = new StringBuilder(String.format(Locale.ROOT, "most %-40s", what + ":"));
        for (int k = 0; k < Math.min(4, idx.size()); k++) {
            s.append(String.format(Locale.ROOT, " %s %.2f", names.get(idx.get(k)), f.applyAsDouble(all.get(idx.get(k)))));
        }
        log.println(s.toString());
    }
}
