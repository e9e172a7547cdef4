"""Per-tensor statistics: a histogram of |x| plus running min/max, fed one batch at a time."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trtcalib.errors import ConfigError, StatsError
from trtcalib.stats._kernels import BatchSummary, batch_summary
from trtcalib.stats.histogram import ExactHistogram, TrtHistogram
from trtcalib.stats.signed import ReluView, SignedExactHistogram

HISTOGRAM_POLICIES = ("exact", "trt")
GROWTH_RULES = ("pow2", "square")
_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def is_calibratable(dtype: object) -> bool:
    """True for float16/32/64 and bfloat16 tensors: the ones TensorRT calibrates."""
    try:
        dt = np.dtype(dtype)  # type: ignore[arg-type]
    except TypeError:
        return False
    return dt in _FLOAT_DTYPES or dt.name == "bfloat16"


@dataclass(frozen=True, eq=False)
class TensorStats:
    """Everything the amax algorithms need for one tensor (see the stats contract).

    Compared by identity (`counts` is an array); compare fields explicitly.
    """

    name: str
    histogram: str  # policy name: "exact" or "trt"
    counts: np.ndarray  # float64[num_bins], histogram of finite |x| over [0, range_max]
    range_max: float
    amax: float  # max finite |x|; inf if any +/-inf was seen
    min: float  # smallest finite value (inf if none)
    max: float  # largest finite value (-inf if none)
    moving_min: float | None
    moving_max: float | None
    count: int  # finite elements
    nan_count: int
    inf_count: int
    growth_events: int
    batches: int

    @property
    def num_bins(self) -> int:
        return int(self.counts.shape[0])

    @property
    def bin_width(self) -> float:
        return self.range_max / self.num_bins

    @property
    def empty_bin_fraction(self) -> float:
        return float(np.count_nonzero(self.counts == 0)) / self.num_bins


class TensorCollector:
    """Collect |x| statistics of one tensor over batches; `result()` gives a `TensorStats`."""

    def __init__(
        self,
        name: str,
        *,
        num_bins: int = 2048,
        histogram: str = "exact",
        growth: str = "pow2",
        moving_average: float | None = None,
        signed: bool = False,
    ) -> None:
        """`signed=True` (exact policy only) keeps the positive and negative values apart, so
        `relu_collector()` can give the statistics of max(x, 0) from the same single pass."""
        if histogram not in HISTOGRAM_POLICIES:
            raise ConfigError(
                f"tensor {name!r}: unknown histogram policy {histogram!r} "
                f"(choose from {', '.join(HISTOGRAM_POLICIES)})"
            )
        if growth not in GROWTH_RULES:
            raise ConfigError(
                f"tensor {name!r}: unknown growth rule {growth!r} "
                f"(choose from {', '.join(GROWTH_RULES)})"
            )
        if (
            isinstance(num_bins, bool)
            or not isinstance(num_bins, (int, np.integer))
            or num_bins < 128
            or num_bins & (num_bins - 1)
        ):
            raise ConfigError(
                f"tensor {name!r}: num_bins must be a power of two >= 128, got {num_bins!r}"
            )
        if moving_average is not None and not (
            isinstance(moving_average, (int, float))
            and not isinstance(moving_average, bool)
            and 0.01 <= moving_average <= 0.5
        ):
            raise ConfigError(
                f"tensor {name!r}: moving average constant must be in [0.01, 0.5], "
                f"got {moving_average!r}"
            )
        self.name = name
        self.num_bins = int(num_bins)
        self.histogram = histogram
        self.growth = growth
        self.moving_average = None if moving_average is None else float(moving_average)
        if signed and histogram != "exact":
            raise ConfigError(f"tensor {name!r}: only the exact policy keeps signed histograms")
        self._hist: TrtHistogram | ExactHistogram | SignedExactHistogram | ReluView
        if histogram == "trt":
            self._hist = TrtHistogram(self.num_bins, growth)
        elif signed:
            self._hist = SignedExactHistogram(self.num_bins)
        else:
            self._hist = ExactHistogram(self.num_bins)
        self._min = math.inf
        self._max = -math.inf
        self._moving_min: float | None = None
        self._moving_max: float | None = None
        self._count = 0
        self._nan = 0
        self._inf = 0
        self._batches = 0

    def relu_collector(self, name: str, *, moving_average: float | None = None) -> TensorCollector:
        """A collector of max(x, 0) (a Relu output) that bins nothing itself: its histogram is
        this signed collector's positive half plus the zeros (`stats.signed`), bit-identical to
        collecting max(x, 0). Feed it each batch right after this collector, as
        `collect(x, relu=True, summary=<what this collector returned>)`."""
        if not isinstance(self._hist, SignedExactHistogram):
            raise StatsError(f"tensor {self.name!r}: a Relu view needs a signed collector")
        view = TensorCollector(name, num_bins=self.num_bins, moving_average=moving_average)
        view._hist = ReluView(self._hist)
        return view

    def collect(
        self, x: np.ndarray, *, relu: bool = False, summary: BatchSummary | None = None
    ) -> BatchSummary:
        """Add one batch (any shape). NaN is ignored and counted, +/-inf counted.

        `relu=True` adds max(x, 0) instead of x: a ReLU output's statistics from its input, so
        the output itself need not be produced (histogram, counts and amax bit-identical to
        collecting the output; a zero min/max is +0.0 where a Relu may have kept -0.0; a batch
        holding NaN/inf is turned into max(x, 0) first, NaN staying NaN).
        `summary` is `batch_summary` of x when the caller already has it (one pass less).
        Returns `batch_summary` of x (before any relu), for the next collector of x.
        """
        arr = np.asarray(x)
        if not is_calibratable(arr.dtype):
            raise StatsError(
                f"tensor {self.name!r}: dtype {arr.dtype} is not calibratable "
                "(only float16/32/64 and bfloat16 are)"
            )
        if arr.size == 0:
            raise StatsError(f"tensor {self.name!r}: empty batch (shape {arr.shape})")
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float32)  # float16 / bfloat16: exact in float32
        flat = arr.reshape(-1)
        if not flat.flags.c_contiguous:
            flat = np.ascontiguousarray(flat)
        fused = None
        if summary is None and not relu:
            fused = self._hist.add_summarized(flat)  # summary and fill in one read of the data
        s = summary or fused or batch_summary(flat)  # a BatchSummary (a tuple) is never falsy
        seen = s
        binned_relu = False
        if relu:
            if s.finite_count == flat.shape[0]:
                # max(x, 0) of finite data: its summary follows from the one of x
                lo, hi = (0.0 if v <= 0.0 else v for v in (s.min, s.max))
                s = BatchSummary(0, 0, s.finite_count, lo, hi, hi)
                binned_relu = True
            else:
                flat = np.maximum(flat, flat.dtype.type(0))
                s = batch_summary(flat)
        self._batches += 1
        self._nan += s.nan_count
        self._inf += s.inf_count
        self._count += s.finite_count
        if s.finite_count:
            self._min = min(self._min, s.min)
            self._max = max(self._max, s.max)
            if self.moving_average is not None:
                c = self.moving_average
                if self._moving_min is None:
                    self._moving_min, self._moving_max = s.min, s.max
                else:
                    # onnxruntime's convention: m += c * (batch - m)
                    self._moving_min += c * (s.min - self._moving_min)
                    self._moving_max += c * (s.max - self._moving_max)  # type: ignore[operator]
        if fused is None:
            self._hist.add(flat, s.absmax, s.finite_count, relu=binned_relu)
        return seen

    def result(self) -> TensorStats:
        """The statistics so far (the collector can keep collecting afterwards)."""
        counts, range_max, growth_events = self._hist.finalise()
        amax = (
            math.inf if self._inf else (max(abs(self._min), abs(self._max)) if self._count else 0.0)
        )
        return TensorStats(
            name=self.name,
            histogram=self.histogram,
            counts=counts,
            range_max=float(range_max),
            amax=float(amax),
            min=float(self._min),
            max=float(self._max),
            moving_min=self._moving_min,
            moving_max=self._moving_max,
            count=self._count,
            nan_count=self._nan,
            inf_count=self._inf,
            growth_events=growth_events,
            batches=self._batches,
        )
