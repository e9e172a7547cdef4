"""Explicit quantization: Q/DQ placement from a calibration cache, as TensorRT 11 needs it."""

from __future__ import annotations

from trtcalib.qdq.fold import fold_batchnorm
from trtcalib.qdq.quantize import (
    DEFAULT_MIN_COVERAGE,
    MIN_OPSET,
    CacheMismatchError,
    QDQResult,
    quantizable_layers,
    quantize_model,
    weight_scales,
)

__all__ = [
    "DEFAULT_MIN_COVERAGE",
    "MIN_OPSET",
    "CacheMismatchError",
    "QDQResult",
    "fold_batchnorm",
    "quantizable_layers",
    "quantize_model",
    "weight_scales",
]
