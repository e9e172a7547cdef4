"""`trtcalib study scenario`: the thought experiments on batch size, on synthetic streams.

Each stream is a list of samples (float32 arrays of |x|-like values), built with a fixed seed so
the output is reproducible. A scenario replays its stream through the `trt` histogram policy at a
few batch sizes and through the `exact` policy, and reports the amax of each algorithm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SAMPLES = 64
VALUES_PER_SAMPLE = 512


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    story: str  # what the stream is and what to look for
    data: np.ndarray  # (samples, values)
    batch_sizes: tuple[int, ...]


def outlier_last(seed: int = 0) -> Scenario:
    """Batch 1, a very large value in the last batch: the range grows at the very end."""
    rng = np.random.default_rng(seed)
    data = np.abs(rng.normal(0.0, 1.0, (SAMPLES, VALUES_PER_SAMPLE))).astype(np.float32)
    data[-1, -1] = 4.0 * data.max()  # far above anything seen before, and only in the last sample
    return Scenario(
        "outlier-last",
        "1. batch 1, a very large value in the last batch",
        "half-normal activations; the last sample holds one value 4x the largest before it. "
        "At batch 1 the range is set by the first sample and must grow in the last step, so "
        "the bins the data had filled are merged into a few and the upper part stays empty.",
        data,
        (1, 16, SAMPLES),
    )


def evenly_spread(seed: int = 0) -> Scenario:
    """Batch 16, values evenly spread: every batch reaches nearly the same max."""
    rng = np.random.default_rng(seed)
    data = rng.uniform(0.0, 1.0, (SAMPLES, VALUES_PER_SAMPLE)).astype(np.float32)
    return Scenario(
        "evenly-spread",
        "2. batch 16, evenly spread values",
        "uniform values in [0, 1): a batch of 16 samples already comes within ~1e-4 of the "
        "global max, so a later batch exceeds its range rarely (and only by a hair); at batch "
        "1 the first sample's max is lower and a later one almost surely exceeds it. Any "
        "excess, however small, doubles the range under pow2 and leaves half the bins empty.",
        data,
        (1, 16, SAMPLES),
    )


def robust(seed: int = 0) -> Scenario:
    """A distribution whose max is reached in every sample (ReLU6-like): batch size is moot."""
    rng = np.random.default_rng(seed)
    data = np.clip(rng.normal(2.0, 2.0, (SAMPLES, VALUES_PER_SAMPLE)), 0.0, 6.0)
    data = data.astype(np.float32)
    data[:, 0] = 6.0  # every sample saturates (as ReLU6 outputs do)
    return Scenario(
        "robust",
        "3. a robust distribution (ReLU6-like, saturated in every sample)",
        "every sample reaches the same max 6.0, so the first batch fixes the final range at any "
        "batch size: no growth, the same histogram, the same amax.",
        data,
        (1, 16, SAMPLES),
    )


def scenarios(seed: int = 0) -> list[Scenario]:
    return [outlier_last(seed), evenly_spread(seed), robust(seed)]


@dataclass
class ScenarioRun:
    label: str
    histogram: str
    batch_size: int | None
    stats: Any  # TensorStats
    amax: dict[str, float] = field(default_factory=dict)


def run_stream(
    data: np.ndarray,
    *,
    histogram: str,
    batch_size: int,
    growth: str = "pow2",
    num_bins: int = 2048,
    name: str = "x",
):
    """Feed the samples of `data` in order, `batch_size` at a time, to one TensorCollector."""
    from trtcalib.stats import TensorCollector

    kwargs = {"growth": growth} if histogram == "trt" else {}
    c = TensorCollector(name, num_bins=num_bins, histogram=histogram, **kwargs)
    for start in range(0, len(data), batch_size):
        c.collect(np.asarray(data[start : start + batch_size]))
    return c.result()


def run_scenario(
    scenario: Scenario,
    *,
    growth: str = "pow2",
    algorithms: Sequence[str] = ("entropy", "minmax"),
    num_bins: int = 2048,
) -> list[ScenarioRun]:
    from trtcalib.stats import compute_amax

    runs = []
    settings = [("trt", b) for b in scenario.batch_sizes] + [("exact", len(scenario.data))]
    for histogram, b in settings:
        stats = run_stream(
            scenario.data, histogram=histogram, batch_size=b, growth=growth, num_bins=num_bins
        )
        label = f"trt, batch {b}" if histogram == "trt" else "exact"
        run = ScenarioRun(label, histogram, b if histogram == "trt" else None, stats)
        run.amax = {a: float(compute_amax(stats, a)) for a in algorithms}
        runs.append(run)
    return runs


@dataclass(frozen=True)
class WorkedExampleRow:
    policy: str
    first: float
    second: float
    range_max: float
    growth_events: int
    amax: dict[str, float]


WORKED_PAIRS = ((1.54, 2.4), (2.4, 1.54))


def worked_example(
    pairs: Sequence[tuple[float, float]] = WORKED_PAIRS,
    algorithms: Sequence[str] = ("entropy", "minmax"),
    num_bins: int = 2048,
) -> list[WorkedExampleRow]:
    """The article's worked example: two batches holding one value each, 1.54 and 2.4 in either
    order, through every policy (square growth: 1.54 then 2.4 gives a range of 2.4^2 = 5.76)."""
    from trtcalib.stats import TensorCollector, compute_amax

    rows = []
    for histogram, growth in (("trt", "pow2"), ("trt", "square"), ("exact", None)):
        for a, b in pairs:
            kwargs = {"growth": growth} if growth else {}
            c = TensorCollector("x", num_bins=num_bins, histogram=histogram, **kwargs)
            c.collect(np.array([a], dtype=np.float32))
            c.collect(np.array([b], dtype=np.float32))
            stats = c.result()
            policy = f"trt/{growth}" if growth else "exact"
            amax = {name: float(compute_amax(stats, name)) for name in algorithms}
            rows.append(
                WorkedExampleRow(
                    policy, a, b, float(stats.range_max), int(stats.growth_events), amax
                )
            )
    return rows


def plot_scenario(scenario: Scenario, runs: Sequence[ScenarioRun], path: Path) -> Path:
    from trtcalib.study.plots import plot_histograms

    panels = [(r.label, r.stats, r.amax.get("entropy", float(r.stats.amax))) for r in runs]
    return plot_histograms(panels, path, scenario.title + " (entropy amax)")


def scenario_report(growth: str, seed: int = 0) -> dict[str, Any]:
    """Run everything; return a JSON-able report (the CLI prints and plots it)."""
    report: dict[str, Any] = {"growth": growth, "seed": seed, "scenarios": [], "worked": []}
    for s in scenarios(seed):
        runs = run_scenario(s, growth=growth)
        report["scenarios"].append(
            {
                "key": s.key,
                "title": s.title,
                "story": s.story,
                "samples": int(s.data.shape[0]),
                "values_per_sample": int(s.data.shape[1]),
                "max_abs": float(np.abs(s.data).max()),
                "runs": [
                    {
                        "label": r.label,
                        "histogram": r.histogram,
                        "batch_size": r.batch_size,
                        "range_max": float(r.stats.range_max),
                        "growth_events": int(r.stats.growth_events),
                        "empty_bin_fraction": float(r.stats.empty_bin_fraction),
                        "amax": r.amax,
                    }
                    for r in runs
                ],
                "_scenario": s,
                "_runs": runs,
            }
        )
    report["worked"] = [
        {
            "policy": r.policy,
            "order": [r.first, r.second],
            "range_max": r.range_max,
            "growth_events": r.growth_events,
            "amax": r.amax,
        }
        for r in worked_example()
    ]
    return report
