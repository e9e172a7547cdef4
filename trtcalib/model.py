"""Loading an ONNX model with clear errors, and describing its inputs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from trtcalib.errors import ModelError

Dim = int | str | None  # a fixed size, a symbolic name, or unknown


@dataclass(frozen=True)
class InputSpec:
    """One graph input as the model declares it (dynamic dims are str or None)."""

    name: str
    shape: tuple[Dim, ...]
    dtype: np.dtype

    def is_dynamic(self) -> bool:
        return any(not isinstance(d, int) for d in self.shape)

    def shape_str(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


def load_model(path: str | Path, *, load_weights: bool = True) -> onnx.ModelProto:
    """Read an ONNX file; a missing file, a directory or a non-ONNX file is a ModelError."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, expected an .onnx file")
    try:
        # the graph first: a bad weights file next to a good model is not "not an ONNX model"
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, onnx may raise others
        raise ModelError(f"{path}: not an ONNX model ({type(exc).__name__})") from exc
    if not model.graph.node and not model.graph.input:
        raise ModelError(f"{path}: not an ONNX model (empty graph)")
    if load_weights:
        _load_external_weights(model, path)
    return model


def _stored_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor the file stores: initializers and tensor-valued node attributes (Constant
    values), in subgraphs (If, Loop, Scan bodies) and local functions too -- the tensors whose
    bytes `onnx.save_model(..., save_as_external_data=True)` may move to another file."""

    def in_graph(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.TensorProto]:
        for node in nodes:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                subgraphs = [attribute.g] if attribute.HasField("g") else []
                for graph in [*subgraphs, *attribute.graphs]:
                    yield from graph.initializer
                    yield from in_graph(graph.node)

    yield from model.graph.initializer
    yield from in_graph(model.graph.node)
    for function in model.functions:
        yield from in_graph(function.node)


def external_weight_files(path: Path) -> list[Path]:
    """The files next to the ONNX model `path` that hold its external weights ([] when the file
    does not parse: loading it reports that)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX, missing, a directory: load_model names the problem
        return []
    return [path.parent / location for location in _external_locations(model)]


def _external_locations(model: onnx.ModelProto) -> list[str]:
    """The external weights files the model names, in first-use order, each once."""
    from onnx import external_data_helper as ext

    locations: list[str] = []
    for tensor in _stored_tensors(model):
        if ext.uses_external_data(tensor):
            location = ext.ExternalDataInfo(tensor).location
            if location not in locations:
                locations.append(location)
    return locations


def _load_external_weights(model: onnx.ModelProto, path: Path) -> None:
    """Read weights stored in files next to the model; name the file when one is unusable."""
    from onnx import external_data_helper as ext

    locations = _external_locations(model)
    if not locations:
        return
    for location in locations:
        if not (path.parent / location).is_file():
            raise ModelError(
                f"{path}: external weights file '{location}' not found next to the model "
                f"(expected {path.parent / location})"
            )
    try:
        ext.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:  # truncated file, unsafe location (onnx refuses '..'), ...
        where = locations[0] if len(locations) == 1 else ", ".join(locations)
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelError(
            f"{path}: cannot read external weights ({where}): {type(exc).__name__}: {first}"
        ) from exc


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """The graph inputs that the user must feed (initializers listed as inputs are skipped)."""
    initializers = {init.name for init in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        dims: list[Dim] = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            elif dim.HasField("dim_param"):
                dims.append(dim.dim_param)
            else:
                dims.append(None)
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        specs.append(InputSpec(value.name, tuple(dims), dtype))
    return specs
