"""Quant-dequant error of symmetric int8 (127 levels) estimated from a histogram of |x|.

Every value in bin j is represented by the bin centre (j + 0.5) * w (pytorch-quantization does
the same). Rounding is half-to-even like TensorRT's IQuantizeLayer; |x| clamps at 127 levels.
"""

from __future__ import annotations

import numpy as np

from trtcalib.stats._kernels import qdq_errors_numba

LEVELS = 127.0


def qdq_errors(
    counts: np.ndarray, bin_width: float, amaxes: np.ndarray, *, use_numba: bool = True
) -> np.ndarray:
    """Mean squared quant-dequant error over the histogram per candidate amax (inf if <= 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    nz = np.flatnonzero(counts)
    total = counts.sum()
    amaxes = np.asarray(amaxes, dtype=np.float64)
    out = np.empty(amaxes.shape[0])
    if nz.size == 0 or total == 0:
        out.fill(0.0)
        return out
    centres = (nz + 0.5) * bin_width
    weights = counts[nz]
    if use_numba:
        fast = qdq_errors_numba(centres, weights, amaxes, total)
        if fast is not None:
            return fast
    chunk = max(1, 2_000_000 // nz.size)
    for start in range(0, amaxes.shape[0], chunk):
        a = amaxes[start : start + chunk, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = a / LEVELS
            q = np.minimum(np.round(centres[None, :] / s), LEVELS) * s
        err = ((centres[None, :] - q) ** 2 * weights).sum(axis=1) / total
        out[start : start + chunk] = np.where(a[:, 0] > 0, err, np.inf)  # scale 0: unusable
    return out
