"""The `exact` histogram of a tensor that feeds a Relu, and the Relu's, from one pass over it.

A ResNet has a Relu after nearly every Conv and Add; calibration derives the Relu output's
statistics from its input (`TensorCollector.collect(x, relu=True)`), which used to bin the input
a second time. Here the input's values are binned by sign into two `ExactHistogram`s, each
anchored at its own power of two: positives (x > 0) and magnitudes of negatives (x < 0), zeros
counted apart. Both are exact fine states (module docstring of `histogram`), so:

  * the |x| histogram = both halves re-anchored at the larger power of two (fine bins merge
    2**d : 1 exactly; counts add, bounds take min / max) plus the zeros in bin 0;
  * the Relu's max(x, 0) histogram = the positive half as it is (its anchor is the Relu's own:
    the power of two above the largest positive) plus every other finite value as a zero.

Both equal, bit for bit, what an `ExactHistogram` fed x (or max(x, 0)) gives: the same fine
state, resampled by the same `finalise`. The two halves' tables are the two ends of one
`signed_table`, so the compiled kernel fills either in the same loop.
"""

from __future__ import annotations

import math

import numpy as np

from trtcalib.errors import StatsError
from trtcalib.stats._kernels import (
    BatchSummary,
    add_zeros,
    batch_summary,
    fill_signed_run,
    signed_table,
    table_applies,
)
from trtcalib.stats.histogram import ExactHistogram


