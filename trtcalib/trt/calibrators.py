"""TensorRT 10 calibrator classes: real subclasses of TensorRT's `IInt8*Calibrator` bases.

Importing this module imports TensorRT (only `trtcalib.trt.__getattr__` does, lazily). TensorRT
drives a calibrator like this (TENSORRT-CALIBRATION.md §2): `get_batch_size()`, then
`read_calibration_cache()`; bytes whose header matches the calibrator's algorithm are used as is and
`get_batch` is never called. Otherwise `get_batch(names)` until it returns None (one device pointer
per input, in the order of `names`, at the calibration profile's OPT shape), then
`write_calibration_cache(bytes)`.

These callbacks run inside TensorRT's C++ code (`noexcept`): an exception must never leave them.
Each one stores the exception, frees the device buffers and answers "no more data"; the builder
calls `raise_if_failed()` right after the build, so a broken data source fails the build instead
of silently ending calibration early with fewer batches.

Percentile, MSE and mix are not TensorRT algorithms. Their calibrators compute amax on the CPU
(`trtcalib.calibrate`) and hand TensorRT the scales as a cache whose header matches their base class
(`IInt8MinMaxCalibrator` -> "MinMaxCalibration"), so TensorRT takes the scales and never calls
`get_batch`. We chose the cache over per-tensor `ITensor.dynamic_range` because the bytes TensorRT
reads are exactly the cache file written next to the engine (with its provenance sidecar): the
engine's scales stay auditable and reproducible with `trtcalib cache show`, and the build uses one
code path for every calibrator; dynamic ranges would bypass that record.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from trtcalib.cache import (
    CalibrationCache,
    Provenance,
    atomic_write_bytes,
    encode_trt_version,
    parse_cache,
    write_cache,
)
from trtcalib.console import warn
from trtcalib.errors import (
    CacheFormatError,
    ConfigError,
    TensorRTUnavailableError,
    TrtcalibError,
)
from trtcalib.trt.device import DeviceBackend, DeviceFeeder, InputBuffer, make_backend
from trtcalib.trt.loader import load_tensorrt

TRT_MAJORS = (10,)  # the bindings whose `trt.` attributes this module uses (conformance test)

trt = load_tensorrt()
if not hasattr(trt, "IInt8EntropyCalibrator2"):
    raise TensorRTUnavailableError(
        f"TensorRT {trt.__version__} has no calibrators (TensorRT 11 removed implicit "
        "quantization): use Q/DQ scales instead (`trtcalib build` does this for TensorRT 11)"
    )

TENSORRT_PADDING = ("drop", "pad")  # TensorRT needs every batch at the OPT shape: no "keep"
LEGACY_DEFAULTS = {"quantile": 0.9999, "regression_cutoff": 1.0}  # NVIDIA's BERT demo values


class CalibrationFailed(TrtcalibError):
    """TensorRT asked for something our calibrator could not give (wrapped cause in __cause__)."""


class _Calibration:
    """The protocol logic shared by every calibrator class (a mixin before the TensorRT base)."""

    algorithm: ClassVar[str]  # trtcalib's calibrator name
    trt_algorithm: ClassVar[str]  # the cache header TensorRT writes and accepts for this class

    def _setup(
        self,
        source: Any,
        settings: Any,
        *,
        inputs: Sequence[InputBuffer],
        cache: CalibrationCache | None = None,
        cache_path: str | Path | None = None,
        provenance: Provenance | None = None,
        backend: str | DeviceBackend = "cuda-python",
        progress: bool = True,
    ) -> None:
        last = getattr(settings, "last_batch", "drop")
        if last not in TENSORRT_PADDING:
            raise ConfigError(
                f"last batch policy {last!r} cannot feed TensorRT, which needs every batch at the "
                f"calibration (OPT) shape: use one of {', '.join(TENSORRT_PADDING)}"
            )
        wanted = None if cache is None else self._seed_header(settings)
        if cache is not None and cache.algorithm != wanted:
            raise ConfigError(
                f"cache made by {cache.algorithm} cannot seed {type(self).__name__}: it takes "
                f"only {wanted} caches (TensorRT would ignore this one, or it holds another "
                "algorithm's scales)"
            )
        self.source = source
        self.settings = settings
        self.batch_size = int(settings.batch_size)
        self.last_batch = last
        self.inputs = list(inputs)
        self.cache = cache
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.provenance = provenance
        self.backend = backend
        self.progress = progress
        self.error: BaseException | None = None
        self.feeder: DeviceFeeder | None = None
        self.used_cache = False  # TensorRT took the scales from read_calibration_cache
        self.written: CalibrationCache | None = None  # what TensorRT wrote
        self.batches_fed = 0
        self.samples_fed = 0  # real samples (padding excluded)
        self.padded_samples = 0
        self._batches: Any = None
        self._fingerprint: Any = None  # DataFingerprint of the real samples fed, like the CPU path
        self._staged: deque[Any] = deque()
        self._cache_bytes: bytes | None = None  # kept alive while TensorRT reads it
        self._bar: Any = None

    def _seed_header(self, settings: Any) -> str:
        """The header a cache given to seed this calibrator must have."""
        return self.trt_algorithm

    # ----------------------------------------------------------------- TensorRT's callbacks
    def get_batch_size(self) -> int:
        return self.batch_size

    def get_batch(self, names: Sequence[str]) -> list[int] | None:
        if self.error is not None:
            return None
        try:
            return self._next_pointers([str(n) for n in names])
        except BaseException as exc:  # stored; raise_if_failed re-raises it
            self._fail(exc)
            return None

    def read_calibration_cache(self) -> bytes | None:
        try:
            data = self._cache_to_offer()
        except BaseException as exc:  # stored, see get_batch
            self._fail(exc)
            return None
        self._cache_bytes = data
        self.used_cache = data is not None
        return data

    def write_calibration_cache(self, cache: Any) -> None:
        try:
            data = bytes(cache)
            if self.cache_path is None or self.used_cache:
                return  # TensorRT echoes the cache it was given: nothing new to keep
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                parsed = parse_cache(data, source="TensorRT's calibration cache")
            except CacheFormatError as exc:
                # never fail a finished build over our parser: keep TensorRT's bytes as they are
                atomic_write_bytes(self.cache_path, data)
                warn(f"{self.cache_path}: written as TensorRT gave it, without provenance ({exc})")
                return
            self.written = parsed
            write_cache(self.cache_path, parsed, self._provenance_for(parsed))
        except BaseException as exc:  # stored, see get_batch
            self._fail(exc)

    # ----------------------------------------------------------------- our side
    def raise_if_failed(self) -> None:
        """Re-raise (once) what went wrong inside a TensorRT callback."""
        error, self.error = self.error, None
        if error is None:
            return
        if isinstance(error, (TrtcalibError, KeyboardInterrupt)):
            raise error
        raise CalibrationFailed(
            f"calibration data failed inside TensorRT's get_batch: {type(error).__name__}: {error}"
        ) from error

    def close(self) -> None:
        """Free device memory and stop the progress bar; safe to call more than once."""
        if self.feeder is not None:
            self.feeder.close()
            self.feeder = None
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self._staged.clear()

    def __enter__(self) -> _Calibration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.close()

    def _cache_to_offer(self) -> bytes | None:
        if self.cache is None:
            return None
        # TensorRT reads caches of its own version: stamp the running version on the same scales
        stamped = CalibrationCache.from_scales(
            self.cache.scales, algorithm=self.trt_algorithm, trt_version=running_trt_version()
        )
        return stamped.to_bytes()

    def _start(self) -> None:
        from trtcalib.data import iter_batches
        from trtcalib.fingerprint import DataFingerprint

        if self.source is None:
            header = self.cache.header if self.cache is not None else "none"
            raise CalibrationFailed(
                f"TensorRT asked for calibration batches (it did not use the cache: {header}) "
                "but no calibration data was given"
            )

        self.used_cache = False  # TensorRT asks for batches: it did not take an offered cache
        self._fingerprint = DataFingerprint()
        self._batches = iter_batches(self.source, self.batch_size, last=self.last_batch)
        backend = make_backend(self.backend) if isinstance(self.backend, str) else self.backend
        self.feeder = DeviceFeeder(self.inputs, backend)
        if self.progress:
            from trtcalib.console import make_progress

            self._bar = make_progress("samples")
            total = getattr(self.source, "num_samples", None)
            if total is not None and self.last_batch == "drop":
                total -= total % self.batch_size
            self._task = self._bar.add_task(f"TensorRT {self.algorithm} calibration", total=total)
            self._bar.start()
        self._prefetch()

    def _prefetch(self) -> None:
        batch = next(self._batches, None)
        if batch is not None:
            self.feeder.stage(batch.arrays)
            self._staged.append(batch)

    def _next_pointers(self, names: list[str]) -> list[int] | None:
        if self._batches is None:
            self._start()
        if not self._staged:  # end of data
            self.close()
            return None
        pointers = self.feeder.take(names)
        batch = self._staged.popleft()
        self._fingerprint.update(batch.arrays, num_real=batch.num_real)
        self.batches_fed += 1
        self.samples_fed += batch.num_real
        self.padded_samples += batch.size - batch.num_real
        if self._bar is not None:
            self._bar.advance(self._task, batch.num_real)
        # copy the next batch while TensorRT works on this one (the other slot is free now)
        self._prefetch()
        return pointers

    def _provenance_for(self, cache: CalibrationCache) -> Provenance:
        base = self.provenance or Provenance(algorithm=self.algorithm)
        extra = dict(base.extra)
        extra.update(
            calibrated_by="tensorrt",
            tensorrt_version=getattr(trt, "__version__", None),
            last_batch=self.last_batch,
            batches=self.batches_fed,
            padded_samples=self.padded_samples,
        )
        return dataclasses.replace(
            base,
            algorithm=self.algorithm,
            histogram="tensorrt",
            batch_size=self.batch_size,
            num_samples=self.samples_fed,
            data_fingerprint=self._fingerprint.hexdigest() if self._fingerprint else None,
            tensors=dict(cache.amax),
            extra=extra,
        )


def running_trt_version() -> int:
    """The running TensorRT's version as a cache header code (10.16.1.11 -> 101601)."""
    return encode_trt_version(trt.__version__)


