"""Percentile amax (not a TensorRT algorithm), with pytorch-quantization's semantics.

amax = LEFT edge of the histogram bin holding the p-th percentile of |x|:
``cdf = cumsum(counts / total); idx = searchsorted(cdf, p / 100)`` (first bin whose cumulative
fraction reaches p/100) and ``amax = idx * bin_width``. So amax is a multiple of the bin width,
can be 0 when the quantile falls in bin 0, and p = 100 gives the left edge of the last non-empty
bin (not the max). p is a float in (0, 100], default 99.99 (e.g. 99.9875 is fine).
"""

from __future__ import annotations

import numpy as np

from trtcalib.errors import ConfigError
from trtcalib.stats.collector import TensorStats
from trtcalib.stats.registry import AmaxAlgorithm, register_algorithm


def percentile_amax(stats: TensorStats, percentile: float) -> float:
    counts = stats.counts
    cdf = np.cumsum(counts / counts.sum())
    idx = int(np.searchsorted(cdf, percentile / 100.0))
    return min(idx, stats.num_bins) * stats.bin_width


def check_percentile(algorithm: str, key: str, value: float) -> float:
    if not 0.0 < value <= 100.0:
        raise ConfigError(f"calibrator {algorithm!r}: {key} must be in (0, 100], got {value!r}")
    return value


@register_algorithm("percentile")
class PercentileCalibration(AmaxAlgorithm):
    trt_algorithm = "MinMaxCalibration"
    defaults = {"percentile": 99.99}
    description = "left edge of the histogram bin holding the p-th percentile of |x| (p=99.99)"

    def check_param(self, key: str, value: object) -> float:
        return check_percentile(self.name, key, super().check_param(key, value))

    def compute(self, stats: TensorStats, **params: float) -> float:
        return percentile_amax(stats, params["percentile"])
