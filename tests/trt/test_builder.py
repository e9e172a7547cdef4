"""Build orchestration with the real 10.16 module but a stand-in builder (no GPU here): flags,
profiles, timing cache, a calibration error failing the build with nothing written, and the whole
`trtcalib build` success path (TensorRT's calibration, then auto-reuse of the cache it wrote).

What TensorRT itself does with these calls is only testable on a GPU host (test_gpu.py); that
every method called exists in the real bindings is checked by test_api_conformance.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trtcalib.trt.builder import EngineBuildError, EngineRequest, profiles
from trtcalib.trt.device import HostBackend, InputBuffer


class FakeTiming:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return b"timing:" + bytes(self.data)


class FakeConfig:
    def __init__(self) -> None:
        self.flags: list = []
        self.int8_calibrator = None
        self.pool = None
        self.timing = None

    def set_memory_pool_limit(self, pool, size) -> None:
        self.pool = (pool, size)

    def create_timing_cache(self, data):
        return FakeTiming(data)

    def set_timing_cache(self, cache, ignore_mismatch) -> None:
        self.timing = cache

    def get_timing_cache(self):
        return self.timing

    def set_flag(self, flag) -> None:
        self.flags.append(flag)


class FakeBuilder:
    """Plays TensorRT's build: runs the calibrator's protocol, returns engine bytes (or None)."""

    logger = None

    def __init__(self, result: bytes | None = b"ENGINE") -> None:
        self.result = result
        self.config: FakeConfig | None = None
        self.batches = 0

    def create_builder_config(self):
        self.config = FakeConfig()
        return self.config

    def build_serialized_network(self, network, config):
        calib = config.int8_calibrator
        calib.get_batch_size()
        calib.read_calibration_cache()
        while calib.get_batch(["input"]) is not None:
            self.batches += 1
        return self.result


class GoodSource:
    input_names = ["input"]
    num_samples = 8

    def samples(self):
        yield {"input": np.ones((8, 3), np.float32)}


class BadSource(GoodSource):
    def samples(self):
        yield {"input": np.ones((4, 3), np.float32)}
        raise OSError("disk vanished")


class Settings:
    calibrator = "minmax"
    batch_size = 4
    last_batch = "drop"
    params: dict = {}


@pytest.fixture
def build(trt10, monkeypatch, tmp_path):
    from trtcalib.trt import calibrators, implicit

    monkeypatch.setattr(implicit, "parse", lambda *a: (object(), object()))
    monkeypatch.setattr(implicit, "profiles", lambda *a: (None, None))

    def run(source, builder, **request_options):
        calib = calibrators.MinMaxCalibrator(
            source,
            Settings(),
            inputs=[InputBuffer("input", (4, 3), np.dtype(np.float32))],
            backend=HostBackend(),
            progress=False,
        )
        request = EngineRequest(
            onnx_path=tmp_path / "model.onnx",
            engine_path=tmp_path / "engines" / "m.engine",
            opt_shapes={"input": (4, 3)},
            timing_cache_path=tmp_path / "engines" / "m.timing",
            **request_options,
        )
        try:
            return implicit.build_implicit(request, calib, builder), calib
        finally:
            run.calib = calib

    return run


def test_int8_build_writes_engine_and_timing_cache(build, trt10, tmp_path):
    builder = FakeBuilder()
    path, calib = build(GoodSource(), builder, fp16=True, workspace_mb=64)
    assert Path(path).read_bytes() == b"ENGINE"
    assert (tmp_path / "engines" / "m.timing").read_bytes() == b"timing:"
    assert builder.config.flags == [trt10.BuilderFlag.INT8, trt10.BuilderFlag.FP16]
    assert builder.config.pool == (trt10.MemoryPoolType.WORKSPACE, 64 << 20)
    assert builder.batches == 2 and calib.feeder is None


def test_calibration_error_fails_the_build_and_writes_nothing(build, tmp_path):
    with pytest.raises(Exception, match="disk vanished"):
        build(BadSource(), FakeBuilder())
    assert not (tmp_path / "engines").exists()
    assert build.calib.feeder is None  # device memory freed


def test_no_engine_from_tensorrt_is_an_error(build, tmp_path):
    with pytest.raises(EngineBuildError, match="could not build"):
        build(GoodSource(), FakeBuilder(result=None))
    assert not (tmp_path / "engines").exists()


class FakeTensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


class FakeNetwork:
    def __init__(self, *tensors):
        self.tensors = tensors
        self.num_inputs = len(tensors)

    def get_input(self, i):
        return self.tensors[i]


class FakeProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = (lo, opt, hi)


class ProfileBuilder:
    def create_optimization_profile(self):
        return FakeProfile()


def test_calibration_profile_is_pinned_to_the_opt_shape():
    network = FakeNetwork(FakeTensor("x", (-1, 3, 8, 8)), FakeTensor("y", (-1, 4)))
    engine, calib = profiles(ProfileBuilder(), network, {"x": (8, 3, 8, 8), "y": (8, 4)})
    assert engine.shapes["x"] == ((1, 3, 8, 8), (8, 3, 8, 8), (8, 3, 8, 8))
    assert calib.shapes["x"] == ((8, 3, 8, 8),) * 3  # MIN = OPT = MAX for calibration
    assert calib.shapes["y"] == ((8, 4),) * 3


def test_static_network_needs_no_profile():
    assert profiles(ProfileBuilder(), FakeNetwork(FakeTensor("x", (8, 3))), {"x": (8, 3)}) == (
        None,
        None,
    )


# ------------------------------------------------------------------ `trtcalib build`, GPU stand-in


class CalibratingBuilder:
    """Plays TensorRT 10's whole build: cache check, batches, then the cache TensorRT writes."""

    logger = None

    def __init__(self) -> None:
        self.batches = 0
        self.offered: bytes | None = None

    def create_builder_config(self):
        return FakeConfig()

    def build_serialized_network(self, network, config):
        calib = config.int8_calibrator
        offered = calib.read_calibration_cache()
        self.offered = None if offered is None else bytes(offered)
        header = f"-{calib.trt_algorithm}".encode()
        if self.offered is None or not self.offered.split(b"\n")[0].endswith(header):
            while calib.get_batch(["input"]) is not None:
                self.batches += 1
            calib.write_calibration_cache(
                memoryview(b"TRT-101601-EntropyCalibration2\ninput: 3c010a14\nlogits: 3d000000\n")
            )
        return b"ENGINE"


