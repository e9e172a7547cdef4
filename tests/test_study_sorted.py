"""Sorted replay (trtcalib.study.sorted_replay) against real TensorCollectors, bin for bin.

The reference is `TensorCollector(histogram="trt", growth="pow2")` fed batch by batch, i.e. the
stats owner's implementation: the sorted replay must give the same counts, range and growth
events for every batch size and order, on distributions chosen to hit the edge cases (values at
the range, repeated discrete levels, all-zero first batches, several growths, one huge outlier).
"""

from __future__ import annotations

import numpy as np
import pytest

from trtcalib.study import order_permutation, replay
from trtcalib.study.sorted_replay import SortedTensor, run_pow2, simulate_pow2


def streams():
    rng = np.random.default_rng(1)
    base = (np.arange(64) + 0.5) / 64
    max_last = np.tile(base, (20, 1))
    max_last[0, -1] = 1.0  # the range is exactly a data value: it gets clamped into the last bin
    max_last[-1, 0] = 3.0
    yield "max-last", max_last
    yield "gaussian-scaled", rng.standard_normal((40, 30)) * rng.uniform(0.1, 5, (40, 1))
    yield "relu", np.maximum(rng.standard_normal((50, 3, 5)), 0)
    yield "levels", np.round(rng.uniform(0, 1, (30, 16)) * 8) / 8  # image-like discrete levels
    zeros_first = rng.standard_normal((25, 8))
    zeros_first[:4] = 0.0  # the range stays unset over the first batches
    yield "zeros-first", zeros_first
    growing = rng.uniform(0, 1, (30, 10)) * np.geomspace(1, 1e4, 30)[:, None]
    yield "growing", growing  # a growth at almost every batch, up to 13 doublings in total
    outlier = rng.standard_normal((30, 12))
    outlier[12, 3] = 1e6
    yield "outlier", outlier
    yield "all-zero", np.zeros((6, 4))


@pytest.mark.parametrize("num_bins", [128, 2048])
@pytest.mark.parametrize("name, data", list(streams()), ids=[n for n, _ in streams()])
def test_sorted_replay_matches_the_collector(name, data, num_bins):
    data = data.astype(np.float32)
    n = data.shape[0]
    smax = np.abs(data).reshape(n, -1).max(axis=1).astype(np.float64)
    st = SortedTensor(data)
    for order in (0, 1, 2):
        perm = order_permutation(n, order, seed=9)
        for b in sorted({1, 2, 3, 7, n}):
            ref, nb = replay(data, smax, perm, b, name="t", growth="pow2", num_bins=num_bins,
                             coalesce=False)  # fmt: skip
            counts, range_max, growth, nb2 = run_pow2(st, smax, perm, b, num_bins)
            assert nb2 == nb
            assert range_max == ref.range_max
            assert growth == ref.growth_events
            np.testing.assert_array_equal(counts, ref.counts)


def test_sorted_tensor_summary():
    x = np.array([[0.0, -2.0, 1.0], [3.0, 0.0, -0.5]], dtype=np.float32)
    st = SortedTensor(x)
    assert st.values.tolist() == [0.0, 0.0, 0.5, 1.0, 2.0, 3.0]
    assert (st.min, st.max, st.absmax, st.count) == (-2.0, 3.0, 3.0, 6)


def test_simulate_pow2_by_hand():
    # first batch sets 1.5; 2.0 doubles once to 3.0; 2.5 fits; 13 doubles 3 -> 6 -> 12 -> 24
    final, growth, epochs = simulate_pow2(np.array([1.5, 2.0, 2.5, 1.0, 13.0]))
    assert (final, growth) == (24.0, 2)
    assert epochs == [(0, 1.5), (1, 3.0), (4, 24.0)]
    # all-zero batches leave the range unset until the first non-zero one
    assert simulate_pow2(np.array([0.0, 0.0, 0.7])) == (0.7, 0, [(2, 0.7)])
    assert simulate_pow2(np.array([0.0, 0.0])) == (0.0, 0, [])


@pytest.mark.parametrize("num_bins", [128, 2048])
@pytest.mark.parametrize("name, data", list(streams()), ids=[n for n, _ in streams()])
def test_exact_histogram_from_sorted_values_matches_the_collector(name, data, num_bins):
    data = data.astype(np.float32)
    n = data.shape[0]
    smax = np.abs(data).reshape(n, -1).max(axis=1).astype(np.float64)
    ref, _ = replay(data, smax, np.arange(n), 3, name="t", growth="pow2", num_bins=num_bins,
                    coalesce=False, histogram="exact")  # fmt: skip
    counts, range_max = SortedTensor(data).exact_histogram(num_bins)
    assert range_max == ref.range_max
    assert counts.tobytes() == ref.counts.tobytes()


def test_exact_histogram_from_sorted_values_matches_the_table_kernel():
    # >= 128 values per fine bin in one call: the collector takes its float32 table kernel
    rng = np.random.default_rng(3)
    data = np.maximum(rng.standard_normal((300, 1000)), 0).astype(np.float32) * 1.7
    n = data.shape[0]
    smax = np.abs(data).reshape(n, -1).max(axis=1).astype(np.float64)
    ref, _ = replay(data, smax, np.arange(n), n, name="t", growth="pow2", num_bins=128,
                    coalesce=False, histogram="exact")  # fmt: skip
    counts, range_max = SortedTensor(data).exact_histogram(128)
    assert range_max == ref.range_max
    assert counts.tobytes() == ref.counts.tobytes()
