"""Summaries of a batch-size sweep and the files it writes (results.json, results.csv)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trtcalib.cache import atomic_write_bytes
from trtcalib.cache.provenance import json_float
from trtcalib.study.replay import RunResult

JSON_SCHEMA = "trtcalib.study.batch-size/1"
CSV_COLUMNS = [
    "tensor",
    "batch_size",
    "order",
    "amax",
    "exact_amax",
    "rel_error",
    "global_max",
    "range_max",
    "growth_events",
    "empty_bin_fraction",
    "num_batches",
]
ACCURACY_CSV_COLUMNS = ["batch_size", "order", "accuracy", "exact_accuracy", "float_accuracy"]


def rel_error(amax: float, reference: float) -> float:
    """(amax - reference) / reference; 0 when both are 0, inf when only the reference is 0."""
    if reference == 0:
        return 0.0 if amax == 0 else math.inf
    if math.isinf(reference):
        return 0.0 if amax == reference else math.inf
    return (amax - reference) / reference


@dataclass(frozen=True)
class SettingSummary:
    """One tensor at one batch size, over all orders."""

    batch_size: int
    amax: list[float]  # per order
    amax_min: float
    amax_max: float
    amax_std: float
    rel_error: list[float]  # per order, vs the exact policy
    max_abs_rel_error: float
    growth_events: list[int]
    empty_bin_fraction: list[float]
    range_max: list[float]
    num_batches: int


@dataclass(frozen=True)
class TensorSummary:
    name: str
    exact_amax: float
    exact_range_max: float
    exact_empty_bin_fraction: float
    global_max: float
    sensitivity: float  # max |relative error| over all batch sizes and orders
    settings: list[SettingSummary]

    def setting(self, batch_size: int) -> SettingSummary:
        return next(s for s in self.settings if s.batch_size == batch_size)

    @property
    def finite(self) -> bool:
        """False when Inf reached the tensor: some amax (or the exact one) is inf."""
        return math.isfinite(self.exact_amax) and all(
            math.isfinite(a) for s in self.settings for a in s.amax
        )


@dataclass
class StudyResult:
    """Everything `trtcalib study batch-size` found; `tensors` sorted as the model lists them."""

    model: str
    data: str
    num_samples: int
    calibrator: str
    params: dict[str, float]
    growth: str
    num_bins: int
    seed: int
    batch_sizes: list[int]
    orders: int
    storage: dict[str, Any]
    tensors: list[TensorSummary]
    runs: list[RunResult]
    accuracy: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def most_sensitive(self, top: int, finite_only: bool = False) -> list[TensorSummary]:
        """Largest amax error vs exact first; ties broken by the spread at the smallest batch.
        `finite_only` leaves out tensors whose amax is inf (Inf in the activations)."""

        def key(t: TensorSummary) -> tuple[float, float]:
            s = t.settings[0]
            spread = s.amax_max - s.amax_min
            return (-_finite_or_big(t.sensitivity), -_finite_or_big(spread))

        tensors = [t for t in self.tensors if not finite_only or t.finite]
        return sorted(tensors, key=key)[:top]

    def to_json(self) -> dict[str, Any]:
        return _clean(
            {
                "schema": JSON_SCHEMA,
                "model": self.model,
                "data": self.data,
                "num_samples": self.num_samples,
                "calibrator": self.calibrator,
                "params": self.params,
                "histogram": "trt",
                "reference_histogram": "exact",
                "growth": self.growth,
                "num_bins": self.num_bins,
                "seed": self.seed,
                "batch_sizes": self.batch_sizes,
                "last_batch": "keep",  # a smaller last batch is replayed, never padded/dropped
                "orders": self.orders,
                "order_note": "order 0 is the data order; order k >= 1 is "
                "numpy.random.default_rng([seed, k]).permutation(num_samples)",
                "storage": self.storage,
                "timings_s": self.timings,
                "tensors": [asdict(t) for t in self.tensors],
                "accuracy": self.accuracy,
            }
        )


def _finite_or_big(x: float) -> float:
    return 1e300 if math.isinf(x) or math.isnan(x) else x


def _clean(value: Any) -> Any:
    """JSON has no inf/NaN: write them as the strings "inf", "-inf", "nan"."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return json_float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def summarize(
    runs: Sequence[RunResult], names: Sequence[str], batch_sizes: Sequence[int]
) -> list[TensorSummary]:
    by_tensor: dict[str, list[RunResult]] = {n: [] for n in names}
    for r in runs:
        by_tensor[r.tensor].append(r)
    out = []
    for name in names:
        rs = by_tensor[name]
        exact = next(r for r in rs if r.policy == "exact")
        settings = []
        for b in batch_sizes:
            sel = sorted((r for r in rs if r.policy == "trt" and r.batch_size == b), key=_order)
            amax = [r.amax for r in sel]
            errors = [rel_error(a, exact.amax) for a in amax]
            settings.append(
                SettingSummary(
                    batch_size=b,
                    amax=amax,
                    amax_min=min(amax),
                    amax_max=max(amax),
                    amax_std=float(np.std(amax)) if all(map(math.isfinite, amax)) else math.nan,
                    rel_error=errors,
                    max_abs_rel_error=max(abs(e) for e in errors),
                    growth_events=[r.growth_events for r in sel],
                    empty_bin_fraction=[r.empty_bin_fraction for r in sel],
                    range_max=[r.range_max for r in sel],
                    num_batches=sel[0].num_batches,
                )
            )
        out.append(
            TensorSummary(
                name=name,
                exact_amax=exact.amax,
                exact_range_max=exact.range_max,
                exact_empty_bin_fraction=exact.empty_bin_fraction,
                global_max=exact.global_max,
                sensitivity=max(s.max_abs_rel_error for s in settings),
                settings=settings,
            )
        )
    return out


