"""`trtcalib build` (an INT8 TensorRT engine) and `trtcalib env` (what this machine can build)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from trtcalib.data import cli_options as dopt

PANEL = "Calibration"
OUT_PANEL = "Output"
TRT_PANEL = "TensorRT"

BUILD_HELP = """Build an INT8 TensorRT engine from an ONNX model, calibrating as needed.

[b]TensorRT 10[/b] (implicit quantization): the engine is built with the INT8 flag and one of
trtcalib's calibrators, real subclasses of TensorRT's IInt8*Calibrator classes: entropy
(EntropyCalibration2), minmax and legacy are computed by TensorRT from your --data, streamed to
the GPU in batches of --batch (the calibration profile's OPT shape); percentile, mse and mix are
computed by trtcalib on the CPU and handed to TensorRT as a cache. [b]TensorRT 11[/b] has no
calibrators: the scales (from the cache or a CPU calibration) become Q/DQ nodes in
engines/<model>.<calibrator>.b<N>.qdq.onnx, built strongly typed.

[b]Caches:[/b] --reuse-cache auto (default) reuses the cache when its provenance sidecar matches
the model, data, calibrator, parameters, batch and TensorRT major version, and says so;
always reuses any readable cache; never recalibrates. TensorRT needs every batch at the OPT
shape, so the last partial batch is dropped (default) or padded (--last-batch pad).

[b]No GPU or no TensorRT here?[/b] build does everything this machine can (CPU calibration, the
cache, the Q/DQ model for TensorRT 11), then exits with status 3 and prints the exact command
that finishes the engine on a GPU host. `trtcalib env` shows what this machine can build.

[b]Example:[/b]

  trtcalib build model.onnx --data calib.npz --calibrator entropy --batch 32

writes engines/model.entropy.b32.engine (and its timing cache) and caches/model.entropy.b32.cache.
"""

ENV_HELP = """Show what this machine offers for `trtcalib build`: the TensorRT version found (10.x:
implicit quantization with calibrators; 11.x: explicit Q/DQ only) and whether its libraries load,
the CUDA driver and devices (through cuda-python and pycuda), and which build paths run here.

[b]Example:[/b]

  trtcalib env --json
"""


def _reflow(text: str) -> str:
    """Join the lines of each paragraph (rich help keeps single newlines); keep indented lines."""
    paragraphs = []
    for block in text.strip().split("\n\n"):
        if block.startswith("  "):
            paragraphs.append(block)
        else:
            paragraphs.append(" ".join(line.strip() for line in block.splitlines()))
    return "\n\n".join(paragraphs)


def _parse_params(items: list[str]) -> dict[str, float]:
    from trtcalib.errors import ConfigError

    params: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not key.strip() or not math.isfinite(number):
            raise ConfigError(f"--param {item!r}: expected NAME=NUMBER, e.g. quantile=0.9999")
        params[key.strip()] = number
    return params


def register(app: typer.Typer) -> None:
    @app.command("build", help=_reflow(BUILD_HELP))
    def build_command(
        model: Annotated[
            Path,
            typer.Argument(metavar="MODEL.onnx", help="The FP32 ONNX model.", show_default=False),
        ],
        calibrator: Annotated[
            str,
            typer.Option(
                "--calibrator",
                "-c",
                help="entropy, minmax, legacy (run by TensorRT 10), percentile, mse, mix "
                "(computed on the CPU).",
                rich_help_panel=PANEL,
            ),
        ] = "entropy",
        batch: Annotated[
            int,
            typer.Option(
                "--batch",
                "-b",
                help="Calibration batch = the OPT (and max) batch of a dynamic-batch engine.",
                rich_help_panel=PANEL,
            ),
        ] = 32,
        data: Annotated[
            str | None,
            typer.Option(
                "--data",
                "-d",
                help="Calibration data (formats: see `trtcalib calibrate --help`). Not needed "
                "when a reusable --cache exists.",
                rich_help_panel=dopt.PANEL,
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
                help="Calibrator parameter NAME=VALUE (repeatable), e.g. quantile=0.9999.",
                rich_help_panel=PANEL,
                show_default=False,
            ),
        ] = None,
        last_batch: Annotated[
            str,
            typer.Option(
                "--last-batch",
                help="The last partial batch: drop it, or pad it by repeating its last sample.",
                rich_help_panel=dopt.PANEL,
            ),
        ] = "drop",
        cache: Annotated[
            Path | None,
            typer.Option(
                "--cache",
                help="Calibration cache to reuse or write. Default: "
                "caches/<model>.<calibrator>.b<batch>.cache.",
                rich_help_panel=OUT_PANEL,
                show_default=False,
            ),
        ] = None,
        engine: Annotated[
            Path | None,
            typer.Option(
                "--engine",
                "-o",
                help="Engine to write. Default: engines/<model>.<calibrator>.b<batch>.engine.",
                rich_help_panel=OUT_PANEL,
                show_default=False,
            ),
        ] = None,
        reuse_cache: Annotated[
            str,
            typer.Option(
                "--reuse-cache",
                help="auto: reuse the cache when its provenance matches; always: reuse any "
                "readable cache; never: recalibrate.",
                rich_help_panel=OUT_PANEL,
            ),
        ] = "auto",
        fp16: Annotated[
            bool,
            typer.Option(
                "--fp16",
                help="Let layers that cannot run in INT8 fall back to FP16 (TRT 10).",
                rich_help_panel=TRT_PANEL,
            ),
        ] = False,
        workspace: Annotated[
            int | None,
            typer.Option(
                "--workspace",
                help="Builder workspace limit in MiB. Default: TensorRT's.",
                rich_help_panel=TRT_PANEL,
                show_default=False,
            ),
        ] = None,
        trt_version: Annotated[
            str | None,
            typer.Option(
                "--trt-version",
                help="Target TensorRT: 10, 11 or e.g. 10.16.1. Default: the installed TensorRT, "
                "else 10.",
                rich_help_panel=TRT_PANEL,
                show_default=False,
            ),
        ] = None,
        cuda: Annotated[
            str,
            typer.Option(
                "--cuda",
                help="How calibration batches reach the GPU: cuda-python or pycuda.",
                rich_help_panel=TRT_PANEL,
            ),
        ] = "cuda-python",
        progress: Annotated[
            bool,
            typer.Option(
                "--progress/--no-progress", help="Show progress bars.", rich_help_panel=OUT_PANEL
            ),
        ] = True,
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
        from trtcalib.errors import ConfigError
        from trtcalib.trt.workflow import BuildOptions, run_build

        params = _parse_params(param or [])
        if percentile is not None:
            if not (math.isfinite(percentile) and 0 < percentile <= 100):
                raise ConfigError(f"--percentile must be in (0, 100], got {percentile}")
            params["percentile"] = percentile
        options = BuildOptions(
            model=model,
            calibrator=calibrator,
            batch=batch,
            data=data,
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
            cache=cache,
            engine=engine,
            reuse_cache=reuse_cache,
            fp16=fp16,
            workspace_mb=workspace,
            trt_version=trt_version,
            last_batch=last_batch,
            params=params,
            backend=cuda,
            progress=progress,
        )
        report = run_build(options)
        _print_report(report)

    @app.command("env", help=_reflow(ENV_HELP))
    def env_command(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON, not tables.")] = False,
    ) -> None:
        import json

        from trtcalib.console import console
        from trtcalib.trt.env import environment

        env = environment()
        if as_json:
            console.print_json(json.dumps(env))
            return
        _print_env(env)


def _plain(value: object) -> object:
    """Cell text shown as is (paths and messages may hold [brackets], not rich markup)."""
    from rich.text import Text

    return Text(str(value))


def _print_report(report) -> None:
    from rich.table import Table

    from trtcalib.console import console

    table = Table(title="trtcalib build", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("target", _plain(report.target))
    table.add_row("engine", _plain(report.engine))
    table.add_row("scales", _plain(report.scales_from))
    table.add_row("cache", _plain(report.cache))
    if report.qdq_model is not None:
        table.add_row("Q/DQ model", _plain(report.qdq_model))
    if report.batches is not None:
        table.add_row(
            "calibration data",
            f"{report.batches} batches, {report.samples} samples, {report.padded} padding",
        )
    console.print(table)
    for note in report.notes:
        console.print(_plain(f"note: {note}"))


def _print_env(env: dict) -> None:
    from rich.table import Table

    from trtcalib.console import console

    trt = env["tensorrt"]
    table = Table(title="TensorRT", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    if trt["version"] is None:
        table.add_row("version", "none")
    else:
        mode = "implicit: calibrators" if trt["quantization"] == "implicit" else "explicit: Q/DQ"
        table.add_row("version", _plain(f"{trt['version']} ({mode})"))
        table.add_row("module", _plain(trt["module"]))
    table.add_row("libraries load", _plain("yes" if trt["loaded"] else f"no: {trt['error']}"))
    if trt["builder_error"]:
        table.add_row("builder", _plain(f"no: {trt['builder_error']}"))
    console.print(table)

    cuda = Table(title="CUDA", title_justify="left")
    for column in ("backend", "installed", "driver", "runtime", "devices / error"):
        cuda.add_column(column)
    for row in env["cuda"]:
        state = ", ".join(row["devices"]) or row["error"] or "no device"
        cuda.add_row(
            row["backend"],
            row["installed"] or "no",
            row["driver"] or "-",
            row["runtime"] or "-",
            _plain(state),
        )
    console.print(cuda)

    paths = Table(title="build paths", title_justify="left")
    for column in ("path", "runs here", "why"):
        paths.add_column(column)
    for row in env["build_paths"]:
        paths.add_row(row["name"], "yes" if row["runs_here"] else "no", _plain(row["reason"]))
    console.print(paths)
