"""`trtcalib calibrate`: a TensorRT calibration cache from an ONNX model and data, on the CPU."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from trtcalib.data import cli_options as dopt

PANEL = "Calibration"
OUT_PANEL = "Output"

DEFAULTS: dict[str, Any] = {
    "calibrator": "entropy",
    "batch": 32,
    "histogram": "exact",
    "growth": "pow2",
    "num_bins": 2048,
    "last_batch": "keep",
}
REUSE_MODES = ("auto", "always", "never")

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
so results are reproducible; it equals TensorRT's result when TensorRT's range does not grow
(e.g. the first batch holds the largest value). `trt` imitates TensorRT: the range starts at the
first batch's max and grows (--growth pow2|square) when a later batch exceeds it, which makes
the result depend on batch size and order (TensorRT issue #774).

[b]Example:[/b]

  trtcalib calibrate model.onnx --data calib.npz --calibrator entropy --batch 32

writes caches/model.entropy.b32.cache and caches/model.entropy.b32.cache.json.
"""


def register(app: typer.Typer) -> None:
    @app.command("calibrate", help=HELP)
    def calibrate_command(
        model: Annotated[
            Path,
            typer.Argument(metavar="MODEL.onnx", help="The FP32 ONNX model.", show_default=False),
        ],
        data: dopt.DataArg,
        calibrator: Annotated[
            str | None,
            typer.Option(
                "--calibrator",
                "-c",
                help=(
                    "entropy (TensorRT EntropyCalibration2), minmax, percentile, mse, mix, "
                    "legacy, or any registered plugin (`trtcalib algorithms` lists them). "
                    "Default: entropy."
                ),
                rich_help_panel=PANEL,
                show_default=False,
            ),
        ] = None,
        batch: Annotated[
            int | None,
            typer.Option(
                "--batch",
                "-b",
                help="Samples per onnxruntime run; recorded in the cache provenance. Default: 32.",
                rich_help_panel=PANEL,
                show_default=False,
            ),
        ] = None,
        histogram: Annotated[
            str | None,
            typer.Option(
                "--histogram",
                help="exact (default: batch-size and order independent) or trt (TensorRT's "
                "growing range). See above.",
                rich_help_panel=PANEL,
                show_default=False,
            ),
        ] = None,
        growth: Annotated[
            str | None,
            typer.Option(
                "--growth",
                help="How --histogram trt grows its range: pow2 (default) or square.",
                rich_help_panel=PANEL,
                show_default=False,
            ),
        ] = None,
        percentile: Annotated[
            float | None,
            typer.Option(
                "--percentile",
                help="Percentile for --calibrator percentile, in (0, 100], e.g. 99.99.",
                rich_help_panel=PANEL,
                show_default=False,
            ),
        ] = None,
        param: Annotated[
            list[str] | None,
            typer.Option(
                "--param",
                help="Any calibrator parameter as NAME=VALUE (repeatable), e.g. "
                "--param quantile=0.9999 for legacy.",
                rich_help_panel=PANEL,
                show_default=False,
            ),
        ] = None,
        num_bins: Annotated[
            int | None,
            typer.Option(
                "--num-bins",
                help="Histogram bins (a power of two >= 128). Default: 2048, as TensorRT.",
                rich_help_panel=PANEL,
                show_default=False,
            ),
        ] = None,
        tensors: Annotated[
            str | None,
            typer.Option(
                "--tensors",
                help="Calibrate only these tensors (comma-separated names). Default: every "
                "float graph input and node output.",
                rich_help_panel=PANEL,
                show_default=False,
            ),
        ] = None,
        config: Annotated[
            Path | None,
            typer.Option(
                "--config",
                help="TOML file with defaults (\\[calibrate]) and per-tensor overrides "
                '(\\[\\[override]] tensors = "glob", calibrator, parameters, skip). Command-line '
                "options win over the file.",
                rich_help_panel=PANEL,
                show_default=False,
            ),
        ] = None,
        trt_version: Annotated[
            str | None,
            typer.Option(
                "--trt-version",
                help="TensorRT version written in the cache header. Default: 10.16.1.",
                rich_help_panel=OUT_PANEL,
                show_default=False,
            ),
        ] = None,
        cache: Annotated[
            Path | None,
            typer.Option(
                "--cache",
                "-o",
                help="Where to write the cache (and CACHE.json). Default: "
                "caches/<model>.<calibrator>.b<batch>.cache (caches/ is created).",
                rich_help_panel=OUT_PANEL,
                show_default=False,
            ),
        ] = None,
        reuse_cache: Annotated[
            str,
            typer.Option(
                "--reuse-cache",
                help="auto: skip calibration when CACHE exists and its provenance matches "
                "the model, data and settings; always: use any readable CACHE; never: "
                "always recalibrate.",
                rich_help_panel=OUT_PANEL,
            ),
        ] = "auto",
        progress: Annotated[
            bool,
            typer.Option(
                "--progress/--no-progress", help="Show the progress bar.", rich_help_panel=OUT_PANEL
            ),
        ] = True,
        last_batch: Annotated[
            str | None,
            typer.Option(
                "--last-batch",
                help="The last partial batch: keep (default; smaller batch), pad (repeat the "
                "last sample, as a TensorRT OPT-shape batch) or drop.",
                rich_help_panel=dopt.PANEL,
                show_default=False,
            ),
        ] = None,
        subset_len: dopt.SubsetLen = None,
        sample_method: dopt.SampleMethod = "sequential",
        seed: dopt.Seed = 0,
        resize: dopt.Resize = None,
        crop: dopt.Crop = None,
        mean: dopt.Mean = None,
        std: dopt.Std = None,
        scale: dopt.Scale = None,
        layout: dopt.Layout = None,
        channels: dopt.Channels = None,
        interpolation: dopt.Interpolation = "bilinear",
    ) -> None:
        run_calibrate(
            model=model,
            data=data,
            cli={
                "calibrator": calibrator,
                "batch": batch,
                "histogram": histogram,
                "growth": growth,
                "percentile": percentile,
                "num_bins": num_bins,
                "tensors": _split_names(tensors),
                "trt_version": trt_version,
                "last_batch": last_batch,
            },
            params=_parse_params(param or []),
            config_path=config,
            cache_path=cache,
            reuse_cache=reuse_cache,
            progress=progress,
            data_options=dopt.data_options(
                subset_len=subset_len,
                sample_method=sample_method,
                seed=seed,
                resize=resize,
                crop=crop,
                mean=mean,
                std=std,
                scale=scale,
                layout=layout,
                channels=channels,
                interpolation=interpolation,
            ),
        )