class SignedExactHistogram:
    """`ExactHistogram` of |x| kept as a positive and a negative half (see module docstring);
    `finalise()` gives the |x| histogram, `finalise_relu(count)` the one of max(x, 0)."""

    def __init__(self, num_bins: int) -> None:
        self.num_bins = num_bins
        self.pos = ExactHistogram(num_bins)
        self.neg = ExactHistogram(num_bins)
        self.zeros = 0  # +0.0 and -0.0: bin 0 of both histograms
        self.batches = 0  # add / add_summarized calls, for the Relu views to check they follow
        self._table: np.ndarray | None = None  # made on first use, in the collector's thread

    def _signed_table(self) -> np.ndarray:
        """The table the signed kernel fills: each half's persistent table is one end of it."""
        if self._table is None:
            rows = self.pos.fine_bins + 8
            self._table = signed_table(self.pos.fine_bins)
            self.pos._table = self._table[: 4 * rows]
            self.neg._table = self._table[4 * rows :]
        return self._table

    def add(self, flat: np.ndarray, absmax: float, finite_count: int, relu: bool = False) -> None:
        """Add a batch (`absmax` / `finite_count` as for `ExactHistogram.add`)."""
        if relu:
            raise StatsError("a signed histogram bins x itself: derive max(x, 0) with a view")
        self.batches += 1
        if finite_count:
            self._add_split(flat)

    def add_summarized(self, flat: np.ndarray) -> BatchSummary | None:
        """Add a batch and return its `batch_summary`, reading float32 data once. None, with
        nothing added, without the compiled kernels or for other dtypes: summarise and `add`."""
        if not table_applies(flat, 1.0):  # compiled kernels, float32, contiguous
            return None
        self.batches += 1
        table = self._signed_table()
        m = flat.shape[0]
        pos, lo_val, hi_val = 0, math.inf, -math.inf
        while pos < m:
            scales = (self.pos._scale(), self.neg._scale())
            if not all(table_applies(flat, scale) for scale in scales):
                break  # an anchor float32 cannot bin exactly: the long way
            ranges = tuple(
                None if h.exponent is None else math.ldexp(1.0, h.exponent)
                for h in (self.pos, self.neg)
            )
            for half in (self.pos, self.neg):
                half._rows_table(m - pos)  # flushed first if its uint32 counts could overflow
            run = fill_signed_run(flat, pos, table, scales, ranges)
            binned = run.stop - pos  # which half each went to is in the tables, not needed
            self._account(self.pos, binned, max(run.max, 0.0))
            self._account(self.neg, binned, max(-run.min, 0.0))
            self.zeros += run.zeros
            lo_val, hi_val = min(lo_val, run.min), max(hi_val, run.max)
            pos = run.stop
            if pos == m or not (math.isfinite(run.top_pos) and math.isfinite(run.top_neg)):
                break
            for half, top in ((self.pos, run.top_pos), (self.neg, run.top_neg)):
                if top > 0.0 and (half.exponent is None or top >= math.ldexp(1.0, half.exponent)):
                    half._anchor(math.frexp(top)[1])  # float32: far above the lowest anchor
        if pos == m:
            return BatchSummary(0, 0, m, lo_val, hi_val, max(abs(lo_val), abs(hi_val)))
        rest = flat[pos:]  # NaN / inf ahead (or an anchor float32 cannot bin): the long way
        s = batch_summary(rest)
        if s.finite_count:
            self._add_split(rest)
        lo_val, hi_val = min(lo_val, s.min), max(hi_val, s.max)
        finite = pos + s.finite_count
        absmax = max(abs(lo_val), abs(hi_val)) if finite else 0.0
        return BatchSummary(s.nan_count, s.inf_count, finite, lo_val, hi_val, absmax)

    @staticmethod
    def _account(half: ExactHistogram, binned: int, largest: float) -> None:
        """After a kernel run: `binned` bounds what went into the half's table (its uint32
        counts are flushed before 2**31), `largest` is its largest magnitude (0 if none). The
        halves' own `total` is not kept: the finalised counts give it."""
        half._table_values += binned
        half.amax = max(half.amax, largest)

    def _add_split(self, flat: np.ndarray) -> None:
        """Any dtype, NaN / inf allowed: each half gets its values through `ExactHistogram.add`."""
        self._signed_table()  # the halves' tables are its ends
        finite = flat[np.isfinite(flat)]
        self.zeros += int(np.count_nonzero(finite == 0))
        for half, values in ((self.pos, finite[finite > 0]), (self.neg, -finite[finite < 0])):
            if values.size:
                half.add(values, float(values.max()), int(values.size))

    def finalise(self) -> tuple[np.ndarray, float, int]:
        """The |x| histogram: (counts, range_max, growth events = 0)."""
        anchors = [h.exponent for h in (self.pos, self.neg) if h.exponent is not None]
        if not anchors:
            return self._zeros_only(self.zeros)
        e = max(anchors)
        (fine, lo, hi), (fine_n, lo_n, hi_n) = (h.fine_state(e) for h in (self.pos, self.neg))
        fine += fine_n
        np.minimum(lo, lo_n, out=lo)
        np.maximum(hi, hi_n, out=hi)
        return self._finalise(e, fine, lo, hi, max(self.pos.amax, self.neg.amax), self.zeros)

    def finalise_relu(self, finite_count: int) -> tuple[np.ndarray, float, int]:
        """The histogram of max(x, 0) over the same batches, `finite_count` its finite values
        (those of x, plus any -inf, which max(x, 0) made 0): everything not positive is 0."""
        if self.pos.exponent is None:
            return self._zeros_only(finite_count)
        fine, lo, hi = self.pos.fine_state(self.pos.exponent)
        zeros = finite_count - int(fine.sum())
        return self._finalise(self.pos.exponent, fine, lo, hi, self.pos.amax, zeros)

    def _finalise(self, exponent, fine, lo, hi, amax, zeros) -> tuple[np.ndarray, float, int]:
        """Resample a fine state (a copy) plus `zeros` in bin 0 as `ExactHistogram` does."""
        add_zeros(fine, lo, hi, zeros)
        total = int(fine.sum())
        return ExactHistogram.from_fine(
            self.num_bins, exponent, fine, lo, hi, amax, total
        ).finalise()

    def _zeros_only(self, total: int) -> tuple[np.ndarray, float, int]:
        """The histogram of `total` zeros (or of nothing): all in bin 0, range 0."""
        h = ExactHistogram(self.num_bins)
        h.total = total
        return h.finalise()


class ReluView:
    """The histogram of a derived Relu output: bins nothing, reads its input's
    `SignedExactHistogram`. Its collector must collect each batch right after the input's."""

    def __init__(self, source: SignedExactHistogram) -> None:
        self.source = source
        self.count = 0  # finite values of max(x, 0)
        self.batches = 0

    def add(self, flat: np.ndarray, absmax: float, finite_count: int, relu: bool = False) -> None:
        # `relu` is False for a batch with NaN / inf: the collector passes max(x, 0) itself
        if self.batches + 1 != self.source.batches:
            raise StatsError(
                "a Relu view takes max(x, 0) of the batch its source histogram has just binned"
            )
        self.batches += 1
        self.count += finite_count

    def add_summarized(self, flat: np.ndarray) -> BatchSummary | None:
        return None  # never binned here: `add` checks the source has the batch

    def finalise(self) -> tuple[np.ndarray, float, int]:
        return self.source.finalise_relu(self.count)
