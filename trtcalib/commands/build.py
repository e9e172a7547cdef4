"""`trtcalib build` (an INT8 TensorRT engine) and `trtcalib env` (what this machine can build)."""

from __future__ import annotations

from pathlib import Path

import typer

from trtcalib.commands import _common as common
from trtcalib.data import DataOptions
from trtcalib.data import cli_options as dopt

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
that finishes the engine on a GPU host. That command reuses the CPU-made cache (--reuse-cache
always: the GPU host needs no data), so for entropy/minmax/legacy TensorRT does not calibrate
itself; to have it do so, run the build on the GPU host with --data and --reuse-cache never.
`trtcalib env` shows what this machine can build.

[b]Example:[/b]

  trtcalib build model.onnx --data calib.npz --calibrator entropy --batch 32

writes engines/model.entropy.b32.engine (and its timing cache) and caches/model.entropy.b32.cache.
"""

# build's --trt-version also picks the engine path (10: calibrators, 11: Q/DQ) and defaults to
# the TensorRT installed here, so it keeps the shared help and says how it differs
TargetVersion = common.with_default(
    common.TrtVersion,
    "Here also a major version, 10 or 11, which picks implicit (calibrators) or explicit (Q/DQ) "
    "quantization. Default here: the installed TensorRT, else 10.16.1, because the engine is "
    "built for that one.",
)

CacheOpt = common.cache_option()
EngineOpt = common.option(
    Path | None,
    "--engine",
    "-o",
    help="Engine to write. Default: engines/<model>.<calibrator>.b<batch>.engine.",
    panel=common.OUTPUT,
)
Fp16Opt = common.option(
    bool,
    "--fp16",
    help="Let layers that cannot run in INT8 fall back to FP16 (TRT 10). Default: off.",
    panel=common.TENSORRT,
)
WorkspaceOpt = common.option(
    int | None,
    "--workspace",
    help="Builder workspace limit in MiB. Default: TensorRT's.",
    panel=common.TENSORRT,
)
CudaOpt = common.option(
    str,
    "--cuda",
    help="How calibration batches reach the GPU: cuda-python or pycuda. Default: cuda-python.",
    panel=common.TENSORRT,
)


def register(app: typer.Typer) -> None:
    @app.command("build", help=common.reflow(BUILD_HELP))
    @dopt.with_data_options()
    def build_command(
        model: common.ModelArg,
        data: dopt.DataOptional = None,
        last_batch: dopt.LastBatchForTensorRT = "drop",
        calibrator: common.Calibrator = None,
        batch: common.Batch = None,
        percentile: common.Percentile = None,
        param: common.Param = None,
        reuse_cache: common.ReuseCache = "auto",
        trt_version: TargetVersion = None,
        fp16: Fp16Opt = False,
        workspace: WorkspaceOpt = None,
        cuda: CudaOpt = "cuda-python",
        cache: CacheOpt = None,
        engine: EngineOpt = None,
        progress: common.Progress = True,
        *,
        data_options: DataOptions,
    ) -> None:
        from trtcalib.trt.workflow import BuildOptions, run_build

        options = BuildOptions(
            model=model,
            calibrator=common.resolve("calibrator", calibrator),
            batch=common.resolve("batch", batch),
            data=data,
            data_options=data_options,
            cache=cache,
            engine=engine,
            reuse_cache=reuse_cache,
            fp16=fp16,
            workspace_mb=workspace,
            trt_version=trt_version,
            last_batch=last_batch,
            params=common.calibrator_params(param, percentile),
            backend=cuda,
            progress=progress,
        )
        report = run_build(options)
        _print_report(report)

    @common.command(app, "env")
    def env_command(as_json: common.JsonFlag = False) -> None:
        """Show what this machine can build: TensorRT, CUDA, and the build paths that run here.

        The TensorRT version found (10.x: implicit quantization with calibrators; 11.x: explicit
        Q/DQ only) and whether its libraries load, the CUDA driver and devices (through
        cuda-python and pycuda), and which `trtcalib build` paths run here and why not.
        Default: tables on stdout; --json for scripts.

        Example: trtcalib env --json
        """
        import json

        from trtcalib.console import console
        from trtcalib.trt.env import environment

        env = environment()
        if as_json:
            console.print_json(json.dumps(env))
            return
        _print_env(env)


def _print_report(report) -> None:
    from rich.table import Table

    from trtcalib.console import console

    table = Table(title="trtcalib build", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("target", common.plain(report.target))
    table.add_row("engine", common.plain(report.engine))
    table.add_row("scales", common.plain(report.scales_from))
    table.add_row("cache", common.plain(report.cache))
    if report.qdq_model is not None:
        table.add_row("Q/DQ model", common.plain(report.qdq_model))
    if report.batches is not None:
        table.add_row(
            "calibration data",
            f"{report.batches} batches, {report.samples} samples, {report.padded} padding",
        )
    console.print(table)
    for note in report.notes:
        console.print(common.plain(f"note: {note}"))


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
        table.add_row("version", common.plain(f"{trt['version']} ({mode})"))
        table.add_row("module", common.plain(trt["module"]))
    table.add_row("libraries load", common.plain("yes" if trt["loaded"] else f"no: {trt['error']}"))
    if trt["builder_error"]:
        table.add_row("builder", common.plain(f"no: {trt['builder_error']}"))
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
            common.plain(state),
        )
    console.print(cuda)

    paths = Table(title="build paths", title_justify="left")
    for column in ("path", "runs here", "why"):
        paths.add_column(column)
    for row in env["build_paths"]:
        paths.add_row(row["name"], "yes" if row["runs_here"] else "no", common.plain(row["reason"]))
    console.print(paths)
