"""On a GPU host with TensorRT: real engine builds (run with `pytest -m gpu`; skipped elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest

from trtcalib.cache import read_cache, read_provenance

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_env():
    from trtcalib.trt.env import environment

    env = environment()
    runs = {p["name"]: p for p in env["build_paths"]}
    if not any(p["runs_here"] for name, p in runs.items() if "engine" in name):
        pytest.skip("no TensorRT engine build path runs on this machine (see `trtcalib env`)")
    return env


def _implicit(env):
    if env["tensorrt"]["quantization"] != "implicit":
        pytest.skip("needs TensorRT 10 (calibrators)")


def test_entropy_engine_is_built_by_tensorrt_calibration_then_reused(cli, workdir, gpu_env):
    _implicit(gpu_env)
    args = ("build", "model.onnx", "--data", "calib.npz", "--batch", "8", "--no-progress")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    engine = workdir / "engines" / "model.entropy.b8.engine"
    assert engine.stat().st_size > 0
    assert (workdir / "engines" / "model.entropy.b8.timing").is_file()
    cache_path = workdir / "caches" / "model.entropy.b8.cache"
    assert read_cache(cache_path).algorithm == "EntropyCalibration2"
    prov = read_provenance(cache_path)
    assert prov.extra["calibrated_by"] == "tensorrt" and prov.num_samples == 16
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    assert runtime.deserialize_cuda_engine(engine.read_bytes()) is not None
    again = cli(*args)
    assert again.exit_code == 0 and "calibration skipped" in again.stderr


def test_percentile_scales_reach_tensorrt_as_a_cache(cli, workdir, gpu_env):
    _implicit(gpu_env)
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
    assert "handed to TensorRT as a cache" in result.stdout


def test_explicit_qdq_engine(cli, workdir, gpu_env):
    if gpu_env["tensorrt"]["quantization"] != "explicit":
        pytest.skip("needs TensorRT 11")
    result = cli("build", "model.onnx", "--data", "calib.npz", "--batch", "8", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert (workdir / "engines" / "model.entropy.b8.engine").stat().st_size > 0


def test_cuda_python_feeder_round_trip(gpu_env):
    from trtcalib.trt.device import CudaPythonBackend, DeviceFeeder, InputBuffer

    backend = CudaPythonBackend()
    spec = InputBuffer("x", (4, 5), np.dtype(np.float16))
    data = np.arange(20, dtype=np.float64).reshape(4, 5)
    with DeviceFeeder([spec], backend) as feeder:
        feeder.stage({"x": data})
        (ptr,) = feeder.take(["x"])
        out = np.empty((4, 5), np.float16)
        kind = backend.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        backend._check(backend.rt.cudaMemcpy(out.ctypes.data, ptr, out.nbytes, kind), "cudaMemcpy")
    np.testing.assert_array_equal(out, data.astype(np.float16))
