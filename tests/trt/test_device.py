"""Device buffers and double buffering (host backend), and the CUDA backends' error paths."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from trtcalib.errors import DataError, TensorRTUnavailableError
from trtcalib.trt.device import DeviceFeeder, HostBackend, InputBuffer, make_backend


def _read(ptr: int, spec: InputBuffer) -> np.ndarray:
    raw = ctypes.string_at(ptr, spec.nbytes)
    return np.frombuffer(raw, dtype=spec.dtype).reshape(spec.shape)


def _specs():
    return [
        InputBuffer("a", (2, 3), np.dtype(np.float32)),
        InputBuffer("b", (2, 4), np.dtype(np.float16)),
    ]


def _batch(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.normal(size=(2, 3)), "b": rng.normal(size=(2, 4)).astype(np.float32)}


def test_pointers_follow_names_order_and_hold_converted_bytes():
    backend = HostBackend()
    specs = _specs()
    with DeviceFeeder(specs, backend) as feeder:
        batch = _batch(0)
        feeder.stage(batch)
        pointers = feeder.take(["b", "a"])
        b = _read(pointers[0], specs[1])
        a = _read(pointers[1], specs[0])
        assert b.dtype == np.float16 and a.dtype == np.float32  # the network's dtypes
        np.testing.assert_array_equal(a, batch["a"].astype(np.float32))
        np.testing.assert_array_equal(b, batch["b"].astype(np.float16))


def test_two_slots_are_allocated_once_and_alternate():
    backend = HostBackend()
    specs = _specs()
    feeder = DeviceFeeder(specs, backend)
    assert len(backend.buffers) == 2 * len(specs)  # two device slots per input, at OPT shape
    assert len(backend.host_buffers) == 2 * len(specs)  # and two pinned staging buffers
    seen = []
    feeder.stage(_batch(0))
    for step in range(1, 5):
        pointers = feeder.take(["a"])
        seen.append(pointers[0])
        feeder.stage(_batch(step))  # prefetch while "TensorRT" holds the taken slot
        # the prefetched copy is queued, not done: the held slot still has its own batch
        np.testing.assert_array_equal(
            _read(pointers[0], specs[0]), _batch(step - 1)["a"].astype(np.float32)
        )
    assert len(set(seen)) == 2 and seen[0] == seen[2] and seen[1] == seen[3]
    assert len(backend.buffers) == 2 * len(specs)  # nothing allocated per batch
    feeder.close()


def test_copy_is_waited_for_before_the_pointer_is_returned():
    backend = HostBackend()
    specs = _specs()
    feeder = DeviceFeeder(specs, backend)
    feeder.stage(_batch(1))
    stream = feeder._stream
    assert stream.executed == 0 and len(stream.ops) == 2  # asynchronous: queued only
    pointers = feeder.take(["a", "b"])
    assert stream.executed == 2
    np.testing.assert_array_equal(_read(pointers[0], specs[0]), _batch(1)["a"].astype(np.float32))
    feeder.close()


def test_a_slot_tensorrt_holds_is_never_restaged():
    feeder = DeviceFeeder(_specs(), HostBackend())
    feeder.stage(_batch(0))
    feeder.stage(_batch(1))
    with pytest.raises(RuntimeError, match="no free slot"):
        feeder.stage(_batch(2))
    feeder.take(["a"])
    feeder.take(["a"])  # slot 1 is now held, slot 0 free
    feeder.stage(_batch(2))
    with pytest.raises(RuntimeError, match="no free slot"):
        feeder.stage(_batch(3))
    feeder.close()


def test_wrong_shape_and_unknown_name_are_data_errors():
    feeder = DeviceFeeder(_specs(), HostBackend())
    with pytest.raises(DataError, match=r"input 'a'.*\[3, 3\].*\[2, 3\]"):
        feeder.stage({"a": np.zeros((3, 3)), "b": np.zeros((2, 4))})
    with pytest.raises(DataError, match="no input 'b'"):
        feeder.stage({"a": np.zeros((2, 3))})
    feeder.stage(_batch(0))
    with pytest.raises(DataError, match="input 'c'"):
        feeder.take(["a", "c"])
    feeder.close()


def test_close_frees_everything_once():
    backend = HostBackend()
    feeder = DeviceFeeder(_specs(), backend)
    feeder.stage(_batch(0))
    feeder.close()
    feeder.close()
    assert backend.buffers == {} and backend.host_buffers == {}


def test_allocation_failure_frees_what_was_allocated():
    class Failing(HostBackend):
        def malloc(self, nbytes):
            if len(self.buffers) == 3:
                raise MemoryError("out of device memory")
            return super().malloc(nbytes)

    backend = Failing()
    with pytest.raises(MemoryError):
        DeviceFeeder(_specs(), backend)
    assert backend.buffers == {} and backend.host_buffers == {}


def test_missing_cuda_python_is_a_clean_error(monkeypatch):
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(TensorRTUnavailableError, match="cuda-python is not installed"):
        make_backend("cuda-python")


def test_pycuda_asked_for_but_missing_is_a_clean_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(TensorRTUnavailableError, match="pycuda was asked for"):
        make_backend("pycuda")


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown device backend"):
        make_backend("opencl")


def test_cuda_python_without_driver_is_a_clean_error(cuda_bindings_site):
    """The real cuda-bindings import without a driver; our backend says so in one line."""
    code = (
        "from trtcalib.errors import TensorRTUnavailableError\n"
        "from trtcalib.trt.device import make_backend\n"
        "try:\n"
        "    make_backend('cuda-python')\n"
        "except TensorRTUnavailableError as exc:\n"
        "    print('ERR', exc)\n"
        "else:\n"
        "    print('OK')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(cuda_bindings_site), os.getcwd()]))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip()
    if line == "OK":
        pytest.skip("this machine has a working CUDA driver")
    assert line.startswith("ERR CUDA is not usable here: cudaGetDeviceCount failed")
    assert "cudaErrorInsufficientDriver" in line or "cudaErrorNoDevice" in line
    assert "\n" not in line


CALL_EVERY_METHOD = """
import json
import numpy as np
from trtcalib.trt.device import CudaPythonBackend, _import_cudart

