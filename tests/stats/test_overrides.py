"""Per-tensor overrides: glob patterns, first match wins, validation naming the entry."""

from __future__ import annotations

import pytest

from trtcalib.errors import ConfigError
from trtcalib.stats import TensorOverrides, TensorSettings


def test_first_match_wins_and_params():
    ov = TensorOverrides.from_entries(
        [
            {"tensors": "conv*", "calibrator": "percentile", "percentile": 99.9},
            {"tensors": ["conv1", "logits"], "skip": True},
            {"tensors": "relu?", "calibrator": "mix", "count": 2},
        ]
    )
    assert ov.resolve("conv1", "entropy", {}) == TensorSettings(
        "percentile", {"percentile": 99.9}, False
    )
    assert ov.resolve("logits", "entropy", {}) == TensorSettings("entropy", {}, True)
    assert ov.resolve("relu3", "entropy", {}).algorithm == "mix"
    assert ov.resolve("relu33", "entropy", {}) == TensorSettings("entropy", {}, False)
    assert ov.resolve("add", "percentile", {"percentile": 99.0}) == TensorSettings(
        "percentile", {"percentile": 99.0}, False
    )


def test_entry_without_calibrator_adds_params_to_the_run():
    ov = TensorOverrides.from_entries([{"tensors": "head*", "percentile": 99.0}])
    s = ov.resolve("head.0", "percentile", {"percentile": 99.99})
    assert s == TensorSettings("percentile", {"percentile": 99.0}, False)
    with pytest.raises(ConfigError, match=r"override #1 \(tensors head\*\).*unknown parameter"):
        ov.resolve("head.0", "entropy", {})


def test_same_calibrator_merges_params():
    ov = TensorOverrides.from_entries([{"tensors": "x", "calibrator": "mix", "count": 2}])
    s = ov.resolve("x", "mix", {"lowest": 99.0})
    assert s.params == {"lowest": 99.0, "count": 2.0}


def test_glob_is_case_sensitive():
    ov = TensorOverrides.from_entries([{"tensors": "Conv*", "skip": True}])
    assert not ov.resolve("conv1", "entropy", {}).skip


@pytest.mark.parametrize(
    "entries, match",
    [
        (
            [{"tensors": "a", "calibrator": "nope"}],
            r"override #1 \(tensors a\).*unknown calibrator",
        ),
        (
            [{"tensors": "a"}, {"tensors": "b", "calibrator": "percentile", "percentile": 101}],
            r"override #2 \(tensors b\).*percentile",
        ),
        ([{"tensors": "a", "calibrator": "entropy", "bins": 3}], r"override #1.*unknown parameter"),
        ([{"calibrator": "entropy"}], r"override #1.*'tensors'"),
        ([{"tensors": []}], r"override #1.*'tensors'"),
        ([{"tensors": "a", "skip": "yes"}], r"override #1.*skip"),
        (["conv*"], r"override #1.*dict"),
        ({"tensors": "a"}, "list"),
    ],
)
def test_bad_entries(entries, match):
    with pytest.raises(ConfigError, match=match):
        TensorOverrides.from_entries(entries)


def test_none_and_empty():
    assert TensorOverrides.from_entries(None).resolve("a", "minmax", {}).algorithm == "minmax"
    assert TensorOverrides.from_entries([]).match("a") is None


def test_unused_lists_entries_that_decide_no_tensor():
    overrides = TensorOverrides.from_entries(
        [
            {"tensors": "conv*", "skip": True},
            {"tensors": "conv1", "calibrator": "minmax"},  # shadowed by the first entry
            {"tensors": ["nomatch*", "relu1"], "calibrator": "minmax"},
            {"tensors": "typo*", "skip": True},
        ]
    )
    unused = overrides.unused(["input", "conv1", "relu1"])
    assert unused == ["override #2 (tensors conv1)", "override #4 (tensors typo*)"]
    assert TensorOverrides.from_entries([]).unused(["a"]) == []
