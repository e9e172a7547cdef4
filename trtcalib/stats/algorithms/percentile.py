"""Percentile amax (not a TensorRT algorithm), with pytorch-quantization's semantics.

amax = LEFT edge of the histogram bin holding the p-th percentile of |x|: the first bin whose
cumulative count reaches p/100 of the total, times the bin width. So amax is a multiple of the
bin width, can be 0 when the quantile falls in bin 0, and p = 100 gives the left edge of the last
non-empty bin (not the max). p is a float in (0, 100], default 99.99 (e.g. 99.9875 is fine).

pytorch-quantization writes it ``cdf = cumsum(counts / total); searchsorted(cdf, p / 100)``:
summing rounded fractions, the cdf can end just below p/100 where the exact sums reach it
(p = 100 then returns the whole range in about half of the tensors, and a quantile that falls
exactly on a bin boundary can jump over empty bins to the next non-empty one). We sum the counts
themselves (exact for whole counts) and compare with p/100 of the total, a relative 1e-12 of
rounding in that product forgiven: the result is the one the description above defines.
"""

from __future__ import annotations

import numpy as np

from trtcalib.errors import ConfigError
from trtcalib.stats.collector import TensorStats
from trtcalib.stats.registry import AmaxAlgorithm, register_algorithm

# p/100 * total is rounded once: a cumulative count equal to it in exact arithmetic must pass
_ROUNDING = 1e-12


def percentile_amax(stats: TensorStats, percentile: float) -> float:
    cumulative = np.cumsum(stats.counts, dtype=np.float64)
    total = float(cumulative[-1]) if cumulative.size else 0.0
    if not total > 0.0:  # nothing finite was binned
        return 0.0
    target = percentile / 100.0 * total * (1.0 - _ROUNDING)
    idx = int(np.searchsorted(cumulative, target, side="left"))
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
