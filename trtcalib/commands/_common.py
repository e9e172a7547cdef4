"""What the commands share: help formatting, the calibration/output options, and their parsing.

Every option that several commands take is defined once here (the data options in
`trtcalib.data.cli_options`), so its name, short flag, type, help and panel are the same
everywhere. A command that needs another default keeps the shared help and says why:
`with_default(LastBatch, "Default here: drop, because ...")`.

Options default to None and say their default in the help: `calibrate` must tell "not given"
(the --config file may set it) from "given", and `resolve()` fills the defaults in one place.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from contextlib import contextmanager
from copy import copy
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

CALIBRATION = "Calibration"
OUTPUT = "Output"
TENSORRT = "TensorRT"
QDQ = "Q/DQ"

DEFAULTS: dict[str, Any] = {
    "calibrator": "entropy",
    "batch": 32,
    "histogram": "exact",
    "growth": "pow2",
    "num_bins": 2048,
    "last_batch": "keep",
}
REUSE_MODES = ("auto", "always", "never")


# ---------------------------------------------------------------- help text


def reflow(text: str) -> str:
    """Join the lines of each paragraph: typer's rich help keeps single line breaks, which wrap
    badly in a terminal. Indented blocks (examples) keep their lines."""
    paragraphs = []
    for block in inspect.cleandoc(text).split("\n\n"):
        if block.startswith(" "):
            paragraphs.append(block)
        else:
            paragraphs.append(" ".join(line.strip() for line in block.splitlines()))
    return "\n\n".join(paragraphs)


def command(app: typer.Typer, name: str, **kwargs: Any):
    """`@command(app, "eval")`: register with the reflowed docstring as the help."""

    def decorate(func):
        app.command(name, help=reflow(func.__doc__ or ""), **kwargs)(func)
        return func

    return decorate


def option(type_: Any, *decls: str, help: str, panel: str | None = None, **kwargs: Any) -> Any:
    """An Annotated typer option; the default is stated in `help` ("... Default: X.")."""
    kwargs.setdefault("show_default", False)
    info = typer.Option(*decls, help=help, rich_help_panel=panel, **kwargs)
    return Annotated[type_, info]


def with_default(shared: Any, note: str, type_: Any = None) -> Any:
    """The shared option with the last sentence "Default: ..." of its help replaced by `note`
    (which must say why this command differs)."""
    base, info = get_args(shared)
    info = copy(info)
    text, sep, _ = info.help.rpartition(" Default")
    info.help = f"{text if sep else info.help} {note}"
    return Annotated[type_ or base, info]


# ---------------------------------------------------------------- calibration options

ModelArg = Annotated[
    Path, typer.Argument(metavar="MODEL.onnx", help="The FP32 ONNX model.", show_default=False)
]


def cache_option(*short: str) -> Any:
    """--cache for the commands that write or reuse a cache (calibrate adds -o: its output)."""
    return option(
        Path | None,
        "--cache",
        *short,
        help="Calibration cache to reuse (see --reuse-cache) or write, with its provenance "
        "CACHE.json next to it. Default: caches/<model>.<calibrator>.b<batch>.cache "
        "(caches/ is created).",
        panel=OUTPUT,
    )


Calibrator = option(
    str | None,
    "--calibrator",
    "-c",
    help="Calibration algorithm: entropy (TensorRT EntropyCalibration2; histogram bin 0 "
    "replaced by bin 1 before the KL sweep, as pytorch-quantization/ModelOpt: --param "
    "bin0_as_bin1=0 for the slides' literal rule), minmax, percentile, "
    "mse, mix, legacy, or any registered plugin (`trtcalib algorithms` lists them). "
    "Default: entropy.",
    panel=CALIBRATION,
)
Batch = option(
    int | None,
    "--batch",
    "-b",
    help="Samples per batch, i.e. per onnxruntime run (in `build`, TensorRT's calibration batch "
    "= the engine's OPT batch); a calibration cache records it in its provenance. Default: 32.",
    panel=CALIBRATION,
)
Histogram = option(
    str | None,
    "--histogram",
    help="Histogram policy: exact (the same result whatever the batch size or order) or trt "
    "(TensorRT's range, which grows when a later batch exceeds it, so the result depends on "
    "batch size and order: TensorRT issue #774). Default: exact.",
    panel=CALIBRATION,
)
Growth = option(
    str | None,
    "--growth",
    help="How --histogram trt grows its range when a later batch exceeds it: pow2 (double until "
    "it fits) or square (the new max squared: 2.4 after 1.54 gives 5.76). Default: pow2.",
    panel=CALIBRATION,
)
NumBins = option(
    int | None,
    "--num-bins",
    help="Histogram bins: a power of two from 128 to 65536. Default: 2048, as TensorRT.",
    panel=CALIBRATION,
)
Percentile = option(
    float | None,
    "--percentile",
    help="Percentile for --calibrator percentile, in (0, 100], e.g. 99.99. "
    "Default: the calibrator's (`trtcalib algorithms`).",
    panel=CALIBRATION,
)
Param = option(
    list[str] | None,
    "--param",
    help="Any calibrator parameter as NAME=VALUE (repeatable), e.g. --param quantile=0.9999 "
    "for legacy. Default: the calibrator's (`trtcalib algorithms`).",
    panel=CALIBRATION,
)
Config = option(
    Path | None,
    "--config",
    help="TOML file with defaults (\\[calibrate]) and per-tensor overrides "
    '(\\[\\[override]] tensors = "glob", calibrator, parameters, skip). Command-line options '
    "win over the file. Default: none.",
    panel=CALIBRATION,
)
Tensors = option(
    list[str] | None,
    "--tensors",
    "-t",
    help="Only these tensors (comma-separated names, or repeat the option). "
    "Default: every float graph input and node output.",
    panel=CALIBRATION,
)
TrtVersion = option(
    str | None,
    "--trt-version",
    help="TensorRT version the scales are for, written in the cache header (e.g. 10.16.1 or "
    "8.6.1). Default: 10.16.1.",
    panel=CALIBRATION,
)
ReuseCache = option(
    str,
    "--reuse-cache",
    help="auto: reuse CACHE when its provenance sidecar matches the model, data and settings "
    "(else recalibrate and say why; a CACHE without a valid sidecar, e.g. TensorRT's own, is an "
    "error: it is neither reused nor overwritten); always: use any readable CACHE without "
    "checks; never: always recalibrate. Default: auto.",
    panel=CALIBRATION,
)

# ---------------------------------------------------------------- evaluation options

Labels = option(
    str | None,
    "--labels",
    "-l",
    help="Integer class labels of the evaluated data, in its order: FILE.npy, FILE.npz (array "
    "'labels' or its only array), FILE.npz:KEY or FILE.txt (one integer per line). "
    "Default: the 'labels' array of the evaluated data when it is an .npz (--data; in "
    "`compare`, --eval-data when given).",
    panel="Data",  # the data options' panel (trtcalib.data.cli_options.PANEL)
)

# ---------------------------------------------------------------- output options

Progress = option(
    bool, "--progress/--no-progress", help="Show progress bars on stderr.", panel=OUTPUT
)
JsonFlag = option(bool, "--json", help="Print JSON on stdout instead of tables.", panel=OUTPUT)
JsonReport = option(
    Path | None, "--json", help="Also write the full report as JSON to this file.", panel=OUTPUT
)


# ---------------------------------------------------------------- parsing


def _config_error(message: str):
    from trtcalib.errors import ConfigError

    return ConfigError(message)


def check_choice(option_name: str, what: str, value: str, choices: tuple[str, ...]) -> None:
    """One-line ConfigError naming the option when `value` is not one of `choices`."""
    from trtcalib.calibrate import check_choice as check

    check(f"{option_name}: {what}", value, choices)


def split_names(items: list[str] | str | None) -> list[str] | None:
    """--tensors a,b --tensors c -> [a, b, c]; None when not given."""
    if items is None:
        return None
    text = ",".join([items] if isinstance(items, str) else items)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise _config_error("--tensors: expected comma-separated tensor names")
    return names


def parse_params(items: list[str] | None) -> dict[str, float]:
    """--param NAME=NUMBER (repeatable) -> {name: number}."""
    params: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not key or not math.isfinite(number):
            raise _config_error(f"--param {item!r}: expected NAME=NUMBER, e.g. quantile=0.9999")
        params[key] = number
    return params


def check_percentile(value: float) -> float:
    if not (math.isfinite(value) and 0 < value <= 100):
        raise _config_error(f"--percentile must be in (0, 100], got {value}")
    return value


def check_batch(value: int) -> int:
    if value < 1:
        raise _config_error(f"--batch must be a positive integer, got {value}")
    return value


@contextmanager
def errors_name(path: object, *kinds: type[Exception]) -> Iterator[None]:
    """Errors of `kinds` raised inside start with `path` (when they do not name it already):
    the library reports what went wrong, the command knows which file it was."""
    try:
        yield
    except kinds as exc:
        if str(path) in str(exc):
            raise
        raise type(exc)(f"{path}: {exc}") from None


def count(n: int, noun: str) -> str:
    """'1 tensor', '3 tensors'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def check_reuse_mode(mode: str) -> str:
    check_choice("--reuse-cache", "the reuse mode", mode, REUSE_MODES)
    return mode