def _split_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    from trtcalib.errors import ConfigError

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--tensors: expected comma-separated tensor names")
    return names


def _parse_params(items: list[str]) -> dict[str, float]:
    from trtcalib.errors import ConfigError

    params: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not key or not math.isfinite(number):
            raise ConfigError(f"--param {item!r}: expected NAME=NUMBER, e.g. quantile=0.9999")
        params[key] = number
    return params


def default_cache_path(model: Path, calibrator: str, batch: int) -> Path:
    return Path("caches") / f"{model.stem}.{calibrator}.b{batch}.cache"


def check_writable(path: Path, *, create_parent: bool) -> None:
    """Fail before any work when the cache cannot be written there (nothing is left behind)."""
    from trtcalib.errors import ConfigError

    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a cache file path")
    folder = path.parent
    probe_in = folder
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{path}: {folder} is not a folder")
    if not folder.is_dir():
        if not create_parent:
            raise ConfigError(f"{path}: folder {folder} does not exist")
        probe_in = folder.parent  # created at the end, just before the atomic write
    try:
        with tempfile.TemporaryFile(dir=probe_in):
            pass
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write in {probe_in} ({exc.strerror or exc})") from None


def _resolve(cli: dict[str, Any], cfg, params: dict[str, float]):
    """CalibrationSettings from command line > config file > defaults."""
    from trtcalib.cache import DEFAULT_TRT_VERSION, encode_trt_version
    from trtcalib.calibrate import CalibrationSettings
    from trtcalib.errors import ConfigError

    def pick(key: str) -> Any:
        if cli.get(key) is not None:
            return cli[key]
        return cfg.get(key, DEFAULTS.get(key))

    calibrator = pick("calibrator")
    all_params = dict(cfg.get("params", {}))
    if cfg.get("percentile") is not None:
        all_params["percentile"] = cfg.get("percentile")
    all_params.update(params)
    if cli.get("percentile") is not None:
        all_params["percentile"] = cli["percentile"]
    if "percentile" in all_params:
        p = all_params["percentile"]
        if not (math.isfinite(p) and 0 < p <= 100):
            raise ConfigError(f"--percentile must be in (0, 100], got {p}")
    batch = pick("batch")
    if batch < 1:
        raise ConfigError(f"--batch must be a positive integer, got {batch}")
    version_text = pick("trt_version")
    try:
        trt_version = (
            DEFAULT_TRT_VERSION if version_text is None else encode_trt_version(version_text)
        )
    except ValueError as exc:
        raise ConfigError(f"--trt-version: {exc}") from None
    from trtcalib.stats import get_algorithm

    get_algorithm(calibrator)  # unknown name: one-line error listing the registered ones
    overrides = cfg.tensor_overrides(calibrator, all_params) if cfg.overrides else None
    settings = CalibrationSettings(
        calibrator=calibrator,
        params=all_params,
        batch_size=batch,
        histogram=pick("histogram"),
        growth=pick("growth"),
        num_bins=pick("num_bins"),
        overrides=overrides,
        tensors=pick("tensors"),
        trt_version=trt_version,
        last_batch=pick("last_batch"),
    )
    settings.check()
    return settings


