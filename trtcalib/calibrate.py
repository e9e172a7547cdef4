"""CPU calibration end to end: data -> onnxruntime activations -> statistics -> scales -> cache.

    settings = CalibrationSettings(calibrator="entropy", batch_size=32)
    result = calibrate("model.onnx", source, settings)      # CalibrationResult
    write_cache("caches/model.cache", result.cache, result.provenance)

Streaming: each batch's activations go into one `TensorCollector` per tensor and are dropped
before the next batch is read, so memory does not grow with the number of samples (one batch of
activations plus fixed-size histograms).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np
import onnx

from trtcalib.cache import DEFAULT_TRT_VERSION, CalibrationCache, Provenance
from trtcalib.config import GROWTHS, HISTOGRAMS, LAST_BATCH
from trtcalib.errors import ConfigError
from trtcalib.stats import (
    TensorCollector,
    TensorOverrides,
    TensorSettings,
    TensorStats,
    compute_amax,
    get_algorithm,
    scale_from_amax,
)


def check_choice(what: str, value: Any, choices: Sequence[str]) -> None:
    """ConfigError "<what> must be one of a, b, got 'x'" unless `value` is one of `choices`."""
    if value not in choices:
        raise ConfigError(f"{what} must be one of {', '.join(choices)}, got {value!r}")


MAX_BINS = 1 << 16  # TensorRT uses 2048; more bins cost memory per tensor and change little


def num_bins_problem(value: Any) -> str | None:
    """Why `value` cannot be a histogram's bin count (None when it can)."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if whole and 128 <= value <= MAX_BINS and not value & (value - 1):
        return None
    return f"must be a power of two from 128 to {MAX_BINS}"


@dataclass(frozen=True)
class CalibrationSettings:
    """How to calibrate. `params` are the calibrator's parameters (defaults filled in later)."""

    calibrator: str = "entropy"
    _: KW_ONLY  # everything after the calibrator by keyword: settings are read by name
    params: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    histogram: str = "exact"
    growth: str = "pow2"
    num_bins: int = 2048
    overrides: TensorOverrides | None = None
    tensors: Sequence[str] | None = None
    trt_version: int = DEFAULT_TRT_VERSION
    last_batch: str = "keep"

    def check(self) -> dict[str, Any]:
        """Validate everything that needs no model or data; return the full calibrator params."""
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ConfigError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {self.batch_size}")
        check_choice("histogram policy", self.histogram, HISTOGRAMS)
        check_choice("growth rule", self.growth, GROWTHS)
        n = self.num_bins
        if isinstance(n, bool) or not isinstance(n, int) or n < 128 or n & (n - 1):
            raise ConfigError(f"number of bins must be a power of two >= 128, got {n!r}")
        if n > MAX_BINS:
            # every tensor keeps its histogram (the exact policy 16x finer, with per-bin min/max)
            # for the whole run: 2**16 bins already cost ~50 MB per tensor
            raise ConfigError(
                f"number of bins must be at most {MAX_BINS} (memory grows with it), got {n}"
            )
        check_choice("last batch policy", self.last_batch, LAST_BATCH)
        algorithm = get_algorithm(self.calibrator)
        full = algorithm.validate(dict(self.params))
        algorithm.check_num_bins(full, n)  # before any data is read, not after calibrating
        return full

    def provenance_params(self, full_params: Mapping[str, Any]) -> dict[str, Any]:
        """Everything besides model, data, batch and histogram that changes the scales.

        Recorded in the provenance `params`, so `--reuse-cache auto` notices a change of any.
        """
        params: dict[str, Any] = dict(full_params)
        params["num_bins"] = self.num_bins
        if self.histogram == "trt":
            params["growth"] = self.growth
        if self.overrides is not None and self.overrides.entries:
            params["overrides"] = [
                {
                    "tensors": list(e.patterns),
                    "calibrator": e.calibrator,
                    "skip": e.skip,
                    **e.params,
                }
                for e in self.overrides.entries
            ]
        if self.tensors is not None:
            # a set of names: `--tensors b,a,a` calibrates exactly what `--tensors a,b` does
            params["tensors"] = sorted(set(self.tensors))
        if self.last_batch == "pad":
            # the data fingerprint covers the real samples only, but the repeated samples of a
            # padded last batch enter the histograms: without this a `pad` cache would be
            # reused for a `keep` run (and back) although the scales differ
            params["last_batch"] = "pad"
        return params


