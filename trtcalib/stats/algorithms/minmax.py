"""TensorRT MinMaxCalibration: amax = max |x| over everything seen (batch-order invariant)."""

from __future__ import annotations

from trtcalib.stats.collector import TensorStats
from trtcalib.stats.registry import AmaxAlgorithm, register_algorithm


@register_algorithm("minmax")
class MinMaxCalibration(AmaxAlgorithm):
    trt_algorithm = "MinMaxCalibration"
    defaults: dict[str, float] = {}
    description = "TensorRT MinMaxCalibration: amax = max |x| over all batches"

    def compute(self, stats: TensorStats, **params: float) -> float:
        return stats.amax
