"""Atomic cache + sidecar writes, provenance round trips, corrupt and stale sidecars."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

import trtcalib.cache.io as cache_io
from trtcalib.cache import (
    CalibrationCache,
    Provenance,
    StaleProvenanceError,
    parse_cache,
    read_cache,
    read_provenance,
    sidecar_path,
    write_cache,
)
from trtcalib.errors import CacheFormatError
from trtcalib.model import InputSpec


def make_provenance(**overrides) -> Provenance:
    fields = dict(
        algorithm="entropy",
        params={"num_bins": 2048},
        histogram="exact",
        batch_size=8,
        num_samples=64,
        data_fingerprint="d" * 64,
        model_fingerprint="m" * 64,
        inputs=[InputSpec("input", ("N", 3, 8, 8), np.dtype(np.float32))],
        tensors={"input": {"amax": 1.0, "min": 0.0, "max": 1.0}},
    )
    fields.update(overrides)
    return Provenance(**fields)


def old_and_new():
    old = CalibrationCache.from_scales({"input": 1.0, "relu": 2.0})
    new = CalibrationCache.from_scales({"input": 3.0, "relu": 4.0, "extra": 5.0})
    return old, new


def test_write_then_read_cache_and_sidecar(tmp_path):
    path = tmp_path / "model.cache"
    cache = CalibrationCache.from_scales({"input": 1 / 127, "x": math.inf})
    written = write_cache(path, cache, make_provenance())
    assert read_cache(path) == cache
    assert path.read_bytes() == cache.to_bytes()
    side = tmp_path / "model.cache.json"
    assert sidecar_path(path) == side and side.is_file()
    data = json.loads(side.read_text())  # standard JSON
    for key in (
        "trtcalib_version",
        "algorithm",
        "params",
        "histogram",
        "batch_size",
        "num_samples",
        "data_fingerprint",
        "model_fingerprint",
        "inputs",
        "trt_version",
        "created",
        "tensors",
        "format_version",
    ):
        assert key in data, key
    assert data["inputs"] == [{"name": "input", "shape": ["N", 3, 8, 8], "dtype": "float32"}]
    assert data["trt_version"] == 101601 and data["trt_algorithm"] == "EntropyCalibration2"
    assert data["created"].endswith("+00:00")
    prov = read_provenance(path)
    assert prov == written
    assert prov.tensors["input"].amax == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.cache", "model.cache.json"]


def test_non_finite_values_stay_valid_json(tmp_path):
    path = tmp_path / "c.cache"
    prov = make_provenance(
        tensors={"a": {"amax": math.inf, "min": -math.inf, "max": math.inf}},
        params={"p": math.nan},
    )
    write_cache(path, CalibrationCache.from_scales({"a": math.inf}), prov)
    text = sidecar_path(path).read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert data["tensors"]["a"] == {"amax": "inf", "min": "-inf", "max": "inf"}
    back = read_provenance(path)
    assert back.tensors["a"].amax == math.inf and back.tensors["a"].min == -math.inf


def test_cache_without_sidecar_is_usable(tmp_path):
    path = tmp_path / "trt.cache"
    path.write_bytes(b"TRT-100900-EntropyCalibration2\ninput: 3c010a14\n")
    assert read_provenance(path) is None
    assert read_cache(path).scales["input"] > 0


@pytest.mark.parametrize(
    "content",
    [
        "not json{",
        "[1, 2]",
        "{}",
        '{"format_version": 1}',
        '{"format_version": 99, "algorithm": "entropy"}',
        '{"format_version": 1, "algorithm": "entropy", "batch_size": "eight"}',
        '{"format_version": 1, "algorithm": "entropy", "tensors": {"a": {"amax": "big"}}}',
        '{"format_version": 1, "algorithm": "entropy", "tensors": [1]}',
        '{"format_version": 1, "algorithm": "entropy", "inputs": [{"shape": [1]}]}',
        '{"format_version": 1, "algorithm": "entropy", "inputs": [{"name": "x", "dtype": 5}]}',
        # an integer beyond float64 (json.loads gives an int, float() overflows)
        '{"format_version": 1, "algorithm": "entropy", "tensors": {"a": {"amax": 1'
        + "0" * 400
        + "}}}",
    ],
)
def test_corrupt_sidecar_is_a_clear_error(tmp_path, content):
    path = tmp_path / "c.cache"
    path.write_bytes(b"TRT-8601-EntropyCalibration2\na: 1\n")
    sidecar_path(path).write_text(content)
    with pytest.raises(CacheFormatError) as info:
        read_provenance(path)
    assert str(info.value).startswith(f"{path}.json: ")
    assert "\n" not in str(info.value)


def test_binary_sidecar_is_a_clear_error(tmp_path):
    path = tmp_path / "c.cache"
    path.write_bytes(b"TRT-8601-EntropyCalibration2\na: 1\n")
    sidecar_path(path).write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(CacheFormatError, match=r"c\.cache\.json"):
        read_provenance(path)


def test_sidecar_of_another_cache_is_stale(tmp_path):
    path = tmp_path / "c.cache"
    write_cache(path, CalibrationCache.from_scales({"a": 1.0}), make_provenance())
    path.write_bytes(CalibrationCache.from_scales({"a": 2.0}).to_bytes())  # edited by hand
    with pytest.raises(StaleProvenanceError, match="sha256"):
        read_provenance(path)
    assert read_provenance(path, check=False).algorithm == "entropy"


def test_writing_without_provenance_removes_old_sidecar(tmp_path):
    path = tmp_path / "c.cache"
    write_cache(path, CalibrationCache.from_scales({"a": 1.0}), make_provenance())
    write_cache(path, CalibrationCache.from_scales({"a": 2.0}))
    assert not sidecar_path(path).exists()
    assert read_cache(path).scales == {"a": 2.0}


def test_round_trip_of_parsed_cache_is_byte_exact_on_disk(tmp_path):
    data = b"TRT-8601-MinMaxCalibration\r\n(Unnamed Layer* 46) [Constant]_output: 3F800000"
    path = tmp_path / "c.cache"
    write_cache(path, parse_cache(data))
    assert path.read_bytes() == data


# ---------------------------------------------------------------- interrupted writes


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("exc_type", [OSError, KeyboardInterrupt, RuntimeError])
@pytest.mark.parametrize("fail_on_call", [1, 2])  # 1: cache temp, 2: sidecar temp
def test_interrupted_write_keeps_previous_files(tmp_path, monkeypatch, exc_type, fail_on_call):
    path = tmp_path / "model.cache"
    old, new = old_and_new()
    write_cache(path, old, make_provenance(batch_size=4))
    before = _snapshot(tmp_path)

    calls = {"n": 0}
    real = cache_io._write_all

    def write_half_then_fail(handle, data):
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            handle.write(data[: len(data) // 2])
            handle.flush()
            raise exc_type("simulated crash mid-write")
        real(handle, data)

    monkeypatch.setattr(cache_io, "_write_all", write_half_then_fail)
    expected = CacheFormatError if exc_type is OSError else exc_type
    with pytest.raises(expected):
        write_cache(path, new, make_provenance(batch_size=32))
    assert _snapshot(tmp_path) == before  # same files, same bytes, no temp files
    assert read_cache(path) == old
    assert read_provenance(path).batch_size == 4


def test_crash_between_renames_is_detected_not_trusted(tmp_path, monkeypatch):
    path = tmp_path / "model.cache"
    old, new = old_and_new()
    write_cache(path, old, make_provenance(batch_size=4))
    real_replace = os.replace

    def replace_sidecar_only(src, dst):
        if str(dst) == str(path):
            raise KeyboardInterrupt("power cut after the sidecar rename")
        real_replace(src, dst)

    monkeypatch.setattr(cache_io.os, "replace", replace_sidecar_only)
    with pytest.raises(KeyboardInterrupt):
        write_cache(path, new, make_provenance(batch_size=32))
    monkeypatch.setattr(cache_io.os, "replace", real_replace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.cache", "model.cache.json"]
    assert read_cache(path) == old  # the cache is whole (the old one)
    with pytest.raises(StaleProvenanceError):  # and the new sidecar is not believed
        read_provenance(path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_written_files_get_normal_permissions(tmp_path):
    path = tmp_path / "c.cache"
    umask = os.umask(0o022)
    try:
        write_cache(path, CalibrationCache.from_scales({"a": 1.0}), make_provenance())
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert sidecar_path(path).stat().st_mode & 0o777 == 0o644
    path.chmod(0o640)
    write_cache(path, CalibrationCache.from_scales({"a": 2.0}))
    assert path.stat().st_mode & 0o777 == 0o640  # an existing file keeps its mode


def test_write_into_missing_folder_or_directory(tmp_path):
    cache = CalibrationCache.from_scales({"a": 1.0})
    with pytest.raises(CacheFormatError, match="does not exist"):
        write_cache(tmp_path / "nope" / "c.cache", cache)
    with pytest.raises(CacheFormatError, match="directory"):
        write_cache(tmp_path, cache)
    assert list(tmp_path.iterdir()) == []


def test_a_sidecar_without_creation_time_or_version_keeps_them_unknown():
    """Reading must not stamp the reader's clock and version on an old or hand-made sidecar."""
    data = Provenance("entropy").to_json_dict()
    del data["created"], data["trtcalib_version"]
    prov = Provenance.from_json_dict(data, "old.json")
    assert prov.created is None and prov.trtcalib_version is None
    again = Provenance.from_json(prov.to_json(), "again.json")  # written back: still unknown
    assert again.created is None and again.trtcalib_version is None