@dataclass
class Collected:
    """Statistics of every collected tensor (tensor order = topological)."""

    stats: dict[str, TensorStats]
    data_fingerprint: str
    num_samples: int
    num_batches: int
    skipped: list[str] = field(default_factory=list)
    settings: dict[str, TensorSettings] = field(default_factory=dict)
    key: tuple | None = None  # collection_key of the settings they were collected under


def collection_key(settings: CalibrationSettings) -> tuple | None:
    """What collected statistics depend on besides model and data: settings with equal keys
    (e.g. entropy and minmax, same batch and histogram) can share one collection. None with
    overrides, which decide per tensor what is collected at all."""
    if settings.overrides is not None and settings.overrides.entries:
        return None
    tensors = None if settings.tensors is None else tuple(sorted(set(settings.tensors)))
    return (
        settings.batch_size,
        settings.histogram,
        settings.growth if settings.histogram == "trt" else None,
        settings.num_bins,
        tensors,
        settings.last_batch,
    )


@dataclass
class CalibrationResult:
    cache: CalibrationCache
    provenance: Provenance
    stats: dict[str, TensorStats]
    amax: dict[str, float]
    skipped: list[str]


def _as_model(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    from trtcalib.model import load_model

    return load_model(model)


def resolve_tensor_settings(
    names: Iterable[str], settings: CalibrationSettings, params: Mapping[str, Any]
) -> dict[str, TensorSettings]:
    """Per-tensor algorithm/params/skip after overrides, checked before any data is read."""
    overrides = settings.overrides or TensorOverrides()
    resolved = {}
    for name in names:
        ts = overrides.resolve(name, settings.calibrator, params)
        if not ts.skip:
            # fill defaults now: the provenance then records what was actually used
            full = get_algorithm(ts.algorithm).validate(ts.params)
            ts = TensorSettings(ts.algorithm, full, False)
        resolved[name] = ts
    return resolved


def collect_statistics(
    model: onnx.ModelProto | str | os.PathLike,
    source: Any,
    settings: CalibrationSettings,
    progress: bool = True,
    *,
    workers: int | None = None,
    overlap: bool = False,
    derive: bool = True,
) -> Collected:
    """Run every batch of `source` through onnxruntime and feed one collector per tensor.

    `source` is a `BatchSource` or any iterable of `{input: array}` chunks. With `last_batch="pad"`
    the repeated samples enter the statistics as they do in TensorRT (the activations of
    arbitrary tensors cannot be sliced back to the real samples); the data fingerprint and the
    sample count cover the real samples only. `workers` threads share the collectors of a batch
    (default: one per CPU; the compiled kernels release the GIL). `overlap` lets the collectors
    of batch k run while onnxruntime computes batch k+1 (two batches of activations in memory;
    off by default, see benchmarks/calibrate_vs_ort.py mode ours-overlap). `derive`: a Relu
    output whose input is collected too is collected from that input as max(x, 0), and a pure
    rearrangement's output (Reshape, Transpose, ...) gets its input's statistics: neither is
    produced by onnxruntime (bit-identical statistics, fewer exposed outputs; see
    `ActivationCapture`).
    """
    from trtcalib.capture import ActivationCapture
    from trtcalib.data import iter_batches
    from trtcalib.fingerprint import DataFingerprint
    from trtcalib.stats._kernels import warm_up_in_background

    model = _as_model(model)
    params = settings.check()
    check_fixed_batch(model, settings, getattr(source, "num_samples", None))
    warm_up_in_background()  # numba's start-up overlaps with onnxruntime's
    capture = ActivationCapture(model, settings.tensors, derive=derive)
    fingerprint = DataFingerprint()
    pool = None
    bar = None
    try:
        collectors, kept, skipped, tensor_settings = _make_collectors(capture, settings, params)
        total = getattr(source, "num_samples", None)
        if total is not None and settings.last_batch == "drop":
            total -= total % settings.batch_size
        if workers is None:
            workers = min(os.cpu_count() or 1, 8)
        workers = max(1, min(workers, len(collectors)))
        pool = ThreadPoolExecutor(max_workers=workers) if (workers > 1 or overlap) else None
        pending: list[Future] = []
        num_samples = 0
        num_batches = 0
        task = None
        if progress:
            from trtcalib.console import make_progress

            bar = make_progress("samples")
            bar.start()
            task = bar.add_task("calibrating", total=total)
        batches = iter_batches(source, settings.batch_size, last=settings.last_batch)

        def hash_batch(batch: Any) -> None:
            fingerprint.update(batch.arrays, num_real=batch.num_real)

        ahead = getattr(source, "fresh_arrays", False)
        for batch in _read_ahead(batches, hash_batch, ahead=ahead):
            activations = capture.run(batch.arrays)
            # the previous batch (overlap only): at most two batches of activations in memory
            # (and, reading ahead, the next batch's inputs)
            _wait(pending)
            pending = _submit(collectors, activations, pool, capture.derived)
            if not overlap:
                _wait(pending)
            del activations  # collectors keep no reference: memory is back after the batch
            num_samples += batch.num_real
            num_batches += 1
            if bar is not None:
                bar.advance(task, batch.num_real)
        _wait(pending)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.stop()
        capture.close()
    results = {name: c.result() for name, c in collectors.items()}
    stats = {}
    for name in kept:
        root = capture.aliases.get(name)
        if root is None:
            stats[name] = results[name]
        else:  # its own counts array: a later in-place edit must not reach the root's
            source = results[root]
            stats[name] = dataclasses.replace(source, name=name, counts=source.counts.copy())
    return Collected(
        stats,
        fingerprint.hexdigest(),
        num_samples,
        num_batches,
        skipped,
        tensor_settings,
        collection_key(settings),
    )


def _make_collectors(
    capture: Any, settings: CalibrationSettings, params: Mapping[str, Any]
) -> tuple[dict[str, TensorCollector], list[str], list[str], dict[str, TensorSettings]]:
    """One collector per tensor to collect (an alias shares its root's; a Relu derived from a
    collected input is a view of that input's signed histogram), the kept and the skipped
    tensor names, and every tensor's resolved settings."""
    tensor_settings = resolve_tensor_settings(capture.tensor_names, settings, params)
    skipped = [name for name, ts in tensor_settings.items() if ts.skip]
    if len(skipped) == len(tensor_settings):
        raise ConfigError(f"all {len(skipped)} tensors are skipped by the overrides: no cache")
    kept = [name for name, ts in tensor_settings.items() if not ts.skip]
    # an alias copies the statistics of its root, collected even where the root is skipped
    needed = {capture.aliases.get(name, name) for name in kept}
    # exact policy: a Relu derived from a collected input reads that input's signed histogram
    # (one pass over the data for both; `stats.signed`)
    views = {}
    if settings.histogram == "exact":
        views = {o: i for o, i in capture.derived.items() if o in needed and i in needed}
    collectors = {
        name: TensorCollector(
            name,
            num_bins=settings.num_bins,
            histogram=settings.histogram,
            growth=settings.growth,
            signed=name in views.values(),
        )
        for name in capture.tensor_names
        if name in needed
    }
    for relu, relu_input in views.items():
        collectors[relu] = collectors[relu_input].relu_collector(relu)
    return collectors, kept, skipped, tensor_settings


def check_fixed_batch(
    model: onnx.ModelProto, settings: CalibrationSettings, num_samples: int | None
) -> None:
    """A model input with a fixed leading dim runs only batches of exactly that size.

    Checked before any data is read: otherwise onnxruntime fails on the first (or the last,
    partial) batch with an "invalid dimensions" message that names neither option to change.
    """
    from trtcalib.model import input_specs

    for spec in input_specs(model):
        lead = spec.shape[0] if spec.shape else None
        if not isinstance(lead, int) or lead <= 0:
            continue
        if settings.batch_size != lead:
            raise ConfigError(
                f"model input '{spec.name}' {spec.shape_str()} has a fixed batch of {lead}: "
                f"use --batch {lead} (or export the model with a dynamic batch), "
                f"not {settings.batch_size}"
            )
        rest = num_samples % lead if num_samples is not None else 0
        if settings.last_batch == "keep" and rest:
            raise ConfigError(
                f"model input '{spec.name}' {spec.shape_str()} has a fixed batch of {lead}, but "
                f"{num_samples} samples leave a last batch of {rest}: use --last-batch pad or drop"
            )


def _submit(
    collectors: dict[str, TensorCollector],
    activations: Mapping[str, np.ndarray],
    pool: ThreadPoolExecutor | None,
    derived: Mapping[str, str] | None = None,
) -> list[Future]:
    # one task per activation array: its own collector first, then those of the Relu outputs
    # derived from it, which reuse the summary it returns (one pass over the data less)
    tasks: dict[str, list[tuple[TensorCollector, bool]]] = {}
    for name, collector in collectors.items():
        relu = name in (derived or {})
        tasks.setdefault(derived[name] if relu else name, []).append((collector, relu))

    def run(source: str) -> None:
        x = activations[source]
        summary = None
        for collector, relu in sorted(tasks[source], key=lambda task: task[1]):
            seen = collector.collect(x, relu=relu, summary=summary)
            if x.dtype in (np.float32, np.float64):  # collect() summarised x itself
                summary = seen

    if pool is None:
        for source in tasks:
            run(source)
        return []
    # the most work first, so the threads finish at about the same time
    order = sorted(tasks, key=lambda n: activations[n].size * len(tasks[n]), reverse=True)
    return [pool.submit(run, source) for source in order]


_END = object()


def _read_ahead(
    items: Iterable[Any], prepare: Callable[[Any], None], *, ahead: bool = True
) -> Iterator[Any]:
    """The items of `items`, each `prepare`d first. With `ahead`, each is read and prepared in
    a thread while the caller still works on the one before (onnxruntime releases the GIL, and
    reading a batch and hashing it for the fingerprint then overlap with its idle moments):
    only for items that stay valid when the next is read (`BatchSource.fresh_arrays`). Errors
    surface at the item they hit; closing waits for the read under way."""
    if not ahead:
        for item in items:
            prepare(item)
            yield item
        return
    it = iter(items)

    def step() -> Any:
        item = next(it, _END)
        if item is not _END:
            prepare(item)
        return item

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="trtcalib-read") as reader:
        next_read = reader.submit(step)
        while (item := next_read.result()) is not _END:
            next_read = reader.submit(step)
            yield item


