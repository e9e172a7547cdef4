"""script.py[:func] sources: per-sample and per-batch yields, isolation, and every error path."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from trtcalib.data import DataOptions, iter_batches, open_source
from trtcalib.errors import DataError
from trtcalib.model import InputSpec

F32 = np.dtype(np.float32)
TWO = [InputSpec("a", ("N", 2), F32), InputSpec("b", ("N", 3), F32)]


def script(tmp_path: Path, body: str, name: str = "load.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def read_all(src):
    chunks = list(src.samples())
    return {k: np.concatenate([c[k] for c in chunks]) for k in src.input_names}


def test_per_sample_and_per_batch_yields_mix(tmp_path):
    path = script(
        tmp_path,
        """
        import numpy as np

        def load_data():
            for i in range(3):  # one sample each: rank = input rank - 1
                yield {"a": np.full(2, i, np.float32), "b": np.full(3, -i), "label": i}
            # then a batch of 4: rank = input rank
            yield {"a": np.arange(3, 7, dtype=np.float64)[:, None] * np.ones((1, 2)),
                   "b": -np.arange(3, 7)[:, None] * np.ones((1, 3))}
    """,
    )
    src = open_source(path, TWO)
    got = read_all(src)
    np.testing.assert_array_equal(got["a"][:, 0], np.arange(7, dtype=np.float32))
    np.testing.assert_array_equal(got["b"][:, 2], -np.arange(7, dtype=np.float32))
    assert got["a"].dtype == np.float32 and got["b"].dtype == np.float32
    assert src.num_samples == 7
    assert "ignored keys: label" in src.describe()
    # re-iterable: the function is called again
    assert [b.num_real for b in iter_batches(src, 4, "pad")] == [4, 3]


@pytest.mark.parametrize("per", ["sample", "batch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_script_refilling_one_buffer_yields_distinct_samples(tmp_path, per, dtype):
    # Loaders often reuse one buffer; a kept view would turn every held sample into the last one.
    shape = "(2,)" if per == "sample" else "(2, 2)"
    path = script(
        tmp_path,
        f"""
        import numpy as np

        def load_data():
            buf = np.zeros({shape}, np.{dtype})
            for i in range(8):
                buf[...] = 8 - i
                yield {{"x": buf}}
    """,
    )
    spec = [InputSpec("x", ("N", 2), F32)]
    rows = 8 if per == "sample" else 16
    want = np.repeat(np.arange(8, 0, -1, dtype=np.float32), rows // 8)
    batches = [b.arrays["x"][:, 0] for b in iter_batches(open_source(path, spec), 4)]
    np.testing.assert_array_equal(np.concatenate(batches), want)
    opts = DataOptions(subset_len=5, sample_method="random", seed=0)
    picked = read_all(open_source(path, spec, opts))["x"][:, 0]
    values, counts = np.unique(picked, return_counts=True)  # a subset of `want`, in order
    assert len(picked) == 5 and counts.max() <= rows // 8 and np.all(np.diff(picked) <= 0)


def test_a_scalar_is_one_sample_of_a_1d_input(tmp_path):
    path = script(
        tmp_path,
        """
        import numpy as np

        def load_data():
            for i in range(3):
                yield {"t": np.float32(i) * 2}
            yield {"t": [6.0, 8.0]}
    """,
    )
    got = read_all(open_source(path, [InputSpec("t", ("N",), F32)]))["t"]
    np.testing.assert_array_equal(got, np.arange(0, 10, 2, dtype=np.float32))


def test_named_function_and_sibling_import(tmp_path):
    (tmp_path / "helper_mod_for_trtcalib_test.py").write_text("VALUE = 5.0\n")
    path = script(
        tmp_path,
        """
        import numpy as np
        from helper_mod_for_trtcalib_test import VALUE

        def make():
            return [{"a": np.full((2, 2), VALUE), "b": np.zeros((2, 3))}]
    """,
    )
    before = set(sys.modules)
    src = open_source(f"{path}:make", TWO)
    np.testing.assert_array_equal(read_all(src)["a"], np.full((2, 2), 5.0, np.float32))
    assert not any(m.startswith("_trtcalib_data_script") for m in set(sys.modules) - before)
    assert str(tmp_path) not in sys.path
    sys.modules.pop("helper_mod_for_trtcalib_test", None)


def test_sequential_subset_stops_the_generator(tmp_path):
    path = script(
        tmp_path,
        """
        import numpy as np
        PULLED = []

        def load_data():
            for i in range(1000):
                PULLED.append(i)
                yield {"x": np.full((1, 2), i, np.float32)}
    """,
    )
    spec = [InputSpec("x", ("N", 2), F32)]
    src = open_source(path, spec, DataOptions(subset_len=5))
    got = read_all(src)["x"][:, 0]
    np.testing.assert_array_equal(got, np.arange(5, dtype=np.float32))
    module_pulled = src.function.__globals__["PULLED"]
    assert len(module_pulled) <= 6  # the first item was pulled at open time and reused


def test_random_subset_reservoir_deterministic_distinct_in_order(tmp_path):
    path = script(
        tmp_path,
        """
        import numpy as np

        def load_data():
            for i in range(0, 50, 5):
                yield {"x": np.arange(i, i + 5, dtype=np.float32)[:, None] * np.ones((1, 2))}
    """,
    )
    spec = [InputSpec("x", ("N", 2), F32)]

    def pick(seed):
        opts = DataOptions(subset_len=8, sample_method="random", seed=seed)
        return read_all(open_source(path, spec, opts))["x"][:, 0]

    a, b, c = pick(1), pick(1), pick(2)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 8 and len(set(a.tolist())) == 8 and np.all(np.diff(a) > 0)
    assert set(a.tolist()) <= set(range(50))
    assert not np.array_equal(a, c)


def test_reservoir_is_uniform(tmp_path):
    """Each of 10 samples should be picked with probability 3/10: over 600 seeds the counts
    (expected 180 each, sd ~11) stay within +-50."""
    path = script(
        tmp_path,
        """
        import numpy as np

        def load_data():
            for i in range(10):
                yield {"x": np.array([float(i)], np.float32)}
    """,
    )
    spec = [InputSpec("x", ("N", 1), F32)]
    counts = np.zeros(10)
    for seed in range(600):
        opts = DataOptions(subset_len=3, sample_method="random", seed=seed)
        for v in read_all(open_source(path, spec, opts))["x"][:, 0]:
            counts[int(v)] += 1
    assert counts.sum() == 1800
    assert np.all(np.abs(counts - 180) < 50), counts


def test_script_nan_warning(tmp_path, capsys):
    path = script(
        tmp_path,
        """
        import numpy as np

        def load_data():
            yield {"x": np.array([[np.nan, 1.0], [np.inf, -np.inf]])}
    """,
    )
    src = open_source(path, [InputSpec("x", ("N", 2), F32)])
    capsys.readouterr()
    read_all(src)
    assert "input 'x' has 1 NaN and 2 Inf values" in capsys.readouterr().err


# -- errors --------------------------------------------------------------------------------------
def test_missing_function(tmp_path):
    path = script(tmp_path, "def other():\n    return []\n")
    with pytest.raises(DataError, match=r"load\.py: has no function 'load_data'"):
        open_source(path, TWO)
    with pytest.raises(DataError, match=r"load\.py: has no function 'nope'"):
        open_source(f"{path}:nope", TWO)


def test_import_error_names_script_and_line(tmp_path):
    path = script(tmp_path, "import numpy\n\nraise RuntimeError('boom at import')\n")
    with pytest.raises(
        DataError,
        match=r"load\.py: error while importing the script: "
        r"RuntimeError: boom at import \(line 3\)",
    ):
        open_source(path, TWO)
    bad = script(tmp_path, "def load_data(:\n", "syntax.py")
    with pytest.raises(DataError, match=r"syntax\.py: error while importing.*SyntaxError.*line 1"):
        open_source(bad, TWO)


def test_error_inside_generator_is_reported_not_swallowed(tmp_path):
    path = script(
        tmp_path,
        """
        import numpy as np

        def load_data():
            yield {"a": np.zeros((1, 2)), "b": np.zeros((1, 3))}
            raise ValueError("disk on fire")
    """,
    )
    src = open_source(path, TWO)
    with pytest.raises(
        DataError,
        match=r"load\.py:load_data raised ValueError: disk on fire "
        r"\(line 6\) \(item 1\)",
    ):
        read_all(src)


def test_error_on_first_item_at_open(tmp_path):
    path = script(
        tmp_path,
        """
        def load_data():
            return 1 / 0
    """,
    )
    with pytest.raises(DataError, match=r"load_data raised ZeroDivisionError: division by zero"):
        open_source(path, TWO)


@pytest.mark.parametrize(
    "body, message",
    [
        ("def load_data():\n    yield [1, 2]\n", r"item 0: yielded list, expected a dict"),
        ("def load_data():\n    return {'a': 1}\n", r"returned one dict"),
        ("def load_data():\n    return 5\n", r"returned int, expected an iterable"),
        ("def load_data():\n    return []\n", r"yielded no data \(zero samples\)"),
        (
            "import numpy as np\ndef load_data():\n    yield {'a': np.zeros(2)}\n",
            r"item 0: no 'b' \(keys: a\); inputs: a, b",
        ),
        (
            "import numpy as np\ndef load_data():\n"
            "    yield {'a': np.zeros((1, 1, 2)), 'b': np.zeros(3)}\n",
            r"item 0: input 'a' expects one sample \[2\] or a batch \[N, 2\], found \[1, 1, 2\]",
        ),
        (
            "import numpy as np\ndef load_data():\n"
            "    yield {'a': np.zeros(4), 'b': np.zeros(3)}\n",
            r"item 0: input 'a' expects shape \[N, 2\], found \[1, 4\] \(dim 1 must be 2\)",
        ),
        (
            "import numpy as np\ndef load_data():\n"
            "    yield {'a': np.zeros((2, 2)), 'b': np.zeros((3, 3))}\n",
            r"item 0: inputs hold different numbers of samples \('a' 2, 'b' 3\)",
        ),
        (
            "def load_data():\n    yield {'a': ['x', 'y'], 'b': [1, 2, 3]}\n",
            r"item 0: input 'a' holds strings",
        ),
        (
            "def load_data():\n    yield {'a': [object(), 1], 'b': [1, 2, 3]}\n",
            r"item 0: input 'a' holds Python objects",
        ),
        (
            "def load_data():\n    yield {'a': [1, 2], 'b': None}\n",
            r"item 0: input 'b' holds Python objects \(None",
        ),
        (
            "def load_data():\n    yield {'a': 1.0, 'b': [1, 2, 3]}\n",
            r"item 0: input 'a' is a scalar, expected an array",
        ),
    ],
)
def test_bad_items(tmp_path, body, message):
    path = script(tmp_path, body)
    with pytest.raises(DataError, match=message):
        src = open_source(path, TWO)
        read_all(src)


def test_later_bad_item_names_its_index(tmp_path):
    path = script(
        tmp_path,
        """
        import numpy as np

        def load_data():
            yield {"a": np.zeros(2), "b": np.zeros(3)}
            yield {"a": np.zeros(2), "b": np.zeros(3)}
            yield "oops"
    """,
    )
    src = open_source(path, TWO)
    with pytest.raises(DataError, match=r"load\.py:load_data item 2: yielded str"):
        read_all(src)


def test_missing_script_file(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.py: no such file"):
        open_source(tmp_path / "nothere.py", TWO)
    with pytest.raises(DataError, match=r"nothere\.py: no such file"):
        open_source(f"{tmp_path / 'nothere.py'}:func", TWO)


def test_sys_exit_while_importing_is_a_data_error(tmp_path):
    """argparse at module level calls sys.exit(2): that must not end trtcalib with the script's
    status and no message (exit 3 would even read as "stopped at the GPU boundary")."""
    path = script(
        tmp_path,
        """
        import sys

        sys.exit(3)
        """,
    )
    with pytest.raises(DataError, match=r"load\.py: the script called sys\.exit\(3\) while being"):
        open_source(path, TWO)


@pytest.mark.parametrize("where", ["first", "later"])
def test_sys_exit_inside_the_generator_is_a_data_error(tmp_path, where):
    path = script(
        tmp_path,
        f"""
        import sys
        import numpy as np

        def load_data():
            if {where == "later"}:
                yield {{"a": np.zeros((1, 2), np.float32), "b": np.zeros((1, 3), np.float32)}}
            sys.exit("stop")
        """,
    )
    with pytest.raises(DataError, match=r"load_data raised SystemExit: stop"):
        read_all(open_source(path, TWO))
