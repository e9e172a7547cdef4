"""Calibration speed and memory: trtcalib vs plain onnxruntime vs onnxruntime.quantization.

A ResNet-18-shaped model (benchmarks/resnet18.py, random weights) and N random samples of
3x224x224 in [0, 1) (an uncompressed .npz, read in batches of 32) are made once in a temporary
folder. Every mode then runs in its own fresh Python process, so its peak RSS (ru_maxrss) is its
own; with --repeat R the modes are interleaved R times (order rotated) and the median time kept.
The numba kernels are compiled into numba's cache first (a fresh install compiles them once, ~8
CPU-s), and the header names the versions and whether scipy is installed: numba imports
scipy.linalg when it is (~0.5 CPU-s more for `ours`). trtcalib does not need scipy; run the
benchmark from a venv with `pip install .` to measure what a user installs.

Modes (all read the same batches through trtcalib.data):
  plain           onnxruntime FP32 inference, graph outputs only (the peer of every ratio)
  capture         the same inference with every calibrated activation exposed (no statistics):
                  the floor for any calibrator that uses onnxruntime
  capture-basic, capture-extended, capture-all
                  the capture at each onnxruntime optimisation level (capture = trtcalib's default,
                  trtcalib.capture.DEFAULT_OPTIMIZATION)
  ours            `trtcalib` entropy calibration end to end (data fingerprint, capture,
                  histograms, KL search, cache + provenance in memory); also reports the KL search
                  time for all tensors on its own
  ours-1thread    the same with the collectors on one thread (default: one per CPU)
  ours-overlap    the same with the collectors of batch k running while onnxruntime computes
                  batch k+1 (two batches of activations in memory)
  ours-trt        `ours` with --histogram trt instead of the default exact
  ort-entropy     onnxruntime.quantization EntropyCalibrater (num_bins=2048,
                  num_quantized_bins=128, symmetric=True); slow (minutes) and memory-hungry:
                  it keeps every activation of every sample in memory

    python benchmarks/calibrate_vs_ort.py                       # 256 samples, all but ort-entropy
    python benchmarks/calibrate_vs_ort.py --modes plain,capture,ours,ort-entropy
    python benchmarks/calibrate_vs_ort.py --samples 1024 --modes ours   # RSS vs sample count

Targets (issue 4): ours <= 1.5x capture; >= 10x faster than ort-entropy; KL search < 1 s;
peak RSS <= 2 GB and within 10% between 256 and 1024 samples.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL_MODES = (
    "plain",
    "capture",
    "capture-basic",
    "capture-extended",
    "capture-all",
    "ours",
    "ours-1thread",
    "ours-overlap",
    "ours-trt",
    "ort-entropy",
)
DEFAULT_MODES = ("plain", "capture", "ours", "capture-basic", "capture-all", "ours-1thread")


# ---------------------------------------------------------------- child side (one mode)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _batches(folder: Path, batch: int):
    from trtcalib.data import iter_batches, open_source
    from trtcalib.model import input_specs, load_model

    model = load_model(folder / "resnet18.onnx")
    source = open_source(folder / "data.npz", input_specs(model))
    return model, source, iter_batches(source, batch)


def _child(mode: str, folder: Path, batch: int) -> dict:
    import onnxruntime as ort

    result: dict = {"mode": mode}
    cpu_start = _cpu_seconds()  # set again right before each timed section
    if mode == "plain":
        model, _, batches = _batches(folder, batch)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        cpu_start, start = _cpu_seconds(), time.perf_counter()
        for b in batches:
            session.run(None, b.arrays)
        result["time"] = time.perf_counter() - start
    elif mode.startswith("capture"):
        from trtcalib.capture import DEFAULT_OPTIMIZATION, ActivationCapture

        level = mode.partition("-")[2] or DEFAULT_OPTIMIZATION
        model, _, batches = _batches(folder, batch)
        cpu_start, start = _cpu_seconds(), time.perf_counter()
        capture = ActivationCapture(model, optimization=level)
        for b in batches:
            capture.run(b.arrays)
        result["time"] = time.perf_counter() - start
        result["tensors"] = len(capture.tensor_names)
    elif mode.startswith("ours"):
        import trtcalib.calibrate as calib
        from trtcalib.stats import compute_amax
        from trtcalib.stats._kernels import numba_kernels

        histogram = "trt" if mode == "ours-trt" else "exact"
        if mode in ("ours-1thread", "ours-overlap"):
            original = calib.collect_statistics
            option = {"ours-1thread": {"workers": 1}, "ours-overlap": {"overlap": True}}[mode]

            def variant(*args, **kwargs):
                return original(*args, **{**kwargs, **option})

            calib.collect_statistics = variant
        numba_kernels()  # compile (or load the compiled cache) before timing
        model, source, _ = _batches(folder, batch)
        settings = calib.CalibrationSettings("entropy", batch_size=batch, histogram=histogram)
        cpu_start, start = _cpu_seconds(), time.perf_counter()
        out = calib.calibrate(model, source, settings, progress=False, warnings=False)
        out.cache.to_bytes()
        out.provenance.to_json()
        result["time"] = time.perf_counter() - start
        result["cpu"] = _cpu_seconds() - cpu_start
        start = time.perf_counter()
        for stats in out.stats.values():
            compute_amax(stats, "entropy")
        result["kl_time"] = time.perf_counter() - start
        result["tensors"] = len(out.cache.scales)
        result["numba"] = numba_kernels() is not None
    elif mode == "ort-entropy":
        from onnxruntime.quantization.calibrate import (
            CalibrationDataReader,
            CalibrationMethod,
            create_calibrator,
        )

        model, _, batches = _batches(folder, batch)

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter(batches)

            def get_next(self):
                b = next(self.it, None)
                return None if b is None else b.arrays

        with tempfile.TemporaryDirectory() as tmp:
            cpu_start, start = _cpu_seconds(), time.perf_counter()
            calibrator = create_calibrator(
                folder / "resnet18.onnx",
                augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                calibrate_method=CalibrationMethod.Entropy,
                extra_options={"num_bins": 2048, "num_quantized_bins": 128, "symmetric": True},
            )
            calibrator.collect_data(Reader())
            collected = time.perf_counter()
            ranges = calibrator.compute_data()
            result["time"] = time.perf_counter() - start
            result["collect_time"] = collected - start
            result["kl_time"] = result["time"] - result["collect_time"]
            result["tensors"] = len(ranges.data) if hasattr(ranges, "data") else len(ranges)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    result.setdefault("cpu", _cpu_seconds() - cpu_start)
    result["rss_mb"] = _peak_rss_mb()
    return result


# ---------------------------------------------------------------- parent side


def _prepare(folder: Path, samples: int) -> None:
    import numpy as np
    import onnx

    sys.path.insert(0, str(HERE))
    from resnet18 import build_resnet18

    onnx.save(build_resnet18(), str(folder / "resnet18.onnx"))
    rng = np.random.default_rng(0)
    data = rng.random((samples, 3, 224, 224), dtype=np.float32)
    np.savez(folder / "data.npz", input=data)  # uncompressed: streamed, never memory-mapped


def _run_child(mode: str, folder: Path, batch: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--dir", str(folder), "--batch", str(batch)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        raise SystemExit(f"mode {mode} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _environment() -> str:
    """Versions that move the figures, and whether scipy is installed: numba imports
    scipy.linalg at its first compile or cache load when it is (~0.5 CPU-s more for `ours`,
    measured; trtcalib does not depend on scipy, a clean `pip install .` has none)."""
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    parts = []
    for package in ("onnxruntime", "numba", "numpy", "onnx"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} -")
    scipy = "installed (numba imports it: ~0.5 CPU-s on ours)" if find_spec("scipy") else "absent"
    return f"{', '.join(parts)}; scipy {scipy}; python {sys.executable}"


def _fill_kernel_cache() -> str:
    """Compile trtcalib's numba kernels into numba's on-disk cache, in a process of its own.

    The first process after an install compiles them (~8 CPU-s, once); every later one loads
    the cache. Done here so that no timed round is that first process."""
    code = "from trtcalib.stats._kernels import warm_up_in_background as w\nt = w()\nt and t.join()"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"loading the numba kernels failed:\n{proc.stderr}")
    return f"numba kernel cache ready ({time.perf_counter() - start:.1f} s in a separate process)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds (median kept)")
    parser.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        help=f"comma-separated, from {', '.join(ALL_MODES)} (ort-entropy takes minutes)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(_child(args.child, Path(args.dir), args.batch)))
        return

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in ALL_MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(ALL_MODES)}")
    print(
        f"ResNet-18 (random weights), {args.samples} samples 3x224x224, batch {args.batch}, "
        f"{os.cpu_count()} CPUs, repeat {args.repeat}",
        flush=True,
    )
    print(_environment(), flush=True)
    print(_fill_kernel_cache(), flush=True)
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="trtcalib-bench-") as tmp:
        folder = Path(tmp)
        _prepare(folder, args.samples)
        for round_index in range(args.repeat):
            shift = round_index % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                r = _run_child(mode, folder, args.batch)
                runs[mode].append(r)
                extra = f", KL {r['kl_time']:.3f} s" if "kl_time" in r else ""
                print(
                    f"  {mode:17s} {r['time']:8.2f} s  (CPU {r['cpu']:6.2f} s)  "
                    f"{r['rss_mb']:7.0f} MB{extra}",
                    flush=True,
                )

    def median(mode: str, key: str = "time") -> float:
        return statistics.median(r[key] for r in runs[mode])

    print()
    print(
        f"{'mode':17s} {'time s':>8s} {'x plain':>8s} {'x capture':>9s} {'CPU s':>8s} "
        f"{'peak RSS MB':>12s}"
    )
    for mode in modes:
        t = median(mode)
        vs_plain = f"{t / median('plain'):.2f}" if "plain" in runs else "-"
        vs_cap = f"{t / median('capture'):.2f}" if "capture" in runs else "-"
        rss = max(r["rss_mb"] for r in runs[mode])
        cpu = median(mode, "cpu")
        print(f"{mode:17s} {t:8.2f} {vs_plain:>8s} {vs_cap:>9s} {cpu:8.2f} {rss:12.0f}")
    if "ours" in runs:
        r = runs["ours"][0]
        print(
            f"ours: {r['tensors']} tensors, KL search for all tensors "
            f"{median('ours', 'kl_time'):.3f} s (target < 1 s), numba kernels: {r['numba']}"
        )
        if "capture" in runs:
            print(f"ours / capture = {median('ours') / median('capture'):.2f} (target <= 1.5)")
        if "ort-entropy" in runs:
            ort_time = median("ort-entropy")
            print(
                f"ort-entropy / ours = {ort_time / median('ours'):.1f}x (target >= 10x); "
                f"ort-entropy collect {median('ort-entropy', 'collect_time'):.1f} s, "
                f"KL {median('ort-entropy', 'kl_time'):.1f} s"
            )
            if "capture" in runs:
                # what exposing every activation would allow with statistics for free (ours
                # exposes fewer: a Relu's statistics come from its input's signed histogram)
                print(
                    f"ort-entropy / capture = {ort_time / median('capture'):.1f}x: the ratio "
                    "with all activations exposed and free statistics"
                )
    print("(shared, noisy machine: compare ratios from the same run, not absolute times)")


if __name__ == "__main__":
    main()
