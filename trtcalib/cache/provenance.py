"""The provenance sidecar `<cache>.json`: how a cache was made, so a later run can decide reuse.

JSON has no inf/NaN: non-finite floats are written as the strings "inf", "-inf" and "nan" (and
read back as floats), so the sidecar stays standard JSON that any parser accepts.

The sidecar stores the sha256 of the cache bytes it describes (`cache_sha256`). That ties the two
files together: a sidecar next to a cache it does not describe (a cache edited or replaced by
hand, or a crash between the two renames of `write_cache`) is detected, never trusted.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trtcalib.errors import CacheFormatError

#: Version of the sidecar layout; bump when a field changes meaning.
PROVENANCE_FORMAT = 1


def _trtcalib_version() -> str:
    from trtcalib import __version__

    return __version__


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def json_float(value: float | None) -> float | str | None:
    """A float for JSON: finite -> float; inf/-inf/NaN -> "inf"/"-inf"/"nan"; None -> None."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def float_from_json(value: Any) -> float | None:
    """Inverse of json_float (also accepts numbers); raises ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # a JSON integer beyond float64: callers expect ValueError
            raise ValueError(f"number too large: {str(value)[:20]}...") from None
    if isinstance(value, str) and value in ("inf", "-inf", "nan", "+inf"):
        return float(value)
    raise ValueError(f"not a number: {value!r}")


def jsonable(value: Any) -> Any:
    """Parameters etc. as plain JSON values (numpy scalars -> Python, non-finite -> strings)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return json_float(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


@dataclass
class TensorRecord:
    """Per-tensor statistics kept in the sidecar: the amax behind the scale, signed min/max."""

    amax: float | None
    min: float | None = None
    max: float | None = None


def _tensor_record(value: Any) -> TensorRecord:
    if isinstance(value, TensorRecord):
        return value
    if isinstance(value, dict):
        return TensorRecord(
            float_from_json(value.get("amax")),
            float_from_json(value.get("min")),
            float_from_json(value.get("max")),
        )
    if isinstance(value, (int, float, np.floating)):
        return TensorRecord(float(value))
    # duck-typed TensorStats (amax/min/max attributes)
    return TensorRecord(
        float_from_json(getattr(value, "amax", None)),
        float_from_json(getattr(value, "min", None)),
        float_from_json(getattr(value, "max", None)),
    )


def _input_record(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        name, shape, dtype = value["name"], value.get("shape"), value.get("dtype")
    else:  # trtcalib.model.InputSpec or alike
        name, shape, dtype = value.name, value.shape, value.dtype
    if shape is not None:
        shape = [d if isinstance(d, (int, str)) else None for d in shape]
    if dtype is not None and not isinstance(dtype, str):
        dtype = np.dtype(dtype).name  # kept as text when read: "bfloat16" needs no numpy type
    return {"name": str(name), "shape": shape, "dtype": dtype}


@dataclass
class Provenance:
    """How a cache was made. Fields are what `reuse_decision` compares; all JSON-serialisable.

    `algorithm` is trtcalib's calibrator name ("entropy", "minmax", ...) and `params` its
    parameters; `trt_algorithm` the header name in the cache. `inputs` accepts InputSpec objects
    or dicts, `tensors` accepts TensorStats-like objects (amax/min/max), dicts or plain amax floats.
    """

    algorithm: str
    params: dict[str, Any] = field(default_factory=dict)
    histogram: str | None = None
    batch_size: int | None = None
    num_samples: int | None = None
    data_fingerprint: str | None = None
    model_fingerprint: str | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    trt_version: int | None = None
    trt_algorithm: str | None = None
    tensors: dict[str, TensorRecord] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form (growth, num_bins, ...)
    created: str | None = field(default_factory=_utc_now)  # None: a sidecar that did not say
    trtcalib_version: str | None = field(default_factory=_trtcalib_version)
    cache_sha256: str | None = None  # filled by write_cache
    format_version: int = PROVENANCE_FORMAT

    def __post_init__(self) -> None:
        self.params = jsonable(dict(self.params))
        self.extra = jsonable(dict(self.extra))
        self.inputs = [_input_record(i) for i in self.inputs]
        self.tensors = {str(k): _tensor_record(v) for k, v in dict(self.tensors).items()}

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tensors"] = {
            name: {k: json_float(v) for k, v in asdict(rec).items()}
            for name, rec in self.tensors.items()
        }
        return jsonable(data)

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json_dict(cls, data: Any, source: str = "<provenance>") -> Provenance:
        if not isinstance(data, dict):
            raise CacheFormatError(f"{source}: provenance sidecar must be a JSON object")
        version = data.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise CacheFormatError(f"{source}: provenance sidecar has no valid 'format_version'")
        if version > PROVENANCE_FORMAT:
            raise CacheFormatError(
                f"{source}: provenance format {version} is newer than this trtcalib understands "
                f"({PROVENANCE_FORMAT}); upgrade trtcalib"
            )
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        # what the file does not say stays unknown: not the time and version of this reading
        kwargs.setdefault("created", None)
        kwargs.setdefault("trtcalib_version", None)
        if not isinstance(kwargs.get("algorithm"), str):
            raise CacheFormatError(f"{source}: provenance sidecar has no 'algorithm'")
        checks = {
            "params": dict,
            "extra": dict,
            "inputs": list,
            "tensors": dict,
        }
        for key, typ in checks.items():
            if key in kwargs and not isinstance(kwargs[key], typ):
                raise CacheFormatError(
                    f"{source}: provenance field {key!r} must be a {typ.__name__}"
                )
        for key in ("batch_size", "num_samples", "trt_version"):
            value = kwargs.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise CacheFormatError(f"{source}: provenance field {key!r} must be an integer")
        for key in (
            "histogram",
            "data_fingerprint",
            "model_fingerprint",
            "trt_algorithm",
            "created",
            "trtcalib_version",
            "cache_sha256",
        ):
            value = kwargs.get(key)
            if value is not None and not isinstance(value, str):
                raise CacheFormatError(f"{source}: provenance field {key!r} must be a string")
        try:
            for item in kwargs.get("inputs", []):
                if not isinstance(item, dict) or "name" not in item:
                    raise ValueError("each input needs a 'name'")
            for rec in kwargs.get("tensors", {}).values():
                if not isinstance(rec, dict):
                    raise ValueError("each tensor record must be an object")
            return cls(**kwargs)
        except (ValueError, TypeError, KeyError) as exc:
            raise CacheFormatError(f"{source}: invalid provenance sidecar ({exc})") from None

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "<provenance>") -> Provenance:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CacheFormatError(
                f"{source}: provenance sidecar is not valid JSON ({exc})"
            ) from None
        return cls.from_json_dict(data, source)
