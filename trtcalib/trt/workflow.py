"""`trtcalib build` end to end: reuse or make the scales, then build the engine where possible.

The order is chosen so that a machine without TensorRT or a GPU still does every step it can:
1. resolve the target TensorRT (the one installed, or --trt-version) and the paths;
2. reuse a cache whose provenance matches (auto), any readable cache (always), or none (never);
3. TensorRT 10 (implicit): with TensorRT and a GPU, our calibrator feeds TensorRT (or hands it the
   reused/CPU-computed cache); without, trtcalib's CPU calibration writes the cache.
   TensorRT 11 (explicit): scales from the cache or the CPU calibration become a Q/DQ ONNX;
4. build the engine, or stop with TensorRTUnavailableError (exit 3) naming what is missing and the
   exact command that finishes the job on a GPU host.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtcalib.cache import atomic_write_bytes
from trtcalib.console import info, warn
from trtcalib.errors import ConfigError, DataError, ModelError, TensorRTUnavailableError
from trtcalib.paths import (
    check_outputs_spare_inputs,
    check_writable,
    data_path,
    default_cache_path,
    model_and_weights,
    same_file,
)
from trtcalib.trt.loader import (
    LAST_IMPLICIT_MAJOR,
    SUPPORTED_MAJORS,
    TensorRTInfo,
    probe_tensorrt,
    version_major,
)

REUSE_MODES = ("auto", "always", "never")
LAST_BATCH = ("drop", "pad")
NATIVE = ("entropy", "minmax", "legacy")  # algorithms TensorRT 10 runs itself
DEFAULT_VERSIONS = {10: "10.16.1", 11: "11.4.0"}  # cache header versions when none is installed


@dataclass
class BuildOptions:
    model: Path
    calibrator: str = "entropy"
    batch: int = 32
    data: str | None = None
    data_options: Any = None
    cache: Path | None = None
    engine: Path | None = None
    reuse_cache: str = "auto"
    fp16: bool = False
    workspace_mb: int | None = None
    trt_version: str | None = None  # None: the installed TensorRT, else 10.x
    last_batch: str = "drop"
    params: dict[str, float] = field(default_factory=dict)
    backend: str = "cuda-python"
    progress: bool = True


@dataclass
class BuildReport:
    engine: Path | None = None
    cache: Path | None = None
    qdq_model: Path | None = None
    target: str = ""  # "TensorRT 10 (implicit)" ...
    scales_from: str = ""  # "reused cache", "TensorRT calibration", "CPU calibration"
    batches: int | None = None
    samples: int | None = None
    padded: int | None = None
    notes: list[str] = field(default_factory=list)


def default_engine_path(model: Path, calibrator: str, batch: int) -> Path:
    return Path("engines") / f"{model.stem}.{calibrator}.b{batch}.engine"


def _check_options(o: BuildOptions) -> None:
    from trtcalib.calibrate import check_choice

    check_choice("--reuse-cache", o.reuse_cache, REUSE_MODES)
    if o.last_batch not in LAST_BATCH:
        raise ConfigError(
            f"--last-batch must be drop or pad for TensorRT (every batch at the OPT shape), "
            f"got {o.last_batch!r}"
        )
    if o.batch < 1:
        raise ConfigError(f"--batch must be a positive integer, got {o.batch}")
    if o.workspace_mb is not None and o.workspace_mb < 1:
        raise ConfigError(f"--workspace must be a positive number of MiB, got {o.workspace_mb}")
    if o.backend not in ("cuda-python", "pycuda"):
        raise ConfigError(f"--cuda must be cuda-python or pycuda, got {o.backend!r}")


def target_version(requested: str | None, found: TensorRTInfo) -> tuple[int, str]:
    """(major, version text for cache headers) of the TensorRT the build is for."""
    if requested is None:
        if found.version is not None and found.major in SUPPORTED_MAJORS:
            return found.major, found.version
        if found.major is not None:  # TensorRT 8/9 (or a future 12): build for 10, stop at it
            warn(
                f"TensorRT {found.version} is installed, but trtcalib builds for TensorRT "
                f"{' or '.join(map(str, SUPPORTED_MAJORS))}: preparing a TensorRT "
                f"{LAST_IMPLICIT_MAJOR} build (pass --trt-version to choose)"
            )
        return LAST_IMPLICIT_MAJOR, DEFAULT_VERSIONS[LAST_IMPLICIT_MAJOR]
    major = version_major(requested)
    if major not in DEFAULT_VERSIONS or not requested.replace(".", "").isdigit():
        # an unknown major: whether it calibrates (10) or takes Q/DQ (11) is not known
        raise ConfigError(
            f"--trt-version: expected 10, 11 or a version such as 10.16.1, got {requested!r}"
        )
    if found.version is not None and found.major == major and "." not in requested:
        return major, found.version
    return major, requested if "." in requested else DEFAULT_VERSIONS.get(major, f"{major}.0.0")


def opt_shapes(specs: list[Any], batch: int, model: Path) -> dict[str, tuple[int, ...]]:
    """Every input's calibration (OPT) shape: the leading dim is the batch."""
    shapes = {}
    for spec in specs:
        dims = list(spec.shape)
        if not dims:
            raise ModelError(f"{model}: input '{spec.name}' is a scalar: it has no batch dimension")
        first = dims[0]
        if isinstance(first, int) and first != batch:
            raise ConfigError(
                f"{model}: input '{spec.name}' has a fixed batch of {first}, not --batch {batch} "
                f"(use --batch {first}, or export the model with a dynamic batch)"
            )
        for i, d in enumerate(dims[1:], start=1):
            if not isinstance(d, int):
                raise ModelError(
                    f"{model}: input '{spec.name}' dimension {i} is dynamic ({d or '?'}): "
                    "trtcalib build needs fixed dimensions besides the batch"
                )
        shapes[spec.name] = (batch, *dims[1:])
    return shapes