class EntropyCalibrator2(_Calibration, trt.IInt8EntropyCalibrator2):
    """TensorRT's entropy calibration (EntropyCalibration2), fed from a BatchSource."""

    algorithm = "entropy"
    trt_algorithm = "EntropyCalibration2"

    def __init__(self, source: Any, settings: Any, **options: Any) -> None:
        trt.IInt8EntropyCalibrator2.__init__(self)  # pybind11 trampolines need it explicitly
        self._setup(source, settings, **options)


class MinMaxCalibrator(_Calibration, trt.IInt8MinMaxCalibrator):
    """TensorRT's min-max calibration (MinMaxCalibration), fed from a BatchSource."""

    algorithm = "minmax"
    trt_algorithm = "MinMaxCalibration"

    def __init__(self, source: Any, settings: Any, **options: Any) -> None:
        trt.IInt8MinMaxCalibrator.__init__(self)
        self._setup(source, settings, **options)


class LegacyCalibrator(_Calibration, trt.IInt8LegacyCalibrator):
    """TensorRT's legacy calibration; `quantile` and `regression_cutoff` come from settings.params
    (defaults 0.9999 and 1.0, NVIDIA's BERT demo). Histograms are not cached between builds."""

    algorithm = "legacy"
    trt_algorithm = "LegacyCalibration"

    def __init__(self, source: Any, settings: Any, **options: Any) -> None:
        trt.IInt8LegacyCalibrator.__init__(self)
        self._setup(source, settings, **options)
        from trtcalib.stats import get_algorithm

        defaults = {**LEGACY_DEFAULTS, **get_algorithm("legacy").defaults}
        params = {**defaults, **dict(getattr(settings, "params", {}) or {})}
        self.quantile = float(params["quantile"])
        self.regression_cutoff = float(params["regression_cutoff"])

    def get_quantile(self) -> float:
        return self.quantile

    def get_regression_cutoff(self) -> float:
        return self.regression_cutoff

    def read_histogram_cache(self, length: int) -> None:
        return None

    def write_histogram_cache(self, ptr: int, length: int) -> None:
        return None


