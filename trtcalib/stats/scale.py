"""amax -> TensorRT scale."""

from __future__ import annotations

import numpy as np


def scale_from_amax(amax: float) -> float:
    """float32(amax) / 127 computed in float32 (TensorRT's cache value); 0 -> 0, inf -> inf."""
    a = np.float32(amax)
    if not a > 0:  # 0, negative zero, NaN: nothing to quantize
        return 0.0
    return float(a / np.float32(127.0))
