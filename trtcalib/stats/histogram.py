"""Histograms of |x| with two range policies: `trt` (imitates TensorRT) and `exact`.

Bins: a histogram of `n` bins over [0, R] puts a finite value x into bin
``min(floor(float64(|x|) * (n / R)), n - 1)``, so x == R lands in the last bin. NaN and +/-inf
never enter a histogram (they are counted by the collector).

`trt` policy (TensorRT Developer Guide: the range is set by the data seen and grows "by a power
of two" when a later batch holds a larger value; the exact rule is not public, so it is a
parameter):
  * the range starts at the first batch's max |x| (a batch whose max |x| is 0 leaves the range
    unset; its zeros are kept and put into bin 0 once the range is set);
  * `growth="pow2"`: double the range until it covers the new max; each doubling merges bins
    2:1 (new[k] = old[2k] + old[2k+1]), so the upper half starts empty;
  * `growth="square"`: the reading of TensorRT issue #774 in one of our sources: the new range
    is the square of the new max |x| (a batch with max 2.4 arriving after a range of 1.54 gives
    5.76). Squaring does not cover a max <= 1 (m*m < m), where the article says nothing: there
    the range doubles as with pow2 until it covers the max. Old counts are rebinned by overlap:
    an old bin's count is
    spread uniformly over its interval [k*w, (k+1)*w) and each new bin receives the part that
    falls inside it (mass is conserved; counts may become fractional);
  * one growth event is counted per batch that made the range grow (one reallocation).

`exact` policy (our answer to TensorRT issue #774: the result must not depend on batch size or
order). It keeps a power-of-two-anchored fine histogram of F = 16 * n bins over [0, 2^e), where
2^e is the smallest power of two strictly above the max |x| seen so far, and for every fine bin
also the smallest and largest |x| that fell into it. Because 2^e and F are powers of two,
``|x| * F * 2^-e`` is computed without rounding, and when e grows the fine bins merge 2^d:1
exactly (floor(floor(y)/2) == floor(y/2); min/max of merged bins are min/max of the parts). So
the fine state equals what binning all the data at the final e in one go gives, whatever the
batch split or order: bit for bit. At `result()` it is resampled onto the grid of the `trt`
policy's single-batch histogram of all the data (n bins over [0, amax], amax = global max finite
|x|, same float64 multiplier n / amax):
  * a fine bin whose smallest and largest value land in the same final bin goes there whole:
    exact;
  * a fine bin with values on both sides of a final edge (a fine bin is 1/16..1/8 of a final bin,
    so at most one edge) sends one count to each side (its min and its max) and splits the other
    count - 2 in proportion to where the edge cuts [min, max].
Hence the result EQUALS the single-batch `trt` histogram whenever no fine bin holds distinct
values on both sides of a final edge: always for discrete data (image levels, all-equal values;
distinct values closer than a fine bin are the only exception) and whenever amax is a power of
two (final edges are then fine edges, e.g. images in [0, 1] with 1.0 present); for continuous
data the L1 difference is below 1% of the counts in our tests, but an amax picked where its
criterion is flat can still move (entropy: up to ~14% on a few synthetic tensors in a review,
mse ~0.1%). Why not store values or make two passes: calibration data is streamed once and
activations do not fit in memory. Cost per tensor at n = 2048: 3 float64 arrays of 16 * n
(768 KiB) plus a uint32 table of 4 * (16 * n + 8) (512 KiB); a signed collector (a tensor and
the Relu after it, `stats.signed`) holds two of each.
"""

from __future__ import annotations

import math

import numpy as np

from trtcalib.stats._kernels import (
    BatchSummary,
    add_zeros,
    batch_summary,
    fill_counts,
    fill_counts_minmax,
    fill_counts_summarized,
    fill_table_into,
    fill_table_run,
    merge_table_into,
    new_table,
    table_applies,
)

# Below this a float64 range makes n / R overflow; only float64 tensors of subnormals get here.
_MIN_RANGE = 1e-300
_MIN_EXPONENT = -1000  # lowest anchor 2**e of the exact policy (see ExactHistogram.add)
_FINE_FACTOR = 16
# Below this a batch is summarised and filled in place: the table's per-batch cost (a merge
# pass over the rows touched) is not worth it for a few thousand values.
_TABLE_MIN_VALUES = 1 << 14


def bin_scale(num_bins: int, range_max: float) -> float:
    """Multiplier turning |x| into a bin position for `num_bins` bins over [0, range_max]."""
    return num_bins / max(range_max, _MIN_RANGE)


