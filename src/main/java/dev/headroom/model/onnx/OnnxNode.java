package dev.headroom.model.onnx;

import java.util.List;
import java.util.Map;

/**
 * One node of an ONNX graph (NodeProto): an operator applied to named values.
 *
 * @param name       the node's name, possibly empty (ONNX does not require one)
 * @param opType     the operator, e.g. {@code "MatMul"}, {@code "Erf"}
 * @param domain     the operator set domain; empty for the default {@code ai.onnx}
 * @param inputs     names of the values read, in the operator's argument order; an empty name is
 *                   an omitted optional input
 * @param outputs    names of the values written
 * @param attributes by attribute name
 */
public record OnnxNode(String name, String opType, String domain, List<String> inputs, List<String> outputs,
                       Map<String, OnnxAttribute> attributes) {
    public OnnxNode {
        inputs = List.copyOf(inputs);
        outputs = List.copyOf(outputs);
        attributes = Map.copyOf(attributes);
    }

    /** Input {@code i}, or the empty string when the node has fewer inputs. */
    public String input(int i) {
        return i < inputs.size() ? inputs.get(i) : "";
    }

    /** Output {@code i}, or the empty string when the node has fewer outputs. */
    public String output(int i) {
        return i < outputs.size() ? outputs.get(i) : "";
    }

    @Override
    public String toString() {
        return opType + (name.isEmpty() ? "" : " '" + name + "'") + " " + inputs + " -> " + outputs;
    }
}
