"""TensorRT 10 INT8 engine builds with a calibrator (implicit quantization).

The calibrator is ours (`trtcalib.trt.calibrators`): it feeds batches, or hands TensorRT a cache.
Calibration runs at the calibration profile's OPT shape (= --batch for a dynamic batch dim).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtcalib.errors import ConfigError
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

TRT_MAJORS = (10,)


def build_implicit(request: EngineRequest, calibrator: Any, builder: Any = None) -> Path:
    """TensorRT 10: INT8 via `calibrator` (ours, which may seed TensorRT from a cache)."""
    trt = load_tensorrt()
    if not hasattr(trt.BuilderFlag, "INT8"):
        raise ConfigError(f"TensorRT {trt.__version__} has no INT8 calibration (use Q/DQ)")
    builder, logger = builder_and_logger(builder)
    network, _parser = parse(builder, logger, request.onnx_path, 0)
    cfg: trt.IBuilderConfig
    cfg, _timing = make_config(builder, request)
    cfg.set_flag(trt.BuilderFlag.INT8)
    if request.fp16:  # layers TensorRT cannot run in INT8 fall back to FP16 instead of FP32
        cfg.set_flag(trt.BuilderFlag.FP16)
    engine_profile, calib_profile = profiles(builder, network, request.opt_shapes)
    if engine_profile is not None:
        cfg.add_optimization_profile(engine_profile)
        cfg.set_calibration_profile(calib_profile)
    cfg.int8_calibrator = calibrator
    try:
        # an error inside get_batch fails the build (and no engine is written), not silently
        return serialize(builder, network, cfg, request, check=calibrator.raise_if_failed)
    finally:
        calibrator.close()
