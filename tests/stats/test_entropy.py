"""EntropyCalibration2 against a literal per-candidate loop written from the GTC 2017 slides."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from trtcalib.errors import ConfigError
from trtcalib.stats import TensorCollector, compute_amax, scale_from_amax
from trtcalib.stats.algorithms import entropy


def literal_kl(bins: np.ndarray, i: int) -> float:
    """One candidate, exactly as the slides: P with outliers folded in, Q from 128 groups."""
    bins = [float(v) for v in bins]
    p = bins[:i]
    p[i - 1] += sum(bins[i:])
    # group of bin j: the g with g*i/128 <= j < (g+1)*i/128 (edges as in pytorch-quantization)
    group_of = []
    for j in range(i):
        g = 0
        while not (g * i / 128 <= j < (g + 1) * i / 128):
            g += 1
        group_of.append(g)
    mass = [0.0] * 128
    nonzero = [0] * 128
    for j in range(i):
        mass[group_of[j]] += bins[j]
        if bins[j] != 0:
            nonzero[group_of[j]] += 1
    q = [mass[group_of[j]] / nonzero[group_of[j]] if bins[j] != 0 else 0.0 for j in range(i)]
    sp, sq = sum(p), sum(q)
    if sq == 0:
        return math.inf
    kl = 0.0
    for pj, qj in zip(p, q, strict=True):
        if pj == 0:
            continue
        if qj == 0:
            return math.inf
        kl += (pj / sp) * math.log((pj / sp) / (qj / sq))
    return kl


def literal_entropy_amax(counts: np.ndarray, bin_width: float) -> tuple[int, list[float]]:
    kls = [literal_kl(counts, i) for i in range(128, len(counts) + 1)]
    finite = [k for k in kls if math.isfinite(k)]
    best = min(finite)
    tol = max(1e-12, 1e-12 * abs(best))
    i = 128 + next(n for n, k in enumerate(kls) if k <= best + tol)
    return i, kls


def small_stats(data, num_bins=256):
    c = TensorCollector("t", histogram="trt", num_bins=num_bins)
    c.collect(data)
    return c.result()


class TestEntropy:
    def test_trt_evidence_scale_bits(self):
        rng = np.random.default_rng(1)
        x = rng.random((8, 3, 32, 32)).astype(np.float32)
        x.flat[77] = 1.0
        c = TensorCollector("input", histogram="trt")
        c.collect(x)
        stats = c.result()
        bits = struct.unpack(">I", struct.pack(">f", scale_from_amax(compute_amax(stats))))[0]
        assert f"{bits:x}" == "3c010a14"
        # the same bits from first principles: (2048.5 / 2048) * 1.0 / 127 in float32
        expect = np.float32(np.float32(2048.5 / 2048) / np.float32(127))
        assert scale_from_amax(compute_amax(stats)) == float(expect)

    @pytest.mark.parametrize("use_numba", [True, False])
    def test_sweep_matches_literal_loop_on_distributions(self, dist, use_numba):
        _, data = dist
        # 256 bins keeps the literal O(n^2) reference fast; the algorithm is the same
        stats = small_stats(data[:20_000], 256)
        i_ref, kls_ref = literal_entropy_amax(stats.counts, stats.bin_width)
        kls = entropy.kl_divergences(stats.counts, use_numba=use_numba)
        ref = np.array(kls_ref)
        assert np.array_equal(np.isinf(kls), np.isinf(ref))
        fin = np.isfinite(ref)
        np.testing.assert_allclose(kls[fin], ref[fin], rtol=1e-9, atol=1e-12)
        assert entropy.first_minimum(kls) + 128 == i_ref
        literal = compute_amax(stats, "entropy", bin0_as_bin1=0)
        assert literal == pytest.approx((i_ref + 0.5) * stats.bin_width)
        # the default rule is the same sweep on the histogram with bin 0 replaced by bin 1
        counts = stats.counts.copy()
        counts[0] = counts[1]
        i_default, _ = literal_entropy_amax(counts, stats.bin_width)
        expect = (i_default + 0.5) * stats.bin_width
        assert compute_amax(stats, "entropy") == pytest.approx(expect)

    def test_full_size_gaussian_matches_literal_on_a_sample_of_candidates(self, distributions):
        stats = small_stats(distributions["gaussian"], 2048)
        kls = entropy.kl_divergences(stats.counts)
        for i in (128, 129, 200, 777, 1000, 1500, 2047, 2048):
            assert kls[i - 128] == pytest.approx(literal_kl(stats.counts, i), rel=1e-9)

    def test_non_multiple_of_128_groups_are_proportional(self):
        # i = 130: groups are bins [ceil(g*130/128), ceil((g+1)*130/128)): groups 0 and 64 have
        # two bins (0-1 and 65-66), every other group one bin. Put mass where that matters.
        counts = np.zeros(256)
        counts[:130] = 1.0
        counts[0] = 3.0  # group 0 = {0, 1}: Q spreads 4 over two bins -> 2, 2
        i = 130
        assert entropy.kl_divergences(counts)[i - 128] == pytest.approx(literal_kl(counts, i))
        edges = entropy._group_edges(256, 128)[i - 128]
        sizes = np.diff(edges)
        assert sizes.sum() == 130 and set(sizes) == {1, 2}
        assert list(np.flatnonzero(sizes == 2)) == [0, 64]

    def test_ties_pick_first_minimum(self):
        # mass only in bins 0..127 of 512 and no outliers: for i = 128 every group is one bin,
        # so Q == P and KL == 0 exactly; the first minimum is i = 128
        counts = np.zeros(512)
        counts[:128] = np.arange(1, 129)
        kls = entropy.kl_divergences(counts)
        assert kls[0] == pytest.approx(0.0, abs=1e-12)
        assert entropy.first_minimum(kls) == 0
        # equal within the 1e-12 tolerance -> the earlier one; a real difference -> the smaller
        assert entropy.first_minimum(np.array([3.0, 1.0 + 1e-13, 1.0, 2.0])) == 1
        assert entropy.first_minimum(np.array([3.0, 1.0 + 1e-6, 1.0, 2.0])) == 2
        assert entropy.first_minimum(np.array([np.inf, np.inf])) == -1

    def test_trailing_empty_bins_tie_to_the_smallest_threshold(self):
        # data fills the lower half only (a late pow2 growth): candidates whose groups are
        # identical over the data tie exactly; the smallest such i wins
        counts = np.zeros(2048)
        counts[:1024] = 10.0
        assert literal_kl(counts, 1024) == pytest.approx(0.0, abs=1e-12)
        assert literal_kl(counts, 1500) == pytest.approx(0.0, abs=1e-12)
        assert literal_kl(counts, 1023) > 1e-6
        i = entropy.first_minimum(entropy.kl_divergences(counts)) + 128
        assert i == 1024  # KL == 0 exactly for every i >= 1024 (Q == P), so the first of them

    def test_empty_last_bin_with_outliers_is_infinite(self):
        counts = np.zeros(256)
        counts[:100] = 5.0
        counts[200] = 1.0  # outlier
        kls = entropy.kl_divergences(counts)
        assert np.isinf(kls[150 - 128])  # bin 149 empty, outlier folded into it
        assert math.isinf(literal_kl(counts, 150))

    def test_bin0_as_bin1_on_relu_data(self, distributions):
        stats = small_stats(distributions["relu_gaussian"], 2048)
        counts = stats.counts.copy()
        counts[0] = counts[1]
        kls = entropy.kl_divergences(counts)
        for i in (128, 500, 1500, 2048):
            assert kls[i - 128] == pytest.approx(literal_kl(counts, i), rel=1e-9)
        expect = (entropy.first_minimum(kls) + 128.5) * stats.bin_width
        assert compute_amax(stats, "entropy", bin0_as_bin1=1) == pytest.approx(expect)
        # the zero spike makes the literal rule clip hard; the pytorch-quantization rule does not
        assert compute_amax(stats, "entropy", bin0_as_bin1=0) < 0.5 * stats.amax
        assert compute_amax(stats, "entropy", bin0_as_bin1=1) > 0.8 * stats.amax
        assert compute_amax(stats, "entropy") == compute_amax(stats, "entropy", bin0_as_bin1=1)

    def test_bin0_as_bin1_keeps_the_image_evidence(self):
        x = np.random.default_rng(1).random(50_000).astype(np.float32)
        x[3] = 1.0
        stats = small_stats(x, 2048)
        assert compute_amax(stats, "entropy", bin0_as_bin1=1) == 2048.5 / 2048

    def test_bad_bin0_parameter(self):
        stats = small_stats(np.ones(10, np.float32), 256)
        with pytest.raises(ConfigError, match="bin0_as_bin1"):
            compute_amax(stats, "entropy", bin0_as_bin1=0.5)

    def test_threshold_is_bin_plus_half(self):
        stats = small_stats(np.linspace(0, 1, 10_000, dtype=np.float32), 2048)
        # uniform data: no candidate below 2048 avoids the outlier spike, so i = 2048
        assert compute_amax(stats, "entropy", bin0_as_bin1=0) == pytest.approx(2048.5 / 2048)