def _check_outputs_spare_inputs(o: BuildOptions, cache: Path, engine: Path) -> None:
    """Refuse output paths that name an input: `--cache calib.npz` must not replace the data,
    nor may the files written next to the engine replace the cache (or its sidecar)."""
    from trtcalib.cache import sidecar_path
    from trtcalib.trt.builder import timing_cache_path

    inputs: dict[str, Path] = model_and_weights(o.model)
    if o.data is not None:
        inputs["the --data source"] = data_path(o.data)
    next_to_engine = {
        "--engine": engine,
        "--engine (its Q/DQ model)": engine.with_name(engine.stem + ".qdq.onnx"),
        "--engine (its timing cache)": timing_cache_path(engine),
    }
    check_outputs_spare_inputs({"--cache": cache, **next_to_engine}, inputs)
    if same_file(cache, engine):
        raise ConfigError(f"--cache and --engine are the same file ({cache}); choose two paths")
    check_outputs_spare_inputs(
        next_to_engine,
        {"the --cache": cache, "the --cache's provenance sidecar": sidecar_path(cache)},
    )


def finish_command(o: BuildOptions, major: int, cache: Path, engine: Path) -> str:
    """The command that completes this build on a GPU host from the cache written here."""
    parts = ["trtcalib", "build", str(o.model), "--calibrator", o.calibrator]
    parts += ["--batch", str(o.batch), "--cache", str(cache), "--reuse-cache", "always"]
    parts += ["--engine", str(engine), "--trt-version", str(major)]
    if o.fp16:
        parts.append("--fp16")
    if o.workspace_mb:
        parts += ["--workspace", str(o.workspace_mb)]
    return shlex.join(parts)