def _order(r: RunResult) -> int:
    return r.order


def csv_text(result: StudyResult) -> str:
    """One row per tensor, batch size and order (long format, easy to pivot)."""
    exact = {t.name: t.exact_amax for t in result.tensors}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in result.runs:
        if r.policy != "trt":
            continue
        writer.writerow(
            [
                r.tensor,
                r.batch_size,
                r.order,
                repr(r.amax),
                repr(exact[r.tensor]),
                repr(rel_error(r.amax, exact[r.tensor])),
                repr(r.global_max),
                repr(r.range_max),
                r.growth_events,
                repr(r.empty_bin_fraction),
                r.num_batches,
            ]
        )
    return buffer.getvalue()


def accuracy_csv_text(accuracy: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ACCURACY_CSV_COLUMNS)
    for row in accuracy["settings"]:
        writer.writerow(
            [
                row["batch_size"],
                row["order"],
                repr(row["accuracy"]),
                repr(accuracy["exact"]),
                repr(accuracy["float"]),
            ]
        )
    return buffer.getvalue()


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def write_results(result: StudyResult, out_dir: Path) -> list[Path]:
    """results.json and results.csv (and accuracy.csv with labels) in `out_dir`."""
    out_dir = Path(out_dir)
    written = []
    text = json.dumps(result.to_json(), indent=2) + "\n"
    atomic_write(out_dir / "results.json", text.encode())
    written.append(out_dir / "results.json")
    atomic_write(out_dir / "results.csv", csv_text(result).encode())
    written.append(out_dir / "results.csv")
    if result.accuracy:
        atomic_write(out_dir / "accuracy.csv", accuracy_csv_text(result.accuracy).encode())
        written.append(out_dir / "accuracy.csv")
    return written


def _pct(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf"
    return f"{100 * x:+.1f}%" if abs(x) >= 0.0005 else "0"


def summary_table(result: StudyResult, top: int = 8):
    """A rich Table of the `top` most sensitive tensors (compact: fits 100 columns)."""
    from rich.table import Table
    from rich.text import Text

    small, large = result.batch_sizes[0], result.batch_sizes[-1]
    table = Table(
        title=(
            f"most batch-sensitive tensors: {result.calibrator} amax with the trt histogram "
            f"({result.growth} growth) vs exact, {result.orders} order(s), "
            f"{result.num_samples} samples"
        ),
        title_justify="left",
    )
    table.add_column("tensor", overflow="fold", max_width=36)
    table.add_column("exact amax", justify="right")
    table.add_column("worst err", justify="right")
    table.add_column(f"err b={small}", justify="right")
    table.add_column(f"err b={large}", justify="right")
    table.add_column("order spread", justify="right")
    table.add_column(f"growths b={small}", justify="right")
    table.add_column(f"empty b={small}", justify="right")
    for t in result.most_sensitive(top):
        worst_setting = max(t.settings, key=lambda s: _finite_or_big(s.max_abs_rel_error))
        worst = max(worst_setting.rel_error, key=lambda e: abs(_finite_or_big(e)))
        spread = max(
            (s.amax_max - s.amax_min) / t.exact_amax if t.exact_amax else 0.0 for s in t.settings
        )  # nan with an inf amax: shown as "inf"
        first, last = t.setting(small), t.setting(large)
        table.add_row(
            Text(t.name),  # a tensor name may hold [brackets]: never rich markup
            f"{t.exact_amax:.4g}",
            f"{_pct(worst)} (b={worst_setting.batch_size})",
            _pct(_worst(first.rel_error)),
            _pct(_worst(last.rel_error)),
            f"{100 * spread:.1f}%" if t.finite else "inf",
            f"{min(first.growth_events)}-{max(first.growth_events)}",
            f"{np.mean(first.empty_bin_fraction):.0%}",
        )
    return table


def _worst(errors: Sequence[float]) -> float:
    return max(errors, key=lambda e: abs(_finite_or_big(e)))


def batch_table(result: StudyResult):
    """One row per batch size, over all tensors and orders."""
    from rich.table import Table

    table = Table(title="by batch size (all tensors, all orders)", title_justify="left")
    for col in ("batch", "batches", "median |err|", "worst |err|", "tensors off >1%",
                "mean growths", "mean empty bins"):  # fmt: skip
        table.add_column(col, justify="right")
    for i, b in enumerate(result.batch_sizes):
        settings = [t.settings[i] for t in result.tensors]
        errors = [abs(_finite_or_big(e)) for s in settings for e in s.rel_error]
        off = sum(1 for s in settings if _finite_or_big(s.max_abs_rel_error) > 0.01)
        table.add_row(
            str(b),
            str(settings[0].num_batches),
            f"{100 * float(np.median(errors)):.1f}%",
            f"{100 * max(errors):.1f}%" if max(errors) < 1e299 else "inf",
            f"{off}/{len(settings)}",
            f"{np.mean([g for s in settings for g in s.growth_events]):.2f}",
            f"{np.mean([f for s in settings for f in s.empty_bin_fraction]):.0%}",
        )
    return table
