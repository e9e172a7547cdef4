"""Calibration caches in TensorRT's text format, their provenance sidecar, and safe reuse.

cache = CalibrationCache.from_scales({"input": 0.0079}, algorithm="EntropyCalibration2")
write_cache("model.cache", cache, provenance)        # atomic; sidecar model.cache.json
cache = read_cache("model.cache")                    # CacheFormatError "file:line: problem"
decision = reuse_decision("model.cache", model_fingerprint=..., data_fingerprint=..., ...)
"""

from trtcalib.cache.format import (
    DEFAULT_TRT_VERSION,
    TRT_ALGORITHMS,
    CalibrationCache,
    decode_trt_version,
    encode_trt_version,
    format_trt_version,
    hex_to_scale,
    parse_cache,
    scale_to_hex,
)
from trtcalib.cache.io import (
    StaleProvenanceError,
    atomic_write_bytes,
    read_cache,
    read_provenance,
    sidecar_path,
    write_cache,
)
from trtcalib.cache.provenance import Provenance, TensorRecord
from trtcalib.cache.reuse import (
    ReuseDecision,
    foreign_cache_warning,
    reuse_decision,
    trt_algorithm_name,
)

__all__ = [
    "DEFAULT_TRT_VERSION",
    "TRT_ALGORITHMS",
    "CalibrationCache",
    "Provenance",
    "ReuseDecision",
    "StaleProvenanceError",
    "TensorRecord",
    "atomic_write_bytes",
    "decode_trt_version",
    "encode_trt_version",
    "format_trt_version",
    "hex_to_scale",
    "parse_cache",
    "read_cache",
    "read_provenance",
    "reuse_decision",
    "foreign_cache_warning",
    "scale_to_hex",
    "sidecar_path",
    "trt_algorithm_name",
    "write_cache",
]
