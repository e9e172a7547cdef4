"""`trtcalib study batch-size|scenario`: does the calibration batch size matter for my model?"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from trtcalib.data import cli_options as dopt

study_app = typer.Typer(
    name="study",
    help=(
        "Batch-size sensitivity of TensorRT calibration (TensorRT issue #774): replay captured "
        "activations in many batchings and see how much each amax moves."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
)


# every file `study batch-size` may write into --out
OUTPUT_NAMES = frozenset(
    {
        "results.json",
        "results.csv",
        "accuracy.csv",
        "amax_vs_batch.png",
        "histogram_small_vs_large_batch.png",
        "accuracy_vs_batch.png",
    }
)


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")


@study_app.command("batch-size")
def batch_size(
    model: Annotated[Path, typer.Argument(help="The ONNX model.", show_default=False)],
    data: dopt.DataArg,
    batches: Annotated[
        str,
        typer.Option("--batches", help="Comma-separated calibration batch sizes to try."),
    ] = "1,2,4,8,16,32,64,128",
    orders: Annotated[
        int,
        typer.Option(
            "--orders",
            "-k",
            help="Sample orders per batch size: order 0 is the data order, the others are "
            "shuffles seeded by --seed.",
        ),
    ] = 5,
    calibrator: Annotated[
        str,
        typer.Option("--calibrator", "-c", help="amax algorithm (see `trtcalib algorithms`)."),
    ] = "entropy",
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="A calibrator parameter as NAME=VALUE (repeatable), e.g. --param "
            "bin0_as_bin1=0 for entropy.",
            show_default=False,
        ),
    ] = None,
    growth: Annotated[
        str,
        typer.Option(
            "--growth",
            help="How the trt histogram range grows when a later batch exceeds it: pow2 "
            "(double until it fits) or square (the new max squared: 2.4 after 1.54 gives 5.76).",
        ),
    ] = "pow2",
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the shuffled orders (and of --sample-method).")
    ] = 0,
    tensors: Annotated[
        list[str] | None,
        typer.Option(
            "--tensors",
            "-t",
            help="Study only these tensors (repeat or comma-separate). Default: every float "
            "activation.",
            show_default=False,
        ),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels",
            help="Integer class per sample (FILE.npy or FILE.npz[:KEY]): adds the top-1 "
            "accuracy of every setting through the Q/DQ model.",
            show_default=False,
        ),
    ] = None,
    eval_data: Annotated[
        str | None,
        typer.Option(
            "--eval-data",
            help="Data the --labels belong to, for the accuracy (same formats as --data); "
            "an .npz with a 'labels' array needs no --labels. Default: --data itself.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder (results.json, results.csv, PNG plots). "
            "Default: study-out/<model stem>/.",
            show_default=False,
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", help="Worker processes for the replays.")
    ] = 1,
    num_bins: Annotated[int, typer.Option("--num-bins", help="Histogram bins.")] = 2048,
    top: Annotated[
        int, typer.Option("--top", help="How many of the most sensitive tensors to show/plot.")
    ] = 8,
    memory_mb: Annotated[
        int,
        typer.Option(
            "--memory-mb",
            help="Keep captured activations in RAM up to this size; above it they go to "
            "memory-mapped files in a temporary folder. The replays' sorted copies (8 bytes "
            "per value, shared by all threads or --jobs, at least 64 MiB each) fit it too.",
        ),
    ] = 512,
    replay: Annotated[
        str,
        typer.Option(
            "--replay",
            help="auto: pow2 runs are computed from the sorted activations (one sort per tensor, "
            "bin-for-bin equal to feeding TensorCollectors, much faster); collector: feed real "
            "TensorCollectors batch by batch for every run (square growth always does).",
        ),
    ] = "auto",
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
    subset_len: dopt.SubsetLen = None,
    sample_method: dopt.SampleMethod = "sequential",
) -> None:
    """Calibrate at every batch size and sample order from ONE inference pass.

    The activations are captured once and replayed through TensorRT's histogram policy
    ([bold]trt[/bold]: the range starts at the first batch's max and grows on later, larger
    batches) in every batching, plus once through the batch-independent [bold]exact[/bold]
    policy as reference. Per tensor it reports the amax spread across orders, the error vs
    exact, the range growths and the empty bins. Writes results.json, results.csv and PNGs
    (amax vs batch size, the histogram at the smallest vs the largest batch, accuracy vs
    batch size with --labels). A batch size larger than the data is refused; when the samples
    do not divide evenly the last, smaller batch is replayed too (calibrate's --last-batch keep).

    Example: [cyan]trtcalib study batch-size model.onnx --data calib.npz --batches 1,8,64
    --orders 5 --jobs 2[/cyan]

    With accuracy: [cyan]trtcalib study batch-size model.onnx --data calib.npz
    --eval-data eval.npz --labels eval.npz:labels[/cyan]
    """
    from trtcalib.commands._common import parse_params
    from trtcalib.console import info
    from trtcalib.errors import ConfigError
    from trtcalib.paths import (
        check_folder_spares_inputs,
        check_output_folder,
        data_path,
        model_and_weights,
    )
    from trtcalib.study.batch_size import StudySettings, parse_batches

    sizes = parse_batches(batches)
    names = None
    if tensors:
        names = tuple(n.strip() for item in tensors for n in item.split(",") if n.strip())
    if top < 1:
        raise ConfigError(f"--top {top}: must be at least 1")
    if memory_mb < 0:
        raise ConfigError(f"--memory-mb {memory_mb}: must not be negative")
    settings = StudySettings(
        batch_sizes=tuple(sizes),
        orders=orders,
        calibrator=calibrator,
        params=tuple(parse_params(param).items()),
        growth=growth,
        num_bins=num_bins,
        seed=seed,
        tensors=names,
        jobs=jobs,
        memory_limit=memory_mb * 2**20,
        replay=replay,
    )
    settings.validate()
    options = dopt.data_options(subset_len=subset_len, sample_method=sample_method, seed=seed)
    out_dir = out if out is not None else Path("study-out") / model.stem
    check_output_folder(out_dir, "--out")  # before the long capture
    inputs: dict[str, object] = dict(model_and_weights(model))
    inputs["the --data source"] = data_path(data)
    if eval_data is not None:
        inputs["the --eval-data source"] = data_path(eval_data)
    if labels is not None:
        inputs["--labels"] = data_path(labels)  # FILE.npz:KEY -> FILE.npz
    written = OUTPUT_NAMES if plots else {n for n in OUTPUT_NAMES if not n.endswith(".png")}
    check_folder_spares_inputs("--out", out_dir, sorted(written), inputs)

    from trtcalib.study.batch_size import run_batch_size_study

    label_array = eval_source = None
    if eval_data is not None and labels is None:
        from trtcalib.evaluate import labels_from_data

        # as eval and compare do: an .npz with a 'labels' array brings its own
        if labels_from_data(eval_data) is None:
            raise ConfigError(
                f"--eval-data {eval_data}: no 'labels' array in it: give --labels (the accuracy "
                "is measured on it)"
            )
        labels = f"{eval_data}:labels"
        info(f"labels: the 'labels' array of {eval_data}")
    if labels is not None and names is not None:
        _check_tensors_cover_qdq(model, names)
    if labels is not None:
        # checked before the long capture: a wrong labels file fails in a second
        label_array, eval_source = _labels_and_source(model, labels, eval_data, data, options)
    result, store = run_batch_size_study(model, data, settings, data_options=options)
    try:
        info(
            f"activations: {store.nbytes / 2**20:.1f} MiB of {len(store.names)} tensors, "
            f"{store.num_samples} samples, kept in {store.mode} ({store.reason})"
        )
        if label_array is not None:
            from trtcalib.model import load_model
            from trtcalib.study.accuracy import accuracy_sweep

            result.accuracy = accuracy_sweep(
                load_model(model),
                eval_source,
                label_array,
                result,
                labels_origin=f"--labels {labels}",
            )
            result.accuracy["data"] = str(eval_data or data)
        staging = Path(tempfile.mkdtemp(prefix="trtcalib-study-png-"))
        try:
            png = _plots(result, store, top, staging) if plots else {}
            store.close()
            _write(result, out_dir, png, top)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        store.close()


def _labels_and_source(model_path: Path, labels: str, eval_data: str | None, data: str, options):
    """The accuracy's data and labels. --subset-len/--sample-method choose calibration samples:
    they apply to --eval-data only when the accuracy is measured on --data itself, and then the
    labels are subsetted the same way (as `qdq compare` does)."""
    from trtcalib.data import DataOptions, open_source
    from trtcalib.evaluate import load_labels, select_labels
    from trtcalib.model import input_specs, load_model

    specs = input_specs(load_model(model_path))
    if eval_data is None:
        _refuse_labels_of_other_samples(labels, data, [s.name for s in specs])
    spec, spec_options = (data, options) if eval_data is None else (eval_data, DataOptions())
    source = open_source(spec, specs, spec_options)
    label_array = select_labels(load_labels(labels), source, origin=f"--labels {labels}")
    return label_array, source


def _plots(result, store, top: int, staging: Path) -> dict[str, Path]:
    """Render into a staging folder; the caller moves them next to the results at the end."""
    from trtcalib.study.plots import (
        pick_histogram_case,
        plot_accuracy_vs_batch,
        plot_amax_vs_batch,
        plot_histograms,
    )
    from trtcalib.study.replay import order_permutation, replay

    png = {}
    amax_png = plot_amax_vs_batch(result, staging / "amax_vs_batch.png", min(top, 4))
    if amax_png is not None:
        png["amax_vs_batch"] = amax_png
    case = pick_histogram_case(result)
    if case is not None:
        tensor, order = case
        data = store.get(tensor.name)
        perm = order_permutation(store.num_samples, order, result.seed)
        panels = []
        for b in (result.batch_sizes[0], result.batch_sizes[-1]):
            stats, _ = replay(
                data,
                store.sample_max(tensor.name),
                perm,
                b,
                name=tensor.name,
                growth=result.growth,
                num_bins=result.num_bins,
                coalesce=store.all_finite(tensor.name),
            )
            panels.append((f"batch {b}", stats, tensor.setting(b).amax[order]))
        png["histogram"] = plot_histograms(
            panels,
            staging / "histogram_small_vs_large_batch.png",
            f"{tensor.name}, order {order}: final trt histogram ({result.growth} growth)",
        )
    if result.accuracy:
        png["accuracy_vs_batch"] = plot_accuracy_vs_batch(result, staging / "accuracy_vs_batch.png")
    return png


def _write(result, out_dir: Path, png: dict[str, Path], top: int) -> None:
    from trtcalib.console import console
    from trtcalib.study.results import batch_table, summary_table, write_results

    written = write_results(result, out_dir)
    for path in png.values():
        written.append(_move_into(path, out_dir))
    for name in OUTPUT_NAMES - {p.name for p in written}:
        stale = out_dir / name  # from an earlier run: it would sit beside results it does not match
        if stale.is_file():
            stale.unlink()
            console.print(f"removed {stale} (an earlier run's; this run did not make one)")
    console.print(summary_table(result, top))
    console.print(batch_table(result))
    if result.accuracy:
        acc = result.accuracy
        console.print(
            f"accuracy: float {acc['float']:.4f}, Q/DQ exact {acc['exact']:.4f}, Q/DQ trt "
            f"{min(s['accuracy'] for s in acc['settings']):.4f}.."
            f"{max(s['accuracy'] for s in acc['settings']):.4f}"
        )
    for path in written:
        console.print(f"wrote {path}")


@study_app.command("scenario")
def scenario(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output folder for the histogram PNGs and JSON."),
    ] = Path("study-out/scenarios"),
    growth: Annotated[
        str, typer.Option("--growth", help="trt range growth rule: pow2 or square.")
    ] = "pow2",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic streams.")] = 0,
) -> None:
    """The thought experiments on synthetic streams, with a histogram plot of each.

    1. batch 1 with a very large value in the last batch; 2. batch 16 with evenly spread
    values; 3. a robust (saturating) distribution where batch size barely matters; and the
    worked example where 1.54 and 2.4 arrive in either order, through every policy.

    Example: [cyan]trtcalib study scenario --growth square --out study-out/scenarios[/cyan]
    """
    from trtcalib.errors import ConfigError
    from trtcalib.paths import check_output_folder
    from trtcalib.study.scenario import scenario_report

    if growth not in ("pow2", "square"):
        raise ConfigError(f"--growth {growth!r}: expected pow2 or square")
    check_output_folder(out, "--out")
    report = scenario_report(growth, seed)
    staging = Path(tempfile.mkdtemp(prefix="trtcalib-scenario-"))
    try:
        _scenario_output(report, staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into(path: Path, folder: Path) -> Path:
    """Move a finished file into `folder` under its own name, atomically (rename at the end)."""
    target = folder / path.name
    tmp = folder / f".{path.name}.tmp"
    shutil.move(str(path), str(tmp))
    os.replace(tmp, target)
    return target


def _scenario_output(report: dict, staging: Path, out: Path) -> None:
    import json

    from rich.table import Table

    from trtcalib.console import console
    from trtcalib.study.results import _clean, atomic_write
    from trtcalib.study.scenario import plot_scenario

    pngs = []
    for s in report["scenarios"]:
        scen, runs = s.pop("_scenario"), s.pop("_runs")
        pngs.append(plot_scenario(scen, runs, staging / f"scenario-{scen.key}.png"))
        table = Table(title=s["title"], title_justify="left", caption=s["story"],
                      caption_justify="left")  # fmt: skip
        for col in ("setting", "range", "growths", "empty bins", "entropy amax", "minmax amax"):
            table.add_column(col, justify="left" if col == "setting" else "right")
        for r in s["runs"]:
            table.add_row(
                r["label"],
                f"{r['range_max']:.4g}",
                str(r["growth_events"]),
                f"{r['empty_bin_fraction']:.0%}",
                f"{r['amax']['entropy']:.4g}",
                f"{r['amax']['minmax']:.4g}",
            )
        console.print(table)
    table = Table(
        title="worked example: one value per batch, 1.54 and 2.4 in either order (the range set "
        "by 1.54 must grow for 2.4)",
        title_justify="left",
    )
    for col in ("policy", "order", "final range", "growths", "entropy amax", "minmax amax"):
        table.add_column(col, justify="left" if col in ("policy", "order") else "right")
    for w in report["worked"]:
        table.add_row(
            w["policy"],
            " then ".join(f"{v:g}" for v in w["order"]),
            f"{w['range_max']:.4g}",
            str(w["growth_events"]),
            f"{w['amax']['entropy']:.4g}",
            f"{w['amax']['minmax']:.4g}",
        )
    console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "scenarios.json", (json.dumps(_clean(report), indent=2) + "\n").encode())
    console.print(f"wrote {out / 'scenarios.json'}")
    for png in pngs:
        console.print(f"wrote {_move_into(png, out)}")


def _refuse_labels_of_other_samples(labels: str, data: str, input_names: list[str]) -> None:
    """`--labels eval.npz` without `--eval-data`: the accuracy would pair --data's samples with
    the labels of eval.npz's own samples (chance accuracy, no error: the counts may match)."""
    import numpy as np

    from trtcalib.errors import ConfigError
    from trtcalib.paths import data_path, same_file

    path = data_path(labels)  # FILE.npz:KEY -> FILE.npz
    if path.suffix.lower() != ".npz" or not path.is_file() or same_file(path, data_path(data)):
        return
    try:
        with np.load(path, allow_pickle=False) as archive:
            held = [name for name in input_names if name in archive.files]
    except (OSError, ValueError):
        return  # load_labels reports a broken file
    if held:
        raise ConfigError(
            f"--labels {labels}: that file holds samples of its own ({', '.join(held)}), but "
            f"without --eval-data the accuracy is measured on --data {data}: add --eval-data "
            f"{path} to measure on its samples, or give the labels of --data's samples"
        )


def _check_tensors_cover_qdq(model_path: Path, names: tuple[str, ...]) -> None:
    """--labels runs the whole Q/DQ model: --tensors must give it enough activation scales
    (checked before the capture, with placeholder scales)."""
    from trtcalib.errors import ConfigError
    from trtcalib.model import load_model
    from trtcalib.qdq import quantize_model
    from trtcalib.qdq.quantize import CacheMismatchError

    try:
        quantize_model(load_model(model_path), {name: 1.0 for name in names})
    except CacheMismatchError as exc:
        detail = str(exc).split("; unmatched: ", 1)[-1].split(" (", 1)[0]
        raise ConfigError(
            f"--tensors with --labels: the accuracy runs the whole Q/DQ model, which needs the "
            f"activations its quantized layers read; the studied tensors miss {detail}: add "
            "them to --tensors, or drop --tensors"
        ) from exc
