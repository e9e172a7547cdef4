"""The `trt` policy with pow2 growth, replayed from sorted values instead of a histogram pass.

Why: a sweep of 8 batch sizes x 5 orders is 40 histogram passes over every activation; that
costs far more than the one inference pass it replays (MNIST: ~15x a calibration run). With pow2
growth the final histogram has a closed form, so one sort per tensor serves every run:

- bins nest: the kernel bins x at range R as min(floor(float64(x) * (n/R)), n-1). Doubling the
  range halves n/R exactly (a power of two), and merging bins 2:1 maps bin b to b // 2, and
  floor(floor(y) / 2) == floor(y / 2). So a value binned at R_e and merged k times sits where a
  direct binning at the final range R_e * 2**k puts it --
- -- except a value that was clamped into the last bin (y = x * n/R_e >= n, i.e. x at the range
  itself, typically the max of the batch that set it): merging keeps it at (n-1) >> k, a direct
  binning puts it at floor(y / 2**k). Those few values are found (their samples' max tells which
  samples can hold one) and moved.

The exact reference comes from the same sorted values: the `exact` policy's fine bins are a
binning of [0, 2**e) at a power-of-two scale, and each fine bin's smallest and largest |x| are its
first and last sorted value (`SortedTensor.exact_histogram`, checked against the collector).

So one run = simulate the range over the batch maxima (cheap: only batches that set a new running
max can grow it), count the final histogram from the sorted |x| with 2047 exact binary searches,
apply the clamp corrections. The result is checked bin for bin against feeding a real
`TensorCollector(histogram="trt", growth="pow2")` in tests/test_study_sorted.py. It relies on the
binning rule documented in trtcalib/stats/histogram.py; `--replay collector` bypasses it.
"""

from __future__ import annotations

import math

import numpy as np

from trtcalib.stats.histogram import ExactHistogram

_MIN_RANGE = 1e-300  # trtcalib.stats.histogram: a range below this is clamped up to it
_FMAX = float(np.finfo(np.float64).max)