def _reusable(o: BuildOptions, path: Path, model: Any, source: Any, settings: Any, major: int):
    """The cache to reuse, or None (after saying why)."""
    from trtcalib.cache import (
        foreign_cache_warning,
        read_cache,
        reuse_decision,
        trt_algorithm_name,
    )

    if o.reuse_cache == "never" or not path.exists():
        return None
    expected = trt_algorithm_name(o.calibrator)
    if o.reuse_cache == "always":
        cache = read_cache(path)
        if major <= LAST_IMPLICIT_MAJOR and cache.algorithm != expected:
            raise ConfigError(
                f"{path}: a {cache.algorithm} cache cannot seed the {o.calibrator} calibrator "
                f"(TensorRT needs {expected}); use --calibrator matching the cache or "
                "--reuse-cache never"
            )
        info(f"reusing {path} without checks (--reuse-cache always): calibration skipped")
        foreign = foreign_cache_warning(cache, path, model)
        if foreign:
            warn(foreign)
        return cache
    from trtcalib.calibrate import data_fingerprint
    from trtcalib.fingerprint import model_fingerprint

    full = settings.check()
    cheap = {
        "model_fingerprint": model_fingerprint(model),
        "algorithm": o.calibrator,
        "params": settings.provenance_params(full),
        "batch_size": o.batch,
        "histogram": None,  # a CPU-made cache (any histogram policy) or TensorRT's own: both fine
        "ignore_params": ("growth",),  # recorded by a `trt` histogram only: see histogram
        # TensorRT 11 reads no cache: only its scales go into the Q/DQ model, so a TensorRT 8/10
        # cache is as good as one with a TRT-11 header (the migration path to TensorRT 11)
        "trt_version": settings.trt_version if major <= LAST_IMPLICIT_MAJOR else None,
        "tensor_names": None,  # the model fingerprint already pins the tensors
        # compared by major only: the calibrators hand TensorRT the scales stamped with the
        # running version (_Calibration._cache_to_offer), so a CPU cache labelled 10.16.1
        # serves a 10.8 host as it is
        "last_batch": o.last_batch,  # named in the reason when the data fingerprints differ
    }
    decision = reuse_decision(path, **cheap)
    made_with = o.last_batch
    if decision.verified and source is not None:
        # the data (a pass over all of it) only when all else matches: a recalibration reads it.
        # A cache calibrated with --last-batch keep (calibrate's default) saw every sample of
        # this data, where TensorRT's calibration drops the last partial batch: it is the cache
        # the user made for this build (README: calibrate on the CPU, build on the GPU host), so
        # its data is checked under the policy it was made with.
        made_with = decision.provenance.extra.get("last_batch") or o.last_batch
        if made_with == "pad":  # in `params`: a pad cache matched only a pad build
            made_with = o.last_batch
        decision = reuse_decision(
            path,
            **{**cheap, "last_batch": made_with},
            data_fingerprint=data_fingerprint(source, o.batch, made_with),
        )
    if decision.verified:
        made_by = decision.provenance.extra.get("calibrated_by", "trtcalib on the CPU")
        checked = (
            "its provenance matches"
            if source is not None
            else ("its provenance matches the model and settings (data not checked: no --data)")
        )
        info(f"reusing {path}: {checked} (made by {made_by}): calibration skipped")
        if made_with != o.last_batch:
            info(
                f"{path} was calibrated with --last-batch {made_with} on this data (every "
                f"sample), where this build's calibration would {o.last_batch} the last partial "
                "batch: reused as it is"
            )
        return decision.cache
    if decision.provenance is None:
        # written by TensorRT, by another tool or edited by hand: auto can neither vouch for it
        # nor silently replace what the user keeps there (e.g. `--cache their_trt8.cache`)
        found = "; ".join(decision.reasons) if decision.reasons else "nothing can be checked"
        raise ConfigError(
            f"{path}: no valid trtcalib provenance sidecar (a TensorRT-written or edited cache?) "
            f"so --reuse-cache auto will neither reuse nor overwrite it ({found}): use "
            "--reuse-cache always to build from it, never to recalibrate over it, or another "
            "--cache"
        )
    unsettable = _settings_build_cannot_make(decision.provenance.params, cheap["params"])
    if unsettable:
        # recalibrating with build's defaults would silently throw away a deliberate choice
        others = [
            r for r in decision.why_not_verified() if not r.startswith("algorithm parameters")
        ]
        also = f" (also: {'; '.join(others)})" if others else ""
        raise ConfigError(
            f"{path}: made with settings build has no option for ({'; '.join(unsettable)}), so "
            f"--reuse-cache auto will neither reuse nor overwrite it{also}: recalibrate it with "
            "`trtcalib calibrate`, or use --reuse-cache always to build from it, never to "
            "recalibrate over it with build's defaults, or another --cache"
        )
    info(f"not reusing {path}: " + "; ".join(decision.why_not_verified()))
    return None


