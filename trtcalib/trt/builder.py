"""Building a serialized TensorRT engine from an ONNX file: what both paths share.

Two paths, chosen by the TensorRT major version (TENSORRT-CALIBRATION.md §1):
- implicit (`trtcalib.trt.implicit`, TensorRT 10): INT8 builder flag (+ FP16 fallback), a
  calibrator (which may hand TensorRT a cache instead of batches), a calibration profile;
- explicit (`trtcalib.trt.explicit`, TensorRT 11, no calibrators): the Q/DQ ONNX built strongly
  typed (precision comes from the Q/DQ nodes and the model's types: no precision flags).
Both parse with TensorRT's ONNX parser, read and update a timing cache next to the engine, and
write the engine atomically. This module uses only API present in TensorRT 10 and 11.

Local variables holding TensorRT objects are annotated (`network: trt.INetworkDefinition`): the
API conformance test reads those annotations to check every method we call on them exists in the
real bindings of each version in TRT_MAJORS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtcalib.cache import atomic_write_bytes
from trtcalib.errors import ConfigError, ModelError, TensorRTUnavailableError, TrtcalibError
from trtcalib.trt.loader import load_tensorrt

if TYPE_CHECKING:
    import tensorrt as trt

TRT_MAJORS = (10, 11)


class EngineBuildError(TrtcalibError):
    """TensorRT ran but did not produce an engine (its log says why)."""

    exit_code = 1


@dataclass
class EngineRequest:
    """What to build: the ONNX file, where the engine goes, and the calibration (OPT) shapes."""

    onnx_path: Path
    engine_path: Path
    opt_shapes: Mapping[str, tuple[int, ...]]  # every input at the calibration batch
    fp16: bool = False
    workspace_mb: int | None = None
    timing_cache_path: Path | None = None
    notes: list[str] = field(default_factory=list)  # what the build decided, for the report


def timing_cache_path(engine_path: Path) -> Path:
    return engine_path.with_suffix(".timing")


def make_builder(logger: Any = None) -> tuple[Any, Any]:
    """(trt.Builder, logger); TensorRTUnavailableError when TensorRT cannot create one."""
    trt = load_tensorrt()
    logger = logger or trt.Logger(trt.Logger.WARNING)
    try:
        builder: trt.Builder = trt.Builder(logger)
    except (TypeError, RuntimeError) as exc:  # createInferBuilder returned NULL
        raise TensorRTUnavailableError(
            f"TensorRT {trt.__version__} could not create a builder (no CUDA device or driver, "
            f"or incomplete TensorRT libraries: {str(exc).splitlines()[0]})"
        ) from exc
    return builder, logger


def parse(
    builder: trt.Builder, logger: trt.ILogger, onnx_path: Path, flags: int
) -> tuple[Any, Any]:
    trt = load_tensorrt()
    network: trt.INetworkDefinition = builder.create_network(flags)
    parser: trt.OnnxParser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            error: trt.ParserError = parser.get_error(i)
            where = error.node_name() or error.node_operator() or f"node {error.node()}"
            errors.append(f"{where}: {error.desc()}")
        detail = "; ".join(errors) or "unknown parser error"
        raise ModelError(f"{onnx_path}: TensorRT's ONNX parser failed: {detail}")
    return network, parser  # the parser owns weights the network refers to: keep it alive


def network_inputs(network: trt.INetworkDefinition) -> list[Any]:
    return [network.get_input(i) for i in range(network.num_inputs)]


def profiles(
    builder: trt.Builder, network: trt.INetworkDefinition, opt_shapes: Mapping[str, tuple[int, ...]]
) -> tuple:
    """(engine profile, calibration profile) or (None, None) for a fully static network.

    The engine serves batch 1..N with N the calibration batch; calibration runs at exactly the
    OPT shape (TensorRT forces MIN = MAX = OPT for calibration anyway)."""
    dynamic = [t for t in network_inputs(network) if any(d < 0 for d in tuple(t.shape))]
    if not dynamic:
        return None, None
    engine: trt.IOptimizationProfile = builder.create_optimization_profile()
    calib: trt.IOptimizationProfile = builder.create_optimization_profile()
    for tensor in dynamic:
        if tensor.name not in opt_shapes:
            raise ConfigError(f"network input '{tensor.name}' has no calibration shape")
        opt = tuple(int(d) for d in opt_shapes[tensor.name])
        declared = tuple(tensor.shape)
        smallest = tuple(1 if (i == 0 and declared[0] < 0) else d for i, d in enumerate(opt))
        engine.set_shape(tensor.name, smallest, opt, opt)
        calib.set_shape(tensor.name, opt, opt, opt)
    return engine, calib


def make_config(builder: trt.Builder, request: EngineRequest) -> tuple[Any, Any]:
    trt = load_tensorrt()
    config: trt.IBuilderConfig = builder.create_builder_config()
    if request.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_mb << 20)
    path = request.timing_cache_path
    data = path.read_bytes() if path is not None and path.is_file() else b""
    timing: trt.ITimingCache = config.create_timing_cache(data)
    config.set_timing_cache(timing, True)  # ignore a cache from another GPU instead of failing
    return config, timing


def serialize(
    builder: trt.Builder,
    network: trt.INetworkDefinition,
    config: trt.IBuilderConfig,
    request: EngineRequest,
    check: Callable[[], None] | None = None,
) -> Path:
    """Build, run `check` (e.g. re-raise a calibrator's error), then write engine + timing cache.

    Nothing is written when the build or the check fails."""
    engine = builder.build_serialized_network(network, config)
    if check is not None:
        check()
    if engine is None:
        raise EngineBuildError(
            f"TensorRT could not build {request.engine_path} (see TensorRT's log above)"
        )
    request.engine_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(request.engine_path, bytes(memoryview(engine)))
    if request.timing_cache_path is not None:
        timing: trt.ITimingCache = config.get_timing_cache()
        atomic_write_bytes(request.timing_cache_path, bytes(memoryview(timing.serialize())))
    return request.engine_path


def builder_and_logger(builder: trt.Builder | None) -> tuple[Any, Any]:
    if builder is None:
        return make_builder()
    return builder, builder.logger
