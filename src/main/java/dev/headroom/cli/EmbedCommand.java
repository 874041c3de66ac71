package dev.headroom.cli;

import dev.headroom.io.Npy;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.minilm.EncoderWorkspace;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.model.Models;
import dev.headroom.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code headroom embed}: sentence embeddings from a trained model that ships with Headroom. */
@Command(name = "embed", mixinStandardHelpOptions = true,
        description = "Embed sentences with a trained model (L2-normalised, one row per sentence) and write them as "
                + ".npy, or print a preview of each.")
final class EmbedCommand implements Callable<Integer> {
    @Option(names = "--model", defaultValue = "minilm",
            description = "The model: minilm (sentence-transformers all-MiniLM-L6-v2, 384 dimensions). Default: ${DEFAULT-VALUE}.")
    String model;

    @Option(names = "--input", description = "A UTF-8 text file, one sentence per line (blank lines are skipped).")
    Path input;

    @Option(names = "--output", description = "Where to write the embeddings, float32 .npy of shape (count, 384).")
    Path output;

    @Option(names = "--threads", description = "Worker threads (default: all processors; more are clamped to that, with a warning).")
    Integer threads;

    @Option(names = "--max-tokens", description = "Truncate each sentence to this many tokens, [CLS] and [SEP] included "
            + "(default: the model's tokenizer.json, 128 for minilm; at most 512).")
    Integer maxTokens;

    @Option(names = "--batch", defaultValue = "32", description = "At most this many sentences per forward pass (sorted by "
            + "length first). Larger values run " + MiniLmEncoder.MAX_USEFUL_BATCH + " at a time: beyond that nothing is "
            + "gained, padding grows, and the embeddings stay those of " + MiniLmEncoder.MAX_USEFUL_BATCH + ". Default: ${DEFAULT-VALUE}.")
    int batch;

    @Parameters(arity = "0..*", paramLabel = "SENTENCE", description = "Sentences to embed (after those of --input).")
    List<String> arguments = new ArrayList<>();

    @Override
    public Integer call() throws Exception {
        if (!model.equals("minilm")) throw new IllegalArgumentException("unknown model '" + model + "'; available: minilm");
        if (output != null) CliFiles.checkOutputFile(output, "--output");
        List<String> sentences = new ArrayList<>();
        if (input != null) {
            for (String line : CliFiles.readUtf8Lines(input, "--input")) if (!line.isBlank()) sentences.add(line);
        }
        sentences.addAll(arguments);
        if (sentences.isEmpty()) {
            throw new IllegalArgumentException("no sentences: give them as arguments or one per line with --input FILE");
        }
        int t = Threads.resolve(threads, System.err);
        long t0 = System.nanoTime();
        // The encoder's weights and the embeddings share one arena, closed when the command ends.
        try (TrackedArena arena = TrackedArena.ofShared(); MiniLmEncoder loaded = Models.minilm(arena, t)) {
            MiniLmEncoder encoder = loaded;
            if (maxTokens != null) {
                encoder = new MiniLmEncoder(loaded.weights(), loaded.tokenizer().withMaxLength(maxTokens), t);
            }
            double loadMs = (System.nanoTime() - t0) / 1e6;
            Tensor embeddings = Tensor.allocate(arena, sentences.size(), encoder.config().hidden());
            long t1 = System.nanoTime();
            try (EncoderWorkspace ws = new EncoderWorkspace()) {
                encoder.embed(sentences, embeddings, ws, batch);
            }
            double embedMs = (System.nanoTime() - t1) / 1e6;
            int truncated = 0;
            for (String s : sentences) {
                if (encoder.tokenizer().encode(s).length == encoder.tokenizer().maxLength()) truncated++;
            }
            if (output != null) {
                CliFiles.write(output, "the embeddings", () -> Npy.write(output, embeddings));
                System.out.printf("%d embeddings %s written to %s%n", sentences.size(), embeddings.shapeString(), output);
            } else {
                for (int i = 0; i < sentences.size(); i++) System.out.println(preview(i, sentences.get(i), embeddings, encoder));
            }
            System.out.printf("model loaded in %.0f ms; %d sentences embedded in %.1f ms on %d threads (%.1f sentences/s)%s%n",
                    loadMs, sentences.size(), embedMs, t, sentences.size() / (embedMs / 1e3),
                    truncated == 0 ? "" : "; " + truncated + " reached the limit of " + encoder.tokenizer().maxLength()
                            + " tokens and were truncated");
            if (encoder != loaded) encoder.close();
        }
        return 0;
    }

    /** One line per sentence: its index, the start of its text, its token count and the first and last values. */
    private static String preview(int i, String sentence, Tensor e, MiniLmEncoder encoder) {
        String text = sentence.length() > 48 ? sentence.substring(0, 47) + "…" : sentence;
        int E = e.dim(1);
        StringBuilder s = new StringBuilder(String.format("%3d  %-50s %3d tokens  [", i, "\"" + text + "\"",
                encoder.tokenizer().encode(sentence).length));
        for (int j = 0; j < 4; j++) s.append(String.format("%+.4f, ", e.at(i, j)));
        s.append("…, ").append(String.format("%+.4f]", e.at(i, E - 1)));
        return s.toString();
    }
}
