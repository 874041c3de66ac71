package dev.headroom.attention;

import dev.headroom.io.Npy;
import dev.headroom.io.SafeTensors;
import dev.headroom.io.TensorFormatException;
import dev.headroom.tensor.Matrix;
import dev.headroom.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeSet;
import java.util.stream.Stream;

/**
 * The parameters of one attention layer, in PyTorch's layouts, borrowed from memory the caller's
 * arena owns (loaded .npy files, a .safetensors file copied or, on request, mapped, or random
 * initialisation). The weights never own or free anything.
 *
 * <p>Two naming schemes are read, optionally under a key prefix such as {@code "layer.0.attn."}:
 * <ul>
 *   <li>{@code nn.MultiheadAttention}: {@code in_proj_weight} (3E, E) holding W_Q, W_K, W_V one
 *       below the other, {@code in_proj_bias} (3E), {@code out_proj.weight} (E, E),
 *       {@code out_proj.bias} (E). This scheme has G = H and d = E / H.</li>
 *   <li>separate projections, as in Llama and for grouped-query attention:
 *       {@code q_proj.weight} (H·d, E), {@code k_proj.weight} (G·d, E), {@code v_proj.weight}
 *       (G·d, E), {@code o_proj.weight} (E, H·d), each with an optional {@code .bias};
 *       {@code out_proj.*} is accepted in place of {@code o_proj.*}.</li>
 * </ul>
 * Biases are optional; a layer has either all four or none.
 */
public final class AttentionWeights {
    private final AttentionConfig config;
    /** W_Q: (H·d, E), row-major, PyTorch's Linear layout (out_features, in_features). */
    final Matrix wq;
    /** W_K: (G·d, E). */
    final Matrix wk;
    /** W_V: (G·d, E). */
    final Matrix wv;
    /** W_O: (E, H·d). */
    final Matrix wo;
    /** b_Q (H·d), b_K (G·d), b_V (G·d), b_O (E); all null when the layer has no biases. */
    final Tensor bq, bk, bv, bo;

    private AttentionWeights(AttentionConfig config, Matrix wq, Matrix wk, Matrix wv, Matrix wo,
                             Tensor bq, Tensor bk, Tensor bv, Tensor bo) {
        this.config = config;
        this.wq = wq;
        this.wk = wk;
        this.wv = wv;
        this.wo = wo;
        this.bq = bq;
        this.bk = bk;
        this.bv = bv;
        this.bo = bo;
        int E = config.dModel(), qw = config.queryWidth(), kw = config.kvWidth();
        checkShape("W_Q", wq, qw, E);
        checkShape("W_K", wk, kw, E);
        checkShape("W_V", wv, kw, E);
        checkShape("W_O", wo, E, qw);
        boolean any = bq != null || bk != null || bv != null || bo != null;
        boolean all = bq != null && bk != null && bv != null && bo != null;
        if (any && !all) {
            throw new IllegalArgumentException("biases must be given for all of Q, K, V and O or for none; got b_Q="
                    + (bq != null) + ", b_K=" + (bk != null) + ", b_V=" + (bv != null) + ", b_O=" + (bo != null));
        }
        if (all) {
            checkLength("b_Q", bq, qw);
            checkLength("b_K", bk, kw);
            checkLength("b_V", bv, kw);
            checkLength("b_O", bo, E);
        }
    }

    private void checkShape(String name, Matrix m, int rows, int cols) {
        if (m.rows() != rows || m.cols() != cols) {
            throw new IllegalArgumentException(name + " must be (" + rows + ", " + cols + ") for " + describe(config)
                    + ", got (" + m.rows() + ", " + m.cols() + ")");
        }
    }

    private void checkLength(String name, Tensor b, int length) {
        if (b.size() != length) {
            throw new IllegalArgumentException(name + " must have " + length + " elements for " + describe(config)
                    + ", got shape " + b.shapeString());
        }
    }

    static String describe(AttentionConfig c) {
        return "d_model=" + c.dModel() + ", heads=" + c.heads() + ", kv_heads=" + c.kvHeads() + ", head_dim=" + c.headDim();
    }

    public AttentionConfig config() {
        return config;
    }

    public boolean hasBias() {
        return bq != null;
    }

