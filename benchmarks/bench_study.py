"""Cost of the batch-size study against one calibration run, measured in the same process.

    python benchmarks/bench_study.py [--model samples/mnist/model.onnx]
        [--data samples/mnist/calib.npz] [--batches 1,2,4,8,16,32,64,128] [--orders 5]
        [--repeat 3] [--jobs 1] [--collector]

Target (issue 7): the whole sweep (8 batch sizes x 5 orders, plus the exact reference) costs
less than 3x ONE `trtcalib.calibrate.calibrate` run (entropy, batch 32, exact histogram) on the
same model and data. The study runs inference once (capture) and replays the activations. The
two are timed in interleaved rounds (calibration, study, calibration, study, ...) so a slow spell
of a shared machine hits both; printed: the median of the per-round ratios and the ratio of the
best times. `--collector`
also times the replay through real TensorCollectors (no sorted replay) for comparison. Note:
calibrate feeds its collectors from a thread pool (one thread per CPU); the study replays in
--jobs processes. On a shared machine the timings are noisy: rerun before quoting them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "samples/mnist/model.onnx"))
    parser.add_argument("--data", default=str(ROOT / "samples/mnist/calib.npz"))
    parser.add_argument("--batches", default="1,2,4,8,16,32,64,128")
    parser.add_argument("--orders", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--collector", action="store_true")
    args = parser.parse_args()

    from trtcalib.calibrate import CalibrationSettings, calibrate
    from trtcalib.data import open_source
    from trtcalib.model import input_specs, load_model
    from trtcalib.study import StudySettings, parse_batches, run_batch_size_study

    model = load_model(args.model)

    def source():
        return open_source(args.data, input_specs(model))

    def one_calibration() -> None:
        calibrate(
            args.model,
            source(),
            CalibrationSettings("entropy", batch_size=32, histogram="exact"),
            progress=False,
        )

    def study(replay: str):
        def run() -> None:
            settings = StudySettings(
                batch_sizes=tuple(parse_batches(args.batches)),
                orders=args.orders,
                jobs=args.jobs,
                replay=replay,
            )
            result, store = run_batch_size_study(args.model, args.data, settings, progress=False)
            store.close()
            timings.update(result.timings)

        return run

    timings: dict[str, float] = {}
    one_calibration()  # warm-up: numba caches, onnxruntime, page cache
    study("auto")()
    cal_times, study_times = [], []
    for _ in range(args.repeat):
        cal_times.append(best_of(one_calibration, 1))
        study_times.append(best_of(study("auto"), 1))
    t_cal, t_study = min(cal_times), min(study_times)
    ratios = sorted(s / c for s, c in zip(study_times, cal_times, strict=True))
    runs = len(parse_batches(args.batches)) * args.orders
    print(f"model {args.model}, data {args.data}, {args.repeat} interleaved rounds")
    print(f"one calibration run (entropy, batch 32, exact):  {t_cal:8.2f} s (best)")
    print(
        f"study, {runs} settings + exact, jobs={args.jobs}:      {t_study:8.2f} s (best; "
        f"capture {timings.get('capture', 0):.2f} s, replay {timings.get('replay', 0):.2f} s)"
    )
    print(
        f"ratio study / calibration: median {statistics.median(ratios):.2f}x "
        f"(rounds {ratios[0]:.2f}-{ratios[-1]:.2f}x), best times {t_study / t_cal:.2f}x  "
        "(target < 3x)"
    )
    if args.collector:
        t_coll = best_of(study("collector"), 1)
        print(f"study through TensorCollectors (--replay collector): {t_coll:8.2f} s  "
              f"ratio {t_coll / t_cal:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