class PrecomputedCalibrator(_Calibration, trt.IInt8MinMaxCalibrator):
    """Scales computed by trtcalib on the CPU (percentile, mse, mix, plugins), given to TensorRT
    as a MinMaxCalibration cache so TensorRT never calls get_batch (see the module docstring).

    `prepare(model_path)` computes them with `trtcalib.calibrate` unless `cache=` was given.
    """

    algorithm = "precomputed"
    trt_algorithm = "MinMaxCalibration"

    def __init__(self, source: Any, settings: Any, **options: Any) -> None:
        trt.IInt8MinMaxCalibrator.__init__(self)
        self._setup(source, settings, **options)
        self.algorithm = getattr(settings, "calibrator", type(self).algorithm)

    def _seed_header(self, settings: Any) -> str:
        # the header our CPU calibration writes for this algorithm (a plugin may declare any):
        # the scales are offered to TensorRT as a MinMaxCalibration cache whatever it says
        from trtcalib.stats import get_algorithm

        name = getattr(settings, "calibrator", None)
        return get_algorithm(name).trt_algorithm if name else self.trt_algorithm

    def prepare(self, model_path: str | Path, *, run: Callable[..., Any] | None = None) -> None:
        """Run our CPU calibration (and write the cache + provenance) if no scales were given.

        `run` defaults to `trtcalib.calibrate.calibrate`."""
        if self.cache is not None:
            return
        if run is None:
            from trtcalib.calibrate import calibrate as run
        result = run(model_path, self.source, self.settings, progress=self.progress)
        self.cache = result.cache
        if self.cache_path is not None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            write_cache(self.cache_path, result.cache, result.provenance)

    def _cache_to_offer(self) -> bytes | None:
        if self.cache is None:
            raise CalibrationFailed(
                f"{self.algorithm} calibrator: no scales (call prepare() before the build)"
            )
        return super()._cache_to_offer()

    def _next_pointers(self, names: list[str]) -> list[int] | None:
        raise CalibrationFailed(
            f"TensorRT did not accept the precomputed {self.algorithm} scales (it asked for "
            "calibration batches); its own min-max calibration would silently replace them"
        )


class PercentileCalibrator(PrecomputedCalibrator):
    """Percentile of |x| (not a TensorRT algorithm): amax on the CPU, scales through a cache."""

    algorithm = "percentile"


class MSECalibrator(PrecomputedCalibrator):
    """Mean-squared-error amax (not a TensorRT algorithm): amax on the CPU, scales via a cache."""

    algorithm = "mse"


NATIVE = {"entropy": EntropyCalibrator2, "minmax": MinMaxCalibrator, "legacy": LegacyCalibrator}
NAMED = {"percentile": PercentileCalibrator, "mse": MSECalibrator}


def calibrator_class(algorithm: str) -> type[_Calibration]:
    """The class for a trtcalib calibrator name; unknown names (mix, plugins) are precomputed."""
    return NATIVE.get(algorithm) or NAMED.get(algorithm) or PrecomputedCalibrator
