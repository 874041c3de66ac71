package dev.headroom.probe;

import java.util.ArrayList;
import java.util.List;

/**
 * What one probe reads: the residual stream at a stage (0 = embeddings, l + 1 = after layer l;
 * {@code head} = -1) or one head's output Z_h of layer {@code layer}, before W_O.
 *
 * @param index this representation's place in {@link #all}, and its file in a {@link FeatureStore}
 * @param dim   its width: E for the residual stream, d for a head
 */
public record Representation(int index, int layer, int head, int dim) {
    public boolean isHead() {
        return head >= 0;
    }

    /** "embeddings", "layer 3" (the residual stream after layer 3, 0 first), or "L3H7". */
    public String name() {
        if (isHead()) return "L" + layer + "H" + head;
        return layer == 0 ? "embeddings" : "layer " + (layer - 1);
    }

    /**
     * Every representation of a model: the residual stream at stages 0 … layers (here {@code layer}
     * is the stage), then every head, layer-major.
     */
    public static List<Representation> all(int layers, int heads, int headDim, int hidden) {
        List<Representation> all = new ArrayList<>();
        for (int s = 0; s <= layers; s++) all.add(new Representation(all.size(), s, -1, hidden));
        for (int l = 0; l < layers; l++) {
            for (int h = 0; h < heads; h++) all.add(new Representation(all.size(), l, h, headDim));
        }
        return all;
    }

    public static List<Representation> of(ProbedModel model) {
        return all(model.layers(), model.heads(), model.headDim(), model.hidden());
    }
}
