"""TensorCollector: edge cases, running min/max, moving average, kernels, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trtcalib.errors import ConfigError, StatsError
from trtcalib.stats import TensorCollector, _kernels, compute_amax, is_calibratable, scale_from_amax

POLICIES = ["exact", "trt"]


@pytest.mark.parametrize("policy", POLICIES)
class TestEdgeCases:
    def test_all_zero_tensor_gives_scale_zero(self, policy):
        c = TensorCollector("z", histogram=policy)
        c.collect(np.zeros((4, 8), np.float32))
        c.collect(np.zeros(3, np.float32))
        s = c.result()
        assert s.amax == 0.0 and s.range_max == 0.0 and s.count == 35
        assert s.counts[0] == 35 and s.counts[1:].sum() == 0
        for name in ("entropy", "minmax", "percentile", "mse", "mix", "legacy"):
            assert compute_amax(s, name) == 0.0
        assert scale_from_amax(0.0) == 0.0

    def test_zeros_then_values(self, policy):
        c = TensorCollector("z", histogram=policy)
        c.collect(np.zeros(10, np.float32))
        c.collect(np.array([1.0, 0.5], np.float32))
        s = c.result()
        assert s.range_max == 1.0 and s.counts[0] == 10 and s.counts[1024] == 1
        assert s.counts[2047] == 1 and s.count == 12

    @pytest.mark.parametrize("bad", [np.inf, -np.inf])
    def test_inf_gives_inf_amax_and_scale(self, policy, bad):
        c = TensorCollector("t", histogram=policy)
        c.collect(np.array([0.5, bad, -2.0], np.float32))
        s = c.result()
        assert s.amax == math.inf and s.inf_count == 1 and s.count == 2
        assert s.min == -2.0 and s.max == 0.5  # finite signed values
        assert s.counts.sum() == 2  # inf never enters the histogram
        for name in ("entropy", "minmax", "percentile", "mse", "mix", "legacy"):
            assert compute_amax(s, name) == math.inf
        assert scale_from_amax(math.inf) == math.inf

    def test_nan_is_ignored_and_counted(self, policy):
        c = TensorCollector("t", histogram=policy)
        c.collect(np.array([np.nan, 1.0, -0.25, np.nan], np.float32))
        s = c.result()
        assert s.nan_count == 2 and s.count == 2 and s.amax == 1.0
        assert s.counts.sum() == 2 and compute_amax(s, "minmax") == 1.0

    def test_only_nan_gives_zero(self, policy):
        c = TensorCollector("t", histogram=policy)
        c.collect(np.full(5, np.nan, np.float32))
        s = c.result()
        assert s.count == 0 and s.nan_count == 5 and compute_amax(s, "entropy") == 0.0

    def test_empty_batch_names_the_tensor(self, policy):
        c = TensorCollector("conv1_out", histogram=policy)
        with pytest.raises(StatsError, match="conv1_out.*empty"):
            c.collect(np.zeros((0, 3), np.float32))

    @pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.bool_])
    def test_integer_and_bool_are_not_calibratable(self, policy, dtype):
        assert not is_calibratable(dtype)
        c = TensorCollector("ids", histogram=policy)
        with pytest.raises(StatsError, match="ids"):
            c.collect(np.ones(3, dtype))

    def test_subnormals(self, policy):
        tiny = np.float32(1e-45)  # the smallest float32 subnormal
        c = TensorCollector("t", histogram=policy)
        c.collect(np.array([tiny, -tiny, 0.0], np.float32))
        s = c.result()
        assert s.amax == float(tiny) and s.counts[2047] == 2 and s.counts[0] == 1
        assert compute_amax(s, "minmax") == float(tiny)

    def test_huge_values(self, policy):
        big = np.finfo(np.float32).max
        c = TensorCollector("t", histogram=policy)
        c.collect(np.array([1.0, 2.0], np.float32))
        c.collect(np.array([big, -big], np.float32))
        s = c.result()
        assert s.amax == float(big) and s.counts.sum() == 4 and math.isfinite(s.range_max)
        assert math.isfinite(compute_amax(s, "entropy"))

    def test_float16_and_float64(self, policy):
        for dtype in (np.float16, np.float64):
            c = TensorCollector("t", histogram=policy)
            c.collect(np.array([0.5, -1.0, 0.25], dtype))
            assert c.result().amax == 1.0

    def test_running_min_max_over_batches(self, policy):
        c = TensorCollector("t", histogram=policy)
        c.collect(np.array([-1.0, 3.0], np.float32))
        c.collect(np.array([-5.0, 2.0], np.float32))
        s = c.result()
        assert (s.min, s.max, s.amax, s.batches) == (-5.0, 3.0, 5.0, 2)
        assert s.moving_min is None and s.moving_max is None


def test_is_calibratable():
    for dt in ("float16", "float32", "float64", np.float32):
        assert is_calibratable(dt)
    for dt in ("int8", "bool", "object", "complex64", "not-a-dtype"):
        assert not is_calibratable(dt)


def test_moving_average_follows_onnxruntime_convention():
    c = TensorCollector("t", moving_average=0.25)
    batches = [np.array([-1.0, 2.0]), np.array([-3.0, 6.0]), np.array([1.0, 4.0])]
    m_lo, m_hi = -1.0, 2.0  # first batch initialises
    for b in batches[1:]:
        m_lo = m_lo + 0.25 * (b.min() - m_lo)
        m_hi = m_hi + 0.25 * (b.max() - m_hi)
    for b in batches:
        c.collect(b.astype(np.float32))
    s = c.result()
    assert s.moving_min == pytest.approx(m_lo) and s.moving_max == pytest.approx(m_hi)
    assert s.min == -3.0 and s.max == 6.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"moving_average": 0.6}, "moving average"),
        ({"moving_average": 0.001}, "moving average"),
        ({"moving_average": "x"}, "moving average"),
        ({"histogram": "fast"}, "histogram policy"),
        ({"growth": "cube"}, "growth rule"),
        ({"num_bins": 100}, "num_bins"),
        ({"num_bins": 3000}, "num_bins"),
        ({"num_bins": 64}, "num_bins"),
    ],
)
def test_bad_options_raise_config_error_naming_tensor(kwargs, match):
    with pytest.raises(ConfigError, match=f"relu7.*{match}"):
        TensorCollector("relu7", **kwargs)


def test_stats_properties():
    c = TensorCollector("t", num_bins=256, histogram="trt")
    c.collect(np.array([0.0, 4.0], np.float32))
    s = c.result()
    assert s.bin_width == 4.0 / 256 and s.num_bins == 256
    assert s.empty_bin_fraction == 254 / 256


def test_result_is_frozen_and_collector_continues():
    c = TensorCollector("t")
    c.collect(np.array([1.0], np.float32))
    s = c.result()
    with pytest.raises(AttributeError):
        s.amax = 3.0  # type: ignore[misc]
    c.collect(np.array([2.0], np.float32))
    assert c.result().amax == 2.0 and s.amax == 1.0


def test_non_contiguous_input():
    x = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    c = TensorCollector("t", histogram="trt")
    c.collect(x)
    assert c.result().amax == 22.0 and c.result().count == 12


@pytest.mark.skipif(_kernels.numba_kernels() is None, reason="numba not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_and_numpy_kernels_agree_bit_for_bit(dtype):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(100_003) * 3).astype(dtype)
    x[[5, 9, 11]] = [np.nan, np.inf, -np.inf]
    assert _kernels.batch_summary(x, use_numba=True) == _kernels.batch_summary(x, use_numba=False)
    for scale in (2048 / 3.7, 4096.0, 1e-3):
        a, b = np.zeros(2048), np.zeros(2048)
        _kernels.fill_counts(x, a, scale, use_numba=True)
        _kernels.fill_counts(x, b, scale, use_numba=False)
        assert a.tobytes() == b.tobytes()
        lo = [np.full(2048, np.inf) for _ in range(2)]
        hi = [np.full(2048, -np.inf) for _ in range(2)]
        cs = [np.zeros(2048) for _ in range(2)]
        for k, flag in enumerate((True, False)):
            _kernels.fill_counts_minmax(x, cs[k], lo[k], hi[k], scale, use_numba=flag)
        assert cs[0].tobytes() == cs[1].tobytes() == a.tobytes()
        assert lo[0].tobytes() == lo[1].tobytes() and hi[0].tobytes() == hi[1].tobytes()


def test_fill_matches_literal_binning():
    rng = np.random.default_rng(8)
    x = (rng.standard_normal(5000) * 2).astype(np.float32)
    c = TensorCollector("t", num_bins=128, histogram="trt")
    c.collect(x)
    s = c.result()
    ref = np.zeros(128)
    r = float(np.abs(x).max())
    for v in x:
        ref[min(int(abs(float(v)) * (128 / r)), 127)] += 1
    assert np.array_equal(s.counts, ref)
