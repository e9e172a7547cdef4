"""What this machine offers for `trtcalib build`: TensorRT, CUDA, and so which paths run here."""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any

from trtcalib.errors import TensorRTUnavailableError
from trtcalib.trt.loader import LAST_IMPLICIT_MAJOR, SUPPORTED_MAJORS, dist_version, probe_tensorrt


@dataclass
class CudaInfo:
    backend: str  # "cuda-python" or "pycuda"
    installed: str | None = None  # package version
    driver: str | None = None  # e.g. "12.4"
    runtime: str | None = None
    devices: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class BuildPath:
    name: str
    runs_here: bool
    reason: str


def _cuda_version(code: int) -> str:
    return f"{code // 1000}.{(code % 1000) // 10}"


def probe_cuda_python() -> CudaInfo:
    result = CudaInfo("cuda-python", dist_version("cuda-bindings", "cuda-python"))
    from trtcalib.trt.device import CudaPythonBackend, _import_cudart

    try:
        rt = _import_cudart()
    except TensorRTUnavailableError as exc:
        result.error = str(exc)
        return result
    err, runtime = rt.cudaRuntimeGetVersion()
    if int(err) == 0:
        result.runtime = _cuda_version(runtime)
    err, driver = rt.cudaDriverGetVersion()
    if int(err) == 0 and driver:
        result.driver = _cuda_version(driver)
    try:
        backend = CudaPythonBackend()
        count = backend._check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
        for i in range(count):
            props = backend._check(rt.cudaGetDeviceProperties(i), "cudaGetDeviceProperties")
            name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
            result.devices.append(f"{name.rstrip(chr(0))} (sm_{props.major}{props.minor})")
    except TensorRTUnavailableError as exc:
        result.error = str(exc)
    return result


def probe_pycuda() -> CudaInfo:
    result = CudaInfo("pycuda", dist_version("pycuda"))
    if result.installed is None:
        result.error = "pycuda is not installed"
        return result
    try:
        cuda = importlib.import_module("pycuda.driver")
        cuda.init()
        result.driver = _cuda_version(cuda.get_driver_version())
        result.devices = [cuda.Device(i).name() for i in range(cuda.Device.count())]
    except Exception as exc:  # pycuda raises its own error types, or ImportError
        result.error = f"pycuda: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return result


def probe_builder() -> str | None:
    """None when TensorRT can create a builder here, else why not."""
    from trtcalib.trt.builder import make_builder

    try:
        make_builder()
    except TensorRTUnavailableError as exc:
        return str(exc)
    return None


def _wrong_major(found: Any, major: int) -> str | None:
    """Why the installed TensorRT cannot serve a build path for `major` (None: same family)."""
    if found.major is None:
        return None
    if found.major not in SUPPORTED_MAJORS:
        supported = " and ".join(map(str, SUPPORTED_MAJORS))
        return (
            f"TensorRT {found.version} is not supported (trtcalib builds for TensorRT {supported})"
        )
    if found.major <= LAST_IMPLICIT_MAJOR < major:
        return f"needs TensorRT {major}, found {found.version}"
    if major <= LAST_IMPLICIT_MAJOR < found.major:
        return f"TensorRT {found.version} has no calibrators (needs TensorRT 10)"
    return None


def environment() -> dict[str, Any]:
    """Everything `trtcalib env` reports, JSON-ready."""
    found = probe_tensorrt()
    cuda = probe_cuda_python()
    pycuda = probe_pycuda()
    builder_error = probe_builder() if found.loaded else None
    gpu = bool(cuda.devices or pycuda.devices)
    paths = [BuildPath("CPU calibration, cache and Q/DQ model", True, "numpy + onnxruntime")]
    for major, name in (
        (10, "TensorRT 10 INT8 engine (calibrators)"),
        (11, "TensorRT 11 Q/DQ engine"),
    ):
        # the wrong major first: whether its libraries load does not matter for this path
        wrong = _wrong_major(found, major)
        if wrong is not None:
            ok, why = False, wrong
        elif not found.loaded:
            why = found.error or "TensorRT does not import"
            ok = False
        elif builder_error is not None:
            ok, why = False, builder_error
        elif major <= LAST_IMPLICIT_MAJOR and not gpu:
            ok, why = False, cuda.error or "no CUDA device for the calibration batches"
        else:
            ok, why = True, f"TensorRT {found.version}"
        paths.append(BuildPath(name, ok, why))
    return {
        "tensorrt": {
            "version": found.version,
            "module": found.module,
            "loaded": found.loaded,
            "quantization": found.quantization,
            "error": found.error,
            "builder_error": builder_error,
        },
        "cuda": [asdict(cuda), asdict(pycuda)],
        "build_paths": [asdict(p) for p in paths],
    }
