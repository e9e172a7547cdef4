"""MSE amax: the candidate minimising the mean squared int8 quant-dequant error of |x|.

As pytorch-quantization's `mse` method: candidates are the bin centres (i + 0.5) * w for
i = start_bin .. num_bins - 1 (start_bin default 128); the error of a candidate is computed from
the histogram with each bin represented by its centre (see `_quant.py`); the first minimum wins.
"""

from __future__ import annotations

import numpy as np

from trtcalib.errors import ConfigError
from trtcalib.stats.algorithms._quant import qdq_errors
from trtcalib.stats.collector import TensorStats
from trtcalib.stats.registry import AmaxAlgorithm, register_algorithm


@register_algorithm("mse")
class MSECalibration(AmaxAlgorithm):
    trt_algorithm = "MinMaxCalibration"
    defaults = {"start_bin": 128.0}
    description = "bin centre minimising the mean squared int8 quant-dequant error (from bin 128)"

    def check_param(self, key: str, value: object) -> float:
        v = super().check_param(key, value)
        if v != int(v) or v < 0:
            raise ConfigError(f"calibrator 'mse': start_bin must be a whole number >= 0, got {v!r}")
        return v

    def check_num_bins(self, params, num_bins: int) -> None:
        # a start beyond the histogram leaves no candidate: say so rather than clamp silently
        if params["start_bin"] > num_bins - 1:
            raise ConfigError(
                f"calibrator 'mse': start_bin={params['start_bin']:g} is past the histogram's "
                f"{num_bins} bins (valid: 0 to {num_bins - 1}; or raise --num-bins)"
            )

    def compute(self, stats: TensorStats, **params: float) -> float:
        start = int(params["start_bin"])
        candidates = (np.arange(start, stats.num_bins) + 0.5) * stats.bin_width
        errors = qdq_errors(stats.counts, stats.bin_width, candidates)
        return float(candidates[int(np.argmin(errors))])
