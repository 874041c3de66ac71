package dev.headroom.cli;

import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.io.SafeTensors;
import dev.headroom.memory.MemoryLimits;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.LlamaConfig;
import dev.headroom.model.llama.LlamaModel;
import dev.headroom.model.llama.LlamaWeights;
import dev.headroom.model.llama.RandomLlama;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.nio.file.Path;

/**
 * Which decoder a command runs ({@code generate}, and the server module's {@code serve} and
 * {@code serve-bench}): the built-in tiny byte model, a {@code .safetensors} file with Hugging
 * Face Llama key names and its {@code config.json}, or random weights in a config's shape
 * ({@code --dummy-weights}); a config's vocabulary must be bytes (ids 0-255) with special tokens
 * above them.
 */
public final class DecoderOptions {
    @Spec(Spec.Target.MIXEE)
    CommandSpec command;

    @Option(names = "--model", description = "A built-in model: tiny (the default unless --weights or --dummy-weights is given).")
    String model;

    @Option(names = "--weights", description = "A .safetensors file of float32 tensors with Hugging Face Llama key names.")
    Path weights;

    @Option(names = "--config", description = "The config.json that goes with --weights or --dummy-weights.")
    Path config;

    @Option(names = "--mmap", description = "Map --weights instead of copying them into memory (see `run --help`).")
    boolean mmap;

    @Option(names = "--dummy-weights", description = "Random weights in the shape --config gives, instead of --weights (vLLM's "
            + "--load-format dummy; always the same, seed 1): the text is noise; for measuring what runs around a model of that shape.")
    boolean dummy;

    /** The model's name: the built-in one's, "dummy", or the --weights file's name without .safetensors. */
    public String name() {
        if (dummy) return "dummy";
        if (weights == null) return model == null ? "tiny" : model;
        String file = weights.getFileName().toString();
        return file.endsWith(".safetensors") ? file.substring(0, file.length() - ".safetensors".length()) : file;
    }

    /** Loads the model (the caller closes it), refusing a config whose vocabulary is not bytes before reading the weights. */
    public LlamaModel load(MultiHeadAttention.Options options) throws IOException {
        if (weights != null || config != null || dummy) {
            if (model != null) {
                throw new IllegalArgumentException("give one of --model, --weights with --config, or --dummy-weights with --config");
            }
            if (dummy && weights != null) throw new IllegalArgumentException("give either --weights or --dummy-weights, not both");
            if (mmap && dummy) throw new IllegalArgumentException("--mmap maps --weights; --dummy-weights has no file to map");
            if (config == null || (weights == null && !dummy)) {
                throw new IllegalArgumentException(dummy ? "--dummy-weights needs --config" : "--weights and --config go together");
            }
            LlamaConfig c = CliFiles.read(config, "--config", () -> LlamaConfig.read(config));
            tokenizer(c);
            // the weights and the model's packed copy of them (LlamaModel#packedBytes), about as many bytes again
            long bytes = Float.BYTES * c.parameterCount() + LlamaModel.packedBytesFor(c), budget = MemoryLimits.defaultBudget();
            if (dummy && bytes > budget) {
                throw new IllegalArgumentException("--dummy-weights for --config " + config + " would take " + OffHeap.format(bytes) + " ("
                        + c.parameterCount() + " parameters, and their copy packed for decode steps); this process can be given "
                        + OffHeap.format(budget) + " (" + MemoryLimits.explain() + ")");
            }
            if (dummy) return RandomLlama.model(c, 1, options);
            TrackedArena arena = TrackedArena.ofShared();
            try {
                LlamaWeights w = CliFiles.read(weights, "--weights",
                        () -> LlamaWeights.load(weights, c, arena, mmap ? SafeTensors.Load.MAP : SafeTensors.Load.COPY));
                return new LlamaModel(w, options, arena);
            } catch (IOException | RuntimeException e) {
                arena.close();
                throw e;
            }
        }
        String name = model == null ? "tiny" : model;
        if (!name.equals("tiny")) throw new IllegalArgumentException("unknown model '" + name + "'; built in: tiny");
        if (mmap) throw new IllegalArgumentException("--mmap maps --weights; the built-in model is read from the jar");
        return Models.tiny(options);
    }

    /** The byte tokenizer of a model's config, or a message saying why the config does not fit one. */
    public ByteTokenizer tokenizer(LlamaConfig c) {
        try {
            return ByteTokenizer.of(c);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException((command != null ? command.name() : "headroom") + " reads prompts as UTF-8 bytes (ids 0-255) with special tokens above "
                    + "them, which this model's config does not fit: " + e.getMessage());
        }
    }
}
