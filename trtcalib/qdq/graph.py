"""Small read-only views of an ONNX graph: producers, consumers and constant values."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper


class GraphView:
    """Who produces and who consumes each tensor, and which tensors are constants.

    Built once from a graph; rebuild it after editing the graph.
    """

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.initializers = {init.name: init for init in graph.initializer}
        self.constant_nodes = {
            node.output[0]: node
            for node in graph.node
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx")
        }
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.output:
                if name:
                    self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.graph_outputs = {out.name for out in graph.output}

    def is_constant(self, name: str) -> bool:
        return name in self.initializers or name in self.constant_nodes

    def constant_value(self, name: str) -> np.ndarray | None:
        """The value of an initializer or a Constant node's `value` tensor; None otherwise."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.constant_nodes.get(name)
        if node is not None:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def parents(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        """Nodes producing the non-constant inputs of `node`."""
        found = []
        for name in node.input:
            if name and not self.is_constant(name) and name in self.producer:
                found.append(self.producer[name])
        return found

    def ancestor_distances(self, node: onnx.NodeProto) -> dict[int, tuple[int, onnx.NodeProto]]:
        """Breadth-first distances from `node` up to each ancestor (itself at 0), keyed by id."""
        distances = {id(node): (0, node)}
        frontier = [node]
        depth = 0
        while frontier:
            depth += 1
            nxt = []
            for current in frontier:
                for parent in self.parents(current):
                    if id(parent) not in distances:
                        distances[id(parent)] = (depth, parent)
                        nxt.append(parent)
            frontier = nxt
        return distances


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base_2`, `base_3`... : the first name not in `taken` (which it then joins)."""
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def default_opset(model: onnx.ModelProto) -> int:
    """The version of the default ("" / ai.onnx) operator set the model imports."""
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return int(opset.version)
    return 0


def tensor_elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor whose type ONNX shape inference can tell (best effort)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        graph = inferred.graph
    except Exception:  # inference is advisory; fall back to declared types
        graph = model.graph
    types: dict[str, int] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    return types
