package dev.headroom.model.minilm;

import dev.headroom.model.onnx.OnnxAttribute;
import dev.headroom.model.onnx.OnnxGraph;
import dev.headroom.model.onnx.OnnxInitializer;
import dev.headroom.model.onnx.OnnxNode;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.io.TensorFormatException;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Deque;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The weights of a BERT-style encoder (all-MiniLM-L6-v2 and its relatives) found in an ONNX
 * graph exported from PyTorch, copied into the caller's arena in the layouts Headroom computes
 * with. The arena owns everything here; this object owns nothing.
 *
 * <p><b>How tensors are found.</b> Exports name some weights after the PyTorch module
 * ({@code encoder.layer.0.attention.self.query.bias}) but the MatMul weights after nothing
 * ({@code onnx::MatMul_787}), so the mapping follows the data flow instead of names:
 * <ul>
 *   <li><b>embeddings</b>: the Gather indexed by the graph input {@code input_ids} reads the word
 *       table (V, E); the one indexed by {@code token_type_ids} the token type table (T, E); the
 *       third Gather from a (P, E) float table, indexed by a slice of the constant
 *       {@code position_ids} (checked to be 0, 1, 2, …), the position table. Their sum feeds the
 *       embedding LayerNorm.</li>
 *   <li><b>LayerNorm</b>: either a fused {@code LayerNormalization} node (scale, bias, epsilon)
 *       or PyTorch's decomposition ReduceMean → Sub → Pow 2 → ReduceMean → Add eps → Sqrt → Div
 *       → Mul γ → Add β; eps is read from the graph (1e-12 here).</li>
 *   <li><b>a layer</b> starts at the hidden state h. Three MatMuls read h with a constant (E, E)
 *       right operand, each followed by an Add of an (E) bias: Q, K and V. Which is which follows
 *       from where each one ends up, through Reshape and Transpose: the score MatMul reads Q as its
 *       left and K as its right operand; the context MatMul reads the Softmax as its left and V as
 *       its right operand. The score scale is the constant the scores are divided by (√32 here).
 *       The head count is the Reshape target (…, H, d) of Q. After the context MatMul (Transpose,
 *       Reshape) comes the output MatMul with a constant (E, E) and its bias, the residual Add with
 *       h, and LayerNorm: h₁. Then the intermediate MatMul with a constant (E, I) and bias, the
 *       activation (must contain Erf: the exact GELU; the tanh approximation is refused), the output
 *       MatMul with a constant (I, E) and bias, the residual Add with h₁, LayerNorm: the next h.</li>
 *   <li>Layers follow one another until h is the graph output ({@code last_hidden_state}).</li>
 * </ul>
 * For all-MiniLM-L6-v2 this gives, for layer 0, query/key/value/output = {@code onnx::MatMul_787},
 * {@code _788}, {@code _791}, {@code _797}, intermediate {@code _798}, output dense {@code _799},
 * and then 13 names on per layer ({@code _800}…); {@link #mapping()} lists every one.
 *
 * <p><b>Layouts.</b> ONNX MatMul weights are stored (in, out): y = x·W. The attention projections
 * are transposed here into PyTorch's Linear layout (out, in), which {@link AttentionWeights}
 * takes; the FFN weights stay (in, out), which sgemm multiplies without a transpose.
 */
public final class MiniLmWeights {
    /** LayerNorm parameters: γ (E), β (E), and the ε under the square root. */
    public record Norm(Tensor gamma, Tensor beta, float eps) {}

    /**
     * One encoder layer.
     *
     * @param attention          Q, K, V, O in PyTorch layout with biases, H heads
     * @param attentionNorm      the LayerNorm after attention + residual
     * @param intermediateWeight (E, I), (in, out): u = x·W₁ + b₁
     * @param intermediateBias   (I)
     * @param outputWeight       (I, E), (in, out): f = GELU(u)·W₂ + b₂
     * @param outputBias         (E)
     * @param outputNorm         the LayerNorm after FFN + residual
     */
    public record Layer(AttentionWeights attention, Norm attentionNorm, Tensor intermediateWeight, Tensor intermediateBias,
                        Tensor outputWeight, Tensor outputBias, Norm outputNorm) {}

    private final MiniLmConfig config;
    /** (V, E): row t is token t's embedding. */
    private final Tensor wordEmbeddings;
    /** (P, E): row i is position i's embedding plus token type 0's, summed once at load (every input here is type 0). */
    private final Tensor positionAndType0;
    private final Norm embeddingNorm;
    private final List<Layer> layers;
    /** Headroom's name of each tensor → the ONNX constant it came from (and how). */
    private final Map<String, String> mapping;

    private MiniLmWeights(MiniLmConfig config, Tensor wordEmbeddings, Tensor positionAndType0, Norm embeddingNorm,
                          List<Layer> layers, Map<String, String> mapping) {
        this.config = config;
        this.wordEmbeddings = wordEmbeddings;
        this.positionAndType0 = positionAndType0;
        this.embeddingNorm = embeddingNorm;
        this.layers = List.copyOf(layers);
        this.mapping = Collections.unmodifiableMap(mapping);
    }

    public MiniLmConfig config() {
        return config;
    }

    public Tensor wordEmbeddings() {
        return wordEmbeddings;
    }

    public Tensor positionAndType0() {
        return positionAndType0;
    }

    public Norm embeddingNorm() {
        return embeddingNorm;
    }

    public List<Layer> layers() {
        return layers;
    }

    /** Headroom's name of each tensor → the ONNX constant it was copied from, in load order. */
    public Map<String, String> mapping() {
        return mapping;
    }

    /**
     * Finds the encoder's tensors in {@code graph} (see the class comment) and copies them into
     * {@code arena}; the graph's own arena may be closed afterwards.
     *
     * @throws TensorFormatException naming the node or constant that does not fit the expected structure
     */
    public static MiniLmWeights fromOnnx(OnnxGraph graph, Arena arena) throws TensorFormatException {
        return new Mapper(graph, arena).map();
    }

    /**
     * Weights of the same shapes as {@code like}, drawn as BERT initialises a model before training
     * ({@code initializer_range} 0.02): every matrix and embedding table normal(0, 0.02), biases 0,
     * LayerNorm γ = 1 and β = 0 with {@code like}'s ε. The position table here holds position plus
     * token type 0, so it is drawn with the standard deviation of that sum, 0.02·√2. Probing's control
     * for the architecture: what a probe reads from this untrained encoder comes from the shapes, the
     * embedding lookup and the random projections, not from training. Deterministic in {@code seed};
     * everything is allocated in {@code arena}.
     */
    public static MiniLmWeights randomLike(MiniLmWeights like, long seed, Arena arena) {
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed);
        double std = 0.02;
        Tensor word = normal(arena, rnd, std, like.wordEmbeddings.shape());
        Tensor position = normal(arena, rnd, std * Math.sqrt(2), like.positionAndType0.shape());
        Norm embNorm = unitNorm(arena, like.embeddingNorm);
        List<Layer> layers = new ArrayList<>();
        for (Layer l : like.layers) {
            Map<String, Tensor> sd = new LinkedHashMap<>();
            for (Map.Entry<String, Tensor> e : l.attention().stateDict().entrySet()) {
                sd.put(e.getKey(), e.getKey().endsWith(".bias") ? Tensor.allocate(arena, e.getValue().shape())
                        : normal(arena, rnd, std, e.getValue().shape()));
            }
            AttentionWeights attention = AttentionWeights.fromStateDict(l.attention().config(), sd, "");
            layers.add(new Layer(attention, unitNorm(arena, l.attentionNorm()), normal(arena, rnd, std, l.intermediateWeight().shape()),
                    Tensor.allocate(arena, l.intermediateBias().shape()), normal(arena, rnd, std, l.outputWeight().shape()),
                    Tensor.allocate(arena, l.outputBias().shape()), unitNorm(arena, l.outputNorm())));
        }
        Map<String, String> mapping = new LinkedHashMap<>();
        mapping.put("*", "random normal(0, " + std + "), seed " + seed + ", shapes of " + like.config);
        return new MiniLmWeights(like.config, word, position, embNorm, layers, mapping);
    }

    /** A tensor of {@code shape} in {@code arena}, each element normal(0, std). Tensor.allocate zeroes memory. */
    private static Tensor normal(Arena arena, java.util.SplittableRandom rnd, double std, int... shape) {
        Tensor t = Tensor.allocate(arena, shape);
        java.util.Random gaussian = new java.util.Random(rnd.nextLong());
        for (long i = 0; i < t.size(); i++) t.set(i, (float) (gaussian.nextGaussian() * std));
        return t;
    }

    /** γ = 1, β = 0 of {@code like}'s width, with its ε. */
    private static Norm unitNorm(Arena arena, Norm like) {
        Tensor gamma = Tensor.allocate(arena, like.gamma().shape());
        for (long i = 0; i < gamma.size(); i++) gamma.set(i, 1f);
        return new Norm(gamma, Tensor.allocate(arena, like.beta().shape()), like.eps());
    }

    /** The walk over the graph, with the graph, the arena and the mapping record at hand. */
    private static final class Mapper {
        private final OnnxGraph g;
        private final Arena arena;
        private final Map<String, String> mapping = new LinkedHashMap<>();

        Mapper(OnnxGraph g, Arena arena) {
            this.g = g;
            this.arena = arena;
        }

        MiniLmWeights map() throws TensorFormatException {
            // --- embeddings ---
            OnnxNode wordGather = gatherIndexedBy("input_ids");
            OnnxNode typeGather = gatherIndexedBy("token_type_ids");
            OnnxInitializer word = floatConstant(wordGather.input(0), "the word embedding table", 2);
            int V = (int) word.dims()[0], E = (int) word.dims()[1];
            OnnxInitializer type = floatConstant(typeGather.input(0), "the token type table", 2);
            if (type.dims()[1] != E) fail("token type table " + type.describe() + " must have " + E + " columns like the word table");
            OnnxNode positionGather = positionGather(wordGather, typeGather, E);
            OnnxInitializer position = floatConstant(positionGather.input(0), "the position table", 2);
            int P = (int) position.dims()[0];
            checkPositionIds(positionGather, P);

            Tensor wordTable = copy(word, "embeddings.word");
            Tensor positionTable = copy(position, "embeddings.position+type0");
            mapping.put("embeddings.position+type0", position.name() + " + row 0 of " + type.name());
            Tensor typeTable = type.floats();
            for (int i = 0; i < P; i++) {
                for (int j = 0; j < E; j++) {
                    long at = (long) i * E + j;
                    positionTable.set(at, positionTable.get(at) + typeTable.get(j));
                }
            }
            String sum = embeddingSum(wordGather, typeGather, positionGather);
            NormAt embNorm = layerNorm(sum, E, "embeddings.norm");

            // --- layers ---
            List<Layer> layers = new ArrayList<>();
            int heads = 0, I = 0;
            String h = embNorm.output;
            Set<String> outputs = new HashSet<>(g.outputs());
            while (!outputs.contains(h)) {
                if (layers.size() > 1000) fail("more than 1000 layers: the walk does not reach a graph output");
                LayerAt layer = layer(h, E, layers.size());
                if (heads != 0 && (layer.heads != heads || layer.intermediate != I)) {
                    fail("layer " + layers.size() + " has " + layer.heads + " heads and FFN width " + layer.intermediate
                            + ", layer 0 has " + heads + " and " + I);
                }
                heads = layer.heads;
                I = layer.intermediate;
                layers.add(layer.layer);
                h = layer.output;
            }
            if (layers.isEmpty()) fail("no encoder layer between the embeddings and the output " + g.outputs());
            MiniLmConfig config = new MiniLmConfig(V, E, heads, I, layers.size(), P, (int) type.dims()[0]);
            return new MiniLmWeights(config, wordTable, positionTable, embNorm.norm, layers, mapping);
        }

        // ---- embeddings ----

        private OnnxNode gatherIndexedBy(String input) throws TensorFormatException {
            if (!g.inputs().contains(input)) fail("the graph has no input '" + input + "' (inputs: " + g.inputs() + ")");
            for (OnnxNode n : g.consumers(input)) {
                if (n.opType().equals("Gather") && n.input(1).equals(input)) return n;
            }
            throw error("no Gather node reads an embedding table at the indices '" + input + "'");
        }

        private OnnxNode positionGather(OnnxNode word, OnnxNode type, int E) throws TensorFormatException {
            for (OnnxNode n : g.nodes()) {
                if (!n.opType().equals("Gather") || n == word || n == type) continue;
                OnnxInitializer t = g.constants().get(n.input(0));
                if (t != null && t.dataType() == OnnxInitializer.FLOAT && t.dims().length == 2 && t.dims()[1] == E) return n;
            }
            throw error("no third Gather from a (positions, " + E + ") float table: no position embeddings");
        }

        /** The position indices must be 0, 1, 2, …: a Slice of the constant position_ids from 0, or Range. */
        private void checkPositionIds(OnnxNode positionGather, int P) throws TensorFormatException {
            OnnxNode slice = g.producer(positionGather.input(1));
            if (slice == null || !slice.opType().equals("Slice")) return; // computed another way: trust the export
            OnnxInitializer ids = g.constants().get(slice.input(0));
            if (ids == null || ids.integers() == null) return;
            long[] v = ids.integers();
            for (int i = 0; i < v.length; i++) {
                if (v[i] != i) fail("position_ids " + ids.describe() + " holds " + v[i] + " at " + i + "; expected 0, 1, 2, …");
            }
            OnnxInitializer start = g.constants().get(slice.input(1));
            if (start != null && start.integers() != null && start.integers().length == 1 && start.integers()[0] != 0) {
                fail("the positions are sliced from " + start.integers()[0] + ", expected from 0");
            }
        }

        /** The value where word, type and position embeddings have all been added. */
        private String embeddingSum(OnnxNode word, OnnxNode type, OnnxNode position) throws TensorFormatException {
            Set<String> needed = new HashSet<>(List.of(word.output(0), type.output(0), position.output(0)));
            String v = word.output(0);
            Set<String> seen = new HashSet<>(Set.of(v));
            for (int steps = 0; steps < 4; steps++) {
                OnnxNode add = g.consumer(v, "Add");
                if (add == null) break;
                seen.addAll(add.inputs());
                v = add.output(0);
                if (seen.containsAll(needed)) return v;
            }
            throw error("the word, token type and position embeddings (" + needed + ") are not added together");
        }

        // ---- LayerNorm ----

        private record NormAt(Norm norm, String output) {}

        private NormAt layerNorm(String x, int E, String name) throws TensorFormatException {
            OnnxNode fused = g.consumer(x, "LayerNormalization");
            if (fused != null) {
                OnnxAttribute eps = fused.attributes().get("epsilon");
                OnnxAttribute axis = fused.attributes().get("axis");
                if (axis != null && axis.i() != -1 && axis.i() != 2) fail(fused + " normalises over axis " + axis.i() + ", expected -1");
                Norm norm = new Norm(copyVector(fused.input(1), E, name + ".gamma"), copyVector(fused.input(2), E, name + ".beta"),
                        eps == null ? 1e-5f : eps.f());
                return new NormAt(norm, fused.output(0));
            }
            String where = "the LayerNorm of '" + x + "'";
            OnnxNode mean = require(g.consumer(x, "ReduceMean"), where + ": ReduceMean");
            OnnxNode sub = require(g.consumer(x, "Sub"), where + ": Sub (x − mean)");
            if (!sub.input(1).equals(mean.output(0))) fail(sub + " must subtract " + mean.output(0));
            OnnxNode pow = require(g.consumer(sub.output(0), "Pow"), where + ": Pow 2");
            if (g.requireScalar(pow.input(1), "the exponent of " + pow) != 2f) fail(pow + " must square");
            OnnxNode variance = require(g.consumer(pow.output(0), "ReduceMean"), where + ": ReduceMean of squares");
            OnnxNode addEps = require(g.consumer(variance.output(0), "Add"), where + ": Add eps");
            float eps = g.requireScalar(other(addEps, variance.output(0)), "the eps of " + addEps);
            OnnxNode sqrt = require(g.consumer(addEps.output(0), "Sqrt"), where + ": Sqrt");
            OnnxNode div = require(g.consumer(sub.output(0), "Div"), where + ": Div");
            if (!div.input(1).equals(sqrt.output(0))) fail(div + " must divide by " + sqrt.output(0));
            OnnxNode mul = require(g.consumer(div.output(0), "Mul"), where + ": Mul γ");
            OnnxNode add = require(g.consumer(mul.output(0), "Add"), where + ": Add β");
            Norm norm = new Norm(copyVector(other(mul, div.output(0)), E, name + ".gamma"),
                    copyVector(other(add, mul.output(0)), E, name + ".beta"), eps);
            return new NormAt(norm, add.output(0));
        }

        // ---- one encoder layer ----

        private record LayerAt(Layer layer, int heads, int intermediate, String output) {}

        /** A MatMul by a constant weight and the Add of a constant bias after it. */
        private record Dense(OnnxNode matMul, OnnxInitializer weight, OnnxInitializer bias, String output) {}

        private LayerAt layer(String h, int E, int index) throws TensorFormatException {
            String p = "layer." + index;
            // 1. the three projections of h, told apart by where they go
            List<Dense> projections = new ArrayList<>();
            for (OnnxNode n : g.consumers(h)) {
                if (n.opType().equals("MatMul") && n.input(0).equals(h) && g.isConstant(n.input(1))) projections.add(dense(n, E, E));
            }
            if (projections.size() != 3) {
                fail(p + ": expected 3 MatMuls (Q, K, V) reading '" + h + "' with constant weights, found " + projections.size());
            }
            Dense q = null, k = null, v = null;
            OnnxNode scores = null, context = null;
            for (Dense d : projections) {
                Reached r = reachMatMul(d.output);
                boolean fromSoftmax = r.node.input(0).isEmpty() ? false : producerIs(r.node.input(0), "Softmax");
                if (r.operand == 1 && fromSoftmax) {
                    v = d;
                    context = r.node;
                } else if (r.operand == 0) {
                    q = d;
                    scores = r.node;
                } else {
                    k = d;
                    if (scores != null && scores != r.node) fail(p + ": Q and K reach different MatMuls: " + scores + ", " + r.node);
                    scores = r.node;
                }
            }
            if (q == null || k == null || v == null) {
                fail(p + ": could not tell Q, K and V apart (Q " + (q != null) + ", K " + (k != null) + ", V " + (v != null) + ")");
            }
            float divisor = scoreDivisor(scores, context, p);
            int heads = headsOf(q.output, E, p);
            // 2. output projection, residual, LayerNorm
            Dense o = dense(reachMatMulByConstant(context.output(0), p + " attention output"), E, E);
            OnnxNode residual1 = require(residualAdd(o.output, h), p + ": the residual Add of the attention output and '" + h + "'");
            NormAt norm1 = layerNorm(residual1.output(0), E, p + ".attention.norm");
            // 3. FFN: intermediate, GELU, output, residual, LayerNorm
            OnnxNode up = null;
            for (OnnxNode n : g.consumers(norm1.output)) {
                if (n.opType().equals("MatMul") && n.input(0).equals(norm1.output) && g.isConstant(n.input(1))) up = n;
            }
            require(up, p + ": the intermediate MatMul reading '" + norm1.output + "'");
            OnnxInitializer upWeight = floatConstant(up.input(1), p + " intermediate weight", 2);
            int I = (int) upWeight.dims()[1];
            Dense intermediate = dense(up, E, I);
            OnnxNode down = checkGelu(intermediate.output, p);
            Dense output = dense(down, I, E);
            OnnxNode residual2 = require(residualAdd(output.output, norm1.output), p + ": the residual Add of the FFN output");
            NormAt norm2 = layerNorm(residual2.output(0), E, p + ".output.norm");

            AttentionConfig config = AttentionConfig.of(E, heads).withScale(1f / divisor);
            Map<String, Tensor> sd = new LinkedHashMap<>();
            sd.put("q_proj.weight", transposed(q.weight, p + ".q_proj.weight"));
            sd.put("q_proj.bias", copyVector(q.bias.name(), E, p + ".q_proj.bias"));
            sd.put("k_proj.weight", transposed(k.weight, p + ".k_proj.weight"));
            sd.put("k_proj.bias", copyVector(k.bias.name(), E, p + ".k_proj.bias"));
            sd.put("v_proj.weight", transposed(v.weight, p + ".v_proj.weight"));
            sd.put("v_proj.bias", copyVector(v.bias.name(), E, p + ".v_proj.bias"));
            sd.put("o_proj.weight", transposed(o.weight, p + ".o_proj.weight"));
            sd.put("o_proj.bias", copyVector(o.bias.name(), E, p + ".o_proj.bias"));
            AttentionWeights attention = AttentionWeights.fromStateDict(config, sd, "");
            Layer layer = new Layer(attention, norm1.norm,
                    copy(intermediate.weight, p + ".intermediate.weight (in, out)"), copyVector(intermediate.bias.name(), I, p + ".intermediate.bias"),
                    copy(output.weight, p + ".output.weight (in, out)"), copyVector(output.bias.name(), E, p + ".output.bias"),
                    norm2.norm);
            return new LayerAt(layer, heads, I, norm2.output);
        }

        private Dense dense(OnnxNode matMul, int in, int out) throws TensorFormatException {
            OnnxInitializer w = floatConstant(matMul.input(1), "the weight of " + matMul, 2);
            if (w.dims()[0] != in || w.dims()[1] != out) {
                fail("the weight of " + matMul + " is " + w.describe() + ", expected (" + in + ", " + out + ") (in, out)");
            }
            OnnxNode add = require(g.consumer(matMul.output(0), "Add"), "the bias Add after " + matMul);
            String biasName = other(add, matMul.output(0));
            OnnxInitializer bias = floatConstant(biasName, "the bias of " + matMul, 1);
            if (bias.dims()[0] != out) fail("the bias of " + matMul + " is " + bias.describe() + ", expected (" + out + ")");
            return new Dense(matMul, w, bias, add.output(0));
        }

        /** A MatMul reached from a value through reshapes and transposes, and which operand it arrives as. */
        private record Reached(OnnxNode node, int operand) {}

        private static final Set<String> PASS_THROUGH = Set.of("Reshape", "Transpose", "Div", "Mul", "Identity", "Squeeze", "Unsqueeze");

        /** The first MatMul of two computed operands that {@code value} flows into. */
        private Reached reachMatMul(String value) throws TensorFormatException {
            Deque<String> queue = new ArrayDeque<>(List.of(value));
            Set<String> seen = new HashSet<>();
            while (!queue.isEmpty()) {
                String v = queue.poll();
                if (!seen.add(v)) continue;
                for (OnnxNode n : g.consumers(v)) {
                    if (n.opType().equals("MatMul") && !g.isConstant(n.input(0)) && !g.isConstant(n.input(1))) {
                        return new Reached(n, n.input(0).equals(v) ? 0 : 1);
                    }
                    if (PASS_THROUGH.contains(n.opType()) && n.input(0).equals(v)) queue.add(n.output(0));
                }
            }
            throw error("'" + value + "' reaches no MatMul of two computed operands (expected the attention scores or context)");
        }

        /** The first MatMul by a constant that {@code value} flows into through reshapes and transposes. */
        private OnnxNode reachMatMulByConstant(String value, String what) throws TensorFormatException {
            String v = value;
            for (int steps = 0; steps < 8; steps++) {
                OnnxNode next = null;
                for (OnnxNode n : g.consumers(v)) {
                    if (n.opType().equals("MatMul") && n.input(0).equals(v) && g.isConstant(n.input(1))) return n;
                    if (PASS_THROUGH.contains(n.opType()) && n.input(0).equals(v)) next = n;
                }
                if (next == null) break;
                v = next.output(0);
            }
            throw error(what + ": '" + value + "' reaches no MatMul by a constant weight");
        }

        private boolean producerIs(String value, String opType) {
            OnnxNode n = g.producer(value);
            return n != null && n.opType().equals(opType);
        }

        /** The constant the scores are divided by on their way from the score MatMul to the Softmax. */
        private float scoreDivisor(OnnxNode scores, OnnxNode context, String p) throws TensorFormatException {
            OnnxNode softmax = g.producer(context.input(0));
            String v = scores.output(0);
            Float divisor = null;
            for (int steps = 0; steps < 6 && !v.equals(softmax.input(0)); steps++) {
                OnnxNode next = null;
                for (OnnxNode n : g.consumers(v)) if (!n.opType().equals("Shape")) next = n;
                if (next == null) break;
                if (next.opType().equals("Div") && g.isConstant(next.input(1))) {
                    divisor = g.requireScalar(next.input(1), "the score divisor of " + p);
                } else if (next.opType().equals("Mul") && g.isConstant(other(next, v))) {
                    divisor = 1f / g.requireScalar(other(next, v), "the score factor of " + p);
                } else if (!next.opType().equals("Add")) {
                    fail(p + ": unexpected " + next + " between the scores and the Softmax (expected Div by √d and the mask Add)");
                }
                v = next.output(0);
            }
            if (!v.equals(softmax.input(0))) fail(p + ": the scores of " + scores + " do not reach " + softmax);
            if (divisor == null) fail(p + ": no constant scales the scores before " + softmax);
            return divisor;
        }

        /** H from the Reshape of Q to (B, n, H, d): a Concat of shape pieces or a constant shape. */
        private int headsOf(String q, int E, String p) throws TensorFormatException {
            OnnxNode reshape = g.consumer(q, "Reshape");
            require(reshape, p + ": the Reshape of Q into heads");
            OnnxInitializer constantShape = g.constants().get(reshape.input(1));
            long heads, headDim;
            if (constantShape != null && constantShape.integers() != null && constantShape.integers().length == 4) {
                heads = constantShape.integers()[2];
                headDim = constantShape.integers()[3];
            } else {
                OnnxNode concat = g.producer(reshape.input(1));
                if (concat == null || !concat.opType().equals("Concat") || concat.inputs().size() != 4) {
                    throw error(p + ": the shape of " + reshape + " is neither a constant nor a Concat of 4 pieces");
                }
                heads = scalarInteger(concat.input(2), p);
                headDim = scalarInteger(concat.input(3), p);
            }
            if (heads < 1 || heads * headDim != E) {
                fail(p + ": Q is reshaped to " + heads + " heads of " + headDim + ", which does not make d_model " + E);
            }
            return (int) heads;
        }

        private long scalarInteger(String name, String p) throws TensorFormatException {
            OnnxInitializer c = g.constants().get(name);
            if (c == null || c.integers() == null || c.integers().length != 1) {
                throw error(p + ": expected a one-element integer constant '" + name + "' in the head shape, found "
                        + (c == null ? "none" : c.describe()));
            }
            return c.integers()[0];
        }

        /** The Add of {@code value} and {@code residual}. */
        private OnnxNode residualAdd(String value, String residual) {
            for (OnnxNode n : g.consumers(value)) {
                if (n.opType().equals("Add") && n.inputs().contains(residual)) return n;
            }
            return null;
        }

        /**
         * Checks that the activation from {@code u} to the next MatMul is the exact GELU
         * ½·u·(1 + erf(u/√2)) and returns that MatMul.
         */
        private OnnxNode checkGelu(String u, String p) throws TensorFormatException {
            List<String> ops = new ArrayList<>();
            Deque<String> queue = new ArrayDeque<>(List.of(u));
            Set<String> seen = new HashSet<>();
            OnnxNode down = null;
            while (!queue.isEmpty() && ops.size() < 20) {
                String v = queue.poll();
                if (!seen.add(v)) continue;
                for (OnnxNode n : g.consumers(v)) {
                    if (n.opType().equals("MatMul") && g.isConstant(n.input(1))) {
                        down = n;
                        continue;
                    }
                    if (n.opType().equals("Shape")) continue;
                    ops.add(n.opType());
                    if (n.opType().equals("Div") && g.isConstant(n.input(1))) {
                        float s = g.requireScalar(n.input(1), p + " GELU divisor");
                        if (Math.abs(s - Math.sqrt(2)) > 1e-6) fail(p + ": the GELU divides by " + s + ", expected √2");
                    }
                    queue.add(n.output(0));
                }
            }
            if (ops.contains("Tanh")) {
                fail(p + ": the activation " + ops + " is the tanh approximation of GELU; Headroom implements the exact erf form");
            }
            if (ops.contains("Gelu")) {
                fail(p + ": a fused Gelu node is not read yet; expected the Div √2, Erf, Add 1, Mul, Mul ½ decomposition");
            }
            if (!ops.contains("Erf") || down == null) {
                fail(p + ": expected the exact GELU (Div √2, Erf, Add 1, Mul, Mul ½) and then the output MatMul, found " + ops);
            }
            return down;
        }

        // ---- constants and copies ----

        private OnnxInitializer floatConstant(String name, String role, int rank) throws TensorFormatException {
            OnnxInitializer c = g.constants().get(name);
            if (c == null) fail(role + ": '" + name + "' is not a constant of the graph");
            if (c.dataType() != OnnxInitializer.FLOAT) {
                fail(role + " " + c.describe() + " must be FLOAT (data_type 1), got " + OnnxInitializer.typeName(c.dataType())
                        + " (data_type " + c.dataType() + ")");
            }
            if (c.dims().length != rank) fail(role + " " + c.describe() + " must have rank " + rank);
            return c;
        }

        private Tensor copyVector(String name, int length, String as) throws TensorFormatException {
            OnnxInitializer c = floatConstant(name, as, 1);
            if (c.dims()[0] != length) fail(as + " " + c.describe() + " must have " + length + " elements");
            return copy(c, as);
        }

        /** A copy of {@code c} in the caller's arena, same shape. */
        private Tensor copy(OnnxInitializer c, String as) {
            Tensor src = c.floats(), dst = Tensor.allocate(arena, src.shape());
            MemorySegment.copy(src.segment(), 0, dst.segment(), 0, src.byteSize());
            mapping.put(as, c.name() + " " + Arrays.toString(c.dims()));
            return dst;
        }

        /** An (in, out) MatMul weight as an (out, in) Linear weight in the caller's arena. */
        private Tensor transposed(OnnxInitializer c, String as) {
            Tensor src = c.floats();
            int rows = src.dim(0), cols = src.dim(1);
            Tensor dst = Tensor.allocate(arena, cols, rows);
            for (int i = 0; i < rows; i++) {
                for (int j = 0; j < cols; j++) dst.set((long) j * rows + i, src.get((long) i * cols + j));
            }
            mapping.put(as, c.name() + " " + Arrays.toString(c.dims()) + " transposed");
            return dst;
        }

        private static String other(OnnxNode binary, String known) {
            return binary.input(0).equals(known) ? binary.input(1) : binary.input(0);
        }

        private OnnxNode require(OnnxNode n, String what) throws TensorFormatException {
            if (n == null) fail("expected " + what + ", but the graph has no such node");
            return n;
        }

        private void fail(String message) throws TensorFormatException {
            throw error(message);
        }

        private TensorFormatException error(String message) {
            return new TensorFormatException(g.source() + ": not a BERT encoder graph Headroom can map: " + message);
        }
    }
}
