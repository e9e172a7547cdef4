"""`trtcalib algorithms`: table and JSON list of registered algorithms."""

from __future__ import annotations

import json

from trtcalib.stats import AmaxAlgorithm, register_algorithm, registry


def test_table_lists_builtins(cli):
    r = cli("algorithms")
    assert r.exit_code == 0, r.stderr
    for word in ("entropy", "EntropyCalibration2", "minmax", "legacy", "LegacyCalibration", "mix"):
        assert word in r.stdout


def test_json(cli):
    r = cli("algorithms", "--json")
    assert r.exit_code == 0
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["entropy"]["trt_algorithm"] == "EntropyCalibration2"
    assert rows["percentile"]["defaults"] == {"percentile": 99.99}
    assert rows["legacy"]["defaults"]["quantile"] == 0.9999
    assert all(row["description"] for row in rows.values())


def test_plugin_appears(cli):
    saved = dict(registry._REGISTRY)
    try:

        @register_algorithm("my_plugin_algo")
        class Mine(AmaxAlgorithm):
            description = "mine"

            def compute(self, stats, **params):
                return stats.amax

        rows = json.loads(cli("algorithms", "--json").stdout)
        assert {
            "name": "my_plugin_algo",
            "trt_algorithm": "MinMaxCalibration",
            "defaults": {},
            "description": "mine",
        } in rows
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)


def test_bad_option(cli):
    r = cli("algorithms", "--bogus")
    assert r.exit_code == 2 and r.stdout == ""


def test_help_teaches(cli):
    r = cli("algorithms", "--help")
    assert r.exit_code == 0 and "--calibrator" in r.stdout and "Example" in r.stdout
