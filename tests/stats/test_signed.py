"""Signed exact histograms: one pass gives |x| and max(x, 0), each equal to collecting it alone."""

from __future__ import annotations

import numpy as np
import pytest

import trtcalib.stats.signed as signed
from trtcalib.errors import ConfigError, StatsError
from trtcalib.stats import TensorCollector, _kernels

N = 128  # bins: few, so every fine bin sees many values and the bounds matter


def _streams():
    rng = np.random.default_rng(11)

    def gauss(size, scale=1.0):
        return (rng.standard_normal(size) * scale).astype(np.float32)

    yield "gaussian", [gauss(60_000) for _ in range(3)]
    late = gauss(50_000)
    late[40_000] = 300.0  # beyond both anchors mid-batch: the positive half re-anchors there
    late[45_000] = -900.0  # and the negative one a chunk later
    yield "re-anchor-mid-batch", [gauss(50_000), late, gauss(50_000, 2000.0)]
    negative = -np.abs(gauss(20_000))
    negative[7] = -0.0
    yield "non-positive-first", [negative, gauss(20_000) * 0.01, np.abs(gauss(20_000))]
    mostly = gauss(30_000)
    mostly[::3] = 0.0
    yield "zeros-and-negatives", [np.zeros(5_000, np.float32), mostly, -np.abs(mostly)]
    bad = gauss(30_000)
    bad[[1, 5_000, 29_999]] = [np.nan, -np.inf, np.inf]
    yield "nonfinite-mid-stream", [gauss(30_000), bad, gauss(30_000)]
    yield "all-nan-batch", [np.full(100, np.nan, np.float32), gauss(10_000)]
    yield "float64", [rng.standard_normal(20_000), rng.standard_normal(20_000) * 7]
    yield "float16", [gauss(20_000).astype(np.float16) for _ in range(2)]
    tiny = (gauss(10_000) * np.float32(1e-41)).astype(np.float32)  # subnormal: the long way
    yield "subnormal-float32", [tiny, gauss(10_000)]
    huge = gauss(10_000) * np.float32(1e37)
    yield "near-float32-max", [gauss(10_000), huge.astype(np.float32)]
    yield "small-batches", [gauss(7), gauss(1), np.float32([-2.5, 0.0, 4.0])]


STREAMS = list(_streams())
IDS = [name for name, _ in STREAMS]


def _assert_same(got, want):
    assert got.counts.tobytes() == want.counts.tobytes()
    assert (got.range_max, got.amax, got.count, got.batches) == (
        want.range_max, want.amax, want.count, want.batches)  # fmt: skip
    assert (got.nan_count, got.inf_count, got.min, got.max) == (
        want.nan_count, want.inf_count, want.min, want.max)  # fmt: skip


def _run_signed(batches):
    source = TensorCollector("x", num_bins=N, signed=True)
    relu = source.relu_collector("r")
    for b in batches:
        relu.collect(b, relu=True, summary=source.collect(b))
    return source.result(), relu.result()


def _run_alone(batches):
    x = TensorCollector("x", num_bins=N)
    r = TensorCollector("r", num_bins=N)
    for b in batches:
        x.collect(b)
        r.collect(np.maximum(b, b.dtype.type(0)))  # the Relu output itself
    return x.result(), r.result()


@pytest.mark.parametrize("use_numba", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("name, batches", STREAMS, ids=IDS)
def test_one_pass_equals_collecting_x_and_its_relu_alone(name, batches, use_numba, monkeypatch):
    if use_numba and _kernels.numba_kernels() is None:
        pytest.skip("numba not installed")
    calls = []
    if use_numba:
        real = signed.fill_signed_run
        monkeypatch.setattr(signed, "fill_signed_run", lambda *a: calls.append(1) or real(*a))
    else:
        monkeypatch.setattr(_kernels, "numba_kernels", lambda: None)
    (x, r), (want_x, want_r) = _run_signed(batches), _run_alone(batches)
    _assert_same(x, want_x)
    _assert_same(r, want_r)
    if use_numba and any(b.dtype in (np.float32, np.float16) for b in batches):
        assert calls  # float32 batches went through the signed kernel


def test_batch_split_does_not_matter():
    rng = np.random.default_rng(3)
    data = (rng.standard_normal(90_000) * rng.uniform(0.1, 50, 90_000)).astype(np.float32)
    whole = _run_signed([data])
    for cuts in ([30_000, 60_000], [1, 89_999], [44_444]):
        parts = np.split(data, cuts)
        for got, want in zip(_run_signed(parts), whole, strict=True):
            assert got.counts.tobytes() == want.counts.tobytes()
            assert (got.amax, got.min, got.max) == (want.amax, want.min, want.max)


def test_uint32_counts_are_flushed_before_they_could_overflow(monkeypatch):
    rng = np.random.default_rng(8)
    batches = [rng.standard_normal(40_000).astype(np.float32) for _ in range(3)]
    merges = []
    real = signed.ExactHistogram._flush
    monkeypatch.setattr(signed.ExactHistogram, "_flush", lambda h: merges.append(1) or real(h))
    source = TensorCollector("x", num_bins=N, signed=True)
    relu = source.relu_collector("r")
    hist = source._hist
    for b in batches:
        for half in (hist.pos, hist.neg):  # as if 2**31 values were already in the tables
            half._table_values = max(half._table_values, (1 << 31) - 100)
        relu.collect(b, relu=True, summary=source.collect(b))
    assert len(merges) >= 4  # each half flushed on the second and third batch
    want_x, want_r = _run_alone(batches)
    _assert_same(source.result(), want_x)
    _assert_same(relu.result(), want_r)


def test_relu_view_must_follow_its_source_batch_by_batch():
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    source = TensorCollector("x", num_bins=N, signed=True)
    relu = source.relu_collector("r")
    with pytest.raises(StatsError, match="max\\(x, 0\\) of the batch its source"):
        relu.collect(x, relu=True)  # the source has not binned this batch
    source.collect(x)
    relu.collect(x, relu=True)  # in step
    source.collect(x)
    source.collect(x)
    with pytest.raises(StatsError):
        relu.collect(x, relu=True)  # one batch behind


def test_signed_needs_the_exact_policy_and_views_need_a_signed_source():
    with pytest.raises(ConfigError, match="t1.*only the exact policy"):
        TensorCollector("t1", histogram="trt", signed=True)
    with pytest.raises(StatsError, match="t2.*needs a signed collector"):
        TensorCollector("t2").relu_collector("r")


def test_signed_histogram_refuses_relu_binning():
    hist = signed.SignedExactHistogram(N)
    with pytest.raises(StatsError, match="view"):
        hist.add(np.ones(4, np.float32), 1.0, 4, relu=True)
