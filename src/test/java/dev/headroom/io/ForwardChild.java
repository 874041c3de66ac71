package dev.headroom.io;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;

import java.nio.file.Path;

/**
 * The child JVM of {@link FileChangeTest}: loads weights (copied, or mapped with "map"), prints
 * "loaded", runs one forward, writes its output and prints "done".
 * Arguments: weights input output heads threads copy|map.
 */
public final class ForwardChild {
    private ForwardChild() {}

    public static void main(String[] args) throws Exception {
        Path weights = Path.of(args[0]), input = Path.of(args[1]), output = Path.of(args[2]);
        int heads = Integer.parseInt(args[3]), threads = Integer.parseInt(args[4]);
        SafeTensors.Load load = args[5].equals("map") ? SafeTensors.Load.MAP : SafeTensors.Load.COPY;
        try (TrackedArena arena = TrackedArena.ofShared()) {
            Tensor x = Npy.read(input, arena);
            AttentionWeights w = AttentionWeights.load(weights, AttentionConfig.of(x.dim(-1), heads), "", arena, load);
            System.out.println("loaded");
            System.out.flush();
            try (MultiHeadAttention mha = new MultiHeadAttention(w, MultiHeadAttention.Options.defaults().withThreads(threads))) {
                Npy.write(output, mha.forward(x, Mask.none(), arena));
            }
        }
        System.out.println("done");
    }
}
