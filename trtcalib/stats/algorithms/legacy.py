"""Legacy: TensorRT's IInt8LegacyCalibrator parameters, with an algorithm we define ourselves.

TensorRT takes `quantile` (get_quantile, e.g. 0.9999) and `regression_cutoff`
(get_regression_cutoff, e.g. 1.0) but does not publish what it computes. NVIDIA's BERT demo
uses quantile 0.9999 with cutoff 1.0 and calls it the "99.99% percentile max". We compute:

    amax = regression_cutoff * Q(quantile)

where Q(q) is the q-quantile of |x| read from the histogram with linear interpolation inside the
bin that holds it (the bin's count is assumed uniform over the bin; unlike `percentile`, which
returns the bin's left edge). Both parameters are in (0, 1]; cutoff 1.0 leaves Q unchanged.
Results will not match a TensorRT legacy cache bit for bit.

The cache: TensorRT 5.0's Python API reference says of read_calibration_cache that "the cache
includes the regression cutoff and quantile values used to generate it, and will not be used if
these do not match the settings of the current calibrator". No LegacyCalibration cache has been
seen in public, so where those values go is unknown and ours has only the header and scales:
TensorRT may ignore it and calibrate again itself (with the same parameters, on the GPU).
"""

from __future__ import annotations

import numpy as np

from trtcalib.errors import ConfigError
from trtcalib.stats.collector import TensorStats
from trtcalib.stats.registry import AmaxAlgorithm, register_algorithm


def interpolated_quantile(stats: TensorStats, q: float) -> float:
    counts = stats.counts
    cdf = np.concatenate(([0.0], np.cumsum(counts)))
    target = q * cdf[-1]
    idx = int(np.searchsorted(cdf, target, side="left"))  # cdf[idx-1] < target <= cdf[idx]
    j = min(max(idx - 1, 0), stats.num_bins - 1)
    inside = counts[j]
    frac = 0.0 if inside <= 0 else (target - cdf[j]) / inside
    return (j + min(max(frac, 0.0), 1.0)) * stats.bin_width


@register_algorithm("legacy")
class LegacyCalibration(AmaxAlgorithm):
    trt_algorithm = "LegacyCalibration"
    defaults = {"quantile": 0.9999, "regression_cutoff": 1.0}
    description = "regression_cutoff * interpolated quantile of |x| (TensorRT's is not public)"

    def check_param(self, key: str, value: object) -> float:
        v = super().check_param(key, value)
        if not 0.0 < v <= 1.0:
            raise ConfigError(f"calibrator 'legacy': {key} must be in (0, 1], got {v!r}")
        return v

    def compute(self, stats: TensorStats, **params: float) -> float:
        return params["regression_cutoff"] * interpolated_quantile(stats, params["quantile"])
