"""`trtcalib qdq`, `trtcalib eval`, `trtcalib compare`: explicit quantization and its accuracy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from trtcalib.commands import _common as common
from trtcalib.data import DataOptions
from trtcalib.data import cli_options as dopt
from trtcalib.errors import ConfigError

QDQ_PANEL = common.QDQ
SENSITIVITY_PANEL = "Sensitivity"
SUFFIX = ".qdq.onnx"

ModelArg = common.ModelArg
CacheOpt = common.option(
    Path,
    "--cache",
    "-c",
    help="Calibration cache: written by trtcalib, or by TensorRT 8/10 (any algorithm).",
    panel=QDQ_PANEL,
)
ExcludeOpt = common.option(
    list[str] | None,
    "--exclude",
    "-x",
    help="Leave a node (by ONNX node name) or every node of an op type (e.g. Gemm) in float. "
    "Repeat for several. Default: none.",
    panel=QDQ_PANEL,
)
AllowPartialOpt = common.option(
    bool,
    "--allow-partial",
    help="Accept a cache that has scales for fewer than half of the tensors to quantize. "
    "Default: off (such a cache belongs to another model: error).",
    panel=QDQ_PANEL,
)
TopOpt = common.option(
    int,
    "--top",
    help="Rows to print in the per-tensor and sensitivity tables. Default: 10.",
    panel=common.OUTPUT,
)
OutputOpt = common.option(
    Path | None,
    "--output",
    "-o",
    help="Where to write the Q/DQ model. Never the input model. "
    "Default: <model stem>.qdq.onnx in the current directory.",
    panel=common.OUTPUT,
)
SensitivityOpt = common.option(
    bool,
    "--sensitivity",
    help="Also rank layers by how much their quantization moves the output. Default: off.",
    panel=SENSITIVITY_PANEL,
)
SensitivityModeOpt = common.option(
    str | None,
    "--sensitivity-mode",
    help="'only': quantize one layer at a time, rest float; 'skip': quantize all but one "
    "layer. Default: only.",
    panel=SENSITIVITY_PANEL,
)
SensitivitySamplesOpt = common.option(
    int | None,
    "--sensitivity-samples",
    help="Samples used for each sensitivity run (one run per layer). Default: 512.",
    panel=SENSITIVITY_PANEL,
)
CalibratorsOpt = common.option(
    str,
    "--calibrators",
    help="Comma-separated calibration algorithms to try (see `trtcalib algorithms`). "
    "Default: entropy,minmax,percentile,mse.",
    panel=common.CALIBRATION,
)
EvalDataOpt = common.option(
    str | None,
    "--eval-data",
    help="Held-out data to evaluate on (same formats as --data). Default: --data itself, with "
    "a warning (accuracy measured on calibration data is optimistic).",
    panel=dopt.PANEL,
)


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename: never half a file; the mode a plain open()
    would give (not mkstemp's 0600), keeping an existing file's mode."""
    from trtcalib.cache.io import atomic_write_bytes

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"{path}: folder {folder} does not exist")
    atomic_write_bytes(path, data)


def _write_json(path: Path, payload: dict) -> None:
    from trtcalib.cache.provenance import jsonable

    # standard JSON only: inf/NaN become the strings "inf"/"-inf"/"nan", as in every trtcalib JSON
    text = json.dumps(jsonable(payload), indent=2, allow_nan=False) + "\n"
    _write_atomic(path, text.encode("utf-8"))


def _check_spares_inputs(
    option: str, out: Path | None, model: Path, inputs: dict[str, object]
) -> None:
    """`-o model.cache` or `--json data.npz` must not replace a file the command reads (the
    model's external weights included), nor land inside a --data folder."""
    from trtcalib.paths import check_outputs_spare_inputs, data_path, model_and_weights

    if out is None:
        return
    paths: dict[str, object] = dict(model_and_weights(model))
    paths.update({what: None if p is None else data_path(str(p)) for what, p in inputs.items()})
    if inputs.get("the --cache") is not None:  # writing over it would orphan the cache
        from trtcalib.cache import sidecar_path

        paths["the --cache's provenance sidecar"] = sidecar_path(Path(str(inputs["the --cache"])))
    check_outputs_spare_inputs({option: out}, paths)


