"""Speed of the statistics hot paths, as ratios against a peer measured in the same run.

    NUMBA_NUM_THREADS=1 python benchmarks/bench_stats.py [--elements 16000000] [--repeat 5]

Prints:
  * the entropy KL sweep over all candidates of a 2048-bin histogram (target <= 5 ms) against a
    per-candidate Python loop (numpy inside the loop, the way pytorch-quantization does it);
  * `TensorCollector.collect()` in ns per float32 element (target <= 3 ns) for both histogram
    policies: the whole per-batch cost (NaN/inf counting, finite min/max, amax, moving average,
    histogram fill), against np.histogram of |x| (2048 bins) on the same data, for realistic
    activations (gaussian, relu of a gaussian). "first" is one batch into a new collector; "again"
    a further batch inside the range (the common case: min/max come out of the fill's own pass);
    "next" a further batch with a larger max, so the `trt` range grows and the `exact` fine
    histogram re-anchors; "nan" is a batch with one NaN and one inf (the slow path of the summary);
  * a tensor and the Relu derived from it: two exact collectors vs one signed collector and its
    Relu view (one pass over the data for both);
  * the numpy fallbacks (used without numba, or with TRTCALIB_NO_NUMBA=1) for the same jobs.
Timings are the best of --repeat runs on one thread (wall time; the "cpu" column is the thread's
CPU time, less sensitive to other processes); on a shared machine they are noisy: run the script
a few times and keep the minimum. The "ok" mark means wall <= 3 ns/element.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # one core: the kernels are serial anyway

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from trtcalib.stats import TensorCollector, _kernels  # noqa: E402
from trtcalib.stats.algorithms import entropy  # noqa: E402


def best_of(fn, repeat: int, setup=None) -> float:
    """Best wall time of `fn(state)` over `repeat` runs; `setup()` builds `state` untimed."""
    return best_of_wall_cpu(fn, repeat, setup)[0]


def best_of_wall_cpu(fn, repeat: int, setup=None) -> tuple[float, float]:
    """Best wall time and best thread CPU time (robust to a shared machine) over `repeat` runs."""
    fn(setup() if setup else None)  # warm-up (numba compile / cache load, page faults)
    walls, cpus = [], []
    for _ in range(repeat):
        state = setup() if setup else None
        c, t = time.thread_time(), time.perf_counter()
        fn(state)
        walls.append(time.perf_counter() - t)
        cpus.append(time.thread_time() - c)
    return min(walls), min(cpus)


def kl_loop(counts: np.ndarray) -> np.ndarray:
    """Per-candidate loop with numpy inside: the baseline the vectorised sweep replaces."""
    n = counts.shape[0]
    out = []
    for i in range(128, n + 1):
        p = counts[:i].copy()
        p[i - 1] += counts[i:].sum()
        group = (np.arange(i) * 128) // i
        mass = np.bincount(group, weights=counts[:i], minlength=128)
        nz = np.bincount(group, weights=(counts[:i] > 0), minlength=128)
        q = np.where(counts[:i] > 0, mass[group] / np.maximum(nz[group], 1), 0.0)
        p /= p.sum()
        q /= q.sum()
        m = p > 0
        with np.errstate(divide="ignore"):
            out.append(np.sum(p[m] * np.log(p[m] / q[m])))
    return np.array(out)


def activations(kind: str, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n, dtype=np.float32)
    if kind == "relu-gaussian":
        np.maximum(x, 0.0, out=x)
    return x


def bench_collect(x: np.ndarray, repeat: int, numpy_only: bool) -> None:
    n = x.size
    amax = float(np.abs(x).max())
    bigger = x * np.float32(1.5)  # next batch: a larger max makes the range grow / re-anchor
    with_nan = x.copy()
    with_nan[[n // 3, n // 2]] = [np.nan, np.inf]

    t_np, c_np = best_of_wall_cpu(
        lambda _: np.histogram(np.abs(x), bins=2048, range=(0.0, amax)), repeat
    )
    print(f"  {'':<26} {'wall':>7}      {'ratio':>5}               {'cpu':>7}")
    label = "np.histogram of |x|"
    print(f"  {label:<26} {t_np / n * 1e9:7.2f} ns   1.00x{'':>16}{c_np / n * 1e9:7.2f} ns")

    def collector(policy):
        return lambda: TensorCollector("t", histogram=policy)

    def primed(policy, first=None):
        def make():
            c = TensorCollector("t", histogram=policy)
            c.collect(x[:1024] if first is None else first)
            return c

        return make

    cases = []
    for policy in ("trt", "exact"):
        cases += [
            (f"collect {policy} first", collector(policy), x),
            (f"collect {policy} again", primed(policy, x), x),
            (f"collect {policy} next", primed(policy), bigger),
            (f"collect {policy} nan", collector(policy), with_nan),
        ]
    for label, setup, data in cases:
        if numpy_only:
            label = label.replace("collect", "numpy")
            saved, _kernels._numba_kernels = _kernels._numba_kernels, None
        try:
            t, cpu = best_of_wall_cpu(
                lambda c, d=data: c.collect(d), 2 if numpy_only else repeat, setup
            )
        finally:
            if numpy_only:
                _kernels._numba_kernels = saved
        judged = not numpy_only and ("first" in label or "again" in label)
        verdict = ("ok" if t / n <= 3e-9 else "") if judged else ""
        print(
            f"  {label:<26} {t / n * 1e9:7.2f} ns   {t_np / t:5.2f}x np.histogram "
            f"{cpu / n * 1e9:7.2f} ns  {verdict}"
        )


def bench_relu_pair(x: np.ndarray, repeat: int) -> None:
    """A tensor and the Relu derived from it (calibrate's derive): two collectors reading x one
    after the other, against one signed collector whose Relu view bins nothing (`stats.signed`).
    Per element of x, batches inside the range ("again")."""
    n = x.size

    def pair(signed: bool):
        def make():
            source = TensorCollector("x", signed=signed)
            relu = source.relu_collector("r") if signed else TensorCollector("r")
            relu.collect(x, relu=True, summary=source.collect(x))
            return source, relu

        return make

    def step(state):
        source, relu = state
        relu.collect(x, relu=True, summary=source.collect(x))

    t_two, c_two = best_of_wall_cpu(step, repeat, pair(False))
    t_one, c_one = best_of_wall_cpu(step, repeat, pair(True))
    for label, t, cpu in (("two passes", t_two, c_two), ("signed", t_one, c_one)):
        print(
            f"  x and its Relu, exact, {label:<10} {t / n * 1e9:7.2f} ns  cpu {cpu / n * 1e9:.2f}"
        )
    print(f"  signed / two passes: {t_two / t_one:.2f}x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", type=int, default=16_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-kl", action="store_true", help="skip the KL sweep part")
    ap.add_argument("--no-numpy", action="store_true", help="skip the numpy fallback timings")
    args = ap.parse_args()
    have_numba = _kernels.numba_kernels() is not None
    print(
        f"numba: {'yes' if have_numba else 'no (numpy fallback only)'}; "
        f"{args.elements:,} float32 elements; best of {args.repeat}"
    )

    if not args.no_kl:
        c = TensorCollector("t", histogram="trt")
        c.collect(activations("gaussian", 1_000_000))
        counts = c.result().counts
        t_fast = best_of(lambda _: entropy.kl_divergences(counts), args.repeat)
        t_numpy = best_of(lambda _: entropy.kl_divergences(counts, use_numba=False), args.repeat)
        t_loop = best_of(lambda _: kl_loop(counts), 1)
        print("\nKL sweep, 2048 bins, 1921 candidates (target <= 5 ms)")
        print(f"  per-candidate loop   {t_loop * 1e3:9.2f} ms   1.0x")
        print(f"  vectorised numpy     {t_numpy * 1e3:9.2f} ms   {t_loop / t_numpy:6.1f}x faster")
        if have_numba:
            print(f"  numba sweep          {t_fast * 1e3:9.2f} ms   {t_loop / t_fast:6.1f}x faster")

    for kind in ("relu-gaussian", "gaussian"):
        x = activations(kind, args.elements)
        print(f"\ncollect(), ns per float32 element, {kind} (target <= 3 ns)")
        if have_numba:
            bench_collect(x, args.repeat, numpy_only=False)
            if kind == "gaussian":
                bench_relu_pair(x, args.repeat)
        if not args.no_numpy:
            bench_collect(x, args.repeat, numpy_only=True)


if __name__ == "__main__":
    main()
