"""`trtcalib calibrate`: a TensorRT calibration cache from an ONNX model and data, on the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from trtcalib.commands import _common as common
from trtcalib.data import DataOptions
from trtcalib.data import cli_options as dopt

HELP = """Calibrate an ONNX model on the CPU and write a TensorRT INT8 calibration cache.

onnxruntime runs MODEL.onnx over the data batch by batch; every float activation TensorRT
calibrates (graph inputs and node outputs) gets a histogram, the calibrator turns it into an
amax, and scale = amax/127 goes into the cache.

[b]What the cache is for:[/b] it is TensorRT's own text format (TRT-<version>-<Algorithm> header,
one `tensor: hex(scale)` line per tensor). Carry it to the GPU host and build the INT8 engine
without calibrating there: `trtcalib build`, `trtexec --int8 --calib=CACHE`, or your
IInt8Calibrator's read_calibration_cache. `trtcalib qdq` turns it into Q/DQ nodes for
TensorRT 11. Next to it, CACHE.json records how it was made (model and data fingerprints,
settings, per-tensor amax/min/max); `--reuse-cache auto` uses it to skip work when nothing
changed, and `trtcalib cache verify` to catch a stale cache.

[b]Histogram policy[/b] (--histogram, default exact): `exact` gives the same histogram whatever
the batch size or order (a fine power-of-two histogram resampled onto [0, max|x|] of all data),
so results are reproducible. It targets TensorRT's histogram when TensorRT's range does not
grow (the first batch holds the largest value): bin for bin for discrete data such as image
levels, within about 1% of the counts otherwise. `trt` imitates TensorRT: the range starts at the
first batch's max and grows (--growth pow2|square) when a later batch exceeds it, which makes
the result depend on batch size and order (TensorRT issue #774).

[b]Entropy[/b] (the default calibrator) is TensorRT's EntropyCalibration2 KL search, except that
histogram bin 0 is replaced by bin 1 before the sweep (as pytorch-quantization and ModelOpt do:
post-ReLU zeros would otherwise dominate); `--param bin0_as_bin1=0` keeps bin 0 as counted (the
NVIDIA slides' literal rule).

[b]Example:[/b]

  trtcalib calibrate model.onnx --data calib.npz --calibrator entropy --batch 32

writes caches/model.entropy.b32.cache and caches/model.entropy.b32.cache.json.
"""

CacheOpt = common.cache_option("-o")  # the cache is calibrate's output


def register(app: typer.Typer) -> None:
    @app.command("calibrate", help=common.reflow(HELP))
    @dopt.with_data_options()
    def calibrate_command(
        model: common.ModelArg,
        data: dopt.DataArg,
        last_batch: dopt.LastBatch = None,
        calibrator: common.Calibrator = None,
        batch: common.Batch = None,
        histogram: common.Histogram = None,
        growth: common.Growth = None,
        percentile: common.Percentile = None,
        param: common.Param = None,
        num_bins: common.NumBins = None,
        tensors: common.Tensors = None,
        config: common.Config = None,
        trt_version: common.TrtVersion = None,
        reuse_cache: common.ReuseCache = "auto",
        cache: CacheOpt = None,
        progress: common.Progress = True,
        *,
        data_options: DataOptions,
    ) -> None:
        from trtcalib.config import CalibrateConfig, load_config

        common.check_reuse_mode(reuse_cache)
        cfg = load_config(config) if config is not None else CalibrateConfig()
        cli = {
            "calibrator": calibrator,
            "batch": batch,
            "histogram": histogram,
            "growth": growth,
            "num_bins": num_bins,
            "tensors": common.split_names(tensors),
            "trt_version": trt_version,
            "last_batch": last_batch,
        }
        settings = common.calibration_settings(
            cli, common.calibrator_params(param, percentile, cfg), cfg
        )
        if settings.histogram == "exact" and (growth is not None or cfg.get("growth")):
            from trtcalib.console import warn

            warn("--growth only shapes --histogram trt: the exact policy never grows a range")
        run_calibrate(
            model=model,
            data=data,
            settings=settings,
            cache_path=cache,
            reuse_cache=reuse_cache,
            progress=progress,
            data_options=data_options,
            config_path=config,
        )


def run_calibrate(
    *,
    model: Path,
    data: str,
    settings,
    cache_path: Path | None,
    reuse_cache: str,
    progress: bool,
    data_options: DataOptions,
    config_path: Path | None = None,
) -> None:
    from trtcalib.console import info, warn
    from trtcalib.paths import check_writable, default_cache_path

    default_path = cache_path is None
    path = cache_path or default_cache_path(model, settings.calibrator, settings.batch_size)
    _check_cache_spares_inputs(path, model, data, config_path)
    check_writable(path, create_parents=default_path, kind="cache file")

    from trtcalib.data import batch_beyond_data, open_source
    from trtcalib.model import input_specs, load_model

    if reuse_cache == "never" or not path.exists():
        from trtcalib.stats._kernels import warm_up_in_background

        # statistics will follow: numba's start-up (0.7-1.2 s) overlaps with the loading below
        warm_up_in_background(notify=info)
    onnx_model = load_model(model)
    source = open_source(data, input_specs(onnx_model), data_options)
    info(f"data: {source.describe()}")
    note = batch_beyond_data(settings.batch_size, source.num_samples, settings.last_batch)
    if note:
        warn(note)

    if (
        reuse_cache != "never"
        and path.exists()
        and _try_reuse(path, reuse_cache, onnx_model, source, settings)
    ):
        return

    from trtcalib.cache import write_cache
    from trtcalib.calibrate import calibrate
    from trtcalib.errors import ModelError

    with common.errors_name(model, ModelError):  # e.g. onnxruntime refusing the graph
        result = calibrate(onnx_model, source, settings, progress=progress)
    if default_path:
        path.parent.mkdir(parents=True, exist_ok=True)
    write_cache(path, result.cache, result.provenance)
    _summary(result.amax, result.cache, path, skipped=result.skipped)


def _check_cache_spares_inputs(
    path: Path, model: Path, data: str, config: Path | None = None
) -> None:
    """`--cache model.onnx`, `calib.npz` or `cfg.toml` must not turn an input into a cache (nor
    into its sidecar)."""
    from trtcalib.cache import sidecar_path
    from trtcalib.paths import check_outputs_spare_inputs, data_path, model_and_weights

    check_outputs_spare_inputs(
        {"--cache": path, "--cache (its provenance sidecar)": sidecar_path(path)},
        {
            **model_and_weights(model),
            "the --data source": data_path(data),
            "the --config file": config,
        },
    )


def _try_reuse(path: Path, mode: str, onnx_model, source, settings) -> bool:
    """True when the existing cache is reused (and summarised); False to recalibrate."""
    from trtcalib.cache import foreign_cache_warning, read_cache, reuse_decision
    from trtcalib.console import info, warn
    from trtcalib.errors import CacheFormatError, ConfigError

    hint = "; use --reuse-cache never to overwrite it"
    if mode == "always":
        try:
            cache = read_cache(path)
        except CacheFormatError as exc:
            raise CacheFormatError(f"{exc}{hint}") from None
        info(f"reusing {path} without checks (--reuse-cache always)")
        foreign = foreign_cache_warning(cache, path, onnx_model)
        if foreign:
            warn(foreign)
        _summary(cache.amax, cache, path, reused=True)
        return True

    from trtcalib.calibrate import data_fingerprint, planned_tensors
    from trtcalib.fingerprint import model_fingerprint

    full_params = settings.check()
    cheap = {
        "model_fingerprint": model_fingerprint(onnx_model),
        "algorithm": settings.calibrator,
        "params": settings.provenance_params(full_params),
        "batch_size": settings.batch_size,
        "histogram": settings.histogram,
        "trt_version": settings.trt_version,
        "same_release": True,  # the cache is labelled for the --trt-version asked for
        "last_batch": settings.last_batch,  # named in the reason when the data differs
    }
    try:
        decision = reuse_decision(path, **cheap)
        if decision.verified:
            # only now what costs: a pass over all the data (its fingerprint) and an
            # onnxruntime session (the tensor names), which a recalibration would repeat
            decision = reuse_decision(
                path,
                **cheap,
                data_fingerprint=data_fingerprint(source, settings.batch_size, settings.last_batch),
                tensor_names=planned_tensors(onnx_model, settings),
            )
    except CacheFormatError as exc:
        raise CacheFormatError(f"{exc}{hint}") from None
    if decision.verified:
        info(f"reusing {path}: model, data and settings match its provenance (no calibration)")
        recorded = {n: r.amax for n, r in decision.provenance.tensors.items() if r.amax is not None}
        amax = {n: recorded.get(n, a) for n, a in decision.cache.amax.items()}
        _summary(amax, decision.cache, path, reused=True)
        return True
    if decision.provenance is None:
        # written by TensorRT, another tool or by hand: auto can neither vouch for it nor silently
        # replace what the user keeps there (as `trtcalib build`)
        found = "; ".join(decision.reasons) if decision.reasons else "nothing can be checked"
        raise ConfigError(
            f"{path}: no valid trtcalib provenance sidecar (a TensorRT-written or edited cache?) "
            f"so --reuse-cache auto will neither reuse nor overwrite it ({found}): use "
            "--reuse-cache always to use it, never to recalibrate over it, or another --cache"
        )
    info(f"recalibrating, {path} cannot be reused: " + "; ".join(decision.why_not_verified()))
    return False


def _summary(amax, cache, path: Path, *, skipped=(), reused=False) -> None:
    from trtcalib.cache import sidecar_path
    from trtcalib.console import console

    console.print(common.amax_table(amax, cache.scales))
    infinite = [n for n, v in amax.items() if math.isinf(v)]
    line = f"{common.count(len(cache.scales), 'tensor')}, header {cache.header}"
    if skipped:
        line += f", {len(skipped)} skipped by overrides"
    if infinite:
        line += f", {len(infinite)} with infinite range ({', '.join(infinite[:3])})"
    console.print(common.plain(line))
    verb = "reused" if reused else "wrote"
    console.print(common.plain(f"cache: {path} ({verb})"))
    side = sidecar_path(path)
    if side.exists():
        console.print(common.plain(f"provenance: {side}"))