def _check_json_target(path: Path | None) -> None:
    """Refuse a --json target we could not write *before* spending time on the work."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"--json {path}: is a directory")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"--json {path}: folder {folder} does not exist")


def default_output(model_path: Path) -> Path:
    """`<model stem>.qdq.onnx` in the current directory (the model's folder may be read-only)."""
    return Path.cwd() / f"{model_path.stem}{SUFFIX}"


def _fmt_db(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.1f}"


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _load_quantized(model_path: Path, cache_path: Path, exclude, allow_partial: bool):
    from trtcalib.cache import read_cache
    from trtcalib.errors import ModelError
    from trtcalib.model import load_model
    from trtcalib.qdq import DEFAULT_MIN_COVERAGE, CacheMismatchError, quantize_model

    model = load_model(model_path)
    cache = read_cache(cache_path)
    with (
        common.errors_name(model_path, ModelError),
        common.errors_name(cache_path, CacheMismatchError),
    ):
        result = quantize_model(
            model,
            dict(cache.scales),
            exclude or (),
            min_coverage=0.0 if allow_partial else DEFAULT_MIN_COVERAGE,
        )
    return model, cache, result


def _report_result(result, cache_path: Path) -> None:
    from trtcalib.console import info, warn

    if result.opset_upgraded_from is not None:
        info(f"opset {result.opset_upgraded_from} -> 13 (per-channel Q/DQ needs opset >= 13)")
    if result.missing:
        shown = ", ".join(result.missing[:8])
        more = f" and {len(result.missing) - 8} more" if len(result.missing) > 8 else ""
        warn(
            f"{len(result.missing)} tensors have no scale in {cache_path}, left in float: "
            f"{shown}{more}"
        )
    for tensor, reason in result.skipped.items():
        warn(f"{tensor}: left in float ({reason})")


def _summary_table(result):
    from rich.table import Table

    table = Table(title="Q/DQ placement", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("activations quantized", str(len(result.quantized)))
    table.add_row("weights quantized (per channel)", str(len(result.weights)))
    table.add_row("layers with Q/DQ inputs", str(len(result.layers)))
    table.add_row("BatchNormalization folded", str(len(result.folded)))
    table.add_row("missing in cache (float)", str(len(result.missing)))
    table.add_row("skipped (scale 0/inf/NaN, dtype)", str(len(result.skipped)))
    if result.excluded:
        table.add_row("excluded", common.plain(", ".join(result.excluded)))
    return table


def qdq_command(
    model: ModelArg,
    cache: CacheOpt,
    output: OutputOpt = None,
    exclude: ExcludeOpt = None,
    allow_partial: AllowPartialOpt = False,
) -> None:
    """Insert Q/DQ nodes from a calibration cache: the INT8 model TensorRT 11 builds from.

    Folds BatchNormalization into its Conv (as TensorRT does), then quantizes every input of
    Conv, ConvTranspose, Gemm and MatMul (activations per tensor with the cache's scale, zero
    point 0; weights per channel, max|w|/127, kept float32 + Q/DQ: output channels, input
    channels for ConvTranspose as TensorRT requires) and the residual input
    of Adds TensorRT fuses into a Conv (excluding that Conv leaves its Add in float too).
    Tensors without a scale stay in float and are listed.
    Default output: <model stem>.qdq.onnx in the current directory.

    Example: trtcalib qdq model.onnx --cache model.cache -o model.int8.onnx
    """
    from trtcalib.console import console

    target = Path(output) if output is not None else default_output(model)
    _check_spares_inputs("--output", target, model, {"the --cache": cache})
    if target.is_dir():
        raise ConfigError(f"--output {target}: is a directory")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"--output {target}: folder {folder} does not exist")

    _, _, result = _load_quantized(model, cache, exclude, allow_partial)
    _report_result(result, cache)
    _write_atomic(target, result.model.SerializeToString())
    console.print(_summary_table(result))
    console.print(common.plain(f"wrote {target}"))


def _open_data(model, spec: str, options):
    from trtcalib.data import open_source
    from trtcalib.model import input_specs

    return open_source(spec, input_specs(model), options)


def _resolve_labels(labels: str | None, data: str, source):
    from trtcalib.console import info
    from trtcalib.evaluate import labels_from_data, load_labels, select_labels

    if labels is not None:
        values = load_labels(labels)
    else:
        values = labels_from_data(data)
        if values is None:
            return None
        info(f"labels: the 'labels' array of {data}")
    return select_labels(values, source, origin=f"--labels {labels}" if labels else data)


def _eval_tables(report, top: int):
    from rich.table import Table

    summary = Table(title=f"FP32 vs INT8 (Q/DQ) on {report.num_samples} samples")
    summary.add_column("output")
    summary.add_column("cosine", justify="right")
    summary.add_column("min cosine", justify="right")
    summary.add_column("SQNR dB", justify="right")
    summary.add_column("max |err|", justify="right")
    for out in report.outputs:
        summary.add_row(
            common.plain(out.name),
            f"{out.cosine:.5f}",
            f"{out.min_cosine:.5f}",
            _fmt_db(out.sqnr_db),
            f"{out.max_abs_error:.4g}",
        )
    tables = [summary]
    if report.top1_agreement is not None:
        acc = Table(title=common.plain(f"Top-1 on '{report.classifier_output}'"))
        acc.add_column("top-1 agreement", justify="right")
        acc.add_column("FP32 accuracy", justify="right")
        acc.add_column("INT8 accuracy", justify="right")
        acc.add_column("INT8 - FP32", justify="right")
        delta = (
            None
            if report.accuracy_fp32 is None
            else f"{100 * (report.accuracy_int8 - report.accuracy_fp32):+.2f} pts"
        )
        acc.add_row(
            _fmt_pct(report.top1_agreement),
            _fmt_pct(report.accuracy_fp32),
            _fmt_pct(report.accuracy_int8),
            delta or "-",
        )
        tables.append(acc)
    if report.tensors:
        worst = sorted(report.tensors, key=lambda t: t.sqnr_db)[:top]
        tensors = Table(
            title=f"Quantized activations, lowest SQNR first ({len(worst)} of "
            f"{len(report.tensors)})"
        )
        tensors.add_column("tensor")
        tensors.add_column("scale", justify="right")
        tensors.add_column("SQNR dB", justify="right")
        tensors.add_column("vs FP32 dB", justify="right")
        tensors.add_column("clipped", justify="right")
        for t in worst:
            tensors.add_row(
                common.plain(t.name),
                f"{t.scale:.6g}",
                _fmt_db(t.sqnr_db),
                _fmt_db(t.sqnr_vs_fp32_db),
                f"{100 * t.clipped:.3f}%",
            )
        tables.append(tensors)
    return tables


def _sensitivity_table(ranking, mode: str, top: int):
    from rich.table import Table

    title = (
        "Sensitivity: output SQNR with ONLY this layer quantized (lowest = most harmful)"
        if mode == "only"
        else "Sensitivity: gain when this layer alone stays in float (largest = most harmful)"
    )
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("node")
    table.add_column("op")
    table.add_column("output SQNR dB", justify="right")
    if mode == "skip":
        table.add_column("gain dB", justify="right")
    table.add_column("top-1 agreement", justify="right")
    for rank, row in enumerate(ranking[:top], start=1):
        cells = [str(rank), common.plain(row.node), row.op_type, _fmt_db(row.sqnr_db)]
        if mode == "skip":
            cells.append(_fmt_db(row.delta_db))
        cells.append(_fmt_pct(row.top1_agreement))
        table.add_row(*cells)
    return table


@dopt.with_data_options()
def eval_command(
    model: ModelArg,
    data: dopt.DataArg,
    cache: CacheOpt,
    labels: common.Labels = None,
    exclude: ExcludeOpt = None,
    allow_partial: AllowPartialOpt = False,
    batch: common.Batch = None,
    sensitivity: SensitivityOpt = False,
    sensitivity_mode: SensitivityModeOpt = None,
    sensitivity_samples: SensitivitySamplesOpt = None,
    top: TopOpt = 10,
    json_out: common.JsonReport = None,
    progress: common.Progress = True,
    *,
    data_options: DataOptions,
) -> None:
    """Measure what INT8 costs: run the FP32 model and its Q/DQ version on the same data.

    Prints top-1 agreement (and accuracy with labels), output cosine similarity and SQNR, and
    the quantized activations with the lowest SQNR. --sensitivity ranks the layers to --exclude.
    --data is the data to evaluate on (same formats as for calibration; use held-out data).
    Defaults: batch 32, the 10 lowest-SQNR tensors, labels from the 'labels' array of an .npz.

    Example: trtcalib eval model.onnx --cache model.cache --data eval.npz --sensitivity
    """
    from trtcalib.console import console, make_progress
    from trtcalib.evaluate import SENSITIVITY_MODES, evaluate
    from trtcalib.evaluate import sensitivity as rank_layers

    show_progress = progress  # `progress` also names the bars' callbacks below

    if not sensitivity:
        # given alone, they would be ignored without a word
        for option, value in (
            ("--sensitivity-mode", sensitivity_mode),
            ("--sensitivity-samples", sensitivity_samples),
        ):
            if value is not None:
                raise ConfigError(f"{option}: only applies with --sensitivity")
    sensitivity_mode = sensitivity_mode or "only"
    sensitivity_samples = 512 if sensitivity_samples is None else sensitivity_samples
    if sensitivity_mode not in SENSITIVITY_MODES:
        raise ConfigError(
            f"--sensitivity-mode must be one of {', '.join(SENSITIVITY_MODES)}, "
            f"got {sensitivity_mode!r}"
        )
    asked_batch = batch
    batch = common.check_batch(common.resolve("batch", batch))
    for option, value in (("--top", top), ("--sensitivity-samples", sensitivity_samples)):
        if value < 1:  # one-line errors like every other bad value (not click's usage box)
            raise ConfigError(f"{option} must be at least 1, got {value}")
    _check_json_target(json_out)
    _check_spares_inputs(
        "--json",
        json_out,
        model,
        {"the --cache": cache, "the --data source": data, "--labels": labels},
    )
    options = data_options
    fp32, cache_obj, result = _load_quantized(model, cache, exclude, allow_partial)
    _report_result(result, cache)
    _warn_fixed_batch(fp32, asked_batch)
    source = _open_data(fp32, data, options)
    label_values = _resolve_labels(labels, data, source)

    with make_progress(enabled=show_progress) as bar:
        task = bar.add_task("evaluating", total=source.num_samples)
        report = evaluate(
            fp32,
            result.model,
            source,
            label_values,
            batch,
            progress=lambda n: bar.advance(task, n),
            labels_origin=str(labels) if labels is not None else str(data),
        )
    for table in _eval_tables(report, top):
        console.print(table)

    payload = {
        "model": str(model),
        "cache": str(cache),
        "data": data,
        "algorithm": cache_obj.algorithm,
        "placement": {
            "quantized": result.quantized,
            "missing": result.missing,
            "skipped": result.skipped,
            "weights": result.weights,
            "folded": result.folded,
            "excluded": result.excluded,
        },
        "report": report.to_dict(),
    }
    if sensitivity:
        with make_progress(unit="layers", enabled=show_progress) as bar:
            task = bar.add_task("sensitivity", total=len(result.layers))
            ranking = rank_layers(
                fp32,
                dict(cache_obj.scales),
                source,
                mode=sensitivity_mode,
                batch_size=batch,
                max_samples=sensitivity_samples,
                exclude=exclude or (),
                progress=lambda n: bar.advance(task, n),
                min_coverage=0.0 if allow_partial else None,
            )
        console.print(_sensitivity_table(ranking, sensitivity_mode, top))
        payload["sensitivity"] = {
            "mode": sensitivity_mode,
            "layers": [vars(row) for row in ranking],
        }
    if json_out is not None:
        _write_json(json_out, payload)


def _warn_fixed_batch(model, asked: int | None) -> None:
    """--batch cannot change a batch the model fixes: say so instead of ignoring it."""
    from trtcalib.console import warn
    from trtcalib.data import fixed_batch_size
    from trtcalib.model import input_specs

    fixed = fixed_batch_size(input_specs(model))
    if asked is not None and fixed is not None and asked != fixed:
        warn(
            f"--batch {asked}: the model fixes a batch of {fixed} in its inputs; running "
            f"batches of {fixed} (the last one padded)"
        )


def _parse_calibrators(text: str) -> list[str]:
    from trtcalib.stats import available_algorithms

    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError("--calibrators: give at least one name, e.g. entropy,minmax")
    known = available_algorithms()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"--calibrators: unknown {', '.join(unknown)} (available: {', '.join(known)})"
        )
    return list(dict.fromkeys(names))


