"""PNG plots of a study (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trtcalib.study.results import StudyResult, TensorSummary


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Save atomically (temp file + rename) and close the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _pyplot().close(fig)
    return path


def _short(name: str, width: int = 38) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def plot_amax_vs_batch(result: StudyResult, path: Path, top: int = 4) -> Path | None:
    """amax vs batch size for the most sensitive tensors: each order as a dot, the min..max band
    across orders, the exact-policy amax as reference line (max |x| in the title). Tensors with
    an inf amax cannot be drawn and are left out; None when no tensor is left."""
    tensors = result.most_sensitive(top, finite_only=True)
    if not tensors:
        return None
    plt = _pyplot()
    cols = 2 if len(tensors) > 1 else 1
    rows = math.ceil(len(tensors) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 3.9 * rows), squeeze=False)
    xs = np.array(result.batch_sizes, dtype=float)
    for ax, t in zip(axes.flat, tensors, strict=False):
        lo = np.array([s.amax_min for s in t.settings])
        hi = np.array([s.amax_max for s in t.settings])
        mean = np.array([np.mean(s.amax) for s in t.settings])
        ax.fill_between(xs, lo, hi, color="tab:blue", alpha=0.18, label="spread across orders")
        for k in range(result.orders):
            ys = [s.amax[k] for s in t.settings]
            ax.scatter(
                xs, ys, s=14, color="tab:blue", alpha=0.7, zorder=3,
                marker="o" if k == 0 else "x", label="data order" if k == 0 else None,
            )  # fmt: skip
        ax.plot(xs, mean, color="tab:blue", lw=1.2, label="mean over orders")
        ax.axhline(t.exact_amax, color="tab:green", ls="--", lw=1.4, label="exact policy")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(int(b)) for b in xs])
        ax.set_xlabel("calibration batch size")
        ax.set_ylabel(f"{result.calibrator} amax")
        ax.set_title(
            f"{_short(t.name)}\nworst |error| {t.sensitivity:.1%}, max |x| {t.global_max:.4g}",
            fontsize=9,
        )
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tensors) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(
        f"{Path(result.model).name}: {result.calibrator} amax with the trt histogram "
        f"({result.growth} growth), {result.orders} orders, {result.num_samples} samples",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    return save_figure(fig, path)


def pick_histogram_case(result: StudyResult) -> tuple[TensorSummary, int] | None:
    """The tensor and order where the smallest batch ends with the most extra empty bins
    compared with the largest batch (a late range growth); None if no run grew at all."""
    small, large = result.batch_sizes[0], result.batch_sizes[-1]
    best = None
    for t in result.tensors:
        if not t.finite:  # an inf range has no histogram to draw
            continue
        s, g = t.setting(small), t.setting(large)
        for k in range(result.orders):
            if s.growth_events[k] == 0:
                continue
            gain = s.empty_bin_fraction[k] - g.empty_bin_fraction[k]
            if best is None or gain > best[0]:
                best = (gain, t, k)
    return None if best is None else (best[1], best[2])


def plot_histograms(
    panels: Sequence[tuple[str, object, float]],
    path: Path,
    title: str,
    *,
    log: bool = True,
) -> Path:
    """One panel per (label, TensorStats, amax): the final |x| histogram over its own range,
    the range end, the amax, and the empty upper part shaded."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.7 * len(panels)), squeeze=False)
    xmax = max(float(st.range_max) for _, st, _ in panels) or 1.0  # type: ignore[attr-defined]
    for ax, (label, stats, amax) in zip(axes[:, 0], panels, strict=True):
        counts = np.asarray(stats.counts, dtype=float)  # type: ignore[attr-defined]
        rng = float(stats.range_max)  # type: ignore[attr-defined]
        width = rng / len(counts) if len(counts) else 0.0
        edges = np.arange(len(counts) + 1) * width
        # stairs draws one path; bar() would draw 2048 rectangles (seconds per figure)
        ax.stairs(counts, edges, fill=True, color="tab:blue", lw=0)
        nonzero = np.flatnonzero(counts)
        last_used = (nonzero[-1] + 1) * width if len(nonzero) else 0.0
        # the bins above the last non-empty one hold nothing: what a late growth leaves
        if last_used < rng:
            ax.axvspan(last_used, rng, color="tab:red", alpha=0.08, label="empty upper part")
        ax.axvline(rng, color="tab:red", lw=1.2, label=f"histogram range {rng:.4g}")
        ax.axvline(amax, color="tab:green", ls="--", lw=1.4, label=f"amax {amax:.4g}")
        empty = float(stats.empty_bin_fraction)  # type: ignore[attr-defined]
        growths = int(stats.growth_events)  # type: ignore[attr-defined]
        ax.set_title(
            f"{label}: {growths} range growth(s), {empty:.0%} of {len(counts)} bins empty",
            fontsize=10,
        )
        if log and counts.max(initial=0) > 0:
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.5)  # a single outlier (count 1) stays visible
        ax.set_xlim(0, xmax * 1.02)
        ax.set_ylabel("count")
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("|x|")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure(fig, path)


def plot_accuracy_vs_batch(result: StudyResult, path: Path) -> Path:
    plt = _pyplot()
    acc = result.accuracy
    assert acc is not None
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = np.array(result.batch_sizes, dtype=float)
    per_batch = {b: [] for b in result.batch_sizes}
    for row in acc["settings"]:
        per_batch[row["batch_size"]].append(row["accuracy"])
    lo = [min(per_batch[b]) for b in result.batch_sizes]
    hi = [max(per_batch[b]) for b in result.batch_sizes]
    ax.fill_between(xs, lo, hi, color="tab:blue", alpha=0.18, label="spread across orders")
    for b in result.batch_sizes:
        ax.scatter([b] * len(per_batch[b]), per_batch[b], s=14, color="tab:blue", zorder=3)
    ax.plot(xs, [np.mean(per_batch[b]) for b in result.batch_sizes], color="tab:blue",
            label="Q/DQ, trt histogram (mean)")  # fmt: skip
    ax.axhline(acc["exact"], color="tab:green", ls="--", label="Q/DQ, exact histogram")
    ax.axhline(acc["float"], color="0.4", ls=":", label="float model")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(int(b)) for b in xs])
    # never zoom below a 2-point window: one eval sample must not look like a cliff
    values = [v for vs in per_batch.values() for v in vs] + [acc["exact"], acc["float"]]
    lo_all, hi_all = min(values), max(values)
    if hi_all - lo_all < 0.02:
        mid = (hi_all + lo_all) / 2
        ax.set_ylim(mid - 0.01, mid + 0.01)
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("calibration batch size")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(f"{Path(result.model).name}: accuracy of the INT8 (Q/DQ) model", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