    /** Builds the weights from a state dict (key → tensor), as described in the class comment. */
    public static AttentionWeights fromStateDict(AttentionConfig config, Map<String, Tensor> stateDict, String prefix) {
        String p = prefix == null ? "" : prefix;
        Tensor inProj = stateDict.get(p + "in_proj_weight");
        Matrix wq, wk, wv;
        Tensor bq = null, bk = null, bv = null;
        int E = config.dModel();
        if (inProj != null) {
            if (config.kvHeads() != config.heads() || config.queryWidth() != E) {
                throw new IllegalArgumentException(p + "in_proj_weight holds equal-width Q, K and V; it cannot serve "
                        + describe(config) + " (use q_proj/k_proj/v_proj for grouped-query attention or another head dim)");
            }
            Matrix m = matrix(inProj, p + "in_proj_weight", 3 * E, E);
            wq = m.rowRange(0, E);
            wk = m.rowRange(E, 2 * E);
            wv = m.rowRange(2 * E, 3 * E);
            Tensor inBias = stateDict.get(p + "in_proj_bias");
            if (inBias != null) {
                if (inBias.size() != 3L * E) {
                    throw new IllegalArgumentException(p + "in_proj_bias must have 3·E = " + 3 * E
                            + " elements, got shape " + inBias.shapeString());
                }
                MemorySegment s = inBias.segment();
                long bytes = (long) E * Float.BYTES;
                bq = Tensor.wrap(s.asSlice(0, bytes), E);
                bk = Tensor.wrap(s.asSlice(bytes, bytes), E);
                bv = Tensor.wrap(s.asSlice(2 * bytes, bytes), E);
            }
        } else {
            wq = matrix(require(stateDict, p, "q_proj.weight"), p + "q_proj.weight", config.queryWidth(), E);
            wk = matrix(require(stateDict, p, "k_proj.weight"), p + "k_proj.weight", config.kvWidth(), E);
            wv = matrix(require(stateDict, p, "v_proj.weight"), p + "v_proj.weight", config.kvWidth(), E);
            bq = stateDict.get(p + "q_proj.bias");
            bk = stateDict.get(p + "k_proj.bias");
            bv = stateDict.get(p + "v_proj.bias");
        }
        String outName = stateDict.containsKey(p + "out_proj.weight") ? "out_proj" : "o_proj";
        Matrix wo = matrix(require(stateDict, p, outName + ".weight"), p + outName + ".weight", E, config.queryWidth());
        Tensor bo = stateDict.get(p + outName + ".bias");
        return new AttentionWeights(config, wq, wk, wv, wo, bq, bk, bv, bo);
    }

    private static Tensor require(Map<String, Tensor> sd, String prefix, String key) {
        Tensor t = sd.get(prefix + key);
        if (t == null) {
            throw new IllegalArgumentException("weights have neither '" + prefix + "in_proj_weight' nor '" + prefix + key
                    + "'; keys present: " + new TreeSet<>(sd.keySet()));
        }
        return t;
    }

    private static Matrix matrix(Tensor t, String name, int rows, int cols) {
        if (t.rank() != 2 || t.dim(0) != rows || t.dim(1) != cols) {
            throw new IllegalArgumentException(name + " must have shape (" + rows + ", " + cols + "), got " + t.shapeString());
        }
        return t.matrix();
    }

    /**
     * Loads weights from a directory of {@code <key>.npy} files or from a {@code .safetensors} file,
     * copied into {@code arena}, which owns them: the files may change afterwards without effect.
     */
    public static AttentionWeights load(Path source, AttentionConfig config, String prefix, Arena arena) throws IOException {
        return load(source, config, prefix, arena, SafeTensors.Load.COPY);
    }

    /**
     * As {@link #load(Path, AttentionConfig, String, Arena)}, with a {@code .safetensors} file
     * copied or mapped as {@code load} says ({@link SafeTensors.Load#MAP}: nothing copied, but the
     * process can crash if the file is truncated or rewritten while the arena is open).
     */
    public static AttentionWeights load(Path source, AttentionConfig config, String prefix, Arena arena, SafeTensors.Load load)
            throws IOException {
        return fromStateDict(config, readStateDict(source, arena, load), prefix);
    }

    /** All tensors of a directory of .npy files (key = file name without .npy) or of a .safetensors file, copied. */
    public static Map<String, Tensor> readStateDict(Path source, Arena arena) throws IOException {
        return readStateDict(source, arena, SafeTensors.Load.COPY);
    }

