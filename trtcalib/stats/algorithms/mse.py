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

    def compute(self, stats: TensorStats, **params: float) -> float:
        start = min(int(params["start_bin"]), stats.num_bins - 1)
        candidates = (np.arange(start, stats.num_bins) + 0.5) * stats.bin_width
        errors = qdq_errors(stats.counts, stats.bin_width, candidates)
        return float(candidates[int(np.argmin(errors))])
