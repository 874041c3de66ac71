package dev.headroom.attention;

/**
 * The shape of one multi-head attention layer.
 *
 * @param dModel   model width E: the last dimension of the inputs and the output
 * @param heads    query heads H
 * @param kvHeads  key/value heads G; G divides H. G = H is multi-head, G = 1 multi-query,
 *                 otherwise grouped-query attention: query head h uses key/value head
 *                 h / (H / G), as PyTorch's {@code enable_gqa} and Llama do
 * @param headDim  d, the width of one head (E / H by default; may differ, then the Q/K/V
 *                 projections have H·d or G·d rows and the output projection H·d columns)
 * @param scale    the factor on Q·Kᵀ, 1/√d by default
 * @param rope     rotary position embedding applied to Q and K, or null
 * @param alibiSlopes per query head, the ALiBi slope m_h: head h adds −m_h·|p − j| to its scores
 *                 ({@link Alibi}); null for none. Kept per head (not recomputed from H) so that a
 *                 pruned layer keeps its heads' slopes.
 */
public record AttentionConfig(int dModel, int heads, int kvHeads, int headDim, float scale, RotaryEmbedding rope,
                              float[] alibiSlopes) {

    /** A layer without position encoding. */
    public AttentionConfig(int dModel, int heads, int kvHeads, int headDim, float scale) {
        this(dModel, heads, kvHeads, headDim, scale, null, null);
    }

    public AttentionConfig {
        alibiSlopes = alibiSlopes == null ? null : alibiSlopes.clone(); // a running layer's slopes cannot be changed from outside
        if (alibiSlopes != null && alibiSlopes.length != heads) {
            throw new IllegalArgumentException("ALiBi needs one slope per head: " + alibiSlopes.length + " slopes for " + heads
                    + " heads");
        }
        if (rope != null && rope.rotaryDims() > headDim) {
            throw new IllegalArgumentException("RoPE rotates " + rope.rotaryDims() + " dimensions but head_dim is " + headDim);
        }
        if (dModel < 1) throw new IllegalArgumentException("d_model must be >= 1, got " + dModel);
        if (heads < 1) throw new IllegalArgumentException("heads must be >= 1, got " + heads);
        if (kvHeads < 1) throw new IllegalArgumentException("kv_heads must be >= 1, got " + kvHeads);
        if (heads % kvHeads != 0) {
            throw new IllegalArgumentException("kv_heads (" + kvHeads + ") must divide heads (" + heads + ")");
        }
        if (headDim < 1) throw new IllegalArgumentException("head_dim must be >= 1, got " + headDim);
        if (!Float.isFinite(scale) || scale == 0f) {
            throw new IllegalArgumentException("scale must be finite and non-zero, got " + scale);
        }
    }

    /** E = dModel, H heads of width E / H (H must divide E), G = H, scale 1/√(E/H). */
    public static AttentionConfig of(int dModel, int heads) {
        if (heads < 1) throw new IllegalArgumentException("heads must be >= 1, got " + heads);
        if (dModel % heads != 0) {
            throw new IllegalArgumentException("heads (" + heads + ") must divide d_model (" + dModel
                    + ") unless a head dimension is given");
        }
        int headDim = dModel / heads;
        return new AttentionConfig(dModel, heads, heads, headDim, defaultScale(headDim));
    }

    /** E = dModel, H heads and G key/value heads of width d, scale 1/√d. */
    public static AttentionConfig of(int dModel, int heads, int kvHeads, int headDim) {
        if (headDim < 1) throw new IllegalArgumentException("head_dim must be >= 1, got " + headDim);
        return new AttentionConfig(dModel, heads, kvHeads, headDim, defaultScale(headDim));
    }

    /** The same layer with G key/value heads. */
    public AttentionConfig withKvHeads(int g) {
        return new AttentionConfig(dModel, heads, g, headDim, scale, rope, alibiSlopes);
    }

    /** The same layer with heads of width d; the scale becomes 1/√d. */
    public AttentionConfig withHeadDim(int d) {
        return new AttentionConfig(dModel, heads, kvHeads, d, defaultScale(d), rope, alibiSlopes);
    }

    public AttentionConfig withScale(float s) {
        return new AttentionConfig(dModel, heads, kvHeads, headDim, s, rope, alibiSlopes);
    }

    /** The same layer with rotary position embedding on Q and K (null: none). */
    public AttentionConfig withRope(RotaryEmbedding r) {
        return new AttentionConfig(dModel, heads, kvHeads, headDim, scale, r, alibiSlopes);
    }

    /** The same layer with (or without) ALiBi biases on the scores, with the paper's slopes for H heads. */
    public AttentionConfig withAlibi(boolean on) {
        return new AttentionConfig(dModel, heads, kvHeads, headDim, scale, rope, on ? Alibi.slopes(heads) : null);
    }

    public boolean alibi() {
        return alibiSlopes != null;
    }

    /** A copy of the per-head ALiBi slopes, or null. */
    @Override
    public float[] alibiSlopes() {
        return alibiSlopes == null ? null : alibiSlopes.clone();
    }

    /** The slope of head h (ALiBi must be on): what the kernels read, without copying the array. */
    public float alibiSlope(int h) {
        return alibiSlopes[h];
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof AttentionConfig c && c.dModel == dModel && c.heads == heads && c.kvHeads == kvHeads
                && c.headDim == headDim && Float.compare(c.scale, scale) == 0 && java.util.Objects.equals(c.rope, rope)
                && java.util.Arrays.equals(c.alibiSlopes, alibiSlopes);
    }

    @Override
    public int hashCode() {
        return java.util.Objects.hash(dModel, heads, kvHeads, headDim, scale, rope) * 31 + java.util.Arrays.hashCode(alibiSlopes);
    }

    @Override
    public String toString() {
        return "AttentionConfig[dModel=" + dModel + ", heads=" + heads + ", kvHeads=" + kvHeads + ", headDim=" + headDim + ", scale="
                + scale + (rope == null ? "" : ", " + rope) + (alibiSlopes == null ? "" : ", alibi") + "]";
    }

    static float defaultScale(int headDim) {
        return (float) (1.0 / Math.sqrt(headDim));
    }

    /** Rows of the query projection, H·d. */
    public int queryWidth() {
        return heads * headDim;
    }

    /** Rows of each of the key and value projections, G·d. */
    public int kvWidth() {
        return kvHeads * headDim;
    }

    /** Query heads per key/value head, H / G. */
    public int groupSize() {
        return heads / kvHeads;
    }

    /** The key/value head that query head h reads. */
    public int kvHeadOf(int h) {
        return h / groupSize();
    }

    /** Parameters in W_Q, W_K, W_V, W_O and (if present) their biases. */
    public long parameterCount(boolean bias) {
        long w = (long) dModel * (queryWidth() + 2L * kvWidth()) + (long) queryWidth() * dModel;
        long b = bias ? queryWidth() + 2L * kvWidth() + dModel : 0;
        return w + b;
    }
}
