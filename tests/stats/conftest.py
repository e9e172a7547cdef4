"""Shared test data for the stats tests: the distributions every algorithm is checked on."""

from __future__ import annotations

import numpy as np
import pytest

from trtcalib.stats import TensorCollector


def make_distributions(seed: int = 0, n: int = 200_000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    gauss = rng.standard_normal(n).astype(np.float32)
    outlier = (rng.standard_normal(n) * 0.1).astype(np.float32)
    outlier[123] = 25.0
    return {
        "gaussian": gauss,
        "relu_gaussian": np.maximum(gauss, 0),
        "long_tail": rng.standard_t(2.0, n).astype(np.float32),
        "laplace": rng.laplace(0, 1, n).astype(np.float32),
        "single_outlier": outlier,
        "image_levels": (rng.integers(0, 256, n) / 255.0).astype(np.float32),
        "all_equal": np.full(n, 0.7, dtype=np.float32),
    }


DISTRIBUTIONS = make_distributions()


@pytest.fixture(params=sorted(DISTRIBUTIONS))
def dist(request):
    """(name, data) for each distribution."""
    return request.param, DISTRIBUTIONS[request.param]


@pytest.fixture
def distributions():
    return DISTRIBUTIONS


def one_batch_stats(data, num_bins=2048, histogram="trt"):
    c = TensorCollector("t", histogram=histogram, num_bins=num_bins)
    c.collect(data)
    return c.result()


@pytest.fixture
def stats_of():
    """stats_of(data, num_bins=2048, histogram="trt") -> TensorStats of one batch."""
    return one_batch_stats
