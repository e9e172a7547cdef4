"""amax -> TensorRT scale."""

from __future__ import annotations

import numpy as np


def scale_from_amax(amax: float) -> float:
    """float32(amax) / 127 computed in float32; 0 -> 0, inf -> inf.

    An assumption about TensorRT's arithmetic that the public evidence cannot single out: the
    known cache values (`3c010204`, `3c010a14`) are also what float32(amax) * float32(1/127) and
    float32(amax / 127 in float64) give, and these differ from this one by one ulp for some amax
    (a few % of entropy thresholds, measured in a review; MinMax amax, an exact float32, only
    tells the reciprocal variant apart)."""
    a = np.float32(amax)
    if not a > 0:  # 0, negative zero, NaN: nothing to quantize
        return 0.0
    return float(a / np.float32(127.0))
