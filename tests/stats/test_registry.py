"""The calibrator plugin set: decorator, entry points, lookups and parameter validation."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from trtcalib.errors import ConfigError
from trtcalib.stats import (
    AmaxAlgorithm,
    TensorCollector,
    available_algorithms,
    compute_amax,
    get_algorithm,
    register_algorithm,
    registry,
)

BUILTINS = {
    "entropy": "EntropyCalibration2",
    "minmax": "MinMaxCalibration",
    "legacy": "LegacyCalibration",
    "percentile": "MinMaxCalibration",
    "mse": "MinMaxCalibration",
    "mix": "MinMaxCalibration",
}


@pytest.fixture
def clean_registry():
    saved = dict(registry._REGISTRY)
    loaded = registry._entry_points_loaded
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    registry._entry_points_loaded = loaded


def _stats():
    c = TensorCollector("t")
    c.collect(np.array([0.5, -2.0, 1.0], np.float32))
    return c.result()


def test_builtins_and_header_names():
    assert set(BUILTINS) <= set(available_algorithms())
    for name, header in BUILTINS.items():
        algo = get_algorithm(name)
        assert algo.name == name and algo.trt_algorithm == header
        assert isinstance(algo.defaults, dict) and algo.description


def test_unknown_name_lists_available():
    with pytest.raises(ConfigError, match="unknown calibrator 'nope'.*entropy.*minmax"):
        get_algorithm("nope")


def test_unknown_parameter_is_config_error():
    with pytest.raises(ConfigError, match="entropy.*unknown parameter 'percentile'"):
        compute_amax(_stats(), "entropy", percentile=99.0)
    with pytest.raises(ConfigError, match="entropy.*bin0_as_bin1.*0 or 1"):
        compute_amax(_stats(), "entropy", bin0_as_bin1=2)


def test_decorator_registers_a_plugin(clean_registry):
    @register_algorithm("half_max")
    class HalfMax(AmaxAlgorithm):
        defaults = {"factor": 0.5}
        description = "factor * max"

        def compute(self, stats, **params):
            return params["factor"] * stats.amax

    assert "half_max" in available_algorithms()
    assert get_algorithm("half_max").name == "half_max"
    assert compute_amax(_stats(), "half_max") == 1.0
    assert compute_amax(_stats(), "half_max", factor=0.25) == 0.5


def test_decorator_rejects_non_algorithm():
    with pytest.raises(TypeError):
        register_algorithm("x")(int)  # type: ignore[arg-type]


def _fake_distribution(tmp_path, body: str, entry: str) -> None:
    (tmp_path / "fake_trtcalib_plugin.py").write_text(textwrap.dedent(body))
    dist = tmp_path / "fake_trtcalib_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-trtcalib-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(f"[trtcalib.algorithms]\n{entry}\n")


def test_entry_point_plugin_is_loaded_lazily(tmp_path, monkeypatch, clean_registry):
    _fake_distribution(
        tmp_path,
        """
        from trtcalib.stats import AmaxAlgorithm

        class ThirdMax(AmaxAlgorithm):
            trt_algorithm = "MinMaxCalibration"
            description = "max / 3"

            def compute(self, stats, **params):
                return stats.amax / 3
        """,
        "third_max = fake_trtcalib_plugin:ThirdMax",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_trtcalib_plugin", raising=False)
    registry._entry_points_loaded = False
    assert "fake_trtcalib_plugin" not in sys.modules  # nothing imported before a lookup
    assert "third_max" in available_algorithms()
    assert compute_amax(_stats(), "third_max") == pytest.approx(2.0 / 3)
    assert get_algorithm("third_max").name == "third_max"


def test_broken_entry_point_names_itself(tmp_path, monkeypatch, clean_registry):
    _fake_distribution(tmp_path, "x = 1\n", "broken_algo = fake_trtcalib_plugin:missing")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_trtcalib_plugin", raising=False)
    registry._entry_points_loaded = False
    with pytest.raises(ConfigError, match="broken_algo"):
        get_algorithm("anything")


def test_entry_point_not_an_algorithm(tmp_path, monkeypatch, clean_registry):
    _fake_distribution(tmp_path, "x = 1\n", "not_algo = fake_trtcalib_plugin:x")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_trtcalib_plugin", raising=False)
    registry._entry_points_loaded = False
    with pytest.raises(ConfigError, match="not_algo.*not an AmaxAlgorithm"):
        available_algorithms()


def test_plugin_edge_cases_handled_centrally(clean_registry):
    calls = []

    @register_algorithm("spy")
    class Spy(AmaxAlgorithm):
        def compute(self, stats, **params):
            calls.append(stats.name)
            return 1.0

    c = TensorCollector("inf")
    c.collect(np.array([np.inf, 1.0], np.float32))
    assert compute_amax(c.result(), "spy") == float("inf")
    c = TensorCollector("zero")
    c.collect(np.zeros(3, np.float32))
    assert compute_amax(c.result(), "spy") == 0.0
    assert calls == []