def test_build_succeeds_then_auto_reuses_tensorrts_own_cache(cli, trt10, monkeypatch, tmp_path):
    import tinymodels

    from trtcalib.cache import read_provenance
    from trtcalib.trt import builder as builder_module
    from trtcalib.trt import device, implicit

    monkeypatch.chdir(tmp_path)
    tinymodels.save(tinymodels.conv_model(), tmp_path)
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "calib.npz", input=rng.normal(size=(20, 3, 8, 8)).astype(np.float32))
    fake = CalibratingBuilder()
    monkeypatch.setattr(builder_module, "make_builder", lambda *a: (fake, None))
    monkeypatch.setattr(device, "make_backend", lambda name="cuda-python": HostBackend())
    monkeypatch.setattr(implicit, "parse", lambda *a: (object(), object()))
    monkeypatch.setattr(implicit, "profiles", lambda *a: (None, None))

    args = ("build", "model.onnx", "--data", "calib.npz", "--batch", "8", "--last-batch", "pad")
    result = cli(*args, "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "engines" / "model.entropy.b8.engine").read_bytes() == b"ENGINE"
    assert "TensorRT calibration" in result.stdout and "3 batches, 20 samples" in result.stdout
    assert fake.batches == 3 and fake.offered is None
    prov = read_provenance(tmp_path / "caches" / "model.entropy.b8.cache")
    assert prov.extra["calibrated_by"] == "tensorrt" and prov.extra["padded_samples"] == 4

    again = CalibratingBuilder()
    monkeypatch.setattr(builder_module, "make_builder", lambda *a: (again, None))
    second = cli(*args, "--no-progress")
    assert second.exit_code == 0, second.stderr
    assert "made by tensorrt" in second.stderr and "calibration skipped" in second.stderr
    assert again.batches == 0  # TensorRT took the cache: no batch was streamed
    assert again.offered.startswith(b"TRT-101601-EntropyCalibration2\n")
    assert "reused cache" in second.stdout


def test_percentile_build_hands_tensorrt_the_cpu_scales(cli, trt10, monkeypatch, tmp_path):
    import tinymodels

    from trtcalib.cache import read_cache
    from trtcalib.trt import builder as builder_module
    from trtcalib.trt import implicit

    monkeypatch.chdir(tmp_path)
    tinymodels.save(tinymodels.conv_model(), tmp_path)
    rng = np.random.default_rng(6)
    np.savez(tmp_path / "calib.npz", input=rng.normal(size=(16, 3, 8, 8)).astype(np.float32))
    fake = CalibratingBuilder()
    monkeypatch.setattr(builder_module, "make_builder", lambda *a: (fake, None))
    monkeypatch.setattr(implicit, "parse", lambda *a: (object(), object()))
    monkeypatch.setattr(implicit, "profiles", lambda *a: (None, None))
    result = cli(
        "build",
        "model.onnx",
        "--data",
        "calib.npz",
        "--batch",
        "8",
        "--calibrator",
        "percentile",
        "--no-progress",
    )
    assert result.exit_code == 0, result.stderr
    assert fake.batches == 0  # TensorRT never streamed: it took the MinMaxCalibration cache
    cache = read_cache(tmp_path / "caches" / "model.percentile.b8.cache")
    offered = fake.offered.decode().splitlines()
    assert offered[0] == "TRT-101601-MinMaxCalibration"
    assert dict(line.rsplit(": ", 1) for line in offered[1:]) == {
        name: cache.hex(name) for name in cache.scales
    }
    assert "handed to TensorRT as a cache" in result.stdout
