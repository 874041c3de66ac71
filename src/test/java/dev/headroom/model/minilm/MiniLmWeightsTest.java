package dev.headroom.model.minilm;

import dev.headroom.model.onnx.OnnxGraph;
import dev.headroom.model.onnx.OnnxInitializer;
import dev.headroom.model.onnx.OnnxModelReader;
import dev.headroom.model.onnx.OnnxNode;
import dev.headroom.model.Models;

import dev.headroom.io.TensorFormatException;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The mapping from the MiniLM ONNX graph to layers: the hyper-parameters read from the graph,
 * which anonymous {@code onnx::MatMul_*} constant became which weight, the transposition into
 * PyTorch's layout, and refusals of graphs that do not have the expected structure (a tanh GELU,
 * a weight of another data type), built by editing the real graph.
 */
class MiniLmWeightsTest {
    static TrackedArena arena;
    static OnnxGraph graph;
    static MiniLmWeights weights;

    @BeforeAll
    static void load() throws Exception {
        arena = TrackedArena.ofConfined();
        try (InputStream in = Models.resource(Models.MINILM_ONNX)) {
            graph = OnnxModelReader.read(in, "minilm.onnx", arena);
        }
        weights = MiniLmWeights.fromOnnx(graph, arena);
    }

    @AfterAll
    static void close() {
        arena.close();
    }

    @Test
    void hyperParametersComeFromTheGraph() {
        MiniLmConfig c = weights.config();
        assertEquals(new MiniLmConfig(30522, 384, 12, 1536, 6, 512, 2), c);
        assertEquals(32, c.headDim());
        assertEquals(1e-12f, weights.embeddingNorm().eps());
        for (MiniLmWeights.Layer layer : weights.layers()) {
            assertEquals(1e-12f, layer.attentionNorm().eps());
            assertEquals(1e-12f, layer.outputNorm().eps());
            assertEquals(12, layer.attention().config().heads());
            assertEquals(1f / 5.656854f, layer.attention().config().scale(), "1 / the graph's divisor √32");
        }
    }

    @Test
    void anonymousMatMulWeightsAreIdentifiedByDataFlow() {
        Map<String, String> m = weights.mapping();
        assertEquals("onnx::MatMul_787 [384, 384] transposed", m.get("layer.0.q_proj.weight"));
        assertEquals("onnx::MatMul_788 [384, 384] transposed", m.get("layer.0.k_proj.weight"));
        assertEquals("onnx::MatMul_791 [384, 384] transposed", m.get("layer.0.v_proj.weight"));
        assertEquals("onnx::MatMul_797 [384, 384] transposed", m.get("layer.0.o_proj.weight"));
        assertEquals("onnx::MatMul_798 [384, 1536]", m.get("layer.0.intermediate.weight (in, out)"));
        assertEquals("onnx::MatMul_799 [1536, 384]", m.get("layer.0.output.weight (in, out)"));
        assertEquals("onnx::MatMul_800 [384, 384] transposed", m.get("layer.1.q_proj.weight"));
        assertEquals("onnx::MatMul_864 [1536, 384]", m.get("layer.5.output.weight (in, out)"));
        // Biases and norms carry PyTorch names: they must line up with the layer found by data flow.
        assertEquals("encoder.layer.3.attention.self.key.bias [384]", m.get("layer.3.k_proj.bias"));
        assertEquals("encoder.layer.5.output.LayerNorm.weight [384]", m.get("layer.5.output.norm.gamma"));
        assertEquals("embeddings.position_embeddings.weight + row 0 of embeddings.token_type_embeddings.weight",
                m.get("embeddings.position+type0"));
    }

    @Test
    void attentionWeightsAreTransposedIntoLinearLayout() throws TensorFormatException {
        Tensor onnx = graph.requireFloat("onnx::MatMul_788", "K of layer 0", 384, 384);   // (in, out)
        Tensor linear = weights.layers().getFirst().attention().stateDict().get("k_proj.weight"); // (out, in)
        for (int i : new int[]{0, 1, 77, 383}) {
            for (int j : new int[]{0, 5, 200, 383}) assertEquals(onnx.at(i, j), linear.at(j, i), "W_K[" + j + ", " + i + "]");
        }
        Tensor position = graph.requireFloat("embeddings.position_embeddings.weight", "positions", 512, 384);
        Tensor type = graph.requireFloat("embeddings.token_type_embeddings.weight", "types", 2, 384);
        assertEquals(position.at(9, 17) + type.at(0, 17), weights.positionAndType0().at(9, 17));
    }

    /** The real graph with some nodes and constants replaced. */
    static OnnxGraph edited(java.util.function.UnaryOperator<OnnxNode> nodes, Map<String, OnnxInitializer> replaced) {
        List<OnnxNode> n = new ArrayList<>();
        for (OnnxNode node : graph.nodes()) n.add(nodes.apply(node));
        Map<String, OnnxInitializer> c = new LinkedHashMap<>(graph.constants());
        c.putAll(replaced);
        return new OnnxGraph("edited.onnx", graph.irVersion(), graph.producer(), n, c, graph.inputs(), graph.outputs());
    }

    @Test
    void aTanhGeluIsRefused() {
        OnnxGraph tanh = edited(n -> n.opType().equals("Erf")
                ? new OnnxNode(n.name(), "Tanh", n.domain(), n.inputs(), n.outputs(), n.attributes()) : n, Map.of());
        TensorFormatException e = assertThrows(TensorFormatException.class, () -> MiniLmWeights.fromOnnx(tanh, arena));
        assertTrue(e.getMessage().contains("layer.0") && e.getMessage().contains("tanh approximation"), e.getMessage());
    }

    @Test
    void aWeightOfAnotherDataTypeIsRefused() {
        OnnxInitializer q = graph.constants().get("onnx::MatMul_800");
        OnnxGraph doubles = edited(n -> n, Map.of(q.name(), new OnnxInitializer(q.name(), 11, q.dims(), null, null)));
        TensorFormatException e = assertThrows(TensorFormatException.class, () -> MiniLmWeights.fromOnnx(doubles, arena));
        assertTrue(e.getMessage().contains("'onnx::MatMul_800'") && e.getMessage().contains("must be FLOAT (data_type 1), got DOUBLE"),
                e.getMessage());
    }
}
