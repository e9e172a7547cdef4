"""Loading an ONNX model with clear errors, and describing its inputs."""

from __future__ import annotations

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
        model = onnx.load(str(path), load_external_data=load_weights)
    except Exception as exc:  # protobuf raises DecodeError, onnx may raise others
        raise ModelError(f"{path}: not an ONNX model ({type(exc).__name__})") from exc
    if not model.graph.node and not model.graph.input:
        raise ModelError(f"{path}: not an ONNX model (empty graph)")
    return model


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