    /** All tensors of a directory of .npy files (always copied) or of a .safetensors file (copied or mapped). */
    public static Map<String, Tensor> readStateDict(Path source, Arena arena, SafeTensors.Load load) throws IOException {
        if (Files.isDirectory(source)) {
            Map<String, Tensor> sd = new LinkedHashMap<>();
            List<Path> files;
            try (Stream<Path> list = Files.list(source)) {
                files = list.filter(f -> f.getFileName().toString().endsWith(".npy")).sorted().toList();
            }
            if (files.isEmpty()) throw new TensorFormatException(source + ": directory holds no .npy files");
            for (Path f : files) {
                String name = f.getFileName().toString();
                sd.put(name.substring(0, name.length() - 4), Npy.read(f, arena));
            }
            return sd;
        }
        if (!Files.exists(source)) throw new TensorFormatException(source + ": no such weights file or directory");
        if (source.getFileName().toString().endsWith(".safetensors")) return SafeTensors.open(source, arena, load);
        throw new TensorFormatException(source + ": weights must be a directory of .npy files or a .safetensors file");
    }

    /** The weights as a state dict in the separate-projection scheme (q_proj, k_proj, v_proj, o_proj). */
    public Map<String, Tensor> stateDict() {
        Map<String, Tensor> sd = new LinkedHashMap<>();
        sd.put("q_proj.weight", denseView(wq));
        sd.put("k_proj.weight", denseView(wk));
        sd.put("v_proj.weight", denseView(wv));
        sd.put("o_proj.weight", denseView(wo));
        if (hasBias()) {
            sd.put("q_proj.bias", bq);
            sd.put("k_proj.bias", bk);
            sd.put("v_proj.bias", bv);
            sd.put("o_proj.bias", bo);
        }
        return sd;
    }

    private static Tensor denseView(Matrix m) {
        // Views with ld == cols over their own rows are already dense: wrap without copying.
        if (m.ld() == m.cols()) {
            long bytes = (long) m.rows() * m.cols() * Float.BYTES;
            return Tensor.wrap(m.segment().asSlice(m.offset() * Float.BYTES, bytes), m.rows(), m.cols());
        }
        throw new IllegalStateException("weight view " + m + " is not dense");
    }

    /** Writes the weights as a directory of .npy files named after their state-dict keys. */
    public void saveNpy(Path dir) throws IOException {
        Files.createDirectories(dir);
        for (Map.Entry<String, Tensor> e : stateDict().entrySet()) Npy.write(dir.resolve(e.getKey() + ".npy"), e.getValue());
    }

    /**
     * Random weights in {@code arena}: each matrix uniform in ±√(6 / (fan_in + fan_out)) (Xavier,
     * as PyTorch initialises in_proj_weight), biases uniform in ±0.1 when {@code bias} is set.
     */
    public static AttentionWeights random(AttentionConfig config, boolean bias, long seed, Arena arena) {
        SplittableRandom rnd = new SplittableRandom(seed);
        int E = config.dModel(), qw = config.queryWidth(), kw = config.kvWidth();
        Matrix wq = uniform(arena, rnd, qw, E), wk = uniform(arena, rnd, kw, E), wv = uniform(arena, rnd, kw, E);
        Matrix wo = uniform(arena, rnd, E, qw);
        Tensor bq = null, bk = null, bv = null, bo = null;
        if (bias) {
            bq = uniformVector(arena, rnd, qw);
            bk = uniformVector(arena, rnd, kw);
            bv = uniformVector(arena, rnd, kw);
            bo = uniformVector(arena, rnd, E);
        }
        return new AttentionWeights(config, wq, wk, wv, wo, bq, bk, bv, bo);
    }

    private static Matrix uniform(Arena arena, SplittableRandom rnd, int rows, int cols) {
        Tensor t = Tensor.allocate(arena, rows, cols);
        double bound = Math.sqrt(6.0 / (rows + cols));
        for (long i = 0; i < t.size(); i++) t.set(i, (float) rnd.nextDouble(-bound, bound));
        return t.matrix();
    }

    private static Tensor uniformVector(Arena arena, SplittableRandom rnd, int n) {
        Tensor t = Tensor.allocate(arena, n);
        for (long i = 0; i < n; i++) t.set(i, (float) rnd.nextDouble(-0.1, 0.1));
        return t;
    }

