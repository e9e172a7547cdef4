"""minmax, percentile, mse, mix and legacy against literal references written here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trtcalib.errors import ConfigError
from trtcalib.stats import TensorCollector, compute_amax, get_algorithm
from trtcalib.stats.collector import TensorStats


def stats_of(data, num_bins=2048, histogram="trt"):
    c = TensorCollector("t", num_bins=num_bins, histogram=histogram)
    c.collect(data)
    return c.result()


def ref_percentile(counts, width, p):
    """First bin whose cumulative count reaches p/100 of the total (exact rational arithmetic on
    the float64 counts, p read as the decimal it was written as); its LEFT edge."""
    from fractions import Fraction

    exact = [Fraction(float(c)) for c in counts]
    target = Fraction(repr(p)) / 100 * sum(exact)
    running = Fraction(0)
    for j, c in enumerate(exact):
        running += c
        if running >= target:
            return j * width
    return len(counts) * width


def counts_stats(counts, range_max=1.0):
    """A TensorStats holding exactly `counts` (only the fields the algorithms read matter)."""
    counts = np.asarray(counts, dtype=np.float64)
    return TensorStats(
        "t", "exact", counts, range_max, range_max, 0.0, range_max, None, None,
        int(counts.sum()), 0, 0, 0, 1,
    )  # fmt: skip


def ref_qdq_error(counts, width, amax):
    s = amax / 127
    err = 0.0
    for j, c in enumerate(counts):
        if c:
            x = (j + 0.5) * width
            q = min(round(x / s), 127) * s  # Python round: half to even, like TensorRT
            err += c * (x - q) ** 2
    return err / float(sum(counts))


class TestMinMax:
    def test_amax_is_max_abs(self, dist):
        _, data = dist
        for policy in ("trt", "exact"):
            s = stats_of(data, histogram=policy)
            assert compute_amax(s, "minmax") == float(np.max(np.abs(data)))

    def test_evidence_scale_bits(self):
        import struct

        from trtcalib.stats import scale_from_amax

        x = np.random.default_rng(2).random(5000).astype(np.float32)
        x[10] = 1.0
        scale = scale_from_amax(compute_amax(stats_of(x), "minmax"))
        assert struct.pack(">f", scale).hex() == "3c010204"

    def test_trt_header_name(self):
        assert get_algorithm("minmax").trt_algorithm == "MinMaxCalibration"


class TestPercentile:
    @pytest.mark.parametrize("p", [99.99, 99.9875, 99.0, 50.0, 100.0])
    def test_matches_reference(self, dist, p):
        _, data = dist
        s = stats_of(data)
        expect = ref_percentile(s.counts, s.bin_width, p)
        assert compute_amax(s, "percentile", percentile=p) == pytest.approx(expect, rel=1e-12)

    def test_p_100_is_the_left_edge_of_the_last_non_empty_bin(self):
        rng = np.random.default_rng(11)
        for _ in range(200):
            counts = np.zeros(2048)
            used = rng.integers(1, 2048)
            counts[:used] = rng.integers(0, 50, size=used)
            counts[used - 1] = rng.integers(1, 50)
            s = counts_stats(counts)
            assert compute_amax(s, "percentile", percentile=100.0) == (used - 1) * s.bin_width

    @pytest.mark.parametrize(
        "head, tail_bin, p",
        [(999_900, 2000, 99.99), (9_500, 1500, 95.0), (95_000, 300, 95.0), (61_728, 900, 50.0)],
    )
    def test_a_quantile_on_a_bin_boundary_stays_in_its_bin(self, head, tail_bin, p):
        """The quantile falls exactly after bin 99: summing rounded fractions jumped over the
        empty bins to the tail (reported: 20x too large an amax)."""
        counts = np.zeros(2048)
        counts[:100] = head // 100
        total = round(counts.sum() * 100 / p)
        counts[tail_bin] = total - counts.sum()
        s = counts_stats(counts)
        assert compute_amax(s, "percentile", percentile=p) == 99 * s.bin_width
        assert ref_percentile(counts, s.bin_width, p) == 99 * s.bin_width

    def test_random_whole_counts_match_the_exact_reference(self):
        rng = np.random.default_rng(12)
        for _ in range(300):
            counts = rng.integers(0, 30, size=256).astype(np.float64)
            counts[rng.integers(0, 256)] += 1
            s = counts_stats(counts)
            for p in (50.0, 90.0, 99.0, 99.9, 99.99, 100.0):
                expect = ref_percentile(counts, s.bin_width, p)
                assert compute_amax(s, "percentile", percentile=p) == expect, (p, counts)

    def test_nothing_binned_gives_zero(self):
        assert compute_amax(counts_stats(np.zeros(2048)), "percentile", percentile=99.0) == 0.0

    def test_default_is_99_99(self):
        data = np.random.default_rng(3).standard_normal(100_000).astype(np.float32)
        s = stats_of(data)
        assert compute_amax(s, "percentile") == compute_amax(s, "percentile", percentile=99.99)

    def test_close_to_numpy_percentile(self):
        data = np.random.default_rng(4).standard_normal(400_000).astype(np.float32)
        s = stats_of(data)
        true = np.percentile(np.abs(data), 99.9)
        assert abs(compute_amax(s, "percentile", percentile=99.9) - true) <= s.bin_width

    @pytest.mark.parametrize("bad", [0.0, -1.0, 100.5, "abc", float("nan")])
    def test_bad_parameter(self, bad):
        s = stats_of(np.ones(10, np.float32))
        with pytest.raises(ConfigError, match="percentile"):
            compute_amax(s, "percentile", percentile=bad)


class TestMSE:
    def test_matches_reference(self, dist):
        _, data = dist
        s = stats_of(data[:50_000], num_bins=256)
        cands = [(i + 0.5) * s.bin_width for i in range(128, 256)]
        errs = [ref_qdq_error(s.counts, s.bin_width, a) for a in cands]
        got = compute_amax(s, "mse")
        i = round(got / s.bin_width - 0.5)
        assert got == pytest.approx((i + 0.5) * s.bin_width)
        best = min(errs)
        assert errs[i - 128] <= best * (1 + 1e-9) + 1e-300
        assert i - 128 == min(k for k, e in enumerate(errs) if e <= best * (1 + 1e-9) + 1e-300)

    def test_numba_and_numpy_errors_agree(self, dist):
        from trtcalib.stats.algorithms._quant import qdq_errors

        _, data = dist
        s = stats_of(data)
        amaxes = np.array([0.0, s.amax / 3, s.amax / 2, s.amax, 2 * s.amax])
        fast = qdq_errors(s.counts, s.bin_width, amaxes)
        slow = qdq_errors(s.counts, s.bin_width, amaxes, use_numba=False)
        assert np.isinf(fast[0]) and np.isinf(slow[0])
        np.testing.assert_allclose(fast[1:], slow[1:], rtol=1e-12, atol=1e-300)
        ref = [ref_qdq_error(s.counts, s.bin_width, a) for a in amaxes[1:]]
        np.testing.assert_allclose(fast[1:], ref, rtol=1e-9, atol=1e-300)

    def test_start_bin(self):
        data = np.random.default_rng(5).standard_normal(50_000).astype(np.float32)
        s = stats_of(data, num_bins=256)
        assert compute_amax(s, "mse", start_bin=250) >= 250.5 * s.bin_width
        with pytest.raises(ConfigError, match="start_bin"):
            compute_amax(s, "mse", start_bin=1.5)

    def test_start_bin_past_the_histogram_is_an_error_not_a_clamp(self):
        data = np.random.default_rng(5).standard_normal(50_000).astype(np.float32)
        s = stats_of(data, num_bins=256)
        # the last bin is still a valid start: its centre is the only candidate
        assert compute_amax(s, "mse", start_bin=255) == 255.5 * s.bin_width
        for start in (256, 5000):
            with pytest.raises(ConfigError, match=rf"start_bin={start}.*256 bins.*0 to 255"):
                compute_amax(s, "mse", start_bin=start)


class TestMix:
    def test_matches_reference(self, dist):
        _, data = dist
        s = stats_of(data[:50_000], num_bins=256)
        ps = [99.9, 99.99, 99.999, 99.9999]
        amaxes = [ref_percentile(s.counts, s.bin_width, p) for p in ps]
        errs = [ref_qdq_error(s.counts, s.bin_width, a) if a > 0 else math.inf for a in amaxes]
        best = min(errs)
        expect = amaxes[next(k for k, e in enumerate(errs) if e <= best * (1 + 1e-9))]
        assert compute_amax(s, "mix") == pytest.approx(expect, rel=1e-12)

    def test_custom_candidates(self):
        data = np.random.default_rng(6).standard_normal(50_000).astype(np.float32)
        s = stats_of(data)
        one = compute_amax(s, "mix", lowest=99.0, count=1)
        assert one == compute_amax(s, "percentile", percentile=99.0)
        with pytest.raises(ConfigError, match="count"):
            compute_amax(s, "mix", count=0)


class TestLegacy:
    @staticmethod
    def ref(counts, width, q, cutoff):
        total = float(sum(counts))
        target = q * total
        below = 0.0
        for j, c in enumerate(counts):
            if below + c >= target and c > 0:
                return cutoff * (j + (target - below) / c) * width
            below += c
        return cutoff * len(counts) * width

    @pytest.mark.parametrize("q, cutoff", [(0.9999, 1.0), (0.99, 0.8), (1.0, 1.0), (0.5, 0.5)])
    def test_matches_reference(self, dist, q, cutoff):
        _, data = dist
        s = stats_of(data)
        got = compute_amax(s, "legacy", quantile=q, regression_cutoff=cutoff)
        assert got == pytest.approx(self.ref(s.counts, s.bin_width, q, cutoff), rel=1e-9)

    def test_header_and_defaults(self):
        algo = get_algorithm("legacy")
        assert algo.trt_algorithm == "LegacyCalibration"
        assert algo.defaults == {"quantile": 0.9999, "regression_cutoff": 1.0}

    @pytest.mark.parametrize("key", ["quantile", "regression_cutoff"])
    def test_bad_parameter(self, key):
        s = stats_of(np.ones(10, np.float32))
        with pytest.raises(ConfigError, match=key):
            compute_amax(s, "legacy", **{key: 1.5})
