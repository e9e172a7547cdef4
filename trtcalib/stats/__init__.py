"""Calibration statistics and amax algorithms (TensorRT-exact, CPU only).

Data flow: batches -> `TensorCollector.collect` -> `TensorStats` -> `compute_amax` -> amax ->
`scale_from_amax` -> the float32 scale written to a TensorRT calibration cache.

Where the decisions are documented:
  * histogram policies `trt` (growth rules pow2/square) and `exact`: `histogram.py`;
  * EntropyCalibration2, group formation for i not a multiple of 128, ties, zero spike:
    `algorithms/entropy.py`; percentile/mse/mix/legacy semantics: their modules;
  * the plugin registry and central edge cases (inf -> inf, nothing/zero -> 0): `registry.py`;
  * compiled kernels (numba when installed, numpy otherwise, bit-identical): `_kernels.py`.
"""

from trtcalib.stats._kernels import BatchSummary, batch_summary
from trtcalib.stats.collector import TensorCollector, TensorStats, is_calibratable
from trtcalib.stats.overrides import TensorOverrides, TensorSettings
from trtcalib.stats.registry import (
    AmaxAlgorithm,
    available_algorithms,
    compute_amax,
    get_algorithm,
    register_algorithm,
)
from trtcalib.stats.scale import scale_from_amax

__all__ = [
    "AmaxAlgorithm",
    "BatchSummary",
    "TensorCollector",
    "TensorOverrides",
    "TensorSettings",
    "TensorStats",
    "available_algorithms",
    "batch_summary",
    "compute_amax",
    "get_algorithm",
    "is_calibratable",
    "register_algorithm",
    "scale_from_amax",
]
