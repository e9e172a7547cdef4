"""Insert QuantizeLinear/DequantizeLinear pairs from a calibration cache (explicit quantization).

TensorRT 11 only runs INT8 through Q/DQ nodes; this turns the per-tensor scales of any
calibration cache (ours, TensorRT 8/10) into such a model. Weights stay float32 followed by a
per-channel Q/DQ pair: TensorRT quantizes float weights with the Q scale at build time
(Developer Guide, "Quantized Weights"), and the model still runs everywhere for evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, version_converter

from trtcalib.errors import ModelError, TrtcalibError, first_line
from trtcalib.qdq.fold import fold_batchnorm, remove_unused_initializers
from trtcalib.qdq.graph import GraphView, default_opset, tensor_elem_types, unique_name
from trtcalib.qdq.placement import WEIGHTED_OPS, Site, find_sites

# Per-channel QuantizeLinear (the `axis` attribute) exists from opset 13.
MIN_OPSET = 13
# Fewer cache entries than this fraction of the needed activations means a cache for another model.
DEFAULT_MIN_COVERAGE = 0.5
_LISTED = 8  # unmatched tensor names shown in an error message


class CacheMismatchError(TrtcalibError):
    """The calibration cache does not describe this model (its tensor names do not match)."""


@dataclass
class QDQResult:
    """A Q/DQ model and what happened to each tensor.

    quantized: activation tensors that got a Q/DQ pair (graph order); missing: activation
    tensors that needed a scale the cache lacks (left in float); skipped: tensor -> why it was
    left in float although the cache has it (scale 0, inf, NaN, not float32); weights: constant
    tensors quantized per channel; folded: BatchNormalization nodes folded into their Conv;
    layers: nodes that got at least one Q/DQ input (what `--sensitivity` ranks); fused_into:
    residual Add -> the Conv TensorRT fuses it into (excluding that Conv leaves the Add in float
    too); excluded: nodes left alone because of `exclude`; opset_upgraded_from: original opset
    if converted.
    """

    model: onnx.ModelProto
    quantized: list[str]
    missing: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    weights: list[str] = field(default_factory=list)
    folded: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    fused_into: dict[str, str] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    opset_upgraded_from: int | None = None


def weight_scales(weight: np.ndarray, axis: int | None) -> np.ndarray:
    """Symmetric INT8 scale max|w| / 127 per slice along `axis` (per-tensor when None), float32.

    A slice that is all zero gets scale 1.0: Q/DQ with scale 0 is invalid and any positive scale
    maps zeros to zero exactly.
    """
    w = np.abs(np.asarray(weight, dtype=np.float32))
    if axis is None:
        amax = np.asarray(w.max() if w.size else 0.0, dtype=np.float32)
    else:
        others = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
        amax = w.max(axis=others).astype(np.float32)
    scale = amax / np.float32(127.0)
    return np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)


def _scale_problem(scale: float) -> str | None:
    if math.isnan(scale):
        return "scale is NaN in the cache"
    if math.isinf(scale):
        return "scale is inf in the cache (the tensor held inf during calibration)"
    if scale == 0.0:
        return "scale is 0 in the cache (all-zero tensor); Q/DQ needs a positive scale"
    if scale < 0.0:
        return f"scale {scale:g} is negative in the cache"
    if float(np.float32(scale)) == 0.0:
        return f"scale {scale:g} underflows float32"
    return None


def _ensure_opset(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int | None]:
    opset = default_opset(model)
    if opset >= MIN_OPSET:
        return model, None
    try:
        converted = version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:
        unknown = sorted(
            {
                node.op_type
                for node in model.graph.node
                if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type)
            }
        )
        text = str(exc).strip()
        # onnx's C++ assertions read "file:line: func: Assertion ... failed: <reason>"
        first = text.split("failed: ")[-1].splitlines()[0] if text else type(exc).__name__
        if unknown:
            first = f"no ONNX schema for {', '.join(unknown)}"
        raise ModelError(
            f"model uses opset {opset}; per-channel Q/DQ needs opset >= {MIN_OPSET} and "
            f"converting failed ({first}); re-export the model with opset >= {MIN_OPSET}"
        ) from exc
    return converted, opset


def _name_unnamed_nodes(graph: onnx.GraphProto) -> None:
    """Give every node a name: exclusion and sensitivity reports refer to nodes by name."""
    taken = {node.name for node in graph.node if node.name}
    for index, node in enumerate(graph.node):
        if not node.name:
            name, k = f"{node.op_type}_{index}", 1
            while name in taken:
                k += 1
                name = f"{node.op_type}_{index}_{k}"
            node.name = name
            taken.add(name)


def resolve_exclude(
    graph: onnx.GraphProto, exclude: Sequence[str], folded: Mapping[str, str] | None = None
) -> set[str]:
    """Node names matched by `exclude` (node names or op types); unknown entries are an error,
    and so are BatchNormalization nodes `folded` into their Conv ({BN name: the Conv's output
    tensor}, from `fold_batchnorm`): the message names the Conv to exclude instead."""
    folded = folded or {}
    names = {node.name for node in graph.node}
    op_types = {node.op_type for node in graph.node}
    producer = {out: node.name for node in graph.node for out in node.output}
    convs = {bn: producer.get(tensor, tensor) for bn, tensor in folded.items()}
    gone = [item for item in exclude if item not in names and item in folded]
    if gone:
        pairs = ", ".join(f"{bn} into Conv {convs[bn]!r}" for bn in gone)
        raise ModelError(
            f"--exclude {', '.join(gone)}: folded before quantizing, as TensorRT does ({pairs}); "
            "exclude that Conv instead"
        )
    if folded and "BatchNormalization" in exclude:
        # a BatchNormalization left unfolded is no quantized layer: excluding only those would
        # quietly do nothing for the folded ones
        shown = ", ".join(repr(c) for c in list(convs.values())[:_LISTED])
        more = f" and {len(convs) - _LISTED} more" if len(convs) > _LISTED else ""
        raise ModelError(
            f"--exclude BatchNormalization: {len(convs)} of them are folded into their Conv "
            f"before quantizing, as TensorRT does; exclude those Convs instead ({shown}{more})"
        )
    unknown = [item for item in exclude if item not in names and item not in op_types]
    if unknown:
        raise ModelError(
            f"--exclude {', '.join(unknown)}: no node or op type of that name in the model"
        )
    wanted = set(exclude)
    return {node.name for node in graph.node if node.name in wanted or node.op_type in wanted}


def _mismatch_message(
    missing: list[str], needed: int, matched: int, upgraded_from: int | None
) -> str:
    shown = ", ".join(missing[:_LISTED])
    more = f" and {len(missing) - _LISTED} more" if len(missing) > _LISTED else ""
    hint = "cache made for another model?"
    if upgraded_from is not None:
        hint += (
            f" converting opset {upgraded_from} -> {MIN_OPSET} may also rename tensors: "
            f"re-export with opset >= {MIN_OPSET} and recalibrate"
        )
    return (
        f"calibration cache does not match this model: {matched} of {needed} quantizable "
        f"activations have a scale; unmatched: {shown}{more} ({hint})"
    )


def quantize_model(
    model: onnx.ModelProto,
    scales: Mapping[str, float],
    exclude: Sequence[str] = (),
    *,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    fold_bn: bool = True,
) -> QDQResult:
    """Return a Q/DQ copy of `model` with activation scales from `scales` (tensor -> scale).

    BatchNormalization is folded into the preceding Conv first (as TensorRT does). `exclude`
    names nodes or op types to leave in float. Raises CacheMismatchError when fewer than
    `min_coverage` of the needed activation scales are in `scales` (none at all fails too,
    unless min_coverage is 0: then weights alone may be quantized).
    """
    already = [
        node.name or node.output[0]
        for node in model.graph.node
        if node.op_type in ("QuantizeLinear", "DequantizeLinear")
    ]
    if already:
        raise ModelError(
            f"the model already has {len(already)} QuantizeLinear/DequantizeLinear nodes "
            f"(first: {already[0]}); quantize the FP32 model instead"
        )
    work, upgraded_from = _ensure_opset(model)
    if work is model:
        work = onnx.ModelProto()
        work.CopyFrom(model)
    folded: dict[str, str] = {}
    if fold_bn:
        work, folded = fold_batchnorm(work)
    graph = work.graph
    _name_unnamed_nodes(graph)
    excluded = resolve_exclude(graph, exclude, folded)
    view = GraphView(graph)
    sites = find_sites(view, excluded)
    if not sites:  # writing the model unchanged would look like a success
        why = " left after --exclude" if excluded else ""
        raise ModelError(
            f"nothing to quantize: no Conv, ConvTranspose, Gemm or MatMul{why} in the model "
            "(Q/DQ goes on the inputs of those layers)"
        )
    elem_types = tensor_elem_types(work)

    # --- decide each activation tensor once (a tensor may feed several weighted ops)
    activation_order: list[str] = []
    for site in sites:
        if site.kind == "activation" and site.tensor not in activation_order:
            activation_order.append(site.tensor)
    missing = [t for t in activation_order if t not in scales]
    matched = len(activation_order) - len(missing)
    too_few = matched == 0 or matched < min_coverage * len(activation_order)
    if activation_order and min_coverage > 0 and too_few:
        raise CacheMismatchError(
            _mismatch_message(missing, len(activation_order), matched, upgraded_from)
        )

    skipped: dict[str, str] = {}
    act_scale: dict[str, np.float32] = {}
    for tensor in activation_order:
        if tensor in missing:
            continue
        elem = elem_types.get(tensor, TensorProto.FLOAT)
        if elem != TensorProto.FLOAT:
            dtype = helper.tensor_dtype_to_np_dtype(elem)
            skipped[tensor] = f"{dtype} activation: only float32 tensors are quantized"
            continue
        problem = _scale_problem(float(scales[tensor]))
        if problem:
            skipped[tensor] = problem
            continue
        act_scale[tensor] = np.float32(scales[tensor])

    # --- weights: per-channel scales from the (folded) values themselves
    weight_params: dict[tuple[str, int | None], np.ndarray] = {}
    for site in sites:
        if site.kind != "weight" or (site.tensor, site.axis) in weight_params:
            continue
        value = view.constant_value(site.tensor)
        if value is None or value.dtype != np.float32 or value.size == 0:
            if value is not None and value.dtype != np.float32:
                skipped[site.tensor] = f"{value.dtype} weight: only float32 weights are quantized"
            continue
        weight_params[(site.tensor, site.axis)] = weight_scales(value, site.axis)

    # --- build the Q/DQ nodes, each placed just before the first node that reads it
    taken = {init.name for init in graph.initializer}
    for node in graph.node:
        taken.update(node.input)
        taken.update(node.output)
        taken.add(node.name)
    taken.update(v.name for v in graph.input)

    new_inits: list[TensorProto] = []
    dq_output: dict[tuple[str, int | None], str] = {}  # (tensor, axis or -999 for act) -> DQ out
    pending: dict[str, list[onnx.NodeProto]] = {}  # consumer node name -> Q/DQ nodes before it
    rewires: list[tuple[str, int, str]] = []
    layers: set[str] = set()  # nodes with a Q/DQ input; graph order is restored at the end
    quantized_weights: list[str] = []

    def make_pair(tensor: str, scale: np.ndarray, axis: int | None, consumer: str) -> str:
        base = tensor.replace(":", "_")
        scale_name = unique_name(f"{base}_scale", taken)
        zp_name = unique_name(f"{base}_zero_point", taken)
        q_out = unique_name(f"{base}_quantized", taken)
        dq_out = unique_name(f"{base}_dequantized", taken)
        new_inits.append(numpy_helper.from_array(np.asarray(scale, dtype=np.float32), scale_name))
        new_inits.append(numpy_helper.from_array(np.zeros(np.shape(scale), np.int8), zp_name))
        kwargs = {} if axis is None else {"axis": int(axis)}
        q = helper.make_node(
            "QuantizeLinear",
            [tensor, scale_name, zp_name],
            [q_out],
            name=unique_name(f"{base}_QuantizeLinear", taken),
            **kwargs,
        )
        dq = helper.make_node(
            "DequantizeLinear",
            [q_out, scale_name, zp_name],
            [dq_out],
            name=unique_name(f"{base}_DequantizeLinear", taken),
            **kwargs,
        )
        pending.setdefault(consumer, []).extend([q, dq])
        return dq_out

    for site in sites:
        if site.kind == "activation":
            if site.tensor not in act_scale:
                continue
            key = (site.tensor, -999)
            if key not in dq_output:
                dq_output[key] = make_pair(site.tensor, act_scale[site.tensor], None, site.node)
        else:
            key = (site.tensor, site.axis)
            if key not in weight_params:
                continue
            if key not in dq_output:
                dq_output[key] = make_pair(site.tensor, weight_params[key], site.axis, site.node)
                quantized_weights.append(site.tensor)
        rewires.append((site.node, site.input_index, dq_output[key]))
        layers.add(site.node)

    by_name = {node.name: node for node in graph.node}
    for node_name, index, new_input in rewires:
        by_name[node_name].input[index] = new_input
    ordered: list[onnx.NodeProto] = []
    for node in graph.node:
        ordered.extend(pending.get(node.name, []))
        ordered.append(node)
    del graph.node[:]
    graph.node.extend(ordered)
    graph.initializer.extend(new_inits)
    remove_unused_initializers(work)

    try:
        onnx.checker.check_model(work)
    except onnx.checker.ValidationError as exc:
        first = first_line(exc)
        raise ModelError(f"the Q/DQ model does not pass onnx.checker: {first}") from exc

    quantized = [t for t in activation_order if t in act_scale]
    ordered_layers = [n.name for n in graph.node if n.name in layers]
    return QDQResult(
        model=work,
        quantized=quantized,
        missing=missing,
        skipped=skipped,
        weights=quantized_weights,
        folded=list(folded),
        layers=ordered_layers,
        fused_into={s.node: s.fused_into for s in sites if s.fused_into and s.node in layers},
        excluded=sorted(excluded),
        opset_upgraded_from=upgraded_from,
    )


def quantizable_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes (after BN folding) that Q/DQ placement would touch, in graph order."""
    work, _ = fold_batchnorm(model)
    _name_unnamed_nodes(work.graph)
    view = GraphView(work.graph)
    names = {site.node for site in find_sites(view)}
    return [n.name for n in work.graph.node if n.name in names]


__all__ = [
    "WEIGHTED_OPS",
    "CacheMismatchError",
    "QDQResult",
    "Site",
    "quantizable_layers",
    "quantize_model",
    "weight_scales",
]
