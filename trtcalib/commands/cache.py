"""`trtcalib cache show|diff|verify|convert`: look at, compare, check and convert caches."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from trtcalib.commands import _common as common

cache_app = typer.Typer(
    name="cache",
    help=common.reflow(
        """Inspect, compare, check and convert TensorRT calibration caches.

        A cache is TensorRT's TRT-<version>-<Algorithm> text file: show its scales, diff two
        caches, verify a cache against a model and its provenance sidecar (<cache>.json),
        convert it to JSON/CSV and back.

        Example: trtcalib cache show model.cache
        """
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
)

DEFAULT_RTOL = 0.01
CHECKS = "Checks"
HEADER = "Cache header"
OUTPUT = common.OUTPUT


def _command(name: str):
    """Register on cache_app with the docstring reflowed (see `_common.reflow`)."""
    return common.command(cache_app, name)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")


def _tolerance(rtol: float) -> str:
    """--rtol as given and as the percent the diff table shows: 0.01 -> "0.01 (1%)"."""
    return f"{rtol:g} ({rtol * 100:.4g}%)"


def _fmt(value: float) -> str:
    """Shortest text that gives back the same float32."""
    import numpy as np

    with np.errstate(over="ignore"):
        return str(np.float32(value))


def _print_json(data: object) -> None:
    from trtcalib.console import console

    console.out(json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False), highlight=False)


# ---------------------------------------------------------------- show


@_command("show")
def show_command(
    cache_path: Annotated[Path, typer.Argument(metavar="CACHE", help="Calibration cache.")],
    as_json: common.JsonFlag = False,
) -> None:
    """Show a cache's header and every tensor: scale, amax = 127 * scale, and the hex bits.

    Tensors are listed in file order, followed by a line from the provenance sidecar
    (<cache>.json) if there is one. --json prints
    {"trt_version": int|null, "algorithm": str, "tensors": {name: {"scale": float,
    "amax": float, "hex": str}}}. JSON has no inf/NaN: non-finite numbers are printed as
    the strings "inf", "-inf", "nan".

    Example: trtcalib cache show model.cache --json
    """
    from rich.table import Table
    from rich.text import Text

    from trtcalib.cache import format_trt_version, read_cache
    from trtcalib.cache.convert import cache_to_json_dict
    from trtcalib.console import console

    cache = read_cache(cache_path)
    if as_json:
        _print_json(cache_to_json_dict(cache))
        return
    title = Text(
        f"{cache_path}: TensorRT {format_trt_version(cache.trt_version)} "
        f"({cache.trt_version}), {cache.algorithm}, {common.count(len(cache), 'tensor')}"
    )
    table = Table(title=title)
    table.add_column("tensor", overflow="fold")
    table.add_column("scale", justify="right")
    table.add_column("amax", justify="right")
    table.add_column("hex", justify="right")
    amax = cache.amax
    for name, scale in cache.scales.items():
        # Text(): tensor names like "(Unnamed Layer* 46) [Constant]_output" are not markup
        table.add_row(Text(name), _fmt(scale), _fmt(amax[name]), cache.hex(name))
    console.print(table)
    _print_provenance_line(cache_path)


def _print_provenance_line(cache_path: Path) -> None:
    """One line on how the cache was made; a bad sidecar is a warning here, not an error."""
    from rich.text import Text

    from trtcalib.cache import read_provenance, sidecar_path
    from trtcalib.console import console, warn
    from trtcalib.errors import CacheFormatError

    try:
        prov = read_provenance(cache_path)
    except CacheFormatError as exc:
        warn(str(exc))
        return
    if prov is None:
        console.print(
            Text(
                f"no provenance sidecar ({sidecar_path(cache_path).name}): "
                "made by TensorRT or another tool"
            )
        )
        return
    params = ", ".join(f"{k}={v}" for k, v in prov.params.items())
    console.print(
        Text(
            f"provenance: {prov.algorithm}"
            + (f" ({params})" if params else "")
            + f", histogram {prov.histogram}, batch {prov.batch_size}, "
            f"{prov.num_samples} samples, created {prov.created or 'at an unknown time'} by "
            f"trtcalib {prov.trtcalib_version or '(version unknown)'}"
        )
    )


# ---------------------------------------------------------------- diff


def relative_change(a: float, b: float) -> float:
    """|b - a| / |a|; 0 when equal (also both inf, both NaN, both 0), inf when a is 0/inf/NaN."""
    if math.isnan(a) or math.isnan(b):
        return 0.0 if (math.isnan(a) and math.isnan(b)) else math.inf
    if a == b:
        return 0.0
    if a == 0 or math.isinf(a) or math.isinf(b):
        return math.inf
    return abs(b - a) / abs(a)


@_command("diff")
def diff_command(
    cache_a: Annotated[Path, typer.Argument(metavar="A", help="Reference cache.")],
    cache_b: Annotated[Path, typer.Argument(metavar="B", help="Cache compared with A.")],
    rtol: Annotated[
        float,
        typer.Option(
            "--rtol",
            help="Largest allowed relative change of amax, |amaxB - amaxA| / |amaxA|.",
            show_default=True,
            rich_help_panel=CHECKS,
        ),
    ] = DEFAULT_RTOL,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="Do not fail on tensors that are only in one file.",
            rich_help_panel=CHECKS,
        ),
    ] = False,
    as_json: common.JsonFlag = False,
) -> None:
    """Compare two caches tensor by tensor: relative change of amax, largest first.

    Lists tensors found in only one file and header differences. Exit code 1 when a change
    exceeds --rtol (default 0.01 = 1%) or a tensor is in only one file (unless
    --allow-missing); 0 otherwise. A change from or to 0 or inf counts as infinite.
    --json prints {"a", "b", "rtol", "header": {...}, "changes": [{"tensor", "amax_a",
    "amax_b", "rel_change", "exceeds"}], "only_in_a": [...], "only_in_b": [...],
    "exceeded": int, "ok": bool}. JSON has no inf/NaN: non-finite numbers are printed as
    the strings "inf", "-inf", "nan".

    Example: trtcalib cache diff old.cache new.cache --rtol 0.05
    """
    from rich.table import Table
    from rich.text import Text

    from trtcalib.cache import format_trt_version, read_cache
    from trtcalib.cache.provenance import json_float
    from trtcalib.console import console
    from trtcalib.errors import ConfigError

    if not (rtol >= 0) or math.isinf(rtol):
        raise ConfigError(f"--rtol {rtol}: must be a finite number >= 0")
    a, b = read_cache(cache_a), read_cache(cache_b)
    amax_a, amax_b = a.amax, b.amax
    order = {name: i for i, name in enumerate(a.scales)}
    changes = [
        (name, amax_a[name], amax_b[name], relative_change(amax_a[name], amax_b[name]))
        for name in a.scales
        if name in b.scales
    ]
    changes.sort(key=lambda c: (-c[3], order[c[0]]))
    only_a = [n for n in a.scales if n not in b.scales]
    only_b = [n for n in b.scales if n not in a.scales]
    exceeded = sum(1 for c in changes if c[3] > rtol)
    ok = exceeded == 0 and (allow_missing or not (only_a or only_b))
    header = {
        "trt_version": [a.trt_version, b.trt_version],
        "algorithm": [a.algorithm, b.algorithm],
    }
    if as_json:
        _print_json(
            {
                "a": str(cache_a),
                "b": str(cache_b),
                "rtol": rtol,
                "header": header,
                "changes": [
                    {
                        "tensor": name,
                        "amax_a": json_float(x),
                        "amax_b": json_float(y),
                        "rel_change": json_float(r),
                        "exceeds": r > rtol,
                    }
                    for name, x, y, r in changes
                ],
                "only_in_a": only_a,
                "only_in_b": only_b,
                "exceeded": exceeded,
                "ok": ok,
            }
        )
    else:
        if a.algorithm != b.algorithm:
            console.print(Text(f"algorithm: A {a.algorithm}, B {b.algorithm}"))
        if a.trt_version != b.trt_version:
            console.print(
                Text(
                    f"TensorRT version: A {format_trt_version(a.trt_version)}, "
                    f"B {format_trt_version(b.trt_version)}"
                )
            )
        tol = _tolerance(rtol)
        table = Table(title=Text(f"amax change {cache_a} -> {cache_b} (rtol {tol})"))
        table.add_column("tensor", overflow="fold")
        table.add_column("amax A", justify="right")
        table.add_column("amax B", justify="right")
        table.add_column("rel. change", justify="right")
        for name, x, y, r in changes:
            style = "red" if r > rtol else ""
            table.add_row(Text(name), _fmt(x), _fmt(y), Text(f"{r:.3%}", style=style))
        console.print(table)
        for label, names in ((f"only in {cache_a}", only_a), (f"only in {cache_b}", only_b)):
            if names:
                console.print(Text(f"{label} ({len(names)}): " + ", ".join(names)))
        verdict = "OK" if ok else "DIFFERENT"
        console.print(
            Text(
                f"{verdict}: {exceeded} of {len(changes)} shared tensors change by more than "
                f"{tol}; {len(only_a)} only in A, {len(only_b)} only in B"
            )
        )
    if not ok:
        raise typer.Exit(1)


# ---------------------------------------------------------------- verify


@_command("verify")
def verify_command(
    cache_path: Annotated[Path, typer.Argument(metavar="CACHE", help="Calibration cache.")],
    model_path: Annotated[
        Path, typer.Option("--model", "-m", help="The ONNX model the cache is for.")
    ],
    calibrator: Annotated[
        str | None,
        typer.Option(
            "--calibrator",
            help="Also check the header fits this calibrator.",
            rich_help_panel=CHECKS,
        ),
    ] = None,
    trt_version: Annotated[
        str | None,
        typer.Option(
            "--trt-version",
            help="Also check the TensorRT major version (10.16.1).",
            rich_help_panel=CHECKS,
        ),
    ] = None,
    as_json: common.JsonFlag = False,
) -> None:
    """Check that a cache fits a model: scales for every activation, provenance matches.

    Every float activation of the model (graph inputs and float node outputs) needs a scale,
    and the provenance sidecar (<cache>.json, if any) must say the cache was made for this
    model. Reports tensors the model has but the cache lacks, cache names the model does not
    know (TensorRT-internal names such as ONNXTRT_Broadcast_* or "(Unnamed Layer* N)
    [...]_output" separately), and provenance mismatches. A cache written by TensorRT has no
    sidecar: what could not be checked is listed. Exit code 1 if the cache must not be
    reused, else 0.

    Example: trtcalib cache verify model.cache --model model.onnx --calibrator entropy
    """
    from rich.text import Text

    from trtcalib.cache import encode_trt_version
    from trtcalib.cache.verify import verify_cache
    from trtcalib.console import console, warn
    from trtcalib.errors import ConfigError
    from trtcalib.model import load_model

    target = None
    if trt_version is not None:
        try:
            target = encode_trt_version(trt_version)
        except ValueError as exc:
            raise ConfigError(f"--trt-version: {exc}") from None
    if calibrator is not None:
        from trtcalib.cache import trt_algorithm_name

        if trt_algorithm_name(calibrator) is None:
            raise ConfigError(f"--calibrator {calibrator!r}: unknown calibrator")
    if not Path(cache_path).exists():
        from trtcalib.errors import CacheFormatError

        raise CacheFormatError(f"{cache_path}: no such calibration cache")
    model = load_model(model_path)
    report = verify_cache(cache_path, model, algorithm=calibrator, trt_version=target)
    decision = report.decision
    if as_json:
        _print_json(
            {
                "cache": str(cache_path),
                "model": str(model_path),
                "reusable": report.ok,
                "reasons": decision.reasons,
                "problems": report.problems,
                "unchecked": decision.unchecked,
                "has_provenance": decision.provenance is not None,
                "missing": report.missing,
                "left_out": report.left_out,
                "unknown": report.unknown,
                "trt_internal": report.trt_internal,
                "not_calibrated": report.not_calibrated,
            }
        )
    else:
        cache = decision.cache
        console.print(
            Text(
                f"{cache_path}: {common.count(len(cache), 'tensor')}, {cache.header}; "
                f"model {model_path}"
            )
        )
        if report.missing:
            console.print(
                Text(
                    f"missing from the cache ({len(report.missing)}): " + ", ".join(report.missing)
                )
            )
        if report.left_out:
            console.print(
                Text(
                    f"not calibrated by request (--tensors or a config skip, per the sidecar) "
                    f"({len(report.left_out)}), fine: " + ", ".join(report.left_out)
                )
            )
        if report.unknown:
            console.print(
                Text(
                    f"not in the model ({len(report.unknown)}), another model?: "
                    + ", ".join(report.unknown)
                )
            )
        if report.trt_internal:
            console.print(
                Text(
                    f"TensorRT-internal names ({len(report.trt_internal)}), fine: "
                    + ", ".join(report.trt_internal)
                )
            )
        if report.not_calibrated:
            console.print(
                Text(
                    f"weights or non-float tensors ({len(report.not_calibrated)}), ignored: "
                    + ", ".join(report.not_calibrated)
                )
            )
        if decision.provenance is None:  # a TensorRT cache: what only a sidecar could tell
            for item in decision.unchecked:
                warn(f"not checked: {item}")
        if report.unknown:
            warn(f"{len(report.unknown)} cache tensors are not in {model_path}")
        for reason in decision.reasons + report.problems:
            if not (report.missing and reason.startswith("tensors missing from the cache")):
                console.print(Text(f"- {reason}"))  # (the missing ones are listed above)
        verdict = "OK: the cache fits the model" if report.ok else "NOT REUSABLE"
        console.print(Text(verdict))
    if not report.ok:
        raise typer.Exit(1)


# ---------------------------------------------------------------- convert


@_command("convert")
def convert_command(
    source: Annotated[
        Path, typer.Argument(metavar="INPUT", help="A TensorRT cache, or JSON from --to json.")
    ],
    to: Annotated[
        str,
        typer.Option("--to", help="Output format: json, csv or cache.", rich_help_panel=OUTPUT),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write here (atomically) instead of stdout.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    trt_version: Annotated[
        str | None,
        typer.Option(
            "--trt-version",
            help="Set the header's TensorRT version (10.16.1, 8601).",
            rich_help_panel=HEADER,
        ),
    ] = None,
    algorithm: Annotated[
        str | None,
        typer.Option(
            "--algorithm",
            help="Set the header's algorithm (MinMaxCalibration).",
            rich_help_panel=HEADER,
        ),
    ] = None,
) -> None:
    """Convert a cache to JSON or CSV, or JSON back to a TensorRT cache.

    JSON is the layout of `trtcalib cache show --json`; reading it back uses each tensor's
    "hex" (exact bits) or else its "scale", and keeps the tensor order. CSV has the columns
    tensor,scale,amax,hex (one-way). --to cache writes TensorRT's spelling (lower-case hex,
    LF line ends), so it also normalises a hand-edited cache. The input kind is detected
    from its content. A JSON input without trt_version needs --trt-version. Writing a cache
    with --output removes a stale provenance sidecar next to it. Nothing is written on error.
    JSON has no inf/NaN: non-finite numbers are printed as the strings "inf", "-inf", "nan".

    Examples: trtcalib cache convert model.cache --to json -o model.scales.json;
    trtcalib cache convert model.scales.json --to cache -o model.cache
    """
    from trtcalib.cache import (
        CalibrationCache,
        atomic_write_bytes,
        encode_trt_version,
        parse_cache,
        sidecar_path,
        trt_algorithm_name,
        write_cache,
    )
    from trtcalib.cache.convert import cache_from_json, cache_to_csv, cache_to_json
    from trtcalib.cache.io import read_checked_bytes
    from trtcalib.console import console
    from trtcalib.errors import CacheFormatError, ConfigError
    from trtcalib.paths import check_outputs_spare_inputs, same_file

    kind = to.lower()
    if kind == "trt":
        kind = "cache"
    if kind not in ("json", "csv", "cache"):
        raise ConfigError(f"--to {to!r}: must be json, csv or cache")
    if output is not None:
        inputs = {
            "the input file": source,
            f"the provenance sidecar of {source}": sidecar_path(source),
        }
        check_outputs_spare_inputs({"--output": output}, inputs)
        if kind == "cache" and same_file(sidecar_path(output), source):
            # writing a cache removes the stale sidecar next to it: here that file is the input
            raise ConfigError(
                f"--output {output}: writing it would delete {source}, the input (it is the "
                "output's provenance sidecar); choose another path"
            )
        if output.is_dir():
            raise ConfigError(f"--output {output}: is a directory")
    known = None  # --algorithm as a header name, checked before the input is read
    if algorithm is not None:
        import re

        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", algorithm):
            raise ConfigError(f"--algorithm {algorithm!r}: must be an identifier")
        known = trt_algorithm_name(algorithm)
        if known is None:
            raise ConfigError(
                f"--algorithm {algorithm!r}: not a TensorRT calibration algorithm (e.g. "
                "EntropyCalibration2, MinMaxCalibration); TensorRT would ignore the cache"
            )
    data = read_checked_bytes(Path(source), "calibration cache or JSON file")
    if data.lstrip()[:1] == b"{":
        cache = cache_from_json(data, source=str(source), algorithm=known)
    else:
        cache = parse_cache(data, source=str(source))
    if trt_version is not None:
        try:
            cache.trt_version = encode_trt_version(trt_version)
        except ValueError as exc:
            raise ConfigError(f"--trt-version: {exc}") from None
    if known is not None:
        cache.algorithm = known
    if kind == "cache":
        if cache.trt_version is None:
            raise CacheFormatError(f"{source}: no trt_version; pass --trt-version (e.g. 10.16.1)")
        if trt_algorithm_name(cache.algorithm) is None:
            raise CacheFormatError(
                f"{source}: algorithm {cache.algorithm!r} is no TensorRT calibration algorithm "
                "(TensorRT would ignore the cache); pass --algorithm, e.g. EntropyCalibration2"
            )
        # TensorRT's own spelling: lower-case hex, LF line ends, trailing newline
        cache = CalibrationCache.from_scales(cache.scales, cache.algorithm, cache.trt_version)
        if output is None:
            console.out(cache.to_bytes().decode("utf-8"), end="", highlight=False)
        else:
            write_cache(output, cache)
        return
    text = cache_to_json(cache) + "\n" if kind == "json" else cache_to_csv(cache)
    if output is None:
        console.out(text, end="", highlight=False)
    else:
        atomic_write_bytes(output, text.encode("utf-8"))
