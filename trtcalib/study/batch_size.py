"""`trtcalib study batch-size`: how much do calibration batch size and order move each amax?"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trtcalib.errors import ConfigError, DataError
from trtcalib.study.replay import ReplaySpec, sweep
from trtcalib.study.results import StudyResult, summarize
from trtcalib.study.store import DEFAULT_MEMORY_LIMIT, ActivationStore

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)


def parse_batches(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4] (sorted, unique); anything else is a one-line ConfigError."""
    items = [t.strip() for t in str(text).split(",")]
    if not any(items):
        raise ConfigError("--batches: empty list, expected e.g. 1,2,4,8")
    sizes = []
    for item in items:
        if not item:
            raise ConfigError(f"--batches {text!r}: empty entry, expected e.g. 1,2,4,8")
        try:
            value = int(item)
        except ValueError:
            raise ConfigError(f"--batches {text!r}: {item!r} is not a positive integer") from None
        if value < 1:
            raise ConfigError(f"--batches {text!r}: {value} is not a positive integer")
        sizes.append(value)
    return sorted(set(sizes))


@dataclass(frozen=True)
class StudySettings:
    batch_sizes: tuple[int, ...] = DEFAULT_BATCHES
    orders: int = 5
    calibrator: str = "entropy"
    params: tuple[tuple[str, float], ...] = ()
    growth: str = "pow2"
    num_bins: int = 2048
    seed: int = 0
    tensors: tuple[str, ...] | None = None
    jobs: int = 1
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    replay: str = "auto"  # "auto" | "collector" (see trtcalib.study.sorted_replay)

    def validate(self) -> None:
        if not self.batch_sizes:
            raise ConfigError("--batches: empty list, expected e.g. 1,2,4,8")
        if self.orders < 1:
            raise ConfigError(f"--orders {self.orders}: must be at least 1 (order 0 = data order)")
        if self.jobs < 1:
            raise ConfigError(f"--jobs {self.jobs}: must be at least 1")
        if self.replay not in ("auto", "collector"):
            raise ConfigError(f"--replay {self.replay!r}: expected auto or collector")
        if self.growth not in ("pow2", "square"):
            raise ConfigError(f"--growth {self.growth!r}: expected pow2 or square")
        from trtcalib.calibrate import num_bins_problem

        problem = num_bins_problem(self.num_bins)
        if problem:
            raise ConfigError(f"--num-bins {self.num_bins}: {problem}")
        from trtcalib.stats import available_algorithms, get_algorithm

        try:
            algorithm = get_algorithm(self.calibrator)
        except Exception:
            names = ", ".join(available_algorithms())
            raise ConfigError(
                f"--calibrator {self.calibrator!r}: unknown (registered: {names})"
            ) from None
        full = algorithm.validate(dict(self.params))  # ConfigError naming a bad parameter
        algorithm.check_num_bins(full, self.num_bins)  # e.g. mse's bins, before the capture

    def full_params(self) -> dict[str, float]:
        from trtcalib.stats import get_algorithm

        return dict(get_algorithm(self.calibrator).validate(dict(self.params)))

    def replay_spec(self) -> ReplaySpec:
        # like calibrate's collector threads: one per CPU, but only without worker processes
        threads = (os.cpu_count() or 1) if self.jobs == 1 else 1
        # every thread (or worker process) may hold one tensor's sorted copy at a time: they
        # share --memory-mb, each at least 64 MiB so small limits still use the fast path
        concurrent = threads if self.jobs == 1 else self.jobs
        return ReplaySpec(
            algorithm=self.calibrator,
            params=self.params,
            growth=self.growth,
            num_bins=self.num_bins,
            seed=self.seed,
            method=self.replay,
            sort_limit=max(self.memory_limit // concurrent, 64 << 20),
            threads=threads,
        )


def check_batches_fit(batch_sizes: Sequence[int], num_samples: int, data: str) -> None:
    """A batch larger than the data would silently be the same as batch = all: refuse it."""
    too_big = [b for b in batch_sizes if b > num_samples]
    if too_big:
        raise ConfigError(
            f"--batches: {too_big[0]} is larger than the {num_samples} samples in {data} "
            f"(largest usable: {num_samples})"
        )


def study_store(
    store: ActivationStore,
    settings: StudySettings,
    *,
    model: str = "<synthetic>",
    data: str = "<synthetic>",
    progress: bool = False,
) -> StudyResult:
    """The sweep on activations already captured (also the entry for synthetic streams)."""
    settings.validate()
    if store.num_samples == 0 or not store.names:
        raise DataError(f"{data}: no samples to study")
    check_batches_fit(settings.batch_sizes, store.num_samples, data)
    names = store.names
    _warn_nonfinite(store, names)  # before the replays, on the store the caller owns
    mode, reason, nbytes = store.mode, store.reason, store.nbytes
    spec = settings.replay_spec()
    shared = None
    if settings.jobs > 1 and store.mode != "memmap":
        # worker processes open the activations as files (no pickling of big arrays)
        from trtcalib.study.store import store_from_arrays

        shared = store = store_from_arrays(store.arrays, force_memmap=True)
    start = time.perf_counter()
    from trtcalib.console import make_progress

    try:
        with make_progress("runs") as bar:
            task = bar.add_task(
                "replaying", total=len(names) * (settings.orders + 1), visible=progress
            )
            runs = sweep(
                store,
                names,
                settings.batch_sizes,
                settings.orders,
                spec,
                jobs=settings.jobs,
                on_task_done=lambda k: bar.advance(task, k),
            )
    finally:
        if shared is not None:
            shared.close()
    tensors = summarize(runs, names, settings.batch_sizes)
    return StudyResult(
        model=model,
        data=data,
        num_samples=store.num_samples,
        calibrator=settings.calibrator,
        params=settings.full_params(),  # with the defaults: the record says what ran
        growth=settings.growth,
        num_bins=settings.num_bins,
        seed=settings.seed,
        batch_sizes=list(settings.batch_sizes),
        orders=settings.orders,
        storage={"mode": mode, "reason": reason, "bytes": nbytes},
        tensors=tensors,
        runs=runs,
        timings={"replay": time.perf_counter() - start},
    )


def _warn_fixed_batch(model: object, batch_sizes: Sequence[int]) -> None:
    """A model exported with a fixed batch calibrates at that batch only: the study's other
    sizes answer "what if I re-exported it"."""
    from trtcalib.console import warn
    from trtcalib.model import input_specs

    for spec in input_specs(model):  # type: ignore[arg-type]
        lead = spec.shape[0] if spec.shape else None
        if not isinstance(lead, int) or lead <= 0:
            continue
        others = [b for b in batch_sizes if b != lead]
        if others:
            warn(
                f"model input '{spec.name}' {spec.shape_str()} has a fixed batch of {lead}: "
                f"TensorRT calibrates it at batch {lead} only; batch sizes "
                f"{', '.join(map(str, others))} show what a re-export with a dynamic batch gets"
            )
        return


def _warn_nonfinite(store: ActivationStore, names: Sequence[str]) -> None:
    """calibrate's warning, per tensor: NaN is ignored, Inf makes amax (and the scale) inf."""
    from trtcalib.calibrate import nonfinite_line
    from trtcalib.console import warn

    for name in names:
        nan, inf = store.nonfinite_counts(name)
        if nan or inf:
            warn(nonfinite_line(name, nan, inf))


def run_batch_size_study(
    model_path: str | Path,
    data: str | Path,
    settings: StudySettings,
    *,
    data_options: object | None = None,
    progress: bool = True,
) -> tuple[StudyResult, ActivationStore]:
    """Capture once, replay every (batch size, order). The caller closes the returned store
    (it is kept open for the plots, which replay one tensor again for its histograms)."""
    from trtcalib.data import open_source
    from trtcalib.model import input_specs, load_model
    from trtcalib.study.activations import capture_activations

    settings.validate()
    model = load_model(model_path)
    source = open_source(data, input_specs(model), data_options)  # type: ignore[arg-type]
    if source.num_samples is not None:
        check_batches_fit(settings.batch_sizes, source.num_samples, str(data))
    _warn_fixed_batch(model, settings.batch_sizes)
    start = time.perf_counter()
    store = capture_activations(
        model,
        source,
        settings.tensors,
        memory_limit=settings.memory_limit,
        force_memmap=settings.jobs > 1,
        progress=progress,
    )
    capture_s = time.perf_counter() - start
    try:
        if not store.names:
            raise DataError(f"{model_path}: no activation can be split per sample for the study")
        result = study_store(
            store, settings, model=str(model_path), data=str(data), progress=progress
        )
    except BaseException:
        store.close()
        raise
    result.timings["capture"] = capture_s
    return result, store
