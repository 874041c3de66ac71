package dev.headroom.cli;

import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.cache.KvDtype;
import dev.headroom.generate.Generator;
import dev.headroom.generate.Sampling;
import dev.headroom.memory.OffHeap;
import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.LlamaModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code headroom generate}: text from a Llama-style decoder, streamed as it is generated. */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = {"Continue prompts with a Llama-style decoder through Headroom's KV cache: the built-in tiny byte model "
                + "(a 2.8M-parameter model of 1961 American prose: fluent-looking, not knowledgeable), or a .safetensors file "
                + "with Hugging Face Llama key names and its config.json, whose vocabulary must be bytes (ids 0-255).",
                "One prompt is streamed to standard output as it is generated; several run as one batch and are printed when "
                        + "done. Speeds and cache memory go to standard error."})
final class GenerateCommand implements Callable<Integer> {
    @Mixin
    DecoderOptions decoderOptions;

    @Parameters(arity = "1..*", paramLabel = "PROMPT", description = "The text to continue (<bos> is put before it).")
    List<String> prompts = new ArrayList<>();

    @Option(names = "--max-tokens", defaultValue = "128", description = "At most this many tokens per prompt (default ${DEFAULT-VALUE}); "
            + "generation also stops at the end token and at the model's context.")
    int maxTokens;

    @Option(names = "--greedy", description = "Take the most likely token every time (same as --temperature 0).")
    boolean greedy;

    @Option(names = "--temperature", defaultValue = "0.8", description = "Sampling temperature (default ${DEFAULT-VALUE}; 0: greedy).")
    double temperature;

    @Option(names = "--top-k", defaultValue = "40", description = "Sample from the k most likely tokens (default ${DEFAULT-VALUE}; 0: all).")
    int topK;

    @Option(names = "--top-p", defaultValue = "0.95", description = "Sample from the most likely tokens holding this much probability "
            + "(default ${DEFAULT-VALUE}; 1: all).")
    double topP;

    @Option(names = "--seed", description = "Seed of the sampling (default: a random one, printed so the run can be repeated); "
            + "prompt i of a batch uses seed + i.")
    Long seed;

    @Option(names = "--stop", paramLabel = "STR", description = "Stop when the text reaches STR (not printed); may be repeated.")
    List<String> stops = new ArrayList<>();

    @Option(names = "--kv-dtype", defaultValue = "f32", description = "How the KV cache stores keys and values: f32 (exact), "
            + "f16 or int8 (one scale per token and head) (default ${DEFAULT-VALUE}).")
    String kvDtype;

    @Option(names = "--threads", description = "Worker threads (default: all processors; more are clamped to that, with a warning).")
    Integer threads;

    @Option(names = "--check-finite", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "Check weights and every attention call for NaN and infinities (default: on).")
    boolean checkFinite;

    @Override
    public Integer call() throws IOException {
        if (maxTokens < 0) throw new IllegalArgumentException("--max-tokens must be >= 0, got " + maxTokens);
        for (String s : stops) if (s.isEmpty()) throw new IllegalArgumentException("--stop must not be empty");
        KvDtype dtype = KvDtype.parse(kvDtype);
        long baseSeed = seed != null ? seed : new java.security.SecureRandom().nextLong() >>> 16;
        Sampling sampling = greedy || temperature == 0 ? Sampling.greedy() : new Sampling(temperature, topK, topP, baseSeed);
        MultiHeadAttention.Options options = MultiHeadAttention.Options.defaults().withThreads(Threads.resolve(threads, System.err))
                .withCheckFinite(checkFinite);
        PrintStream out = System.out, err = System.err;
        try (LlamaModel decoder = decoderOptions.load(options)) {
            ByteTokenizer tokenizer = decoderOptions.tokenizer(decoder.config());
            List<Generator.Request> requests = new ArrayList<>();
            for (int i = 0; i < prompts.size(); i++) {
                requests.add(new Generator.Request(tokenizer.encode(prompts.get(i)), maxTokens,
                        sampling.isGreedy() ? sampling : sampling.withSeed(baseSeed + i), stops));
            }
            boolean stream = requests.size() == 1;
            Generator.Result r = new Generator(decoder, tokenizer).withCacheDtype(dtype).generate(requests, (request, token, text) -> {
                if (stream && !text.isEmpty()) {
                    out.print(text);
                    out.flush();
                }
            });
            if (stream) {
                out.println();
            } else {
                for (int i = 0; i < requests.size(); i++) {
                    out.printf("--- %d: %s%n%s%n", i + 1, prompts.get(i), r.outputs().get(i).text());
                }
            }
            out.flush();
            Generator.Stats s = r.stats();
            err.printf(Locale.ROOT, "prompt: %d tokens in %.3f s (%.0f tokens/s); generated: %d tokens, %d of them in decode steps "
                            + "of %.3f s (%.0f tokens/s); %d thread%s%n", s.promptTokens(), s.prefillSeconds(), s.promptTokensPerSecond(),
                    s.generatedTokens(), s.decodeTokens(), s.decodeSeconds(), s.generatedTokensPerSecond(), decoder.threads(),
                    decoder.threads() == 1 ? "" : "s");
            err.printf(Locale.ROOT, "KV cache: %s at most (%s, %.0f bytes per token over %d layers); %s; %s%n",
                    OffHeap.format(s.cachePeakBytes()), dtype.name().toLowerCase(Locale.ROOT), s.cacheBytesPerToken(),
                    decoder.config().layers(), finishes(r),
                    sampling.isGreedy() ? "greedy" : sampling + (seed == null ? " (random; --seed " + baseSeed + " repeats it)" : ""));
        }
        return 0;
    }

    private static String finishes(Generator.Result r) {
        java.util.Map<Generator.Finish, Integer> counts = new java.util.EnumMap<>(Generator.Finish.class);
        for (Generator.Output o : r.outputs()) counts.merge(o.finish(), 1, Integer::sum);
        List<String> parts = new ArrayList<>();
        counts.forEach((f, n) -> parts.add(switch (f) {
            case EOS -> "end token";
            case STOP_STRING -> "stop string";
            case MAX_TOKENS -> "--max-tokens";
            case CONTEXT -> "the model's context";
        } + (r.outputs().size() > 1 ? " ×" + n : "")));
        return "stopped at " + String.join(", ", parts);
    }
}