    /**
     * These weights without the given query heads, as new tensors in {@code arena} (these are
     * unchanged): W_Q loses those heads' rows and W_O their columns. With grouped-query attention a
     * key/value head stays shared while every group keeps the same number of query heads; when
     * pruning makes groups uneven, each remaining query head gets its own copy of its key/value
     * head (G' = H').
     */
    public AttentionWeights prune(Arena arena, int... heads) {
        int H = config.heads(), G = config.kvHeads(), d = config.headDim(), E = config.dModel();
        boolean[] drop = new boolean[H];
        for (int h : heads) {
            if (h < 0 || h >= H) throw new IllegalArgumentException("head " + h + " outside [0, " + H + ")");
            drop[h] = true;
        }
        int[] kept = java.util.stream.IntStream.range(0, H).filter(h -> !drop[h]).toArray();
        if (kept.length == 0) throw new IllegalArgumentException("cannot prune all " + H + " heads");
        // Keep GQA when every group that survives keeps the same number of query heads.
        int[] perGroup = new int[G];
        for (int h : kept) perGroup[config.kvHeadOf(h)]++;
        int groupSize = 0;
        boolean even = true;
        for (int c : perGroup) {
            if (c == 0) continue;
            if (groupSize == 0) groupSize = c;
            even &= c == groupSize;
        }
        int[] kvKept = even ? java.util.stream.IntStream.range(0, G).filter(g -> perGroup[g] > 0).toArray()
                : java.util.Arrays.stream(kept).map(config::kvHeadOf).toArray();
        float[] slopes = null;
        if (config.alibi()) {
            slopes = new float[kept.length];
            for (int a = 0; a < kept.length; a++) slopes[a] = config.alibiSlope(kept[a]);
        }
        AttentionConfig c = new AttentionConfig(E, kept.length, kvKept.length, d, config.scale(), config.rope(), slopes);
        Tensor q = Tensor.allocate(arena, kept.length * d, E), o = Tensor.allocate(arena, E, kept.length * d);
        Tensor k = Tensor.allocate(arena, kvKept.length * d, E), v = Tensor.allocate(arena, kvKept.length * d, E);
        for (int a = 0; a < kept.length; a++) copyRows(wq, kept[a] * d, q.matrix(), a * d, d);
        for (int a = 0; a < kvKept.length; a++) {
            copyRows(wk, kvKept[a] * d, k.matrix(), a * d, d);
            copyRows(wv, kvKept[a] * d, v.matrix(), a * d, d);
        }
        for (int e = 0; e < E; e++) {
            for (int a = 0; a < kept.length; a++) {
                MemorySegment.copy(wo.segment(), wo.index(e, kept[a] * d) * Float.BYTES,
                        o.segment(), o.matrix().index(e, a * d) * Float.BYTES, (long) d * Float.BYTES);
            }
        }
        Map<String, Tensor> sd = new LinkedHashMap<>();
        sd.put("q_proj.weight", q);
        sd.put("k_proj.weight", k);
        sd.put("v_proj.weight", v);
        sd.put("o_proj.weight", o);
        if (hasBias()) {
            sd.put("q_proj.bias", gather(arena, bq, kept, d));
            sd.put("k_proj.bias", gather(arena, bk, kvKept, d));
            sd.put("v_proj.bias", gather(arena, bv, kvKept, d));
            Tensor b = Tensor.allocate(arena, E);
            MemorySegment.copy(bo.segment(), 0, b.segment(), 0, (long) E * Float.BYTES);
            sd.put("o_proj.bias", b);
        }
        return fromStateDict(c, sd, "");
    }

    private static void copyRows(Matrix from, int fromRow, Matrix to, int toRow, int rows) {
        for (int r = 0; r < rows; r++) {
            MemorySegment.copy(from.segment(), from.index(fromRow + r, 0) * Float.BYTES, to.segment(),
                    to.index(toRow + r, 0) * Float.BYTES, (long) from.cols() * Float.BYTES);
        }
    }

    private static Tensor gather(Arena arena, Tensor bias, int[] heads, int d) {
        Tensor t = Tensor.allocate(arena, heads.length * d);
        for (int a = 0; a < heads.length; a++) {
            MemorySegment.copy(bias.segment(), (long) heads[a] * d * Float.BYTES, t.segment(), (long) a * d * Float.BYTES,
                    (long) d * Float.BYTES);
        }
        return t;
    }

    @Override
    public String toString() {
        return "AttentionWeights(" + describe(config) + ", bias=" + hasBias() + ")";
    }
}