# calibrate options that build does not have: a cache made with them cannot be remade by build
_CALIBRATE_ONLY_PARAMS = ("num_bins", "overrides", "tensors")


def _settings_build_cannot_make(made: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return [
        f"{key}={made.get(key, '<unset>')}"
        for key in _CALIBRATE_ONLY_PARAMS
        if made.get(key) != now.get(key)
    ]


def _cpu_calibration(
    model_path: Path, model: Any, source: Any, settings: Any, path: Path, o
) -> Any:
    from trtcalib.cache import write_cache
    from trtcalib.calibrate import calibrate

    if source is None:
        raise DataError(f"no --data to calibrate {model_path} and no cache to reuse at {path}")
    info(
        f"calibrating on the CPU with trtcalib ({o.calibrator}, batch {o.batch}, "
        f"last batch: {o.last_batch})"
    )
    result = calibrate(model, source, settings, progress=o.progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_cache(path, result.cache, result.provenance)
    info(f"wrote {path} ({len(result.cache.scales)} tensors) and its provenance")
    return result.cache


def _save_onnx(model: Any, path: Path) -> None:
    # atomic, with the mode open() would give (not mkstemp's 0600), so the Q/DQ model can be
    # shared and copied to the GPU host like any other output
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, model.SerializeToString())


def _blocker(found: TensorRTInfo, major: int) -> tuple[str | None, Any]:
    """(what stops the engine build here, or None; a TensorRT builder when there is one)."""
    if found.major is not None and found.major != major:  # the other major's state is moot
        return f"TensorRT {major} is needed but this machine has TensorRT {found.version}", None
    if not found.loaded:
        what = found.error or "TensorRT does not import"
        if found.version:
            what = f"TensorRT {found.version} is installed but {what}"
        return what, None
    if found.major != major:
        return f"TensorRT {major} is needed but this machine has TensorRT {found.version}", None
    from trtcalib.trt.builder import make_builder

    try:
        return None, make_builder()[0]
    except TensorRTUnavailableError as exc:
        return str(exc), None


def run_build(o: BuildOptions) -> BuildReport:
    """Do everything this machine can; TensorRTUnavailableError (exit 3) at the GPU boundary."""
    from trtcalib.cache import Provenance, encode_trt_version
    from trtcalib.calibrate import CalibrationSettings
    from trtcalib.model import input_specs, load_model
    from trtcalib.stats import get_algorithm

    _check_options(o)
    get_algorithm(o.calibrator)  # unknown calibrator: one-line error listing the known ones
    found = probe_tensorrt()
    major, version = target_version(o.trt_version, found)
    implicit = major <= LAST_IMPLICIT_MAJOR
    report = BuildReport(target=f"TensorRT {version} ({'implicit' if implicit else 'explicit'})")
    if o.fp16 and not implicit:
        warn(
            f"--fp16 has no effect on TensorRT {major}: its networks are strongly typed (each "
            "layer runs in the precision of its inputs, INT8 where the Q/DQ model puts it)"
        )
    settings = CalibrationSettings(
        calibrator=o.calibrator,
        params=dict(o.params),
        batch_size=o.batch,
        trt_version=encode_trt_version(version),
        last_batch=o.last_batch,
    )
    settings.check()
    cache_path = o.cache or default_cache_path(o.model, o.calibrator, o.batch)
    engine_path = o.engine or default_engine_path(o.model, o.calibrator, o.batch)
    _check_outputs_spare_inputs(o, cache_path, engine_path)
    check_writable(cache_path)
    check_writable(engine_path)
    model = load_model(o.model)
    specs = input_specs(model)
    shapes = opt_shapes(specs, o.batch, o.model)
    source = None
    if o.data is not None:
        from trtcalib.data import DataOptions, batch_beyond_data, open_source

        source = open_source(o.data, specs, o.data_options or DataOptions())
        info(f"data: {source.describe()}")
        note = batch_beyond_data(o.batch, source.num_samples, o.last_batch)
        if note:
            warn(note)
    report.cache = cache_path
    info(
        f"target: {report.target}; calibration batches of {o.batch} (the OPT shape), "
        f"last partial batch: {o.last_batch}"
    )

    cache = _reusable(o, cache_path, model, source, settings, major)
    if cache is None and source is None:
        raise DataError(
            f"no --data given and no reusable cache at {cache_path}: give --data to calibrate"
        )
    blocker, builder = _blocker(found, major)
    from trtcalib.trt.builder import EngineRequest, timing_cache_path

    request = EngineRequest(
        onnx_path=o.model,
        engine_path=engine_path,
        opt_shapes=shapes,
        fp16=o.fp16,
        workspace_mb=o.workspace_mb,
        timing_cache_path=timing_cache_path(engine_path),
        notes=report.notes,
    )
    stop = f"finish on a GPU host with: {finish_command(o, major, cache_path, engine_path)}"

    if implicit:
        native = o.calibrator in NATIVE
        backend = None
        if blocker is None and cache is None and native:
            from trtcalib.trt.device import make_backend

            try:
                backend = make_backend(o.backend)
            except TensorRTUnavailableError as exc:
                blocker = str(exc)
        if blocker is not None:
            if cache is None:
                _cpu_calibration(o.model, model, source, settings, cache_path, o)
                report.scales_from = "CPU calibration"
            raise TensorRTUnavailableError(f"{blocker}; the cache {cache_path} is ready: {stop}")
        from trtcalib.fingerprint import model_fingerprint
        from trtcalib.trt.calibrators import calibrator_class
        from trtcalib.trt.device import InputBuffer

        template = Provenance(
            algorithm=o.calibrator,
            params=settings.provenance_params(settings.check()),
            model_fingerprint=model_fingerprint(model),
            inputs=specs,
            extra={"source": source.describe() if source is not None else None},
        )
        inputs = [InputBuffer(s.name, shapes[s.name], s.dtype) for s in specs]
        cls = calibrator_class(o.calibrator)
        calib = cls(
            source,
            settings,
            inputs=inputs,
            cache=cache,
            cache_path=cache_path,
            provenance=template,
            backend=backend or o.backend,  # created only if TensorRT asks for batches
            progress=o.progress,
        )
        if cache is None and not native:
            calib.prepare(o.model)
            report.scales_from = "CPU calibration (handed to TensorRT as a cache)"
        from trtcalib.trt.implicit import build_implicit

        build_implicit(request, calib, builder)
        if calib.batches_fed:
            report.scales_from = "TensorRT calibration"
            report.batches, report.samples = calib.batches_fed, calib.samples_fed
            report.padded = calib.padded_samples
        report.scales_from = report.scales_from or "reused cache"
        report.engine = engine_path
        return report

    # explicit: TensorRT 11 has no calibrators, the scales become Q/DQ nodes
    if cache is None:
        cache = _cpu_calibration(o.model, model, source, settings, cache_path, o)
        report.scales_from = "CPU calibration"
    from trtcalib.qdq import quantize_model

    qdq = quantize_model(model, dict(cache.scales))
    qdq_path = engine_path.with_name(engine_path.stem + ".qdq.onnx")
    _save_onnx(qdq.model, qdq_path)
    report.qdq_model = qdq_path
    info(f"wrote {qdq_path} ({len(qdq.quantized)} tensors quantized)")
    if blocker is not None:
        raise TensorRTUnavailableError(f"{blocker}; the Q/DQ model {qdq_path} is ready: {stop}")
    from trtcalib.trt.explicit import build_explicit

    build_explicit(dataclasses.replace(request, onnx_path=qdq_path), builder)
    report.scales_from = report.scales_from or "reused cache"
    report.engine = engine_path
    return report
