"""Fold BatchNormalization into the Conv before it, as TensorRT does when it builds an engine.

TensorRT fuses Conv + BatchNormalization (+ ReLU) into one kernel, so the INT8 weights it
quantizes are the folded ones and the first activation it sees is the BN output. Folding before
placing Q/DQ makes the per-channel weight scales and the activation placement match that.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from trtcalib.qdq.graph import GraphView, unique_name


def _foldable_conv(view: GraphView, bn: onnx.NodeProto) -> onnx.NodeProto | None:
    """The Conv that `bn` can be folded into, or None when folding would change the graph."""
    if bn.domain not in ("", "ai.onnx") or len(bn.input) < 5 or not bn.input[0]:
        return None
    if any(attr.name == "training_mode" and attr.i != 0 for attr in bn.attribute):
        return None
    # extra outputs (running mean/var in training mode) must be unused
    if any(name for name in bn.output[1:]):
        return None
    conv = view.producer.get(bn.input[0])
    if conv is None or conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx"):
        return None
    conv_out = conv.output[0]
    # the un-normalised Conv output must not be needed anywhere else
    if len(view.consumers[conv_out]) != 1 or conv_out in view.graph_outputs:
        return None
    if len(conv.input) < 2 or view.constant_value(conv.input[1]) is None:
        return None
    if len(conv.input) > 2 and conv.input[2] and view.constant_value(conv.input[2]) is None:
        return None
    if any(view.constant_value(name) is None for name in bn.input[1:5]):
        return None
    return conv


def fold_batchnorm(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Return a copy of `model` with every Conv -> BatchNormalization pair folded into the Conv.

    The folded Conv takes over the BN output name, so tensor names downstream (and their
    calibration-cache entries) stay valid. Also returns the folded BN nodes: {BN name: the
    output tensor of the Conv that absorbed it} (that Conv may still be unnamed here).
    """
    folded_model = onnx.ModelProto()
    folded_model.CopyFrom(model)
    graph = folded_model.graph
    view = GraphView(graph)
    taken = {init.name for init in graph.initializer}
    for node in graph.node:
        taken.update(node.input)
        taken.update(node.output)

    folded: dict[str, str] = {}
    remove: list[onnx.NodeProto] = []
    for bn in list(graph.node):
        if bn.op_type != "BatchNormalization":
            continue
        conv = _foldable_conv(view, bn)
        if conv is None:
            continue
        epsilon = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (
            view.constant_value(name).astype(np.float64) for name in bn.input[1:5]
        )
        weight = view.constant_value(conv.input[1])
        has_bias = len(conv.input) > 2 and bool(conv.input[2])
        bias = (
            view.constant_value(conv.input[2]).astype(np.float64)
            if has_bias
            else np.zeros(weight.shape[0], dtype=np.float64)
        )
        # y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta, per output channel
        factor = gamma / np.sqrt(var + np.float64(epsilon))
        shape = (-1,) + (1,) * (weight.ndim - 1)
        new_weight = (weight.astype(np.float64) * factor.reshape(shape)).astype(weight.dtype)
        new_bias = ((bias - mean) * factor + beta).astype(weight.dtype)

        w_name = unique_name(f"{conv.input[1]}_bnfolded", taken)
        b_name = unique_name(
            f"{conv.input[2] if has_bias else conv.name + '_bias'}_bnfolded", taken
        )
        graph.initializer.append(numpy_helper.from_array(new_weight, w_name))
        graph.initializer.append(numpy_helper.from_array(new_bias, b_name))
        conv.input[1] = w_name
        if has_bias:
            conv.input[2] = b_name
        else:
            conv.input.append(b_name)
        conv.output[0] = bn.output[0]
        remove.append(bn)
        folded[bn.name or bn.output[0]] = bn.output[0]

    for bn in remove:
        graph.node.remove(bn)
    remove_unused_initializers(folded_model)
    return folded_model, folded


def remove_unused_initializers(model: onnx.ModelProto) -> None:
    """Drop initializers (and their graph-input entries) that no node reads any more."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    used.update(out.name for out in graph.output)
    for node in graph.node:  # names read from subgraphs count as used
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs] if attr.HasField("g") or attr.graphs else []:
                used.update(name for sub_node in sub.node for name in sub_node.input)
    unused = [init for init in graph.initializer if init.name not in used]
    unused_names = {init.name for init in unused}
    for init in unused:
        graph.initializer.remove(init)
    for value in [v for v in graph.input if v.name in unused_names]:
        graph.input.remove(value)
