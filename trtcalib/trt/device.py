"""Feeding calibration batches to TensorRT's device buffers, double-buffered.

TensorRT asks `get_batch(names)` for one device pointer per input, each pointing at a contiguous
buffer of the calibration (OPT) shape, and reads it before it asks again. `DeviceFeeder` keeps two
device buffers per input (allocated once, at the OPT shape) and two pinned host staging buffers.
When TensorRT asks for batch k, the calibrator waits for slot k's copy, then converts batch k+1
into the other slot's pinned memory and queues its host-to-device copy on a CUDA stream before
returning slot k: the copy of k+1 runs while TensorRT works on k. (Reading and converting k+1
happens on the calling thread, before the return; only the copy overlaps.) An event per slot
says when its copy is complete; a slot is handed out only after its event completed, and is
restaged only after TensorRT asked for the next batch (so it is done reading it).

Backends: `cuda-python` (cuda.bindings runtime API, the default), `pycuda` (when installed and
asked for), and `host` (numpy memory whose addresses play device pointers; for tests only, with
copies deferred until the event is waited on, so a missing wait shows up as stale bytes).
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from trtcalib.errors import DataError, TensorRTUnavailableError

BACKENDS = ("cuda-python", "pycuda", "host")


class DeviceBackend(Protocol):
    """The handful of CUDA operations the feeder needs."""

    name: str

    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def malloc_host(self, nbytes: int) -> tuple[np.ndarray, Any]: ...
    def free_host(self, handle: Any) -> None: ...
    def create_stream(self) -> Any: ...
    def destroy_stream(self, stream: Any) -> None: ...
    def create_event(self) -> Any: ...
    def destroy_event(self, event: Any) -> None: ...
    def copy_to_device_async(self, dst: int, src: np.ndarray, stream: Any) -> None: ...
    def record_event(self, event: Any, stream: Any) -> None: ...
    def wait_event(self, event: Any) -> None: ...


# --------------------------------------------------------------------------- cuda-python
def _import_cudart() -> Any:
    """`cuda.bindings.runtime` (cuda-python >= 12.6), else the older `cuda.cudart`."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        pass
    try:
        return importlib.import_module("cuda.cudart")
    except ImportError as exc:
        raise TensorRTUnavailableError(
            "cuda-python is not installed (pip install 'trtcalib[trt]' or cuda-python)"
        ) from exc