def run_calibrate(
    *,
    model: Path,
    data: str,
    cli: dict[str, Any],
    params: dict[str, float],
    config_path: Path | None,
    cache_path: Path | None,
    reuse_cache: str,
    progress: bool,
    data_options,
) -> None:
    from trtcalib.config import CalibrateConfig, load_config
    from trtcalib.console import info
    from trtcalib.errors import ConfigError

    if reuse_cache not in REUSE_MODES:
        raise ConfigError(
            f"--reuse-cache must be one of {', '.join(REUSE_MODES)}, got {reuse_cache!r}"
        )
    cfg = load_config(config_path) if config_path is not None else CalibrateConfig()
    settings = _resolve(cli, cfg, params)
    default_path = cache_path is None
    path = cache_path or default_cache_path(model, settings.calibrator, settings.batch_size)
    check_writable(path, create_parent=default_path)

    from trtcalib.data import open_source
    from trtcalib.model import input_specs, load_model

    onnx_model = load_model(model)
    source = open_source(data, input_specs(onnx_model), data_options)
    info(f"data: {source.describe()}")

    if (
        reuse_cache != "never"
        and path.exists()
        and _try_reuse(path, reuse_cache, onnx_model, source, settings)
    ):
        return

    from trtcalib.cache import write_cache
    from trtcalib.calibrate import calibrate

    result = calibrate(onnx_model, source, settings, progress=progress)
    if default_path:
        path.parent.mkdir(parents=True, exist_ok=True)
    write_cache(path, result.cache, result.provenance)
    _summary(result.amax, result.cache, path, skipped=result.skipped, settings=settings)


def _try_reuse(path: Path, mode: str, onnx_model, source, settings) -> bool:
    """True when the existing cache is reused (and summarised); False to recalibrate."""
    from trtcalib.cache import read_cache, reuse_decision
    from trtcalib.console import info
    from trtcalib.errors import CacheFormatError

    hint = "; use --reuse-cache never to overwrite it"
    if mode == "always":
        try:
            cache = read_cache(path)
        except CacheFormatError as exc:
            raise CacheFormatError(f"{exc}{hint}") from None
        info(f"reusing {path} without checks (--reuse-cache always)")
        _summary(cache.amax, cache, path, reused=True)
        return True

    from trtcalib.calibrate import data_fingerprint, planned_tensors
    from trtcalib.fingerprint import model_fingerprint

    full_params = settings.check()
    try:
        decision = reuse_decision(
            path,
            model_fingerprint=model_fingerprint(onnx_model),
            data_fingerprint=data_fingerprint(source, settings.batch_size, settings.last_batch),
            algorithm=settings.calibrator,
            params=settings.provenance_params(full_params),
            batch_size=settings.batch_size,
            histogram=settings.histogram,
            trt_version=settings.trt_version,
            tensor_names=planned_tensors(onnx_model, settings),
        )
    except CacheFormatError as exc:
        raise CacheFormatError(f"{exc}{hint}") from None
    if decision.reusable and decision.provenance is not None:
        info(f"reusing {path}: model, data and settings match its provenance (no calibration)")
        recorded = {n: r.amax for n, r in decision.provenance.tensors.items() if r.amax is not None}
        amax = {n: recorded.get(n, a) for n, a in decision.cache.amax.items()}
        _summary(amax, decision.cache, path, reused=True)
        return True
    reasons = decision.reasons or ["no provenance sidecar: model and data cannot be checked"]
    info(f"recalibrating, {path} cannot be reused: " + "; ".join(reasons))
    return False


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _summary(amax, cache, path: Path, *, skipped=(), settings=None, reused=False) -> None:
    from rich.table import Table

    from trtcalib.cache import scale_to_hex, sidecar_path
    from trtcalib.calibrate import widest_and_narrowest
    from trtcalib.console import console

    rows = widest_and_narrowest(amax, 5)
    table = Table(title="widest and narrowest tensors (amax)", title_justify="left")
    table.add_column("tensor")
    table.add_column("amax", justify="right")
    table.add_column("scale", justify="right")
    table.add_column("hex", justify="right")
    for i, (name, value) in enumerate(rows):
        if i == 5 and len(amax) > 10:
            table.add_row("...", "", "", "")
        s = cache.scales.get(name, 0.0)
        table.add_row(name, _fmt(value), _fmt(s), scale_to_hex(s))
    console.print(table)
    infinite = [n for n, v in amax.items() if math.isinf(v)]
    line = f"{len(cache.scales)} tensors, header {cache.header}"
    if skipped:
        line += f", {len(skipped)} skipped by overrides"
    if infinite:
        line += f", {len(infinite)} with infinite range ({', '.join(infinite[:3])})"
    console.print(line)
    verb = "reused" if reused else "wrote"
    console.print(f"cache: {path} ({verb})")
    side = sidecar_path(path)
    if side.exists():
        console.print(f"provenance: {side}")