backend = object.__new__(CudaPythonBackend)  # skip the device check: call each method
backend.rt = rt = _import_cudart()
stream, event, array = rt.cudaStream_t(0), rt.cudaEvent_t(0), np.zeros(16, np.uint8)
calls = {
    "malloc": (16,), "free": (0,), "malloc_host": (16,), "free_host": (0,),
    "create_stream": (), "destroy_stream": (stream,), "create_event": (),
    "destroy_event": (event,), "copy_to_device_async": (0, array, stream),
    "record_event": (event, stream), "wait_event": (event,),
}
out = {}
for name, args in calls.items():
    try:
        getattr(backend, name)(*args)
        out[name] = "ok"
    except Exception as exc:
        out[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_every_cuda_python_call_matches_the_real_signatures(cuda_bindings_site):
    """Without a driver each call must reach CUDA and come back as a CUDA error naming the
    function: a wrong argument list would be a TypeError from the real cuda-bindings instead."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(cuda_bindings_site), os.getcwd()]))
    proc = subprocess.run(
        [sys.executable, "-c", CALL_EVERY_METHOD], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    if all(v == "ok" for v in results.values()):
        pytest.skip("this machine has a working CUDA driver")
    cuda_names = {
        "malloc": "cudaMalloc",
        "free": "cudaFree",
        "malloc_host": "cudaMallocHost",
        "free_host": "cudaFreeHost",
        "create_stream": "cudaStreamCreate",
        "destroy_stream": "cudaStreamDestroy",
        "create_event": "cudaEventCreate",
        "destroy_event": "cudaEventDestroy",
        "copy_to_device_async": "cudaMemcpyAsync",
        "record_event": "cudaEventRecord",
        "wait_event": "cudaEventSynchronize",
    }
    for method, result in results.items():
        expected = f"TensorRTUnavailableError: CUDA is not usable here: {cuda_names[method]} failed"
        assert result.startswith(expected), (method, result)


def test_env_reports_cuda_python_without_driver(cuda_bindings_site):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(cuda_bindings_site), os.getcwd()]))
    proc = subprocess.run(
        [sys.executable, "-m", "trtcalib", "env", "--json"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    cuda = json.loads(proc.stdout)["cuda"][0]
    assert cuda["backend"] == "cuda-python" and cuda["installed"].startswith("12.")
    assert cuda["runtime"] and cuda["runtime"].startswith("12.")
    if cuda["devices"]:
        pytest.skip("this machine has a CUDA device")
    assert "cudaGetDeviceCount failed" in cuda["error"]
