package dev.headroom.model.onnx;

import dev.headroom.io.TensorFormatException;
import dev.headroom.tensor.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * What {@link OnnxModelReader} keeps of an ONNX model: the nodes in file order (ONNX requires
 * topological order), the constant tensors (initializers and {@code Constant} node values) by
 * name, and the names of the graph's real inputs and outputs. Float data lives in the arena
 * given to the reader; this object owns nothing.
 */
public final class OnnxGraph {
    private final String source;
    private final long irVersion;
    private final String producer;
    private final List<OnnxNode> nodes;
    private final Map<String, OnnxInitializer> constants;
    private final List<String> inputs, outputs;
    /** Value name → the node that writes it. */
    private final Map<String, OnnxNode> producers = new HashMap<>();
    /** Value name → the nodes that read it, in graph order. */
    private final Map<String, List<OnnxNode>> consumers = new HashMap<>();

    public OnnxGraph(String source, long irVersion, String producer, List<OnnxNode> nodes,
              Map<String, OnnxInitializer> constants, List<String> inputs, List<String> outputs) {
        this.source = source;
        this.irVersion = irVersion;
        this.producer = producer;
        this.nodes = List.copyOf(nodes);
        this.constants = Collections.unmodifiableMap(constants);
        this.inputs = List.copyOf(inputs);
        this.outputs = List.copyOf(outputs);
        for (OnnxNode n : nodes) {
            for (String out : n.outputs()) producers.put(out, n);
            for (String in : n.inputs()) {
                if (!in.isEmpty()) consumers.computeIfAbsent(in, k -> new ArrayList<>()).add(n);
            }
        }
    }

    /** Where the model came from (a path or resource name), for messages. */
    public String source() {
        return source;
    }

    public long irVersion() {
        return irVersion;
    }

    public String producer() {
        return producer;
    }

    public List<OnnxNode> nodes() {
        return nodes;
    }

    /** Initializers and {@code Constant} node values, by value name. */
    public Map<String, OnnxInitializer> constants() {
        return constants;
    }

    /** Names of the graph inputs that are not initializers (what a caller feeds). */
    public List<String> inputs() {
        return inputs;
    }

    public List<String> outputs() {
        return outputs;
    }

    /** The node that writes {@code value}, or null (a graph input or a constant). */
    public OnnxNode producer(String value) {
        return producers.get(value);
    }

    /** The nodes that read {@code value}, in graph order. */
    public List<OnnxNode> consumers(String value) {
        return consumers.getOrDefault(value, List.of());
    }

    /** The single consumer of {@code value} with operator {@code opType}, or null. */
    public OnnxNode consumer(String value, String opType) {
        OnnxNode found = null;
        for (OnnxNode n : consumers(value)) {
            if (n.opType().equals(opType)) {
                if (found != null) return null;
                found = n;
            }
        }
        return found;
    }

    public boolean isConstant(String value) {
        return constants.containsKey(value);
    }

    /**
     * The float constant {@code name}, checked to have exactly {@code shape}.
     *
     * @throws TensorFormatException naming the constant, the expected shape and what was found
     */
    public Tensor requireFloat(String name, String role, int... shape) throws TensorFormatException {
        OnnxInitializer c = constants.get(name);
        if (c == null) {
            throw new TensorFormatException(source + ": " + role + " expects a constant named '" + name
                    + "' of shape " + Arrays.toString(shape) + ", but the graph has none");
        }
        if (c.dataType() != OnnxInitializer.FLOAT) {
            throw new TensorFormatException(source + ": " + role + " " + c.describe() + " must be FLOAT (data_type 1), got "
                    + OnnxInitializer.typeName(c.dataType()) + " (data_type " + c.dataType() + ")");
        }
        long[] want = Arrays.stream(shape).asLongStream().toArray();
        boolean scalarOk = shape.length == 1 && shape[0] == 1 && c.dims().length == 0;
        if (!Arrays.equals(c.dims(), want) && !scalarOk) {
            throw new TensorFormatException(source + ": " + role + " " + c.describe() + " must have shape "
                    + Arrays.toString(shape) + ", got " + Arrays.toString(c.dims()));
        }
        return c.floats();
    }

    /** The value of a float scalar constant (a one-element tensor of any rank). */
    public float requireScalar(String name, String role) throws TensorFormatException {
        OnnxInitializer c = constants.get(name);
        if (c == null || c.dataType() != OnnxInitializer.FLOAT || c.elementCount() != 1) {
            throw new TensorFormatException(source + ": " + role + " expects a one-element FLOAT constant named '" + name
                    + "', found " + (c == null ? "none" : c.describe()));
        }
        return c.floats().get(0);
    }
}