@dopt.with_data_options(images=False)
def compare_command(
    model: ModelArg,
    data: dopt.DataArg,
    calibrators: CalibratorsOpt = "entropy,minmax,percentile,mse",
    batch: common.Batch = None,
    histogram: common.Histogram = None,
    eval_data: EvalDataOpt = None,
    labels: common.Labels = None,
    exclude: ExcludeOpt = None,
    json_out: common.JsonReport = None,
    progress: common.Progress = True,
    *,
    data_options: DataOptions,
) -> None:
    """Calibrate with several algorithms and compare their INT8 accuracy in one table.

    Each calibrator's scales become a Q/DQ model (as `trtcalib qdq`) that is evaluated against
    FP32 on --eval-data (as `trtcalib eval`). --subset-len/--sample-method/--seed apply to the
    calibration data only. Defaults: entropy, minmax, percentile and mse, batch 32, histogram
    exact, evaluated on --data itself (with a warning) unless --eval-data is given.

    Example: trtcalib compare model.onnx --data calib.npz --eval-data val.npz
    """
    from rich.table import Table

    from trtcalib.calibrate import Collected, calibrate, collect_statistics, collection_key
    from trtcalib.console import console, make_progress, warn
    from trtcalib.evaluate import evaluate
    from trtcalib.model import load_model
    from trtcalib.qdq import quantize_model

    show_progress = progress
    names = _parse_calibrators(calibrators)
    settings = {
        name: common.calibration_settings(
            {"calibrator": name, "batch": batch, "histogram": histogram}, {}
        )
        for name in names
    }
    batch = settings[names[0]].batch_size
    _check_json_target(json_out)
    inputs = {"the --data source": data, "the --eval-data source": eval_data, "--labels": labels}
    _check_spares_inputs("--json", json_out, model, inputs)
    fp32 = load_model(model)
    calib_options = data_options
    calib_source = _open_data(fp32, data, calib_options)
    if eval_data is None:
        eval_spec, eval_options = data, calib_options
    else:
        eval_spec, eval_options = eval_data, DataOptions()
    eval_source = _open_data(fp32, eval_spec, eval_options)
    label_values = _resolve_labels(labels, eval_spec, eval_source)
    if eval_data is None:
        warn(
            "evaluating on the calibration data (--eval-data not given): accuracy on data the "
            "scales were fitted to is optimistic"
        )

    rows = []
    collected: dict[tuple, Collected] = {}  # one pass over the data per histogram setting
    for name in names:
        key = collection_key(settings[name])
        if key is not None and key not in collected:
            collected[key] = collect_statistics(
                fp32, calib_source, settings[name], progress=show_progress
            )
        calibrated = calibrate(
            fp32,
            calib_source,
            settings[name],
            progress=show_progress,
            statistics=collected.get(key) if key is not None else None,
        )
        result = quantize_model(fp32, dict(calibrated.cache.scales), exclude or ())
        with make_progress(enabled=show_progress) as bar:
            task = bar.add_task(f"evaluating {name}", total=eval_source.num_samples)
            report = evaluate(
                fp32,
                result.model,
                eval_source,
                label_values,
                batch,
                progress=lambda n, task=task, bar=bar: bar.advance(task, n),
                labels_origin=str(labels) if labels is not None else str(eval_spec),
            )
        rows.append((name, calibrated, result, report))

    first = rows[0][3]
    table = Table(
        title=common.plain(f"INT8 (Q/DQ) vs FP32 on {first.num_samples} samples of {eval_spec}")
    )
    table.add_column("calibrator", no_wrap=True)
    table.add_column("agree", justify="right", no_wrap=True)
    if label_values is not None:
        table.add_column("INT8 acc", justify="right", no_wrap=True)
        table.add_column("Δ pts", justify="right", no_wrap=True)
    table.add_column("cosine", justify="right", no_wrap=True)
    table.add_column("SQNR", justify="right", no_wrap=True)
    table.add_column("min tensor", justify="right", no_wrap=True)
    for name, _, _result, report in rows:
        out = report.outputs[0] if report.outputs else None
        cells = [name, _fmt_pct(report.top1_agreement)]
        if label_values is not None:
            cells.append(_fmt_pct(report.accuracy_int8))
            cells.append(
                f"{100 * (report.accuracy_int8 - report.accuracy_fp32):+.2f}"
                if report.accuracy_int8 is not None
                else "-"
            )
        cells.append("-" if out is None else f"{out.cosine:.4f}")
        cells.append("-" if out is None else _fmt_db(out.sqnr_db))
        worst = min(report.tensors, key=lambda t: t.sqnr_db, default=None)
        cells.append("-" if worst is None else _fmt_db(worst.sqnr_db))
        table.add_row(*cells)
    console.print(table)
    console.print(
        "agree: top-1 agreement with FP32; SQNR: output SQNR in dB; min tensor: lowest "
        "per-tensor SQNR (dB) of the quantized activations"
    )
    if first.accuracy_fp32 is not None:
        console.print(f"FP32 accuracy: {_fmt_pct(first.accuracy_fp32)}")
    best = max(rows, key=lambda r: r[3].outputs[0].sqnr_db if r[3].outputs else -math.inf)
    console.print(f"highest output SQNR: {best[0]}")
    for name, _, _result, report in rows:
        worst = min(report.tensors, key=lambda t: t.sqnr_db, default=None)
        if worst is not None:
            console.print(
                common.plain(f"worst tensor ({name}): {worst.name} {_fmt_db(worst.sqnr_db)} dB")
            )
    if json_out is not None:
        _write_json(
            json_out,
            {
                "model": str(model),
                "data": data,
                "eval_data": eval_spec,
                "batch": batch,
                "results": [
                    {
                        "calibrator": name,
                        "algorithm": calibrated.cache.algorithm,
                        "missing": result.missing,
                        "report": report.to_dict(),
                    }
                    for name, calibrated, result, report in rows
                ],
            },
        )


def register(app: typer.Typer) -> None:
    common.command(app, "qdq")(qdq_command)
    common.command(app, "eval")(eval_command)
    common.command(app, "compare")(compare_command)
