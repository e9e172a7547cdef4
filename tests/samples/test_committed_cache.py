"""The sample cache committed in caches/ is what calibrating the sample gives today."""

from __future__ import annotations

from pathlib import Path

from trtcalib.cache import read_cache, read_provenance

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "caches" / "model.entropy.b32.cache"


def test_committed_sample_cache_is_reproduced(cli, tmp_path):
    fresh = tmp_path / "fresh.cache"
    result = cli(
        "calibrate", ROOT / "samples/mnist/model.onnx", "--data", ROOT / "samples/mnist/calib.npz",
        "--calibrator", "entropy", "--batch", "32", "--cache", fresh, "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert fresh.read_bytes() == COMMITTED.read_bytes()
    committed, now = read_provenance(COMMITTED), read_provenance(fresh)
    assert committed.model_fingerprint == now.model_fingerprint
    assert committed.data_fingerprint == now.data_fingerprint
    assert read_cache(COMMITTED).algorithm == "EntropyCalibration2"