def rebin_by_overlap(counts: np.ndarray, old_range: float, new_range: float) -> np.ndarray:
    """Spread each old bin uniformly over its interval and re-cut it into bins over [0, new_range].

    Same bin count; new_range >= old_range. Mass-conserving (the sum is unchanged up to rounding).
    """
    n = counts.shape[0]
    cdf = np.concatenate(([0.0], np.cumsum(counts, dtype=np.float64)))
    # old edge k sits at position k * old_range / new_range * n in new-bin units
    old_pos = np.arange(n + 1, dtype=np.float64) * (old_range / new_range)
    new_cdf = np.interp(np.arange(n + 1, dtype=np.float64), old_pos, cdf)
    new_cdf[-1] = cdf[-1]
    out = np.diff(new_cdf)
    np.maximum(out, 0.0, out=out)
    return out


class TrtHistogram:
    """TensorRT-like histogram: range from the first batch, grown on later larger batches."""

    def __init__(self, num_bins: int, growth: str) -> None:
        self.num_bins = num_bins
        self.growth = growth
        self.counts = np.zeros(num_bins, dtype=np.float64)
        self.range_max = 0.0
        self.growth_events = 0
        self._pending_zeros = 0  # zeros seen before any non-zero value set the range

    def add(self, flat: np.ndarray, absmax: float, finite_count: int, relu: bool = False) -> None:
        """Add a batch whose max finite |x| is `absmax` (`relu`: bin max(x, 0), finite data)."""
        if finite_count == 0:
            return
        if self.range_max == 0.0:
            if absmax == 0.0:
                self._pending_zeros += finite_count
                return
            self.range_max = max(absmax, _MIN_RANGE)
            self.counts[0] += self._pending_zeros
            self._pending_zeros = 0
        elif absmax > self.range_max:
            self._grow(absmax)
            self.growth_events += 1
        fill_counts(
            flat,
            self.counts,
            bin_scale(self.num_bins, self.range_max),
            all_finite=finite_count == flat.shape[0],
            relu=relu,
        )

    def add_summarized(self, flat: np.ndarray) -> BatchSummary | None:
        """Add a batch and return its `batch_summary`, reading the data once, when it cannot
        grow the range (finite, max |x| <= range; float32). None, with nothing added,
        otherwise (and for the first batch, which sets the range): summarise it and call `add`.
        """
        if self.range_max == 0.0:
            return None
        scale = bin_scale(self.num_bins, self.range_max)
        return fill_counts_summarized(flat, self.counts, scale, self.range_max)

    def _grow(self, new_max: float) -> None:
        n = self.num_bins
        if self.growth == "pow2":
            doublings = 0
            r = self.range_max
            while r < new_max:
                r = min(r * 2.0, np.finfo(np.float64).max)
                doublings += 1
            if doublings >= int(math.log2(n)) + 1:
                merged = np.zeros(n)
                merged[0] = self.counts.sum()
            else:
                k = 1 << doublings
                merged = np.zeros(n)
                merged[: n // k] = self.counts.reshape(n // k, k).sum(axis=1)
            self.counts = merged
        else:  # square
            r = min(new_max * new_max, np.finfo(np.float64).max)
            if r < new_max:  # new max < 1: squaring would not cover it, so double instead
                r = self.range_max
                while r < new_max:
                    r = min(r * 2.0, np.finfo(np.float64).max)
            self.counts = rebin_by_overlap(self.counts, self.range_max, r)
        self.range_max = r

    def finalise(self) -> tuple[np.ndarray, float, int]:
        counts = self.counts.copy()
        if self.range_max == 0.0:
            counts[0] += self._pending_zeros  # everything seen was zero: all in bin 0, range 0
        return counts, self.range_max, self.growth_events


class ExactHistogram:
    """Order- and batch-split-independent histogram (see module docstring)."""

    def __init__(self, num_bins: int, fine_factor: int | None = None) -> None:
        self.num_bins = num_bins
        self.fine_bins = num_bins * (fine_factor or _FINE_FACTOR)
        self._log2_fine = int(math.log2(self.fine_bins))
        # fine (counts), lo / hi (smallest / largest |x| of each fine bin): made on first use
        # (`__getattr__`), in the collector's thread -- 768 KiB written per tensor at n = 2048
        self.exponent: int | None = None  # fine range is [0, 2**exponent)
        self.amax = 0.0
        self.total = 0
        # Batches summarised inside their fill (`add_summarized`) are binned into a uint32
        # table of rows (count, lo bits, hi bits) kept across batches -- one cache line per
        # value, bounds already settled -- and merged into fine/lo/hi before anything reads
        # them or the range moves (`_flush`). Counts and bounds merge in any order: exact.
        self._table: np.ndarray | None = None
        self._table_values = 0  # values binned into the table since the last flush

    def __getattr__(self, name: str) -> np.ndarray:
        # only called for a missing attribute: the fine state before its first use (not
        # thread-safe: one histogram is only ever fed by one thread at a time)
        if name not in ("fine", "lo", "hi"):
            raise AttributeError(name)
        self.fine = np.zeros(self.fine_bins, dtype=np.float64)
        self.lo = np.full(self.fine_bins, np.inf)
        self.hi = np.full(self.fine_bins, -np.inf)
        return getattr(self, name)

    @classmethod
    def from_fine(
        cls,
        num_bins: int,
        exponent: int | None,
        fine: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        amax: float,
        total: int,
    ) -> ExactHistogram:
        """The histogram whose fine state was computed elsewhere (the study derives it from
        sorted values): counts, smallest and largest |x| per fine bin over [0, 2**exponent),
        with exponent = frexp(amax)[1] (None when everything is zero)."""
        hist = cls(num_bins)
        want = (hist.fine_bins,)
        if fine.shape != want or lo.shape != want or hi.shape != want:
            raise ValueError(f"fine state must have {hist.fine_bins} bins, got {fine.shape}")
        hist.exponent = exponent
        hist.fine, hist.lo, hist.hi = fine, lo, hi
        hist.amax, hist.total = float(amax), int(total)
        return hist

    def add(self, flat: np.ndarray, absmax: float, finite_count: int, relu: bool = False) -> None:
        """Add a batch whose max finite |x| is `absmax` (`relu`: bin max(x, 0), finite data)."""
        if finite_count == 0:
            return
        self.total += finite_count
        self.amax = max(self.amax, absmax)
        # absmax = m * 2**e, 0.5 <= m < 1. The floor keeps the scale 2**(log2 F - e) finite for
        # float64 data below 2**-1000 (its bins stay exact: the scale is still a power of two)
        e = max(math.frexp(absmax)[1], _MIN_EXPONENT) if absmax > 0 else None
        if self.exponent is None:
            if e is None:  # only zeros so far: they belong to bin 0 whatever the range becomes
                self.fine[0] += finite_count
                self.lo[0] = self.hi[0] = 0.0
                return
            self._anchor(e)
        elif e is not None and e > self.exponent:
            self._anchor(e)
        # scale = F * 2**-e, a power of two: |x| * scale is exact in float64
        scale = math.ldexp(1.0, self._log2_fine - self.exponent)
        all_finite = finite_count == flat.shape[0]
        if flat.shape[0] >= _TABLE_MIN_VALUES and table_applies(flat, scale):
            zeros = fill_table_into(
                flat, self._rows_table(flat.shape[0]), scale, all_finite=all_finite, relu=relu
            )
            self._table_values += flat.shape[0]
            add_zeros(self.fine, self.lo, self.hi, zeros)
            return
        fill_counts_minmax(
            flat, self.fine, self.lo, self.hi, scale, all_finite=all_finite, relu=relu
        )

    def _scale(self) -> float:
        """F * 2**-e, the bin multiplier (1.0 before any anchor: then only zeros are binned)."""
        return 1.0 if self.exponent is None else math.ldexp(1.0, self._log2_fine - self.exponent)

    def add_summarized(self, flat: np.ndarray) -> BatchSummary | None:
        """Add a batch and return its `batch_summary`, reading the data once (float32). A chunk
        beyond the range (any non-zero one before the first anchor) re-anchors it and binning
        goes on; NaN or inf send the rest of the batch through `batch_summary` and `add`. None,
        with nothing added, where the table kernel does not apply: summarise and call `add`."""
        if flat.shape[0] < _TABLE_MIN_VALUES or not table_applies(flat, self._scale()):
            return None
        m = flat.shape[0]
        pos, lo_val, hi_val = 0, math.inf, -math.inf
        while pos < m:
            scale = self._scale()
            if not table_applies(flat, scale):
                break
            table = self._rows_table(m - pos)
            top = None if self.exponent is None else math.ldexp(1.0, self.exponent)
            run = fill_table_run(flat, pos, table, scale, top)
            self._table_values += run.stop - pos
            add_zeros(self.fine, self.lo, self.hi, run.zeros)
            lo_val, hi_val = min(lo_val, run.min), max(hi_val, run.max)
            pos = run.stop
            if pos == m or not math.isfinite(run.top):
                break
            self._anchor(math.frexp(run.top)[1])
        absmax = max(abs(lo_val), abs(hi_val)) if pos else 0.0
        self.total += pos
        self.amax = max(self.amax, absmax)
        if pos == m:
            return BatchSummary(0, 0, m, lo_val, hi_val, absmax)
        rest = flat[pos:]  # NaN / inf ahead (or a range the table cannot bin): the long way
        s = batch_summary(rest)
        self.add(rest, s.absmax, s.finite_count)
        lo_val, hi_val = min(lo_val, s.min), max(hi_val, s.max)
        finite = pos + s.finite_count
        absmax = max(abs(lo_val), abs(hi_val)) if finite else 0.0
        return BatchSummary(s.nan_count, s.inf_count, finite, lo_val, hi_val, absmax)

    def _rows_table(self, incoming: int) -> np.ndarray:
        """The persistent table, flushed first if `incoming` more values could overflow its
        uint32 counts."""
        if self._table is None:
            self._table = new_table(self.fine_bins)
        if self._table_values + incoming >= 1 << 31:
            self._flush()
        return self._table

    def _flush(self) -> None:
        """Merge the table into fine/lo/hi (and reset it)."""
        if self._table is not None and self._table_values:
            merge_table_into(self._table, self.fine, self.lo, self.hi)
        self._table_values = 0

    def _anchor(self, exponent: int) -> None:
        """Anchor the fine histogram at 2**exponent, not below the current anchor: fine bins
        merge 2**d : 1 (exact; `fine_state` flushes the table, indexed at the old anchor). A
        first anchor moves nothing: only zeros came before, in bin 0 at any anchor."""
        if self.exponent is not None:
            self.fine, self.lo, self.hi = self.fine_state(exponent)
        self.exponent = exponent

    def fine_state(self, exponent: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New (fine, lo, hi) arrays: the fine state anchored at 2**exponent, which is not below
        the current anchor (fine bins merged 2**d : 1, exact). Flushes the table first."""
        self._flush()
        d = 0 if self.exponent is None else exponent - self.exponent
        if d < 0:
            raise ValueError(f"cannot re-anchor 2**{self.exponent} at the finer 2**{exponent}")
        f = self.fine_bins
        k = min(1 << d, f)
        fine, lo, hi = np.zeros(f), np.full(f, np.inf), np.full(f, -np.inf)
        fine[: f // k] = self.fine.reshape(f // k, k).sum(axis=1)
        lo[: f // k] = self.lo.reshape(f // k, k).min(axis=1)
        hi[: f // k] = self.hi.reshape(f // k, k).max(axis=1)
        return fine, lo, hi

    def finalise(self) -> tuple[np.ndarray, float, int]:
        self._flush()
        n = self.num_bins
        counts = np.zeros(n, dtype=np.float64)
        if self.amax == 0.0 or self.exponent is None:
            counts[0] = float(self.total)
            return counts, 0.0, 0
        k = np.flatnonzero(self.fine)
        c, lo, hi = self.fine[k], self.lo[k], self.hi[k]
        scale = bin_scale(n, self.amax)  # the `trt` policy's single-batch multiplier
        pos_lo, pos_hi = lo * scale, hi * scale
        b_lo = np.minimum(pos_lo, n - 1).astype(np.intp)
        b_hi = np.minimum(pos_hi, n - 1).astype(np.intp)
        whole = b_lo == b_hi
        counts += np.bincount(b_lo[whole], weights=c[whole], minlength=n)
        # a fine bin with values on both sides of a final edge: its smallest value is in b_lo,
        # its largest in b_hi (a fine bin is <= 1/8 final bin wide, so b_hi = b_lo + 1); the
        # other count - 2 values are split by where the edge cuts [lo, hi]
        split = ~whole
        if split.any():
            edge = (b_lo[split] + 1).astype(np.float64)
            frac = (edge - pos_lo[split]) / (pos_hi[split] - pos_lo[split])
            rest = c[split] - 2.0
            counts += np.bincount(b_lo[split], weights=1.0 + rest * frac, minlength=n)
            counts += np.bincount(b_hi[split], weights=1.0 + rest * (1.0 - frac), minlength=n)
        return counts, max(self.amax, _MIN_RANGE), 0  # the grid bin_scale used
