"""The TensorRT side of trtcalib: calibrators, device streaming, engine builds.

Importing `trtcalib.trt` imports nothing heavy. The calibrator classes subclass TensorRT's own
base classes, so they exist only once TensorRT is imported: `trtcalib.trt.EntropyCalibrator2`
imports `trtcalib.trt.calibrators` (and TensorRT) on first access, and raises
TensorRTUnavailableError with the reason when TensorRT cannot be loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

from trtcalib.trt.loader import TensorRTInfo, load_tensorrt, probe_tensorrt

_LAZY = {
    "EntropyCalibrator2": "trtcalib.trt.calibrators",
    "MinMaxCalibrator": "trtcalib.trt.calibrators",
    "LegacyCalibrator": "trtcalib.trt.calibrators",
    "PercentileCalibrator": "trtcalib.trt.calibrators",
    "MSECalibrator": "trtcalib.trt.calibrators",
    "PrecomputedCalibrator": "trtcalib.trt.calibrators",
    "calibrator_class": "trtcalib.trt.calibrators",
    "DeviceFeeder": "trtcalib.trt.device",
    "InputBuffer": "trtcalib.trt.device",
    "make_backend": "trtcalib.trt.device",
}

# the light names only: `from trtcalib.trt import *` must work where TensorRT does not load
# (it would fetch every lazy name); the lazy ones are imported by name. Not in dir() either:
# help()/pydoc/inspect fetch what dir() lists and tolerate only AttributeError
__all__ = ["TensorRTInfo", "load_tensorrt", "probe_tensorrt"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trtcalib.trt' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
