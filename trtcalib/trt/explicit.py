"""Strongly typed engine builds from a Q/DQ ONNX (explicit quantization, TensorRT 11).

TensorRT 11 has no calibrators and no precision flags: INT8 comes only from the Q/DQ nodes that
`trtcalib.qdq.quantize_model` placed with our scales. The same build also works on TensorRT 10.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtcalib.trt.builder import (
    EngineRequest,
    builder_and_logger,
    make_config,
    parse,
    profiles,
    serialize,
)
from trtcalib.trt.loader import load_tensorrt

if TYPE_CHECKING:
    import tensorrt as trt

TRT_MAJORS = (10, 11)


def build_explicit(request: EngineRequest, builder: Any = None) -> Path:
    """A Q/DQ ONNX built strongly typed (TensorRT 11; also valid on TensorRT 10)."""
    trt = load_tensorrt()
    builder, logger = builder_and_logger(builder)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network, _parser = parse(builder, logger, request.onnx_path, flags)
    cfg: trt.IBuilderConfig
    cfg, _timing = make_config(builder, request)
    if request.fp16:
        request.notes.append(
            "--fp16 has no effect on a strongly typed build: precision comes from the model"
        )
    engine_profile, _ = profiles(builder, network, request.opt_shapes)
    if engine_profile is not None:
        cfg.add_optimization_profile(engine_profile)
    return serialize(builder, network, cfg, request)
