package dev.headroom.cli;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.Mask;
import dev.headroom.attention.RotaryEmbedding;
import dev.headroom.sparse.AttentionPattern;
import picocli.CommandLine.Option;

/** Position encodings and attention sinks of `run` (with or without --decode): a picocli mixin. */
final class PositionOptions {
    @Option(names = "--rope-theta", paramLabel = "θ", description = "Rotary position embedding on Q and K with this base (e.g. 10000).")
    Double ropeTheta;

    @Option(names = "--rope-layout", defaultValue = "halves", paramLabel = "pairs|halves",
            description = "Which features rotate together: 'pairs' (2i, 2i+1) as Meta's Llama code and llama2.c, or 'halves' "
                    + "(i, i + R/2) as Hugging Face's rotate_half (default ${DEFAULT-VALUE}).")
    String ropeLayout;

    @Option(names = "--rotary-dims", paramLabel = "R", description = "Features of each head that rotate (even, ≤ head dim; default: all).")
    Integer rotaryDims;

    @Option(names = "--alibi", description = "ALiBi: head h adds −m_h·|p − j| to its scores, with the paper's slopes.")
    boolean alibi;

    @Option(names = "--sinks", paramLabel = "S", description = "Attention sinks (StreamingLLM): the first S tokens, seen by every query; needs --window.")
    Integer sinks;

    @Option(names = "--window", paramLabel = "W", description = "Sliding window of W keys ending at each query, with --sinks (causal).")
    Integer window;

    /** The layer with the position encodings asked for. */
    AttentionConfig apply(AttentionConfig config) {
        if (ropeTheta == null && rotaryDims != null) throw new IllegalArgumentException("--rotary-dims needs --rope-theta");
        if (ropeTheta != null) {
            RotaryEmbedding.Layout layout = switch (ropeLayout.trim().toLowerCase()) {
                case "pairs" -> RotaryEmbedding.Layout.PAIRS;
                case "halves" -> RotaryEmbedding.Layout.HALVES;
                default -> throw new IllegalArgumentException("--rope-layout must be pairs or halves, got '" + ropeLayout + "'");
            };
            config = config.withRope(new RotaryEmbedding(ropeTheta, rotaryDims == null ? config.headDim() : rotaryDims, layout));
        }
        return alibi ? config.withAlibi(true) : config;
    }

    /** The mask with sinks and window, if asked for (they need a causal mask). */
    Mask apply(Mask mask) {
        if (sinks == null && window == null) return mask;
        if (sinks == null || window == null) throw new IllegalArgumentException("--sinks and --window go together");
        if (!mask.isCausal()) throw new IllegalArgumentException("--sinks and --window need --causal");
        return mask.withPattern(AttentionPattern.streaming(sinks, window));
    }
}