def _wait(futures: list[Future]) -> None:
    for future in futures:
        future.result()  # re-raise a collector's error here, in the caller's thread
    futures.clear()


def data_fingerprint(source: Any, batch_size: int, last_batch: str = "keep") -> str:
    """The fingerprint `collect_statistics` records, computed from the data alone (no model run)."""
    from trtcalib.data import iter_batches
    from trtcalib.fingerprint import DataFingerprint

    fingerprint = DataFingerprint()
    for batch in iter_batches(source, batch_size, last=last_batch):
        fingerprint.update(batch.arrays, num_real=batch.num_real)
    return fingerprint.hexdigest()


def planned_tensors(model: onnx.ModelProto, settings: CalibrationSettings) -> list[str]:
    """The tensors a calibration with `settings` would write to the cache (not skipped)."""
    from trtcalib.capture import ActivationCapture

    params = settings.check()
    with ActivationCapture(model, settings.tensors) as capture:
        names = capture.tensor_names
    resolved = resolve_tensor_settings(names, settings, params)
    return [name for name, ts in resolved.items() if not ts.skip]


def nonfinite_report(stats: Mapping[str, TensorStats], exclude: Iterable[str] = ()) -> list[str]:
    """One warning line per tensor that saw NaN or Inf (NaN is ignored, Inf makes amax inf)."""
    skip = set(exclude)
    return [
        nonfinite_line(name, s.nan_count, s.inf_count)
        for name, s in stats.items()
        if name not in skip and (s.nan_count or s.inf_count)
    ]