class SortedTensor:
    """All finite |x| of one tensor, sorted in their own dtype (no float64 copy: the exact bin
    tests gather the few elements they need), plus what TensorStats needs."""

    def __init__(self, data: np.ndarray, chunk_elements: int = 1 << 24) -> None:
        self.data = data
        self.num_samples = data.shape[0]
        per_sample = max(1, int(np.prod(data.shape[1:], dtype=np.int64)))
        rows = max(1, chunk_elements // per_sample)
        if isinstance(data, np.memmap) or data.shape[0] > rows:
            parts = [np.abs(np.asarray(data[i : i + rows])).reshape(-1)
                     for i in range(0, data.shape[0], rows)]  # fmt: skip
            values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        else:
            values = np.abs(data).reshape(-1)  # a new array: sorted in place below
        self.min = float(data.min()) if data.size else math.inf
        self.max = float(data.max()) if data.size else -math.inf
        values.sort()
        self.values = values
        self.count = len(values)
        self.absmax = float(values[-1]) if len(values) else 0.0
        # runs of different batchings often end at the same range: 40 runs, ~20 ranges
        self._histograms: dict[tuple[float, int], np.ndarray] = {}

    def histogram(self, range_max: float, num_bins: int) -> np.ndarray:
        """Counts of min(floor(x * (n / R)), n - 1) over all values, exactly as the kernel.

        A new array on every call (callers correct it in place)."""
        key = (float(range_max), int(num_bins))
        if key not in self._histograms:
            self._histograms[key] = self._histogram(range_max, num_bins)
        return self._histograms[key].copy()

    def _histogram(self, range_max: float, num_bins: int) -> np.ndarray:
        counts = np.zeros(num_bins, dtype=np.float64)
        if range_max == 0.0:
            counts[0] = self.count
            return counts
        a = self.values
        size = len(a)
        scale = num_bins / max(range_max, _MIN_RANGE)
        j = np.arange(1, num_bins, dtype=np.float64)
        # first index i with float64(a[i]) * scale >= j (a monotone predicate): searchsorted on
        # j / scale in a's dtype, then corrected where rounding put it off by a run of equal
        # values; the predicate itself is only ever evaluated in float64, as the kernel does
        idx = np.searchsorted(a, (j / scale).astype(a.dtype), side="left")
        for _ in range(64):
            prev = a[np.maximum(idx - 1, 0)]
            down = (idx > 0) & (prev.astype(np.float64) * scale >= j)
            cur = a[np.minimum(idx, size - 1)]
            up = (idx < size) & (cur.astype(np.float64) * scale < j)
            if not (down.any() or up.any()):
                break
            idx[down] = np.searchsorted(a, prev[down], side="left")
            idx[up] = np.searchsorted(a, cur[up], side="right")
        else:  # pragma: no cover - cannot happen for finite values
            raise RuntimeError("histogram search did not converge")
        edges = np.concatenate(([0], idx, [size]))
        counts[:] = np.diff(edges)
        return counts

    def exact_histogram(self, num_bins: int) -> tuple[np.ndarray, float] | None:
        """(counts, range_max) of TensorCollector(histogram="exact") over all values, from the
        sorted values: the exact policy's fine bins are the `trt` binning of [0, 2**e) into
        16 * num_bins bins (a power-of-two scale), so `histogram` finds them, and a fine bin's
        smallest and largest |x| are its first and last sorted value. None where the anchor is
        so small that the kernels' range floor would differ (the caller replays instead)."""
        hist = ExactHistogram(num_bins)
        if self.absmax == 0.0:
            fine = np.zeros(hist.fine_bins)
            fine[0] = self.count
            lo = np.full(hist.fine_bins, np.inf)
            hi = np.full(hist.fine_bins, -np.inf)
            lo[0] = hi[0] = 0.0
            hist = ExactHistogram.from_fine(num_bins, None, fine, lo, hi, 0.0, self.count)
            return hist.finalise()[:2]
        exponent = math.frexp(self.absmax)[1]
        if math.ldexp(1.0, exponent) < _MIN_RANGE * 2**20:
            return None
        fine = self.histogram(math.ldexp(1.0, exponent), hist.fine_bins)
        ends = np.cumsum(fine.astype(np.int64))
        full = np.flatnonzero(fine)
        lo = np.full(hist.fine_bins, np.inf)
        hi = np.full(hist.fine_bins, -np.inf)
        lo[full] = self.values[ends[full] - fine[full].astype(np.int64)]
        hi[full] = self.values[ends[full] - 1]
        hist = ExactHistogram.from_fine(num_bins, exponent, fine, lo, hi, self.absmax, self.count)
        return hist.finalise()[:2]


def simulate_pow2(batch_max: np.ndarray) -> tuple[float, int, list[tuple[int, float]]]:
    """Range evolution of the pow2 policy: (final range, growth events, epochs) where epochs are
    (first batch index, range from that batch on). Only record batches can change the range."""
    if len(batch_max) == 0:
        return 0.0, 0, []
    running = np.maximum.accumulate(batch_max)
    records = np.flatnonzero(np.concatenate(([True], batch_max[1:] > running[:-1])))
    r = 0.0
    growth = 0
    epochs: list[tuple[int, float]] = []
    for i in records:
        m = float(batch_max[i])
        if r == 0.0:
            if m == 0.0:
                continue  # an all-zero batch leaves the range unset
            r = max(m, _MIN_RANGE)
            epochs.append((int(i), r))
        elif m > r:
            while r < m:
                r = min(r * 2.0, _FMAX)
            growth += 1
            epochs.append((int(i), r))
    return r, growth, epochs


def run_pow2(
    st: SortedTensor,
    sample_max: np.ndarray,
    perm: np.ndarray,
    batch_size: int,
    num_bins: int,
) -> tuple[np.ndarray, float, int, int]:
    """(counts, range_max, growth_events, num_batches) of feeding the samples in `perm` order in
    batches of `batch_size` to TensorCollector(histogram="trt", growth="pow2")."""
    n_samples = len(perm)
    starts = np.arange(0, n_samples, batch_size)
    smax = sample_max[perm]
    batch_max = np.maximum.reduceat(smax, starts) if n_samples else np.zeros(0)
    final, growth, epochs = simulate_pow2(batch_max)
    counts = st.histogram(final, num_bins)
    if growth:
        scale_final = num_bins / max(final, _MIN_RANGE)
        last = float(num_bins - 1)
        for e, (first_batch, r_e) in enumerate(epochs[:-1]):
            k = round(math.log2(final / r_e))  # doublings after this epoch (exact powers of 2)
            stop_batch = epochs[e + 1][0]
            lo, hi = first_batch * batch_size, min(stop_batch * batch_size, n_samples)
            scale_e = num_bins / max(r_e, _MIN_RANGE)
            pos = np.flatnonzero(smax[lo:hi] * scale_e >= num_bins) + lo
            for p in pos:
                x = np.abs(np.asarray(st.data[perm[p]]).reshape(-1)).astype(np.float64)
                x = x[np.isfinite(x)]
                clamped = x[x * scale_e >= num_bins]
                if not clamped.size:
                    continue
                direct = np.minimum(clamped * scale_final, last).astype(np.intp)
                merged = (num_bins - 1) >> k if k < 63 else 0
                np.subtract.at(counts, direct, 1.0)
                counts[merged] += clamped.size
    return counts, final, growth, len(starts)
