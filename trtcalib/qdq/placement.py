"""Where Q/DQ pairs go, following TensorRT's explicit-quantization recommendations.

TensorRT Developer Guide ("Q/DQ layer placement recommendations") and ModelOpt's ONNX INT8
defaults: quantize every input of weighted ops (Conv, ConvTranspose, Gemm, MatMul) -- the
activation per-tensor from the calibration cache, the weight per output channel from the weights
themselves; do not quantize their outputs; quantize the *residual* input of an Add that TensorRT
can fuse into a Conv (the other input comes straight out of the Conv/BN/ReLU chain and is fused),
so the fused Conv+Add runs in INT8. Other ops are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import onnx

from trtcalib.qdq.graph import GraphView

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class Site:
    """One node input that gets a Q/DQ pair.

    kind "activation": per-tensor, scale from the cache; kind "weight": per-channel along `axis`
    (None: per-tensor) with scales from the constant's own values.
    """

    node: str  # consumer node name
    op_type: str
    input_index: int
    tensor: str
    kind: str  # "activation" | "weight"
    axis: int | None = None
    fused_into: str | None = None  # residual Add: the Conv TensorRT fuses it into


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def weight_axis(node: onnx.NodeProto, input_index: int, ndim: int) -> int | None:
    """The per-channel axis of a constant operand, or None for per-tensor quantization.

    Conv weight [O, I/g, k...]: 0, its output channels. ConvTranspose weight [I, O/g, k...]: 0,
    its INPUT channels: TensorRT's deconvolution kernels take per-input-channel weight scales
    and do not support per-output-channel ones (NVIDIA/TensorRT#2380, #1694: axis 1 gave wrong
    INT8 results; pytorch-quantization and ModelOpt default to axis 0 since). Gemm B is [K, N]
    (transB=0) or [N, K] (transB=1); A (rare as a constant) is [M, K] or [K, M] with transA.
    MatMul B [..., K, N]: last axis; A [..., M, K]: second to last.
    """
    if ndim < 2:
        return None
    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        return 0
    if op == "Gemm":
        if input_index == 1:
            return 0 if _attr(node, "transB", 0) else 1
        return 1 if _attr(node, "transA", 0) else 0
    if op == "MatMul":
        return ndim - 1 if input_index == 1 else ndim - 2
    return None


def _peel(view: GraphView, node: onnx.NodeProto | None, op_type: str) -> onnx.NodeProto | None:
    """If `node` is `op_type` (Add/Mul only with a constant operand), return its data producer."""
    if node is None or node.op_type != op_type:
        return node
    if op_type in ("Add", "Mul"):
        constant = [name for name in node.input if view.is_constant(name)]
        if len(constant) != 1:
            return node
    data = [name for name in node.input if name and not view.is_constant(name)]
    if len(data) != 1:
        return node
    return view.producer.get(data[0])


def fusible_backbone(view: GraphView, node: onnx.NodeProto | None) -> onnx.NodeProto | None:
    """The Conv/ConvTranspose TensorRT fuses `node` into, following ModelOpt's path patterns.

    Walking back from `node`: [Relu] [BatchNormalization] [bias Add] [constant Mul] Conv.
    """
    current = node
    for op_type in ("Relu", "BatchNormalization", "Add", "Mul"):
        current = _peel(view, current, op_type)
    if current is not None and current.op_type in ("Conv", "ConvTranspose"):
        return current
    return None


def residual_input(view: GraphView, add: onnx.NodeProto) -> int | None:
    """Index of the Add input to quantize (the residual branch), or None for a plain Add."""
    if len(add.input) != 2 or any(view.is_constant(name) for name in add.input):
        return None
    producers = [view.producer.get(name) for name in add.input]
    if any(p is None for p in producers):  # a graph input: nothing for TensorRT to fuse
        return None
    backbones = [fusible_backbone(view, p) for p in producers]
    if backbones[0] is None and backbones[1] is None:
        return None
    dist = [view.ancestor_distances(p) for p in producers]
    common = set(dist[0]) & set(dist[1])
    lca = None
    if common:
        lca_id = min(common, key=lambda k: dist[0][k][0] + dist[1][k][0])
        lca = (lca_id, dist[0][lca_id][0], dist[1][lca_id][0])
    if backbones[0] is not None and backbones[1] is not None:
        if backbones[0] is backbones[1]:
            return None
        if lca is None:
            return 1
        # the input on the longer path from the common ancestor is the fused (main) branch
        return 1 if lca[1] > lca[2] else 0
    main = 0 if backbones[0] is not None else 1
    # Conv output feeding both branches (ConvNeXt-like): not a residual Add
    if lca is not None and lca[0] == id(backbones[main]):
        return None
    return 1 - main


def find_sites(
    view: GraphView, excluded: set[str] | None = None, nodes: Sequence[onnx.NodeProto] = ()
) -> list[Site]:
    """All Q/DQ sites of the graph, skipping nodes whose name is in `excluded`."""
    excluded = excluded or set()
    sites: list[Site] = []
    for node in nodes or view.graph.node:
        if node.domain not in ("", "ai.onnx") or node.name in excluded:
            continue
        if node.op_type in WEIGHTED_OPS:
            positions = (0,) if node.op_type in ("Conv", "ConvTranspose") else (0, 1)
            weight_positions = (1,) if node.op_type in ("Conv", "ConvTranspose") else (0, 1)
            for index in sorted(set(positions) | set(weight_positions)):
                if index >= len(node.input) or not node.input[index]:
                    continue
                name = node.input[index]
                if view.is_constant(name):
                    if index not in weight_positions:
                        continue
                    value = view.constant_value(name)
                    if value is None:
                        continue
                    axis = weight_axis(node, index, value.ndim)
                    sites.append(Site(node.name, node.op_type, index, name, "weight", axis))
                elif index in positions:
                    sites.append(Site(node.name, node.op_type, index, name, "activation"))
        elif node.op_type == "Add":
            index = residual_input(view, node)
            if index is None:
                continue
            # the residual is quantized so the Add fuses into an INT8 Conv: an excluded
            # (float) Conv fuses nothing, and its Add stays float with it
            main = fusible_backbone(view, view.producer.get(node.input[1 - index]))
            if main is not None and main.name in excluded:
                continue
            fused = None if main is None else main.name
            sites.append(
                Site(node.name, "Add", index, node.input[index], "activation", None, fused)
            )
    return sites
