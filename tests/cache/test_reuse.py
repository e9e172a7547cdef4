"""reuse_decision: every reason a cache must not be reused, and what a TensorRT cache can't tell."""

from __future__ import annotations

import pytest

from trtcalib.cache import CalibrationCache, Provenance, reuse_decision, write_cache
from trtcalib.errors import CacheFormatError

SETTINGS = dict(
    model_fingerprint="m" * 64,
    data_fingerprint="d" * 64,
    algorithm="percentile",
    params={"percentile": 99.99},
    batch_size=32,
    histogram="exact",
    trt_version=101601,
    tensor_names=["input", "relu1"],
)


@pytest.fixture
def cache_path(tmp_path):
    path = tmp_path / "model.cache"
    cache = CalibrationCache.from_scales(
        {"input": 0.01, "relu1": 0.02}, algorithm="MinMaxCalibration", trt_version=101401
    )
    prov = Provenance(
        algorithm="percentile",
        params={"percentile": 99.99},
        histogram="exact",
        batch_size=32,
        num_samples=512,
        data_fingerprint="d" * 64,
        model_fingerprint="m" * 64,
    )
    write_cache(path, cache, prov)
    return path


def test_matching_cache_is_reusable(cache_path):
    decision = reuse_decision(cache_path, **SETTINGS)
    assert decision.reusable and bool(decision) and decision.verified
    assert decision.reasons == [] and decision.unchecked == []
    assert decision.why_not_verified() == []


@pytest.mark.parametrize(
    ("drop", "words"),
    [
        ("cache_sha256", "cache checksum"),
        ("model_fingerprint", "model"),
        ("data_fingerprint", "data"),
        ("batch_size", "batch size"),
        ("histogram", "histogram policy"),
    ],
)
def test_a_sidecar_missing_a_field_is_not_verified(cache_path, drop, words):
    """Deleting a field from the sidecar must not turn a check into a pass: auto needs
    `verified`, and an edited cache behind a sidecar without its checksum is not reused."""
    import json

    from trtcalib.cache import sidecar_path

    side = sidecar_path(cache_path)
    data = json.loads(side.read_text())
    assert drop in data
    del data[drop]
    side.write_text(json.dumps(data))
    decision = reuse_decision(cache_path, **SETTINGS)
    assert decision.reusable and not decision.verified  # reasons stay for real mismatches
    assert any(words in u for u in decision.unchecked), decision.unchecked
    assert any(line.startswith("not verifiable: ") for line in decision.why_not_verified())
    if drop == "cache_sha256":  # the edit is invisible to the checks, not to `verified`
        edited = cache_path.read_bytes().replace(b"3c23d70a", b"3f800000")
        assert edited != cache_path.read_bytes()
        cache_path.write_bytes(edited)
        assert not reuse_decision(cache_path, **SETTINGS).verified


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"model_fingerprint": "x" * 64}, "model changed"),
        ({"data_fingerprint": "x" * 64}, "data differs"),
        ({"algorithm": "mse"}, "algorithm differs"),
        ({"params": {"percentile": 99.9}}, "parameters differ"),
        ({"params": {"percentile": 99.99, "num_bins": 4096}}, "num_bins"),
        ({"batch_size": 8}, "batch size differs"),
        ({"histogram": "trt"}, "histogram policy differs"),
        ({"trt_version": 8601}, "TensorRT major version differs"),
        ({"tensor_names": ["input", "relu1", "conv9"]}, "missing from the cache"),
    ],
)
def test_each_difference_is_a_reason(cache_path, change, words):
    decision = reuse_decision(cache_path, **{**SETTINGS, **change})
    assert not decision.reusable
    assert len(decision.reasons) == 1, decision.reasons
    assert words in decision.reasons[0]


def test_same_major_other_minor_is_fine_unless_the_same_release_is_asked_for(cache_path):
    assert reuse_decision(cache_path, **{**SETTINGS, "trt_version": 100900}).reusable
    decision = reuse_decision(cache_path, **{**SETTINGS, "trt_version": 100900}, same_release=True)
    assert decision.reasons == [
        "TensorRT version differs: cache 10.14.1, target 10.9.0 (to relabel the scales instead: "
        "trtcalib cache convert CACHE --to cache --trt-version VERSION -o NEW)"
    ]
    assert reuse_decision(cache_path, **{**SETTINGS, "trt_version": 101401}, same_release=True)


def test_all_reasons_are_listed_at_once(cache_path):
    decision = reuse_decision(
        cache_path,
        model_fingerprint="x" * 64,
        data_fingerprint="y" * 64,
        algorithm="entropy",
        params={},
        batch_size=1,
        histogram="trt",
        trt_version=8601,
        tensor_names=["nope"],
    )
    text = " | ".join(decision.reasons)
    for words in (
        "model changed",
        "data differs",
        "algorithm differs",
        "batch size differs",
        "histogram policy",
        "TensorRT major version",
        "missing",
    ):
        assert words in text, words
    assert len(decision.reasons) == 7  # the algorithm change is reported once


def test_header_algorithm_is_checked_against_calibrator(tmp_path):
    # sidecar says entropy but the header was written for MinMax: TensorRT would ignore it
    path = tmp_path / "c.cache"
    cache = CalibrationCache.from_scales({"a": 1.0}, algorithm="MinMaxCalibration")
    write_cache(path, cache, Provenance(algorithm="entropy"))
    decision = reuse_decision(path, algorithm="entropy")
    assert not decision.reusable
    assert "EntropyCalibration2" in decision.reasons[0]


def test_missing_cache(tmp_path):
    decision = reuse_decision(tmp_path / "none.cache", **SETTINGS)
    assert not decision.reusable
    assert "no cache" in decision.reasons[0]


def test_tensorrt_cache_without_sidecar_says_what_was_not_checked(tmp_path):
    path = tmp_path / "trt.cache"
    path.write_bytes(b"TRT-101401-MinMaxCalibration\r\ninput: 3c23d70a\r\nrelu1: 3ca3d70a\r\n")
    decision = reuse_decision(path, **SETTINGS)
    assert decision.reusable  # TensorRT's own caches stay usable
    unchecked = " | ".join(decision.unchecked)
    for words in ("model", "data", "parameters", "batch size", "histogram"):
        assert words in unchecked, words
    # but what the cache itself tells is still checked
    bad = reuse_decision(path, **{**SETTINGS, "algorithm": "entropy", "trt_version": 8601})
    assert not bad.reusable and len(bad.reasons) == 2


def test_stale_sidecar_is_a_reason(cache_path):
    cache_path.write_bytes(cache_path.read_bytes() + b"extra: 3f800000\n")
    decision = reuse_decision(cache_path, **SETTINGS)
    assert not decision.reusable
    assert "does not match" in decision.reasons[0]


def test_sidecar_without_fields_leaves_them_unchecked(tmp_path):
    path = tmp_path / "c.cache"
    write_cache(
        path,
        CalibrationCache.from_scales({"input": 1.0, "relu1": 1.0}),
        Provenance(algorithm="entropy"),
    )
    decision = reuse_decision(path, model_fingerprint="m", batch_size=4, algorithm="entropy")
    assert decision.reusable
    assert any("model" in u for u in decision.unchecked)
    assert any("batch size" in u for u in decision.unchecked)


def test_corrupt_cache_raises(tmp_path):
    path = tmp_path / "c.cache"
    path.write_bytes(b"garbage")
    with pytest.raises(CacheFormatError):
        reuse_decision(path, **SETTINGS)
