"""Our calibrators against the REAL TensorRT 10.16 bindings (link stubs, no GPU).

`play_tensorrt` plays TensorRT's side of the calibration protocol (TENSORRT-CALIBRATION.md §2)
against a calibrator that uses the host backend, whose "device pointers" are numpy addresses.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import numpy as np
import pytest
import tinymodels

from trtcalib.cache import CalibrationCache, read_cache, read_provenance
from trtcalib.data import open_source
from trtcalib.errors import ConfigError
from trtcalib.fingerprint import DataFingerprint
from trtcalib.model import input_specs
from trtcalib.trt.device import HostBackend, InputBuffer


@dataclass
class Settings:
    """The fields of trtcalib.calibrate.CalibrationSettings a TensorRT calibrator reads."""

    calibrator: str = "entropy"
    batch_size: int = 4
    last_batch: str = "drop"
    params: dict = field(default_factory=dict)


@dataclass
class Played:
    used_cache: bool
    batches: list[list[np.ndarray]]  # per batch, per asked name: the bytes TensorRT saw


def play_tensorrt(calib, names, specs, cache_written: bytes | None = None) -> Played:
    """TensorRT's side: batch size, cache, batches until None (reading each pointer before the
    next call, as TensorRT does), then the cache it writes."""
    assert calib.get_batch_size() > 0
    cached = calib.read_calibration_cache()
    header = f"-{calib.trt_algorithm}".encode()
    if cached is not None and bytes(cached).split(b"\n", 1)[0].endswith(header):
        return Played(True, [])
    batches = []
    while True:
        pointers = calib.get_batch(list(names))
        if pointers is None:
            break
        assert len(pointers) == len(names)
        seen = []
        for ptr, name in zip(pointers, names, strict=True):
            spec = specs[name]
            raw = ctypes.string_at(ptr, spec.nbytes)
            seen.append(np.frombuffer(raw, dtype=spec.dtype).reshape(spec.shape).copy())
        batches.append(seen)
    if cache_written is not None:
        calib.write_calibration_cache(memoryview(cache_written))
    return Played(False, batches)


@pytest.fixture
def calibrators(trt10):
    from trtcalib.trt import calibrators

    return calibrators


@pytest.fixture
def two_inputs(tmp_path):
    """two_input_model with 10 samples: a[10,4], b[10,4] (float32)."""
    model = tinymodels.two_input_model()
    rng = np.random.default_rng(7)
    a = rng.normal(size=(10, 4)).astype(np.float32)
    b = rng.normal(size=(10, 4)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", a=a, b=b)
    source = open_source(tmp_path / "calib.npz", input_specs(model))
    return source, a, b


def _specs(batch, dtype=np.float32):
    return {n: InputBuffer(n, (batch, 4), np.dtype(dtype)) for n in ("a", "b")}


def _make(cls, source, settings, specs, backend=None, **options):
    return cls(
        source,
        settings,
        inputs=list(specs.values()),
        backend=backend or HostBackend(),
        progress=False,
        **options,
    )


# ------------------------------------------------------------------ TensorRT's own classes


@pytest.mark.parametrize(
    ("name", "base", "algo"),
    [
        ("EntropyCalibrator2", "IInt8EntropyCalibrator2", "ENTROPY_CALIBRATION_2"),
        ("MinMaxCalibrator", "IInt8MinMaxCalibrator", "MINMAX_CALIBRATION"),
        ("LegacyCalibrator", "IInt8LegacyCalibrator", "LEGACY_CALIBRATION"),
        ("PercentileCalibrator", "IInt8MinMaxCalibrator", "MINMAX_CALIBRATION"),
        ("MSECalibrator", "IInt8MinMaxCalibrator", "MINMAX_CALIBRATION"),
    ],
)
def test_real_base_class_and_algorithm_from_tensorrt(
    trt10, calibrators, two_inputs, name, base, algo
):
    import trtcalib.trt

    cls = getattr(trtcalib.trt, name)  # the lazy package attribute is the module's class
    assert cls is getattr(calibrators, name)
    calib = _make(cls, two_inputs[0], Settings(calibrator="x"), _specs(4))
    assert isinstance(calib, getattr(trt10, base))
    assert isinstance(calib, trt10.IInt8Calibrator)
    # we never override get_algorithm: TensorRT's C++ class answers
    ours = [k for k in cls.__mro__ if k.__module__.startswith("trtcalib")]
    assert not any("get_algorithm" in vars(k) for k in ours)
    assert calib.get_algorithm() == getattr(trt10.CalibrationAlgoType, algo)
    # TensorRT's C++ getBatchSize() reaches our Python override through the trampoline
    with pytest.warns(DeprecationWarning):  # TensorRT deprecates get_batch_size itself
        assert trt10.IInt8Calibrator.get_batch_size(calib) == 4
    # and our cache header names what TensorRT's algorithm is called in caches
    header = {
        "ENTROPY_CALIBRATION_2": "EntropyCalibration2",
        "MINMAX_CALIBRATION": "MinMaxCalibration",
        "LEGACY_CALIBRATION": "LegacyCalibration",
    }[algo]
    assert cls.trt_algorithm == header


def test_every_callback_tensorrt_defines_is_overridden(trt10, calibrators):
    for cls in (
        calibrators.EntropyCalibrator2,
        calibrators.MinMaxCalibrator,
        calibrators.LegacyCalibrator,
        calibrators.PercentileCalibrator,
    ):
        trt_base = next(k for k in cls.__mro__ if k.__module__.startswith("tensorrt"))
        callbacks = [n for n in dir(trt_base) if not n.startswith("_") and n != "get_algorithm"]
        assert {"get_batch", "get_batch_size", "read_calibration_cache"} <= set(callbacks)
        for callback in callbacks:
            assert callable(getattr(cls, callback))
            assert getattr(cls, callback) is not getattr(trt_base, callback), (cls, callback)
    legacy = calibrators.LegacyCalibrator
    for pure in (
        "get_quantile",
        "get_regression_cutoff",
        "read_histogram_cache",
        "write_histogram_cache",
    ):  # pure virtual in TensorRT's legacy trampoline
        assert pure in vars(legacy)


# ------------------------------------------------------------------ the protocol


def test_batches_reach_tensorrt_in_the_asked_order(calibrators, two_inputs):
    source, a, b = two_inputs
    specs = _specs(4)
    backend = HostBackend()
    calib = _make(calibrators.EntropyCalibrator2, source, Settings(), specs, backend)
    played = play_tensorrt(calib, ["b", "a"], specs)
    assert not played.used_cache
    assert len(played.batches) == 2  # 10 samples, batch 4, last partial batch dropped
    for i, (seen_b, seen_a) in enumerate(played.batches):
        np.testing.assert_array_equal(seen_b, b[4 * i : 4 * i + 4])
        np.testing.assert_array_equal(seen_a, a[4 * i : 4 * i + 4])
    assert (calib.batches_fed, calib.samples_fed, calib.padded_samples) == (2, 8, 0)
    assert backend.buffers == {} and backend.host_buffers == {}  # freed at end of data
    calib.raise_if_failed()  # nothing went wrong


def test_padding_repeats_the_last_sample_and_counts_real_samples(calibrators, two_inputs):
    source, a, b = two_inputs
    specs = _specs(4)
    calib = _make(calibrators.MinMaxCalibrator, source, Settings(last_batch="pad"), specs)
    played = play_tensorrt(calib, ["a", "b"], specs)
    assert len(played.batches) == 3
    expected_last = np.concatenate([a[8:10], a[9:10], a[9:10]])
    np.testing.assert_array_equal(played.batches[2][0], expected_last)
    assert (calib.samples_fed, calib.padded_samples) == (10, 2)


def test_keep_is_refused_because_tensorrt_needs_the_opt_shape(calibrators, two_inputs):
    with pytest.raises(ConfigError, match="OPT"):
        _make(calibrators.EntropyCalibrator2, two_inputs[0], Settings(last_batch="keep"), _specs(4))


def test_input_converted_to_the_network_dtype(calibrators, two_inputs):
    source, a, b = two_inputs
    specs = _specs(4, np.float16)
    calib = _make(calibrators.MinMaxCalibrator, source, Settings(), specs)
    played = play_tensorrt(calib, ["a", "b"], specs)
    assert played.batches[0][0].dtype == np.float16
    np.testing.assert_array_equal(played.batches[0][0], a[:4].astype(np.float16))


def test_matching_cache_short_circuits_calibration(calibrators, two_inputs, tmp_path):
    source = two_inputs[0]
    given = CalibrationCache.from_scales({"a": 0.01, "prod": 0.5}, algorithm="EntropyCalibration2")
    path = tmp_path / "out.cache"
    backend = HostBackend()
    calib = _make(
        calibrators.EntropyCalibrator2,
        source,
        Settings(),
        _specs(4),
        backend,
        cache=given,
        cache_path=path,
    )
    data = calib.read_calibration_cache()
    header, *lines = bytes(data).decode().splitlines()
    assert header == "TRT-101601-EntropyCalibration2"  # stamped with the running TensorRT
    assert read_cache_bytes(lines) == {"a": "3c23d70a", "prod": "3f000000"}
    played = play_tensorrt(calib, ["a", "b"], _specs(4))
    assert played.used_cache and calib.used_cache
    assert calib.feeder is None and calib.batches_fed == 0 and backend.buffers == {}
    # TensorRT then writes the same scales back: a seeded run does not overwrite the user's file
    calib.write_calibration_cache(memoryview(bytes(data)))
    assert not path.exists()


def read_cache_bytes(lines):
    return dict(line.rsplit(": ", 1) for line in lines)


def test_cache_of_another_algorithm_is_refused(calibrators, two_inputs):
    given = CalibrationCache.from_scales({"a": 0.01}, algorithm="MinMaxCalibration")
    with pytest.raises(ConfigError, match="MinMaxCalibration"):
        _make(calibrators.EntropyCalibrator2, two_inputs[0], Settings(), _specs(4), cache=given)


def test_written_cache_goes_through_trtcalib_cache_with_provenance(
    calibrators, two_inputs, tmp_path
):
    source, a, b = two_inputs
    path = tmp_path / "trt.cache"
    calib = _make(calibrators.EntropyCalibrator2, source, Settings(), _specs(4), cache_path=path)
    # what TensorRT writes: its own header, internal names included, a colon in a name
    written = (
        b"TRT-101601-EntropyCalibration2\n"
        b"a: 3c010a14\n"
        b"(Unnamed Layer* 3) [Constant]_output: 3f800000\n"
        b"out: 7f800000\n"
    )
    play_tensorrt(calib, ["a", "b"], _specs(4), cache_written=written)
    assert path.read_bytes() == written  # TensorRT's bytes, unchanged
    cache = read_cache(path)
    assert list(cache.scales) == ["a", "(Unnamed Layer* 3) [Constant]_output", "out"]
    prov = read_provenance(path)
    assert prov.extra["calibrated_by"] == "tensorrt"
    assert prov.extra["tensorrt_version"] == "10.16.1.11"
    assert prov.extra["last_batch"] == "drop"
    assert prov.algorithm == "entropy" and prov.batch_size == 4 and prov.num_samples == 8
    assert prov.histogram == "tensorrt"
    reference = DataFingerprint()  # the 8 samples TensorRT saw, fingerprinted independently
    reference.update({"a": a[:8], "b": b[:8]})
    assert prov.data_fingerprint == reference.hexdigest()
    assert prov.tensors["(Unnamed Layer* 3) [Constant]_output"].amax == pytest.approx(127.0)


def test_end_of_data_returns_none_every_time_after(calibrators, two_inputs):
    specs = _specs(4)
    calib = _make(calibrators.MinMaxCalibrator, two_inputs[0], Settings(), specs)
    assert len(play_tensorrt(calib, ["a", "b"], specs).batches) == 2
    assert calib.get_batch(["a", "b"]) is None


class ExplodingSource:
    """Yields one good chunk of 4 samples, then fails like a broken loader would."""

    input_names = ["a", "b"]
    num_samples = 12

    def samples(self):
        yield {"a": np.ones((4, 4), np.float32), "b": np.ones((4, 4), np.float32)}
        raise OSError("disk vanished while reading calib.npz")


def test_exception_in_the_source_surfaces_after_the_build(calibrators):
    specs = _specs(4)
    backend = HostBackend()
    calib = _make(calibrators.EntropyCalibrator2, ExplodingSource(), Settings(), specs, backend)
    # the prefetch of batch 2 fails inside the first get_batch: TensorRT must see "no data",
    # never a Python exception escaping into its noexcept C++ callback
    pointers = calib.get_batch(["a", "b"])
    assert pointers is None
    assert backend.buffers == {}  # freed on error
    assert calib.get_batch(["a", "b"]) is None
    with pytest.raises(Exception, match="disk vanished") as info:
        calib.raise_if_failed()
    assert isinstance(info.value.__cause__, OSError)
    calib.raise_if_failed()  # raised once


def test_tensorrt_asking_for_an_unknown_input_fails_the_build(calibrators, two_inputs):
    calib = _make(calibrators.MinMaxCalibrator, two_inputs[0], Settings(), _specs(4))
    assert calib.get_batch(["a", "nope"]) is None
    with pytest.raises(Exception, match="'nope'"):
        calib.raise_if_failed()


def test_legacy_parameters(calibrators, two_inputs):
    calib = _make(calibrators.LegacyCalibrator, two_inputs[0], Settings(), _specs(4))
    assert (calib.get_quantile(), calib.get_regression_cutoff()) == (0.9999, 1.0)
    custom = Settings(params={"quantile": 0.99, "regression_cutoff": 0.5})
    calib = _make(calibrators.LegacyCalibrator, two_inputs[0], custom, _specs(4))
    assert (calib.get_quantile(), calib.get_regression_cutoff()) == (0.99, 0.5)
    assert calib.read_histogram_cache(16) is None


# ------------------------------------------------------------------ percentile / mse


def test_percentile_hands_tensorrt_a_minmax_cache_and_never_streams(calibrators, two_inputs):
    given = CalibrationCache.from_scales({"a": 0.02}, algorithm="MinMaxCalibration")
    calib = _make(
        calibrators.PercentileCalibrator,
        two_inputs[0],
        Settings(calibrator="percentile"),
        _specs(4),
        cache=given,
    )
    played = play_tensorrt(calib, ["a", "b"], _specs(4))
    assert played.used_cache
    assert bytes(calib.read_calibration_cache()).startswith(b"TRT-101601-MinMaxCalibration\n")
    # if TensorRT ever rejected the cache and asked for batches, the build must fail loudly
    assert calib.get_batch(["a", "b"]) is None
    with pytest.raises(Exception, match="did not accept the precomputed percentile scales"):
        calib.raise_if_failed()


def test_a_plugin_cache_seeds_the_precomputed_calibrator(calibrators, two_inputs, monkeypatch):
    """A plugin may write another header (here EntropyCalibration2): its own cache is accepted,
    offered to TensorRT as MinMaxCalibration; a cache of another algorithm is still refused."""
    from trtcalib.stats import AmaxAlgorithm, registry

    class EntropyLike(AmaxAlgorithm):
        name = "entropy_like"
        trt_algorithm = "EntropyCalibration2"

        def compute(self, stats, **params):
            return stats.amax

    monkeypatch.setitem(registry._REGISTRY, "entropy_like", EntropyLike)
    given = CalibrationCache.from_scales({"a": 0.02}, algorithm="EntropyCalibration2")
    settings = Settings(calibrator="entropy_like")
    cls = calibrators.calibrator_class("entropy_like")
    calib = _make(cls, two_inputs[0], settings, _specs(4), cache=given)
    assert play_tensorrt(calib, ["a", "b"], _specs(4)).used_cache
    assert bytes(calib.read_calibration_cache()).startswith(b"TRT-101601-MinMaxCalibration\n")
    minmax = CalibrationCache.from_scales({"a": 0.02}, algorithm="MinMaxCalibration")
    with pytest.raises(ConfigError, match="takes only EntropyCalibration2 caches"):
        _make(cls, two_inputs[0], settings, _specs(4), cache=minmax)


def test_percentile_prepare_runs_the_cpu_calibration(calibrators, two_inputs, tmp_path):
    from trtcalib.calibrate import CalibrationSettings

    source, a, b = two_inputs
    model_path = tinymodels.save(tinymodels.two_input_model(), tmp_path)
    settings = CalibrationSettings(
        calibrator="percentile", params={"percentile": 100.0}, batch_size=4, last_batch="drop"
    )
    path = tmp_path / "p.cache"
    calib = _make(calibrators.PercentileCalibrator, source, settings, _specs(4), cache_path=path)
    calib.prepare(model_path)
    cache = read_cache(path)
    assert cache.algorithm == "MinMaxCalibration"
    # the 100th percentile of |a| over the 8 samples used is at most max|a| (bin resolution)
    assert cache.amax["a"] <= float(np.abs(a[:8]).max()) * (1 + 1e-6)
    assert cache.amax["a"] >= float(np.abs(a[:8]).max()) * (1 - 2 / 2048)
    assert read_provenance(path).algorithm == "percentile"
    assert play_tensorrt(calib, ["a", "b"], _specs(4)).used_cache


def test_a_cache_our_parser_rejects_is_kept_as_tensorrt_wrote_it(calibrators, two_inputs, tmp_path):
    path = tmp_path / "odd.cache"
    calib = _make(
        calibrators.MinMaxCalibrator, two_inputs[0], Settings(), _specs(4), cache_path=path
    )
    odd = b"TRT-101601-MinMaxCalibration\nno colon on this line\n"
    play_tensorrt(calib, ["a", "b"], _specs(4), cache_written=odd)
    assert path.read_bytes() == odd
    assert read_provenance(path) is None
    calib.raise_if_failed()  # the build itself is fine


def test_no_data_and_a_rejected_cache_fails_with_the_reason(calibrators):
    given = CalibrationCache.from_scales({"a": 0.01}, algorithm="EntropyCalibration2")
    calib = _make(calibrators.EntropyCalibrator2, None, Settings(), _specs(4), cache=given)
    assert calib.get_batch(["a", "b"]) is None  # TensorRT ignored the cache and asks for data
    with pytest.raises(Exception, match="no calibration data was given"):
        calib.raise_if_failed()