class CudaPythonBackend:
    """CUDA runtime API through cuda-python; uses the primary context TensorRT uses too."""

    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        self.rt = _import_cudart()
        count = self._check(self.rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if count < 1:
            raise TensorRTUnavailableError("no CUDA device found (cudaGetDeviceCount returned 0)")
        self._check(self.rt.cudaSetDevice(device), "cudaSetDevice")

    def _check(self, result: Any, what: str) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            _, text = self.rt.cudaGetErrorString(err)
            text = text.decode() if isinstance(text, bytes) else str(text)
            name = getattr(err, "name", str(err))
            raise TensorRTUnavailableError(
                f"CUDA is not usable here: {what} failed: {text} ({name})"
            )
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(nbytes), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr), "cudaFree")

    def malloc_host(self, nbytes: int) -> tuple[np.ndarray, Any]:
        ptr = int(self._check(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        array = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
        return array, ptr

    def free_host(self, handle: Any) -> None:
        self._check(self.rt.cudaFreeHost(handle), "cudaFreeHost")

    def create_stream(self) -> Any:
        return self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def destroy_stream(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def create_event(self) -> Any:
        return self._check(self.rt.cudaEventCreate(), "cudaEventCreate")

    def destroy_event(self, event: Any) -> None:
        self._check(self.rt.cudaEventDestroy(event), "cudaEventDestroy")

    def copy_to_device_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(
            self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream),
            "cudaMemcpyAsync",
        )

    def record_event(self, event: Any, stream: Any) -> None:
        self._check(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def wait_event(self, event: Any) -> None:
        self._check(self.rt.cudaEventSynchronize(event), "cudaEventSynchronize")


# --------------------------------------------------------------------------- pycuda
class PyCudaBackend:
    """pycuda's driver API; creates (and pops on close) a context on `device`."""

    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        try:
            self.cuda = importlib.import_module("pycuda.driver")
        except ImportError as exc:
            raise TensorRTUnavailableError(
                "pycuda was asked for but is not installed (pip install 'trtcalib[pycuda]')"
            ) from exc
        try:
            self.cuda.init()
            self.context = self.cuda.Device(device).retain_primary_context()
            self.context.push()
        except Exception as exc:  # pycuda.driver.Error and its subclasses
            raise TensorRTUnavailableError(f"CUDA is not usable here (pycuda): {exc}") from exc
        self._allocations: dict[int, Any] = {}

    def malloc(self, nbytes: int) -> int:
        allocation = self.cuda.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, ptr: int) -> None:
        self._allocations.pop(ptr).free()

    def malloc_host(self, nbytes: int) -> tuple[np.ndarray, Any]:
        array = self.cuda.pagelocked_empty(nbytes, np.uint8)
        return array, array

    def free_host(self, handle: Any) -> None:
        handle.base.free()

    def create_stream(self) -> Any:
        return self.cuda.Stream()

    def destroy_stream(self, stream: Any) -> None:
        pass  # freed with the Python object

    def create_event(self) -> Any:
        return self.cuda.Event()

    def destroy_event(self, event: Any) -> None:
        pass

    def copy_to_device_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self.cuda.memcpy_htod_async(dst, src, stream)

    def record_event(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def wait_event(self, event: Any) -> None:
        event.synchronize()

    def close(self) -> None:
        self.context.pop()


# --------------------------------------------------------------------------- host (tests)
class _HostStream:
    def __init__(self) -> None:
        self.ops: list[tuple[int, np.ndarray]] = []  # queued copies, in stream order
        self.executed = 0  # how many of them have "completed"


class HostBackend:
    """Numpy memory standing in for device memory (tests only).

    Copies are queued on the stream and only performed when an event recorded after them is
    waited on, like an asynchronous copy that has not finished yet. The source bytes are read at
    that moment too, so reusing a staging buffer before its copy completed is caught.
    """

    name = "host"

    def __init__(self) -> None:
        self.buffers: dict[int, np.ndarray] = {}
        self.host_buffers: dict[int, np.ndarray] = {}

    def malloc(self, nbytes: int) -> int:
        buffer = np.full(max(nbytes, 1), 0xAB, dtype=np.uint8)  # garbage, like cudaMalloc
        self.buffers[buffer.ctypes.data] = buffer
        return buffer.ctypes.data

    def free(self, ptr: int) -> None:
        del self.buffers[ptr]

    def malloc_host(self, nbytes: int) -> tuple[np.ndarray, Any]:
        buffer = np.zeros(max(nbytes, 1), dtype=np.uint8)[:nbytes]
        self.host_buffers[id(buffer)] = buffer
        return buffer, id(buffer)

    def free_host(self, handle: Any) -> None:
        del self.host_buffers[handle]

    def create_stream(self) -> Any:
        return _HostStream()

    def destroy_stream(self, stream: Any) -> None:
        pass

    def create_event(self) -> Any:
        return {"stream": None, "upto": 0}

    def destroy_event(self, event: Any) -> None:
        pass

    def copy_to_device_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        stream.ops.append((dst, src))

    def record_event(self, event: Any, stream: Any) -> None:
        event["stream"], event["upto"] = stream, len(stream.ops)

    def wait_event(self, event: Any) -> None:
        stream = event["stream"]
        if stream is None:
            return
        while stream.executed < event["upto"]:
            dst, src = stream.ops[stream.executed]
            ctypes.memmove(dst, src.ctypes.data, src.nbytes)
            stream.executed += 1


def make_backend(name: str = "cuda-python") -> DeviceBackend:
    """A backend by name; TensorRTUnavailableError when its library or a GPU is missing."""
    if name == "cuda-python":
        return CudaPythonBackend()
    if name == "pycuda":
        return PyCudaBackend()
    if name == "host":
        return HostBackend()
    raise ValueError(f"unknown device backend {name!r} (choose from {', '.join(BACKENDS)})")


# --------------------------------------------------------------------------- feeder
@dataclass(frozen=True)
class InputBuffer:
    """What TensorRT expects for one input: the OPT shape and the network's dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


class DeviceFeeder:
    """Two device slots per input, pinned staging, one stream; see the module docstring."""

    SLOTS = 2

    def __init__(self, inputs: Sequence[InputBuffer], backend: DeviceBackend) -> None:
        self.inputs = {spec.name: spec for spec in inputs}
        self.backend = backend
        self._device: list[dict[str, int]] = []
        self._staging: list[dict[str, tuple[np.ndarray, Any]]] = []
        self._events: list[Any] = []
        self._stream = None
        self._next = 0  # slot the next `stage` call fills
        self._ready: list[int] = []  # slots whose copy was queued, oldest first
        self._held: int | None = None  # slot TensorRT is reading (returned by the last take)
        self.closed = False
        try:
            self._stream = backend.create_stream()
            for _ in range(self.SLOTS):
                self._device.append({})
                self._staging.append({})
                self._events.append(backend.create_event())
                for spec in inputs:
                    self._device[-1][spec.name] = backend.malloc(spec.nbytes)
                    self._staging[-1][spec.name] = backend.malloc_host(spec.nbytes)
        except BaseException:
            self.close()
            raise

    def stage(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Convert one batch into the next free slot's pinned memory and queue its copy."""
        slot = self._next
        if slot in self._ready or slot == self._held:
            raise RuntimeError("no free slot: take() a batch before staging another")
        for name, spec in self.inputs.items():
            if name not in arrays:
                raise DataError(f"calibration batch has no input '{name}'")
            array = arrays[name]
            if tuple(array.shape) != spec.shape:
                raise DataError(
                    f"input '{name}': calibration batch shape {list(array.shape)} is not the "
                    f"calibration (OPT) shape {list(spec.shape)}"
                )
            host, _ = self._staging[slot][name]
            # converting here (not on the GPU) gives TensorRT exactly the network input dtype
            np.copyto(host.view(spec.dtype).reshape(spec.shape), array, casting="unsafe")
            self.backend.copy_to_device_async(self._device[slot][name], host, self._stream)
        self.backend.record_event(self._events[slot], self._stream)
        self._ready.append(slot)
        self._next = (slot + 1) % self.SLOTS

    def take(self, names: Sequence[str]) -> list[int]:
        """Wait for the oldest staged batch's copy and return its pointers in `names` order.

        The slot stays TensorRT's until the next `take`: only then may it be staged again.
        """
        if not self._ready:
            raise RuntimeError("no batch staged")
        unknown = [n for n in names if n not in self.inputs]
        if unknown:
            raise DataError(
                f"TensorRT asked for input '{unknown[0]}', which the calibration data does not "
                f"have (it has {', '.join(self.inputs)})"
            )
        slot = self._ready.pop(0)
        self.backend.wait_event(self._events[slot])
        self._held = slot
        return [self._device[slot][name] for name in names]

    def close(self) -> None:
        """Free every buffer, event and the stream; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        backend = self.backend
        for slot in self._device:
            for ptr in slot.values():
                backend.free(ptr)
        for slot in self._staging:
            for _, handle in slot.values():
                backend.free_host(handle)
        for event in self._events:
            backend.destroy_event(event)
        if self._stream is not None:
            backend.destroy_stream(self._stream)
        self._device, self._staging, self._events, self._ready = [], [], [], []
        close = getattr(backend, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> DeviceFeeder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
