"""Mix: try several percentiles and keep the amax with the lowest quant-dequant L2 error.

Candidates: p_k = 100 - (100 - lowest) / 10**k for k = 0 .. count-1 (defaults lowest=99.9,
count=4: 99.9, 99.99, 99.999, 99.9999), each turned into an amax by the `percentile` algorithm;
the error is the mean squared int8 quant-dequant error over the histogram (`_quant.py`). Ties
keep the lower percentile.
"""

from __future__ import annotations

import numpy as np

from trtcalib.errors import ConfigError
from trtcalib.stats.algorithms._quant import qdq_errors
from trtcalib.stats.algorithms.percentile import check_percentile, percentile_amax
from trtcalib.stats.collector import TensorStats
from trtcalib.stats.registry import AmaxAlgorithm, register_algorithm


def mix_percentiles(lowest: float, count: int) -> list[float]:
    return [100.0 - (100.0 - lowest) / 10.0**k for k in range(count)]


@register_algorithm("mix")
class MixCalibration(AmaxAlgorithm):
    trt_algorithm = "MinMaxCalibration"
    defaults = {"lowest": 99.9, "count": 4.0}
    description = "percentiles 99.9, 99.99, ... (count=4): keep the lowest int8 L2 error"

    def check_param(self, key: str, value: object) -> float:
        v = super().check_param(key, value)
        if key == "lowest":
            return check_percentile(self.name, key, v)
        if v != int(v) or not 1 <= v <= 10:
            raise ConfigError(f"calibrator 'mix': count must be a whole number 1..10, got {v!r}")
        return v

    def compute(self, stats: TensorStats, **params: float) -> float:
        ps = mix_percentiles(params["lowest"], int(params["count"]))
        amaxes = np.array([percentile_amax(stats, p) for p in ps])
        errors = qdq_errors(stats.counts, stats.bin_width, amaxes)
        return float(amaxes[int(np.argmin(errors))])
