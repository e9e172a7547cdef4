"""Speed of the statistics hot paths, as ratios against a peer measured in the same run.

    python benchmarks/bench_stats.py [--elements 4000000] [--repeat 5]

Prints:
  * the entropy KL sweep over all candidates of a 2048-bin histogram (target <= 5 ms) against a
    per-candidate Python loop (numpy inside the loop, the way pytorch-quantization does it);
  * histogram fill in ns per float32 element (target <= 3 ns) for `TensorCollector.collect`
    (both policies; includes the NaN/inf/min/max pass) against np.histogram on the same data;
  * the numpy fallbacks (used when numba is absent) for the same two jobs.
Timings are the best of --repeat runs on one thread; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from trtcalib.stats import TensorCollector, _kernels
from trtcalib.stats.algorithms import entropy


def best_of(fn, repeat: int) -> float:
    fn()  # warm-up (numba compile / cache load, page faults)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", type=int, default=4_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(args.elements).astype(np.float32)
    have_numba = _kernels.numba_kernels() is not None
    print(
        f"numba: {'yes' if have_numba else 'no (numpy fallback only)'}; "
        f"{args.elements:,} float32 elements; best of {args.repeat}"
    )

    c = TensorCollector("t", histogram="trt")
    c.collect(x)
    counts = c.result().counts
    t_fast = best_of(lambda: entropy.kl_divergences(counts), args.repeat)
    t_numpy = best_of(lambda: entropy.kl_divergences(counts, use_numba=False), args.repeat)
    t_loop = best_of(lambda: kl_loop(counts), 1)
    print("\nKL sweep, 2048 bins, 1921 candidates (target <= 5 ms)")
    print(f"  per-candidate loop   {t_loop * 1e3:9.2f} ms   1.0x")
    print(f"  vectorised numpy     {t_numpy * 1e3:9.2f} ms   {t_loop / t_numpy:6.1f}x faster")
    if have_numba:
        print(f"  numba sweep          {t_fast * 1e3:9.2f} ms   {t_loop / t_fast:6.1f}x faster")

    n = x.size
    amax = float(np.abs(x).max())

    def np_hist():
        np.histogram(np.abs(x), bins=2048, range=(0.0, amax))

    def collect(policy, use_numba=None):
        def run():
            if use_numba is False:
                saved, _kernels._numba_kernels = _kernels._numba_kernels, None
            try:
                TensorCollector("t", histogram=policy).collect(x)
            finally:
                if use_numba is False:
                    _kernels._numba_kernels = saved

        return run

    t_np = best_of(np_hist, args.repeat)
    print("\nhistogram fill, ns per float32 element (target <= 3 ns)")
    print(f"  np.histogram         {t_np / n * 1e9:9.2f} ns   1.0x")
    for label, policy, flag in (
        ("collect trt", "trt", None),
        ("collect exact", "exact", None),
        ("collect trt numpy", "trt", False),
        ("collect exact numpy", "exact", False),
    ):
        if flag is None and not have_numba:
            continue
        t = best_of(collect(policy, flag), args.repeat if flag is None else 2)
        print(f"  {label:<20} {t / n * 1e9:9.2f} ns   {t_np / t:6.1f}x faster")


if __name__ == "__main__":
    main()
