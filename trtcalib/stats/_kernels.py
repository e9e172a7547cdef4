"""The hot loops: a batch summary pass, a bin-filling pass, and the entropy KL sweep.

numba (when installed) fuses each pass into one loop over the data; without numba the same
functions run as numpy expressions. Both paths give bit-identical results: bin indices are
`floor(float64(|x|) * scale)` in both (tests compare them). Set TRTCALIB_NO_NUMBA=1 to force the
numpy path.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np


class BatchSummary(NamedTuple):
    nan_count: int
    inf_count: int
    finite_count: int
    min: float  # smallest finite value (+inf if none)
    max: float  # largest finite value (-inf if none)
    absmax: float  # largest finite |x| (0.0 if none)


def _summary_numpy(flat: np.ndarray) -> BatchSummary:
    nan = np.isnan(flat)
    nan_count = int(nan.sum())
    finite = np.isfinite(flat)
    finite_count = int(finite.sum())
    inf_count = flat.size - finite_count - nan_count
    if finite_count == 0:
        return BatchSummary(nan_count, inf_count, 0, np.inf, -np.inf, 0.0)
    vals = flat if finite_count == flat.size else flat[finite]
    lo = float(vals.min())
    hi = float(vals.max())
    return BatchSummary(nan_count, inf_count, finite_count, lo, hi, max(abs(lo), abs(hi)))


def _fill_numpy(flat: np.ndarray, counts: np.ndarray, scale: float) -> None:
    """counts[min(floor(|x| * scale), n-1)] += 1 for every finite x (float64 arithmetic)."""
    n = counts.shape[0]
    a = np.abs(flat.astype(np.float64))
    if not np.isfinite(a).all():
        a = a[np.isfinite(a)]
    a *= scale
    np.minimum(a, n - 1, out=a)
    counts += np.bincount(a.astype(np.intp), minlength=n)[:n]


def _fill_minmax_numpy(
    flat: np.ndarray, counts: np.ndarray, lo: np.ndarray, hi: np.ndarray, scale: float
) -> None:
    n = counts.shape[0]
    a = np.abs(flat.astype(np.float64))
    if not np.isfinite(a).all():
        a = a[np.isfinite(a)]
    idx = np.minimum(a * scale, n - 1).astype(np.intp)
    counts += np.bincount(idx, minlength=n)[:n]
    np.minimum.at(lo, idx, a)  # slow (~20 ns/element) but only without numba
    np.maximum.at(hi, idx, a)


def _build_numba():
    import numba

    @numba.njit(cache=True, nogil=True)
    def summary(flat):
        nan_count = 0
        inf_count = 0
        finite_count = 0
        lo = np.inf
        hi = -np.inf
        for i in range(flat.shape[0]):
            v = np.float64(flat[i])
            if v != v:
                nan_count += 1
            elif v - v != 0.0:  # +/-inf
                inf_count += 1
            else:
                finite_count += 1
                if v < lo:
                    lo = v
                if v > hi:
                    hi = v
        return nan_count, inf_count, finite_count, lo, hi

    @numba.njit(cache=True, nogil=True)
    def fill(flat, counts, scale):
        # Two steps per chunk: bin indices (vectorisable), then increments spread over four
        # sub-histograms so repeated hits on one bin do not wait on each other. Non-finite
        # values get the dummy index n and are dropped.
        n = counts.shape[0]
        last = np.float64(n - 1)
        chunk = 4096
        idx = np.empty(chunk, np.intp)
        c0 = np.zeros(n + 1)
        c1 = np.zeros(n + 1)
        c2 = np.zeros(n + 1)
        c3 = np.zeros(n + 1)
        m = flat.shape[0]
        for start in range(0, m, chunk):
            size = min(chunk, m - start)
            for i in range(size):
                a = abs(np.float64(flat[start + i]))
                if a - a == 0.0:
                    idx[i] = np.intp(min(a * scale, last))
                else:
                    idx[i] = n
            j = 0
            while j + 4 <= size:
                c0[idx[j]] += 1.0
                c1[idx[j + 1]] += 1.0
                c2[idx[j + 2]] += 1.0
                c3[idx[j + 3]] += 1.0
                j += 4
            while j < size:
                c0[idx[j]] += 1.0
                j += 1
        for b in range(n):
            counts[b] += (c0[b] + c1[b]) + (c2[b] + c3[b])

    @numba.njit(cache=True, nogil=True)
    def fill_minmax(flat, counts, lo, hi, scale):
        n = counts.shape[0]
        last = np.float64(n - 1)
        for i in range(flat.shape[0]):
            a = abs(np.float64(flat[i]))
            if a - a == 0.0:
                t = a * scale
                if t > last:
                    t = last
                k = np.intp(t)
                counts[k] += 1.0
                if a < lo[k]:
                    lo[k] = a
                if a > hi[k]:
                    hi[k] = a

    @numba.njit(cache=True, nogil=True)
    def kl_sweep(b, start, quant_bins):
        # Same sums as entropy.kl_divergences (see its docstring), one candidate at a time.
        n = b.shape[0]
        csum = np.zeros(n + 1)
        cnz = np.zeros(n + 1, np.int64)
        cblogb = np.zeros(n + 1)
        for k in range(n):
            v = b[k]
            csum[k + 1] = csum[k] + v
            cnz[k + 1] = cnz[k] + (1 if v > 0 else 0)
            cblogb[k + 1] = cblogb[k] + (v * np.log(v) if v > 0 else 0.0)
        total = csum[n]
        t_log_t = total * np.log(total)
        out = np.empty(n + 1 - start)
        for i in range(start, n + 1):
            s = csum[i]
            o = total - s
            if s <= 0.0 or (o > 0.0 and b[i - 1] == 0.0):
                out[i - start] = np.inf
                continue
            q = 0.0
            lo = 0
            g_last = 0.0
            n_last = 1
            for g in range(quant_bins):
                hi = -((-(g + 1) * i) // quant_bins)
                mass = csum[hi] - csum[lo]
                nz = cnz[hi] - cnz[lo]
                if mass > 0.0:
                    q += mass * np.log(mass / nz)
                g_last = mass
                n_last = nz if nz > 0 else 1
                lo = hi
            if o > 0.0:
                q += o * np.log(g_last / n_last)
            last = b[i - 1] + o
            p = cblogb[i - 1] + (last * np.log(last) if last > 0.0 else 0.0) - t_log_t
            out[i - start] = (p - q + total * np.log(s)) / total
        return out

    @numba.njit(cache=True, nogil=True)
    def qdq_errors(centres, weights, amaxes, total):
        out = np.empty(amaxes.shape[0])
        for c in range(amaxes.shape[0]):
            a = amaxes[c]
            if not a > 0.0:
                out[c] = np.inf
                continue
            s = a / 127.0
            err = 0.0
            for j in range(centres.shape[0]):
                x = centres[j]
                q = min(np.rint(x / s), 127.0) * s  # rint: half to even
                err += (x - q) * (x - q) * weights[j]
            out[c] = err / total
        return out

    return summary, fill, kl_sweep, fill_minmax, qdq_errors


_numba_kernels = None
_numba_tried = False


def numba_kernels():
    """Compiled (summary, fill, kl_sweep, fill_minmax, qdq_errors), or None without numba."""
    global _numba_kernels, _numba_tried
    if not _numba_tried:
        _numba_tried = True
        if os.environ.get("TRTCALIB_NO_NUMBA", "") not in ("", "0"):
            return None
        try:
            _numba_kernels = _build_numba()
        except ImportError:
            _numba_kernels = None
    return _numba_kernels


def batch_summary(flat: np.ndarray, *, use_numba: bool | None = None) -> BatchSummary:
    """NaN/inf/finite counts, finite min/max and max |x| of a 1-D float array."""
    # Fast path: numpy's SIMD min/max propagate NaN and keep inf, so two finite results
    # prove the batch is all finite (the common case) at ~0.4 ns/element.
    lo, hi = flat.min(), flat.max()
    if np.isfinite(lo) and np.isfinite(hi):
        lo, hi = float(lo), float(hi)
        return BatchSummary(0, 0, flat.size, lo, hi, max(abs(lo), abs(hi)))
    kernels = numba_kernels() if use_numba is not False else None
    if kernels is None or flat.dtype not in (np.float32, np.float64):
        return _summary_numpy(flat)
    nan_count, inf_count, finite_count, lo, hi = kernels[0](flat)
    if finite_count == 0:
        return BatchSummary(nan_count, inf_count, 0, np.inf, -np.inf, 0.0)
    return BatchSummary(nan_count, inf_count, finite_count, lo, hi, max(abs(lo), abs(hi)))


def kl_sweep_numba(counts: np.ndarray, start: int, quant_bins: int) -> np.ndarray | None:
    """Compiled KL sweep, or None without numba (the caller then uses its numpy version)."""
    kernels = numba_kernels()
    if kernels is None:
        return None
    return kernels[2](np.ascontiguousarray(counts, dtype=np.float64), start, quant_bins)


def fill_counts(
    flat: np.ndarray, counts: np.ndarray, scale: float, *, use_numba: bool | None = None
) -> None:
    """Add every finite |x| of `flat` to float64 `counts`: bin = min(floor(|x|*scale), n-1)."""
    kernels = numba_kernels() if use_numba is not False else None
    if kernels is None or flat.dtype not in (np.float32, np.float64):
        _fill_numpy(flat, counts, scale)
    else:
        kernels[1](flat, counts, float(scale))


def fill_counts_minmax(
    flat: np.ndarray,
    counts: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    scale: float,
    *,
    use_numba: bool | None = None,
) -> None:
    """`fill_counts` that also keeps the smallest (`lo`) and largest (`hi`) |x| of each bin."""
    kernels = numba_kernels() if use_numba is not False else None
    if kernels is None or flat.dtype not in (np.float32, np.float64):
        _fill_minmax_numpy(flat, counts, lo, hi, scale)
    else:
        kernels[3](flat, counts, lo, hi, float(scale))


def qdq_errors_numba(
    centres: np.ndarray, weights: np.ndarray, amaxes: np.ndarray, total: float
) -> np.ndarray | None:
    """Compiled quant-dequant errors, or None without numba (the caller uses numpy)."""
    kernels = numba_kernels()
    if kernels is None:
        return None
    return kernels[4](
        np.ascontiguousarray(centres, np.float64),
        np.ascontiguousarray(weights, np.float64),
        np.ascontiguousarray(amaxes, np.float64),
        float(total),
    )