def nonfinite_line(name: str, nan_count: int, inf_count: int) -> str:
    effect = "Inf makes its scale inf" if inf_count else "NaN ignored"
    return f"tensor {name!r}: {nan_count} NaN and {inf_count} Inf activation values ({effect})"


def zero_scale_report(stats: Mapping[str, TensorStats], amax: Mapping[str, float]) -> list[str]:
    """One warning line per tensor whose amax is 0 although it holds non-zero values: a
    percentile (or legacy) quantile in histogram bin 0. Its cache entry reads `0`, the value of
    an all-zero tensor: TensorRT gets no usable range and the Q/DQ export leaves it in float."""
    return [
        f"tensor {name!r}: amax 0 although max |x| = {s.amax:.6g} (the quantile falls in the "
        "first histogram bin): scale 0 in the cache; raise the percentile or --num-bins"
        for name, s in stats.items()
        if amax.get(name) == 0.0 and s.amax > 0.0
    ]


def calibrate(
    model_path: onnx.ModelProto | str | os.PathLike,
    source: Any,
    settings: CalibrationSettings,
    progress: bool = True,
    *,
    warnings: bool = True,
    statistics: Collected | None = None,
) -> CalibrationResult:
    """Calibrate `model_path` on `source`: the cache (not written) and its provenance.

    `warnings`: print one line per tensor with NaN/Inf activations or an amax of 0 despite
    non-zero values, and per override entry that matches no tensor. `statistics`: what
    `collect_statistics` gave for `source` under settings with the same `collection_key`
    (another calibrator on the same histograms: no second pass over the data)."""
    from trtcalib.console import info
    from trtcalib.fingerprint import model_fingerprint
    from trtcalib.model import input_specs
    from trtcalib.stats._kernels import warm_up_in_background

    # numba's start-up overlaps with loading and hashing the model; with a progress bar, a
    # first run after an install says that it compiles (the bar would sit at 0 for ~10 s)
    warm_up_in_background(notify=info if progress else None)
    model = _as_model(model_path)
    model_fp = model_fingerprint(model)
    if statistics is None:
        collected = collect_statistics(model, source, settings, progress=progress)
    else:
        key = collection_key(settings)
        if key is None or key != statistics.key:
            raise ValueError("statistics collected under other settings (see collection_key)")
        params = settings.check()
        resolved = resolve_tensor_settings(statistics.settings, settings, params)
        collected = dataclasses.replace(statistics, settings=resolved)
    if warnings:
        from trtcalib.console import warn

        # the data source already reported its own inputs (see trtcalib.data.validate)
        inputs = getattr(source, "input_names", [])
        for line in nonfinite_report(collected.stats, exclude=inputs):
            warn(line)
        if settings.overrides is not None:
            for label in settings.overrides.unused(collected.settings):
                warn(f"{label}: matches no tensor of the model (first match wins; a typo?)")
    amax: dict[str, float] = {}
    scales: dict[str, float] = {}
    for name, s in collected.stats.items():
        ts = collected.settings[name]
        value = compute_amax(s, ts.algorithm, **ts.params)
        amax[name] = float(value)
        scales[name] = scale_from_amax(value)
    if warnings:
        from trtcalib.console import warn

        for line in zero_scale_report(collected.stats, amax):
            warn(line)
    algorithm = get_algorithm(settings.calibrator)
    cache = CalibrationCache.from_scales(
        scales, algorithm=algorithm.trt_algorithm, trt_version=settings.trt_version
    )
    full_params = get_algorithm(settings.calibrator).validate(dict(settings.params))
    per_tensor_algorithms = {
        n: ts.algorithm
        for n, ts in collected.settings.items()
        if not ts.skip and ts.algorithm != settings.calibrator
    }
    provenance = Provenance(
        algorithm=settings.calibrator,
        params=settings.provenance_params(full_params),
        histogram=settings.histogram,
        batch_size=settings.batch_size,
        num_samples=collected.num_samples,
        data_fingerprint=collected.data_fingerprint,
        model_fingerprint=model_fp,
        inputs=input_specs(model),
        trt_version=settings.trt_version,
        trt_algorithm=algorithm.trt_algorithm,
        tensors={
            name: {"amax": amax[name], "min": s.min, "max": s.max}
            for name, s in collected.stats.items()
        },
        extra={
            "num_batches": collected.num_batches,
            "last_batch": settings.last_batch,
            "skipped": list(collected.skipped),
            "per_tensor_algorithm": per_tensor_algorithms,
            "growth_events": {n: s.growth_events for n, s in collected.stats.items()},
            "source": _describe(source),
        },
    )
    return CalibrationResult(cache, provenance, collected.stats, amax, collected.skipped)


def _describe(source: Any) -> str | None:
    describe = getattr(source, "describe", None)
    return describe() if callable(describe) else None


def widest_and_narrowest(amax: Mapping[str, float], count: int = 5) -> list[tuple[str, float]]:
    """The `count` tensors with the largest amax then the `count` with the smallest (no repeats)."""
    ranked = sorted(amax.items(), key=lambda kv: (-_order_key(kv[1]), kv[0]))
    if len(ranked) <= 2 * count:
        return ranked
    return ranked[:count] + ranked[-count:]


def _order_key(value: float) -> float:
    return math.inf if math.isinf(value) else value


__all__ = [
    "CalibrationResult",
    "CalibrationSettings",
    "Collected",
    "calibrate",
    "check_choice",
    "collect_statistics",
    "nonfinite_report",
    "resolve_tensor_settings",
    "widest_and_narrowest",
    "zero_scale_report",
]
