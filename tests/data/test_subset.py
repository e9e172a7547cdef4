"""trtcalib.data.subset: which samples --subset-len / --sample-method / --seed pick."""

from __future__ import annotations

import numpy as np
import pytest

from trtcalib.data import DataOptions, open_source
from trtcalib.data.subset import make_selection
from trtcalib.errors import ConfigError
from trtcalib.model import InputSpec

SPEC = [InputSpec("x", ("N", 2), np.dtype(np.float32))]


@pytest.mark.parametrize("seed", [-1, -(2**40)])
def test_negative_seed_is_a_one_line_config_error(seed):
    """numpy's default_rng raises ValueError (a traceback) for a negative seed."""
    with pytest.raises(ConfigError, match=rf"--seed must be a non-negative integer, got {seed}"):
        options = DataOptions(subset_len=3, sample_method="random", seed=seed)
        make_selection(10, options, "data.npz")


@pytest.mark.parametrize("method", ["sequential", "random"])
def test_negative_seed_is_refused_by_the_options_themselves(method):
    """Checked next to --subset-len when the options are made, before any data is opened."""
    with pytest.raises(ConfigError, match=r"^--seed must be a non-negative integer, got -3$"):
        DataOptions(sample_method=method, seed=-3)
    with pytest.raises(ConfigError, match="--seed"):
        DataOptions(seed=1.5)  # type: ignore[arg-type]


def test_negative_seed_with_a_script_source(tmp_path):
    """Scripts use a reservoir (unknown length): the same check, before any sample is kept."""
    path = tmp_path / "load.py"
    path.write_text(
        "import numpy as np\ndef load_data():\n    yield {'x': np.zeros((4, 2), np.float32)}\n"
    )
    with pytest.raises(ConfigError, match="--seed"):
        options = DataOptions(subset_len=2, sample_method="random", seed=-5)
        source = open_source(path, SPEC, options)
        list(source.samples())


def test_random_selection_is_the_seeded_numpy_choice():
    options = DataOptions(subset_len=4, sample_method="random", seed=7)
    selection = make_selection(20, options, "data.npz")
    expected = np.sort(np.random.default_rng(7).choice(20, size=4, replace=False))
    np.testing.assert_array_equal(selection.indices, expected)
