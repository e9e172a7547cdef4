"""Histogram policies: `trt` growth rules step by step; `exact` independent of split and order."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trtcalib.stats import TensorCollector, compute_amax

N = 128  # smallest allowed bin count keeps the pure-Python references fast


class RefTrtHistogram:
    """Independent reference for the `trt` policy, in plain Python lists."""

    def __init__(self, n: int, growth: str) -> None:
        self.n, self.growth = n, growth
        self.counts = [0.0] * n
        self.range = 0.0
        self.pending = 0
        self.events = 0

    def add(self, values) -> None:
        vals = [abs(float(v)) for v in values if math.isfinite(float(v))]
        if not vals:
            return
        m = max(vals)
        if self.range == 0.0:
            if m == 0.0:
                self.pending += len(vals)
                return
            self.range = m
            self.counts[0] += self.pending
            self.pending = 0
        elif m > self.range:
            self.events += 1
            if self.growth == "pow2":
                while self.range < m:
                    self.counts = [
                        self.counts[2 * k] + self.counts[2 * k + 1] for k in range(self.n // 2)
                    ] + [0.0] * (self.n // 2)
                    self.range *= 2
            else:
                old_w = self.range / self.n
                r = m * m  # the square of the new max (the article: 2.4 -> 5.76) ...
                if r < m:  # ... which cannot cover a max below 1: then double, as pow2
                    r = self.range
                    while r < m:
                        r *= 2
                new_w = r / self.n
                new = [0.0] * self.n
                for k, c in enumerate(self.counts):
                    lo, hi = k * old_w, (k + 1) * old_w
                    for j in range(int(lo // new_w), min(self.n, int(hi // new_w) + 1)):
                        overlap = min(hi, (j + 1) * new_w) - max(lo, j * new_w)
                        if overlap > 0:
                            new[j] += c * overlap / old_w
                self.counts = new
                self.range = r
        for v in vals:
            self.counts[min(int(v * (self.n / self.range)), self.n - 1)] += 1


finite32 = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=32)
batches_strategy = st.lists(st.lists(finite32, min_size=1, max_size=40), min_size=1, max_size=6)


def _collect(batches, **kw):
    c = TensorCollector("t", num_bins=N, **kw)
    for b in batches:
        c.collect(np.asarray(b, dtype=np.float32))
    return c


class TestTrtPolicy:
    @settings(max_examples=60, deadline=None)
    @given(batches=batches_strategy)
    def test_pow2_growth_step_by_step(self, batches):
        c = TensorCollector("t", num_bins=N, histogram="trt", growth="pow2")
        ref = RefTrtHistogram(N, "pow2")
        for b in batches:
            c.collect(np.asarray(b, dtype=np.float32))
            ref.add(np.asarray(b, dtype=np.float32))
            s = c.result()
            assert s.counts.tolist() == (
                ref.counts if ref.range else [ref.pending] + [0.0] * (N - 1)
            )
            assert s.range_max == ref.range
            assert s.growth_events == ref.events

    @settings(max_examples=40, deadline=None)
    @given(batches=batches_strategy)
    def test_square_growth_step_by_step(self, batches):
        c = TensorCollector("t", num_bins=N, histogram="trt", growth="square")
        ref = RefTrtHistogram(N, "square")
        for b in batches:
            c.collect(np.asarray(b, dtype=np.float32))
            ref.add(np.asarray(b, dtype=np.float32))
            s = c.result()
            if ref.range:
                np.testing.assert_allclose(s.counts, ref.counts, rtol=1e-9, atol=1e-9)
            assert s.range_max == pytest.approx(ref.range, rel=1e-12)
            assert s.growth_events == ref.events
            assert s.counts.sum() == pytest.approx(s.count)

    def test_square_rule_example(self):
        # the article's worked example: 1.54 then 2.4 -> range 2.4^2 = 5.76; 2.4 then 1.54 -> 2.4
        c = TensorCollector("t", num_bins=N, histogram="trt", growth="square")
        c.collect(np.array([1.54], dtype=np.float64))
        c.collect(np.array([2.4], dtype=np.float64))
        assert c.result().range_max == pytest.approx(5.76)
        assert c.result().growth_events == 1
        c = TensorCollector("t", num_bins=N, histogram="trt", growth="square")
        c.collect(np.array([2.4], dtype=np.float64))
        c.collect(np.array([1.54], dtype=np.float64))
        assert c.result().range_max == 2.4 and c.result().growth_events == 0

    def test_square_rule_below_one_doubles(self):
        c = TensorCollector("t", num_bins=N, histogram="trt", growth="square")
        c.collect(np.array([0.3], dtype=np.float64))
        c.collect(np.array([0.5], dtype=np.float64))  # 0.25 < 0.5: double 0.3 -> 0.6
        assert c.result().range_max == pytest.approx(0.6)

    def test_pow2_late_growth_leaves_upper_half_empty(self):
        c = TensorCollector("t", histogram="trt")
        c.collect(np.linspace(0, 1, 10_000, dtype=np.float32))
        c.collect(np.array([1.5], dtype=np.float32))
        s = c.result()
        assert s.range_max == 2.0 and s.growth_events == 1
        # old bins merged 2:1 into 0..1023 (1.0 was in bin 2047 -> 1023); 1.5 -> bin 1536
        assert s.counts[1023] >= 1 and s.counts[:1024].sum() == 10_000
        assert np.flatnonzero(s.counts[1024:]).tolist() == [1536 - 1024]
        assert s.empty_bin_fraction == 1023 / 2048

    def test_range_starts_at_first_batch_max(self):
        c = TensorCollector("t", histogram="trt")
        c.collect(np.array([-3.0, 1.0], dtype=np.float32))
        s = c.result()
        assert s.range_max == 3.0 and s.counts[2047] == 1 and s.counts[682] == 1


class TestExactPolicy:
    @settings(max_examples=80, deadline=None)
    @given(
        values=st.lists(finite32, min_size=1, max_size=120),
        cuts=st.lists(st.integers(0, 120), max_size=6),
        seed=st.integers(0, 2**16),
    )
    def test_independent_of_split_and_order(self, values, cuts, seed):
        arr = np.asarray(values, dtype=np.float32)
        whole = _collect([arr], histogram="exact").result()
        perm = np.random.default_rng(seed).permutation(arr)
        parts = [p for p in np.split(perm, sorted({min(c, arr.size) for c in cuts})) if p.size]
        split = _collect(parts, histogram="exact").result()
        assert split.counts.tobytes() == whole.counts.tobytes()
        assert (split.amax, split.min, split.max, split.count, split.range_max) == (
            whole.amax,
            whole.min,
            whole.max,
            whole.count,
            whole.range_max,
        )

    @settings(max_examples=60, deadline=None)
    @given(values=st.lists(finite32, min_size=1, max_size=120), seed=st.integers(0, 2**16))
    def test_minmax_amax_independent_of_split_and_order(self, values, seed):
        from trtcalib.stats import compute_amax

        arr = np.asarray(values, dtype=np.float32)
        rng = np.random.default_rng(seed)
        perm = rng.permutation(arr)
        parts = np.array_split(perm, rng.integers(1, 8))
        for policy in ("exact", "trt"):
            a = compute_amax(_collect([arr], histogram=policy).result(), "minmax")
            b = compute_amax(
                _collect([p for p in parts if p.size], histogram=policy).result(), "minmax"
            )
            assert a == b == float(np.abs(arr).max())

    def test_equals_trt_single_batch_when_amax_is_power_of_two(self):
        rng = np.random.default_rng(3)
        x = rng.random(100_000).astype(np.float32)
        x[5] = 1.0
        trt = TensorCollector("t", histogram="trt")
        trt.collect(x)
        exact = _collect_all(np.array_split(rng.permutation(x), 7), 2048)
        assert np.array_equal(exact.result().counts, trt.result().counts)

    @pytest.mark.parametrize("amax", [0.7, 3.3, 1e-3, 1234.5])
    def test_close_to_trt_single_batch_otherwise(self, amax):
        rng = np.random.default_rng(4)
        x = (rng.standard_normal(50_000) * amax / 4).astype(np.float32)
        x = np.clip(x, -amax, amax).astype(np.float32)
        x[0] = np.float32(amax)
        trt = TensorCollector("t", histogram="trt")
        trt.collect(x)
        t = trt.result()
        e = _collect_all(np.array_split(x, 5), 2048).result()
        assert e.range_max == t.range_max == float(np.float32(amax))
        assert e.counts.sum() == pytest.approx(t.counts.sum())
        # each final bin may only differ by values within one fine bin of its two edges
        fine = 2.0 ** math.frexp(float(np.float32(amax)))[1] / (2048 * 16)
        a = np.abs(x.astype(np.float64))
        edges = np.arange(2049) * (t.range_max / 2048)
        near = np.array(
            [np.count_nonzero(np.abs(a - edges[k]) < fine) for k in range(2049)], dtype=float
        )
        bound = near[:-1] + near[1:]
        assert np.all(np.abs(e.counts - t.counts) <= bound + 1e-9)
        assert np.abs(e.counts - t.counts).sum() < 0.02 * x.size


def test_exact_equals_trt_single_batch_for_discrete_levels():
    rng = np.random.default_rng(9)
    x = (rng.integers(0, 256, 100_000) / 255.0 * 3.7).astype(np.float32)  # amax 3.7: not 2^k
    trt = TensorCollector("t", histogram="trt")
    trt.collect(x)
    exact = _collect_all(np.array_split(rng.permutation(x), 9), 2048)
    assert np.array_equal(exact.result().counts, trt.result().counts)


def _collect_all(parts, n):
    c = TensorCollector("t", num_bins=n, histogram="exact")
    for p in parts:
        c.collect(p)
    return c


def test_exact_policy_survives_float64_values_below_2_to_the_minus_1000():
    # the fine-histogram scale 2**(log2 F - e) overflowed for e < -1008 (subnormal float64)
    c = TensorCollector("tiny", histogram="exact")
    c.collect(np.array([5e-324, 1e-320, 0.0, -2e-310]))
    s = c.result()
    assert s.amax == 2e-310 and s.count == 4
    assert s.counts.sum() == 4
    assert compute_amax(s, "minmax") == 2e-310


# --- exact policy: summary folded into the fill (large float32 batches inside the range) -----


def _summarized_streams():
    rng = np.random.default_rng(21)
    size = 300_000  # >= 128 values per fine bin at 128 bins: the float32 table kernel applies
    g = [rng.normal(size=size).astype(np.float32) for _ in range(3)]
    yield "gaussian", g
    relu = [np.maximum(b, 0) for b in g]
    relu[1][5] = -0.0
    yield "relu-zeros", relu
    grow = [g[0] * 0.01, g[1], g[2] * 100]  # later batches beyond the range: refused, merged
    yield "growing", grow
    bad = g[1].copy()
    bad[[3, 99]] = [np.nan, -np.inf]
    yield "nonfinite-later", [g[0], bad, g[2]]
    yield "float64", [b.astype(np.float64) for b in g]
    # first batches: zero chunks before the first anchor, then a first batch of zeros only
    zeros_first = np.concatenate([np.zeros(20_000, np.float32), g[0]])
    yield "zeros-then-values", [zeros_first, g[1]]
    yield "all-zero-first-batch", [np.zeros(size, np.float32), g[0], g[1]]


SUMMARIZED = list(_summarized_streams())


@pytest.mark.parametrize("policy", ["exact", "trt"])
@pytest.mark.parametrize("name, batches", SUMMARIZED, ids=[n for n, _ in SUMMARIZED])
def test_summary_folded_into_the_fill_changes_nothing(name, batches, policy, monkeypatch):
    import trtcalib.stats.histogram as histogram

    calls = []
    for kernel in ("fill_table_run", "fill_counts_summarized"):
        real = getattr(histogram, kernel)
        monkeypatch.setattr(histogram, kernel, lambda *a, real=real: calls.append(1) or real(*a))
    fused = TensorCollector("t", num_bins=N, histogram=policy)
    for b in batches:
        fused.collect(b)
    monkeypatch.setattr(histogram, "table_applies", lambda *a: False)
    monkeypatch.setattr(histogram, "fill_counts_summarized", lambda *a: None)
    plain = TensorCollector("t", num_bins=N, histogram=policy)
    for b in batches:
        plain.collect(b)
    got, want = fused.result(), plain.result()
    assert got.counts.tobytes() == want.counts.tobytes()
    assert (got.range_max, got.amax, got.count) == (want.range_max, want.amax, want.count)
    assert (got.nan_count, got.inf_count) == (want.nan_count, want.inf_count)
    assert got.growth_events == want.growth_events
    assert (got.min, got.max) == (want.min, want.max)  # 0.0 == -0.0: a zero's sign is free
    if batches[0].dtype == np.float32:
        assert calls  # the batches after the first went through the one-read path