def calibrator_params(
    param: list[str] | None, percentile: float | None, cfg: Any = None
) -> dict[str, float]:
    """Calibrator parameters: --percentile > --param > the config file's percentile > params."""
    params: dict[str, Any] = dict(cfg.get("params", {})) if cfg is not None else {}
    if cfg is not None and cfg.get("percentile") is not None:
        params["percentile"] = cfg.get("percentile")
    params.update(parse_params(param))
    if percentile is not None:
        params["percentile"] = percentile
    if "percentile" in params:
        check_percentile(params["percentile"])
    return params


def resolve(key: str, value: Any, cfg: Any = None) -> Any:
    """The command line's value, else the config file's, else the default."""
    if value is not None:
        return value
    if cfg is not None:
        return cfg.get(key, DEFAULTS.get(key))
    return DEFAULTS.get(key)


def calibration_settings(cli: dict[str, Any], params: dict[str, float], cfg: Any = None):
    """CalibrationSettings from command-line values (None = not given) > config file > defaults.

    `cli` keys: calibrator, batch, histogram, growth, num_bins, tensors, trt_version, last_batch.
    """
    from trtcalib.cache import DEFAULT_TRT_VERSION, encode_trt_version
    from trtcalib.calibrate import CalibrationSettings
    from trtcalib.config import GROWTHS, HISTOGRAMS, LAST_BATCH
    from trtcalib.stats import get_algorithm

    def pick(key: str) -> Any:
        return resolve(key, cli.get(key), cfg)

    calibrator = pick("calibrator")
    batch = check_batch(pick("batch"))
    check_choice("--histogram", "histogram policy", pick("histogram"), HISTOGRAMS)
    check_choice("--growth", "growth rule", pick("growth"), GROWTHS)
    check_choice("--last-batch", "last batch policy", pick("last_batch"), LAST_BATCH)
    version_text = pick("trt_version")
    try:
        trt_version = (
            DEFAULT_TRT_VERSION if version_text is None else encode_trt_version(version_text)
        )
    except ValueError as exc:
        raise _config_error(f"--trt-version: {exc}") from None
    from trtcalib.errors import ConfigError

    algorithm = get_algorithm(calibrator)  # unknown name: one-line error listing the known
    try:
        algorithm.validate(params)
    except ConfigError as exc:
        raise _name_config_params(exc, cfg, calibrator) from None
    overrides = None
    if cfg is not None and cfg.overrides:
        overrides = cfg.tensor_overrides(calibrator, params)
    settings = CalibrationSettings(
        calibrator=calibrator,
        params=params,
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


def _name_config_params(exc: Exception, cfg: Any, calibrator: str) -> Exception:
    """A parameter error about a parameter the config file set names that file (and its
    calibrator, when the command line chose another one)."""
    path = getattr(cfg, "path", None)
    if cfg is None or path is None:
        return exc
    keys = set(cfg.get("params", {}) or {}) | ({"percentile"} if cfg.get("percentile") else set())
    if not any(f"'{key}'" in str(exc) for key in keys):
        return exc
    note = ""
    if cfg.get("calibrator") not in (None, calibrator):
        note = (
            f" (its parameters are for {cfg.get('calibrator')!r}; the command chose {calibrator!r})"
        )
    return _config_error(f"{path}: {exc}{note}")


# ---------------------------------------------------------------- printing


def plain(value: object):
    """Text shown as is: tensor names and paths may hold [brackets] that are not rich markup."""
    from rich.text import Text

    return Text(str(value))


def fmt(value: float) -> str:
    return f"{value:.6g}"


def amax_table(amax: dict[str, float], scales: dict[str, float], count: int = 5):
    """The `count` widest and narrowest tensors: amax, scale and the scale's hex bits."""
    from rich.table import Table

    from trtcalib.cache import scale_to_hex
    from trtcalib.calibrate import widest_and_narrowest

    rows = widest_and_narrowest(amax, count)
    table = Table(title="widest and narrowest tensors (amax)", title_justify="left")
    table.add_column("tensor", overflow="fold")
    table.add_column("amax", justify="right")
    table.add_column("scale", justify="right")
    table.add_column("hex", justify="right")
    for i, (name, value) in enumerate(rows):
        if i == count and len(amax) > 2 * count:
            table.add_row("...", "", "", "")
        s = scales.get(name, 0.0)
        table.add_row(plain(name), fmt(value), fmt(s), scale_to_hex(s))
    return table
