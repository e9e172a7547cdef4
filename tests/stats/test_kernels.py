"""The fast kernel paths (float32 table fill, integer summary, sliced calls) against literal
references and against the numpy fallback, bit for bit."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from trtcalib.stats import TensorCollector, _kernels

needs_numba = pytest.mark.skipif(_kernels.numba_kernels() is None, reason="numba not installed")


@pytest.fixture(params=["table", "float64"])
def kernel_path(request, monkeypatch):
    """Run a test through the float32 table kernels and through the float64 kernel: `fill_minmax`
    takes the path by name; collectors never use the table on the float64 path."""
    import trtcalib.stats.histogram as histogram

    if request.param == "float64":
        monkeypatch.setattr(histogram, "_TABLE_MIN_VALUES", 1 << 62)
    return request.param


def literal_fill_minmax(x: np.ndarray, n: int, scale: float):
    """One value at a time, float64 arithmetic: the definition the kernels must meet."""
    counts, lo, hi = np.zeros(n), np.full(n, np.inf), np.full(n, -np.inf)
    for v in x.tolist():
        a = abs(v)
        if not math.isfinite(a):
            continue
        k = int(min(a * scale, n - 1))
        counts[k] += 1
        lo[k] = min(lo[k], a)
        hi[k] = max(hi[k], a)
    return counts, lo, hi


def fill_into(x, counts, lo, hi, scale, use_numba, all_finite=False, path="float64"):
    """Bin x into counts/lo/hi the way an exact histogram does: through a row table, merged and
    reset, where the table kernels apply and `path` is "table"; else `fill_counts_minmax`."""
    if path == "table" and use_numba and _kernels.table_applies(x, scale):
        table = _kernels.new_table(counts.shape[0])
        zeros = _kernels.fill_table_into(x, table, scale, all_finite=all_finite)
        _kernels.merge_table_into(table, counts, lo, hi)
        _kernels.add_zeros(counts, lo, hi, zeros)
        clean = _kernels.new_table(counts.shape[0])
        assert table.tobytes() == clean.tobytes()  # the merge reset every row it touched
    else:
        _kernels.fill_counts_minmax(
            x, counts, lo, hi, scale, use_numba=use_numba, all_finite=all_finite
        )


def fill_minmax(x, n, scale, use_numba, all_finite=False, path="float64"):
    counts, lo, hi = np.zeros(n), np.full(n, np.inf), np.full(n, -np.inf)
    fill_into(x, counts, lo, hi, scale, use_numba, all_finite, path)
    return counts, lo, hi


def same(a, b) -> bool:
    return all(p.tobytes() == q.tobytes() for p, q in zip(a, b, strict=True))


def awkward_float32(size: int, seed: int) -> np.ndarray:
    """Gaussian with runs of zeros (both signs), NaN/inf, tiny and huge values."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(size) * 3).astype(np.float32)
    x[: size // 4] = np.maximum(x[: size // 4], 0)  # a relu quarter: many +0.0
    x[size // 2 : size // 2 + 50] = -0.0
    x[7::101] = np.float32(1e-40)  # subnormal float32
    x[11::997] = np.nan
    x[13::1999] = np.inf
    x[17::2003] = -np.inf
    x[19::3001] = np.float32(3e38)
    return x


@needs_numba
@pytest.mark.parametrize(
    "scale",
    [
        2.0**12,  # the exact policy's fine grid over [0, 8)
        2.0**-3,  # everything in the first bins
        2.0**40,  # most values clamp into the last bin
        2.0**127,  # largest power of two the float32 table path takes: products overflow
        2.0**-126,  # smallest: products underflow to subnormals
        2.0**128,  # not a float32: the float64 kernel
        2048 / 3.7,  # not a power of two: the float64 kernel
    ],
)
def test_table_fill_matches_literal_and_numpy(scale, kernel_path):
    n = 256
    x = awkward_float32(20_000, seed=1)
    ref = literal_fill_minmax(x, n, scale)
    fast = fill_minmax(x, n, scale, use_numba=True, path=kernel_path)
    slow = fill_minmax(x, n, scale, use_numba=False)
    assert same(fast, ref) and same(slow, ref)


@needs_numba
def test_table_fill_all_finite_flag_and_small_batches(kernel_path):
    n = 512
    x = awkward_float32(40_000, seed=2)
    x = x[np.isfinite(x)]
    ref = literal_fill_minmax(x, n, 2.0**8)
    got = fill_minmax(x, n, 2.0**8, use_numba=True, all_finite=True, path=kernel_path)
    assert same(got, ref)
    for few in (x[:100], x[:1]):  # small batches, one element
        got = fill_minmax(few, n, 2.0**8, use_numba=True, path=kernel_path)
        assert same(got, literal_fill_minmax(few, n, 2.0**8))


@needs_numba
def test_table_fill_accumulates_into_existing_state(kernel_path):
    n = 128
    x = awkward_float32(10_000, seed=3)
    y = (awkward_float32(10_000, seed=4) * 0.25).astype(np.float32)
    both = literal_fill_minmax(np.concatenate([x, y]), n, 2.0**4)
    counts, lo, hi = np.zeros(n), np.full(n, np.inf), np.full(n, -np.inf)
    for part in (x, y):
        fill_into(part, counts, lo, hi, 2.0**4, use_numba=True, path=kernel_path)
    assert same((counts, lo, hi), both)


@needs_numba
def test_zero_runs_are_counted_once(kernel_path):
    n = 128
    x = np.zeros(10_000, np.float32)
    x[::2] = -0.0
    x[5] = 1.5
    counts, lo, hi = fill_minmax(x, n, 2.0**6, use_numba=True, path=kernel_path)
    assert counts[0] == 9_999 and counts[96] == 1 and counts.sum() == 10_000
    assert lo[0] == 0.0 and hi[0] == 0.0 and not math.copysign(1.0, lo[0]) < 0
    assert lo[96] == hi[96] == 1.5


@needs_numba
@pytest.mark.parametrize("all_finite", [False, True])
def test_sliced_calls_give_the_same_counts(monkeypatch, all_finite):
    """Long arrays are fed to the int32-counting kernels in slices; slicing changes nothing."""
    x = awkward_float32(30_001, seed=5)
    if all_finite:
        x = x[np.isfinite(x)]
    whole_counts = np.zeros(2048)
    _kernels.fill_counts(x, whole_counts, 2048 / 9.5, use_numba=True, all_finite=all_finite)
    whole_mm = fill_minmax(x, 128, 2.0**3, use_numba=True, all_finite=all_finite)
    monkeypatch.setattr(_kernels, "_SLICE", 1000)
    sliced_counts = np.zeros(2048)
    _kernels.fill_counts(x, sliced_counts, 2048 / 9.5, use_numba=True, all_finite=all_finite)
    assert sliced_counts.tobytes() == whole_counts.tobytes()
    assert same(fill_minmax(x, 128, 2.0**3, use_numba=True, all_finite=all_finite), whole_mm)
    literal = np.zeros(2048)
    for v in x.tolist():
        if math.isfinite(v):
            literal[int(min(abs(v) * (2048 / 9.5), 2047))] += 1
    assert whole_counts.tobytes() == literal.tobytes()


def literal_summary(x: np.ndarray):
    vals = [v for v in x.tolist() if math.isfinite(v)]
    nan = sum(1 for v in x.tolist() if v != v)
    return (
        nan,
        x.size - len(vals) - nan,
        len(vals),
        min(vals, default=math.inf),
        max(vals, default=-math.inf),
    )


@needs_numba
@pytest.mark.parametrize(
    "values",
    [
        [np.nan, 1.0, -2.5, np.inf],
        [np.nan, -np.inf, -3.0, -1e-45, 7e-39],
        [np.nan, np.nan],
        [np.inf, -np.inf, np.nan],
        [np.nan, 3.4e38, -3.4e38, 0.0],
        [np.nan, 0.0, -0.0, 5.0],  # both zeros, min is a zero: the first one wins as before
        [np.nan, -0.0, 0.0, -5.0],
        [np.nan, 0.0, 0.0, 2.0],
    ],
)
def test_integer_summary_matches_literal_and_scalar_kernel(values):
    x = np.array(values * 7, np.float32)
    s = _kernels.batch_summary(x, use_numba=True)
    nan, inf, finite, lo, hi = literal_summary(x)
    assert (s.nan_count, s.inf_count, s.finite_count) == (nan, inf, finite)
    assert s.min == lo and s.max == hi
    assert s.absmax == (max(abs(lo), abs(hi)) if finite else 0.0)
    scalar = _kernels.numba_kernels()[0](x)  # the scalar kernel, incl. the sign of zeros
    if finite:
        assert repr(s.min) == repr(scalar[3]) and repr(s.max) == repr(scalar[4])


@pytest.mark.parametrize("policy", ["exact", "trt"])
def test_collect_large_relu_batch_matches_literal_binning(policy, kernel_path):
    """A batch large enough for every fast path, checked against a literal binning."""
    rng = np.random.default_rng(9)
    x = np.maximum(rng.standard_normal(300_000).astype(np.float32), 0)
    x[::1000] = np.nan
    c = TensorCollector("t", num_bins=128, histogram=policy)
    c.collect(x)
    s = c.result()
    finite = x[np.isfinite(x)].astype(np.float64)
    amax = float(finite.max())
    assert s.amax == amax and s.nan_count == 300 and s.count == finite.size
    assert s.min == 0.0 and s.max == amax
    ref = np.zeros(128)
    np.add.at(ref, np.minimum(finite * (128 / amax), 127).astype(np.intp), 1)
    if policy == "trt":
        assert s.counts.tobytes() == ref.tobytes()
    else:  # the exact policy resamples a fine grid: equal up to edge-straddling fine bins
        assert s.counts.sum() == ref.sum() and np.abs(s.counts - ref).sum() < 0.01 * ref.sum()


@needs_numba
def test_one_table_serves_batches_of_any_data_after_each_merge():
    """A persistent table is merged and reset between uses: each fill starts from clean rows,
    whatever the previous data or scale left."""
    n = 512
    table = _kernels.new_table(n)
    for seed in (10, 11, 12):
        x = awkward_float32(20_000, seed=seed)
        for scale in (2.0**2, 2.0**127):  # spread out, and everything clamped into the last bin
            counts, lo, hi = np.zeros(n), np.full(n, np.inf), np.full(n, -np.inf)
            zeros = _kernels.fill_table_into(x, table, scale, all_finite=False)
            _kernels.merge_table_into(table, counts, lo, hi)
            _kernels.add_zeros(counts, lo, hi, zeros)
            assert same((counts, lo, hi), literal_fill_minmax(x, n, scale)), (seed, scale)
    assert table.tobytes() == _kernels.new_table(n).tobytes()


def test_collectors_in_threads_match_one_thread():
    """Collectors run in worker threads (calibrate); each collector has its own table."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(14)
    batches = [
        [np.maximum(rng.standard_normal(300_000).astype(np.float32) * (k + 1), 0) for _ in range(3)]
        for k in range(4)
    ]

    def run(tensor_batches):
        c = TensorCollector("t", num_bins=128, histogram="exact")
        for b in tensor_batches:
            c.collect(b)
        s = c.result()
        return s.counts.tobytes(), s.amax, s.min, s.max

    alone = [run(tb) for tb in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(run, batches))
    assert threaded == alone
    single = TensorCollector("t", num_bins=128, histogram="exact")
    single.collect(np.concatenate(batches[2]))
    assert single.result().counts.tobytes() == alone[2][0]  # and batch-split invariant


# --- KL sweep: the table of group terms must not change a single bit -------------------------


def _per_group_kl_sweep():
    """The sweep as first written: one log per group and candidate (the reference)."""
    import numba

    @numba.njit(cache=False)
    def sweep(b, start, quant_bins):
        n = b.shape[0]
        csum = np.zeros(n + 1)
        cnz = np.zeros(n + 1, np.int64)
        cblogb = np.zeros(n + 1)
        for k in range(n):
            v = b[k]
            csum[k + 1] = csum[k] + v
            cnz[k + 1] = cnz[k] + (1 if v > 0 else 0)
            cblogb[k + 1] = cblogb[k] + (v * np.log(v) if v > 0 else 0.0)
        total = csum[n]
        t_log_t = total * np.log(total)
        out = np.empty(n + 1 - start)
        for i in range(start, n + 1):
            s = csum[i]
            o = total - s
            if s <= 0.0 or (o > 0.0 and b[i - 1] == 0.0):
                out[i - start] = np.inf
                continue
            q = 0.0
            lo = 0
            g_last = 0.0
            n_last = 1
            for g in range(quant_bins):
                hi = -((-(g + 1) * i) // quant_bins)
                mass = csum[hi] - csum[lo]
                nz = cnz[hi] - cnz[lo]
                if mass > 0.0:
                    q += mass * np.log(mass / nz)
                g_last = mass
                n_last = nz if nz > 0 else 1
                lo = hi
            if o > 0.0:
                q += o * np.log(g_last / n_last)
            last = b[i - 1] + o
            p = cblogb[i - 1] + (last * np.log(last) if last > 0.0 else 0.0) - t_log_t
            out[i - start] = (p - q + total * np.log(s)) / total
        return out

    return sweep


def _kl_histograms():
    rng = np.random.default_rng(7)
    relu = np.maximum(rng.normal(size=200_000), 0)
    yield np.histogram(relu, 2048, (0, relu.max()))[0].astype(np.float64)  # zero spike
    tail = rng.standard_t(3, size=100_000)
    yield np.histogram(np.abs(tail), 2048, (0, np.abs(tail).max()))[0].astype(np.float64)
    sparse = np.zeros(2048)
    sparse[rng.choice(2048, 40, replace=False)] = rng.integers(1, 50, 40)  # empty groups
    yield sparse
    late = np.histogram(rng.random(50_000), 2048, (0, 4.0))[0].astype(np.float64)
    yield late  # upper three quarters empty: a late pow2 growth
    yield rng.random(2048) * 3.7  # fractional counts (the exact policy's resampling)
    yield np.histogram(rng.normal(size=30_000), 4096, (0, 4.5))[0].astype(np.float64)
    # more bins than 128 * 128: the per-group path of the kernel
    yield np.histogram(np.abs(rng.normal(size=300_000)), 32768, (0, 5))[0].astype(np.float64)


@pytest.mark.parametrize("start, quant_bins", [(128, 128), (300, 128), (128, 96), (64, 128)])
def test_kl_sweep_is_bit_identical_to_one_log_per_group(start, quant_bins):
    kernels = _kernels.numba_kernels()
    if kernels is None:
        pytest.skip("numba not installed")
    reference = _per_group_kl_sweep()
    for counts in _kl_histograms():
        got = kernels[2](counts, start, quant_bins)
        want = reference(counts, start, quant_bins)
        assert got.tobytes() == want.tobytes()
        assert np.isfinite(got).any()


# --- relu=True: a ReLU output's statistics from its input ------------------------------------


def _relu_batches():
    rng = np.random.default_rng(5)
    yield "gaussian", [rng.standard_normal(50_000).astype(np.float32) for _ in range(3)]
    growing = [(rng.standard_normal(20_000) * s).astype(np.float32) for s in (0.1, 1, 40)]
    yield "growing", growing  # the trt range grows, the exact anchor moves
    negative = -np.abs(rng.standard_normal(10_000)).astype(np.float32)
    negative[3] = -0.0
    yield "non-positive-first", [negative, rng.standard_normal(10_000).astype(np.float32)]
    bad = rng.standard_normal(30_000).astype(np.float32)
    bad[[1, 50, 700]] = [np.nan, -np.inf, np.inf]
    yield "nonfinite", [bad, rng.standard_normal(30_000).astype(np.float32)]
    yield "float64", [rng.standard_normal(10_000), rng.standard_normal(10_000) * 3]


RELU_BATCHES = list(_relu_batches())


@pytest.mark.parametrize("policy", ["exact", "trt"])
@pytest.mark.parametrize("name, batches", RELU_BATCHES, ids=[n for n, _ in RELU_BATCHES])
@pytest.mark.parametrize("use_numba", [True, False], ids=["numba", "numpy"])
def test_relu_flag_equals_collecting_the_relu_output(
    name, batches, policy, use_numba, kernel_path, monkeypatch
):
    if use_numba and _kernels.numba_kernels() is None:
        pytest.skip("numba not installed")
    if not use_numba:
        monkeypatch.setattr(_kernels, "numba_kernels", lambda: None)
    derived = TensorCollector("t", num_bins=128, histogram=policy)
    direct = TensorCollector("t", num_bins=128, histogram=policy)
    for b in batches:
        derived.collect(b, relu=True)
        direct.collect(np.maximum(b, b.dtype.type(0)))
    got, want = derived.result(), direct.result()
    assert got.counts.tobytes() == want.counts.tobytes()
    assert (got.range_max, got.amax, got.count, got.growth_events) == (
        want.range_max, want.amax, want.count, want.growth_events)  # fmt: skip
    assert (got.nan_count, got.inf_count, got.min, got.max) == (
        want.nan_count, want.inf_count, want.min, want.max)  # fmt: skip


def _passes_in_a_fresh_interpreter(*lines: str, path: Path | None = None) -> None:
    """Run `lines` after `from trtcalib.stats import _kernels as k` in a new Python process
    (with `path` first on its sys.path)."""
    code = "\n".join(["from trtcalib.stats import _kernels as k", *lines, "print('ok')"])
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@needs_numba
def test_kernels_asked_for_during_the_background_warm_up_are_never_missing():
    # a fresh interpreter: the warm-up thread imports numba while the main thread asks for the
    # kernels at once; it must wait for them, not see "no numba" and fall back to numpy
    _passes_in_a_fresh_interpreter(
        "t = k.warm_up_in_background()",
        "assert k.numba_kernels() is not None",
        "t.join()",
    )


@needs_numba
def test_the_background_warm_up_starts_once_per_process():
    # calibrate() and collect_statistics() (and the CLI before them) all ask for it: the later
    # calls must get the running thread back, not start another import of numba
    _passes_in_a_fresh_interpreter(
        "import threading",
        "t = k.warm_up_in_background()",
        "assert k.warm_up_in_background() is t and k.warm_up_in_background() is t",
        "t.join()",
        "assert k.warm_up_in_background() is t",
        "names = [th.name for th in threading.enumerate()]",
        "assert 'trtcalib-kernel-warm-up' not in names, names",
    )


class _FakeKernel:
    """Stands in for a numba dispatcher: accepts any call, reports its cache statistics."""

    def __init__(self, misses: int) -> None:
        self.stats = SimpleNamespace(
            cache_misses=Counter({"(float32[:],)": misses} if misses else {})
        )

    def __call__(self, *args):
        return None


@pytest.mark.parametrize("misses", [0, 1])
def test_the_warm_up_says_when_numba_compiles_instead_of_loading_its_cache(monkeypatch, misses):
    # the first run after an install compiles for ~10 s: the CLI must not look hung meanwhile
    fakes = tuple(_FakeKernel(misses) for _ in range(11))
    monkeypatch.setattr(_kernels, "numba_kernels", lambda: fakes)
    said: list[str] = []
    _kernels._warm_up(said.append)
    assert len(said) == misses
    if misses:
        assert "compiling" in said[0] and "once after an install" in said[0]


def test_a_broken_numba_is_tried_once_warned_about_and_the_numpy_kernels_used(monkeypatch):
    def broken():
        raise OSError("libllvmlite.so: cannot open shared object file")

    monkeypatch.setattr(_kernels, "_numba_tried", False)
    monkeypatch.setattr(_kernels, "_numba_kernels", None)
    monkeypatch.setattr(_kernels, "_build_numba", broken)
    with pytest.warns(UserWarning, match="numba unusable.*libllvmlite"):
        assert _kernels.numba_kernels() is None
    assert _kernels.numba_kernels() is None  # not tried again
    c = TensorCollector("t", num_bins=128)
    c.collect(np.linspace(-2, 3, 50_000, dtype=np.float32))
    assert c.result().amax == 3.0


# a colorama with numba's minimum version that records what is called on it
_COLORAMA_SPY = """
__version__ = "0.4.6"
calls = []
def init(*args, **kwargs): calls.append("init")
def reinit(): calls.append("reinit")
def deinit(): calls.append("deinit")
class _Codes:
    def __getattr__(self, name): return ""
Fore = Back = Style = _Codes()
"""


@needs_numba
def test_numba_never_swaps_the_process_streams(tmp_path):
    # with colorama installed, numba wraps each error message it builds (thousands per compile)
    # in colorama's init()/deinit(), which replace sys.stdout/sys.stderr for the whole process:
    # from the warm-up thread that raced pytest's capture and lost the CLI's output
    (tmp_path / "colorama.py").write_text(_COLORAMA_SPY)
    _passes_in_a_fresh_interpreter(
        "import os, colorama",
        "assert k.numba_kernels() is not None",
        "from numba.core import errors",
        "str(errors.TypingError('no such overload'))",  # what numba builds while compiling
        "assert colorama.calls == [], colorama.calls",
        "assert 'NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING' not in os.environ",  # put back
        path=tmp_path,
    )
