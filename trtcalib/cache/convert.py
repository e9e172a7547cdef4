"""A cache as JSON or CSV (for people and scripts) and back from JSON.

JSON layout (also printed by `trtcalib cache show --json`):
    {"trt_version": int | null, "algorithm": str,
     "tensors": {name: {"scale": float, "amax": float, "hex": str}}}
JSON has no inf/NaN: non-finite scale/amax values are the strings "inf", "-inf", "nan".
Reading JSON back, "hex" (the exact float32 bits) wins over "scale"; tensor order is kept.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from trtcalib.cache.format import CalibrationCache, hex_to_scale, same_float32, to_float32
from trtcalib.cache.provenance import float_from_json, json_float
from trtcalib.errors import CacheFormatError


def cache_to_json_dict(cache: CalibrationCache) -> dict[str, Any]:
    amax = cache.amax
    return {
        "trt_version": cache.trt_version,
        "algorithm": cache.algorithm,
        "tensors": {
            name: {
                "scale": json_float(scale),
                "amax": json_float(amax[name]),
                "hex": cache.hex(name),
            }
            for name, scale in cache.scales.items()
        },
    }


def cache_to_json(cache: CalibrationCache) -> str:
    return json.dumps(cache_to_json_dict(cache), indent=2, allow_nan=False, ensure_ascii=False)


def cache_to_csv(cache: CalibrationCache) -> str:
    """`tensor,scale,amax,hex` rows (names quoted as CSV needs); non-finite as inf/nan."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["tensor", "scale", "amax", "hex"])
    amax = cache.amax
    for name, scale in cache.scales.items():
        writer.writerow(
            [name, str(json_float(scale)), str(json_float(amax[name])), cache.hex(name)]
        )
    return out.getvalue()


def cache_from_json(
    text: str | bytes, source: str = "<json>", algorithm: str | None = None
) -> CalibrationCache:
    """Inverse of cache_to_json. Problems raise CacheFormatError naming `source`.

    `algorithm` (a header name such as "MinMaxCalibration") replaces the file's, which may then
    be missing or null."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CacheFormatError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tensors"), dict):
        raise CacheFormatError(
            f"{source}: expected an object with 'trt_version', 'algorithm' and 'tensors' "
            "(as printed by `trtcalib cache show --json`)"
        )
    given = data.get("algorithm")
    if given is not None and not isinstance(given, str):
        raise CacheFormatError(f"{source}: 'algorithm' must be a string")
    algorithm = algorithm or given
    if algorithm is None:
        raise CacheFormatError(
            f"{source}: no 'algorithm'; pass --algorithm (e.g. EntropyCalibration2)"
        )
    version = data.get("trt_version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise CacheFormatError(f"{source}: 'trt_version' must be an integer or null")
    scales: dict[str, float] = {}
    for name, entry in data["tensors"].items():
        if not isinstance(entry, dict):
            raise CacheFormatError(f"{source}: tensor {name!r}: expected an object")
        raw_hex = entry.get("hex")
        if raw_hex is not None and not isinstance(raw_hex, str):
            raise CacheFormatError(
                f"{source}: tensor {name!r}: 'hex' must be a string such as \"3c010a14\", "
                f"got {raw_hex!r}"
            )
        try:
            from_hex = hex_to_scale(raw_hex) if raw_hex is not None else None
            from_scale = float_from_json(entry.get("scale"))
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            raise CacheFormatError(f"{source}: tensor {name!r}: {exc}") from None
        if (
            from_scale is not None
            and math.isfinite(from_scale)
            and math.isinf(to_float32(from_scale))
        ):
            # a finite number would silently become 7f800000 (inf) in the cache
            raise CacheFormatError(
                f"{source}: tensor {name!r}: scale {from_scale:g} is beyond the float32 range "
                '(a cache holds float32 scales; write "inf" for an infinite one)'
            )
        if from_scale is not None and from_scale > 0 and to_float32(from_scale) == 0:
            # the other end: a positive scale would become 0 (TensorRT: an all-zero tensor)
            raise CacheFormatError(
                f"{source}: tensor {name!r}: scale {from_scale:g} is below the float32 range "
                "(it would be written as 0, which means an all-zero tensor; write 0 for that)"
            )
        if from_hex is None and from_scale is None:
            raise CacheFormatError(f"{source}: tensor {name!r}: needs 'hex' or 'scale'")
        for value in (from_hex, from_scale):
            if value is not None and (math.isnan(value) or value < 0):
                raise CacheFormatError(
                    f"{source}: tensor {name!r}: scale {value} is not usable by TensorRT "
                    "(a scale is >= 0; 0 means an all-zero tensor, inf an infinite range)"
                )
        if from_hex is not None and from_scale is not None and not _close(from_hex, from_scale):
            raise CacheFormatError(
                f"{source}: tensor {name!r}: 'hex' {entry['hex']} and 'scale' {from_scale} disagree"
            )
        scales[name] = from_hex if from_hex is not None else from_scale
    if not scales:
        raise CacheFormatError(f"{source}: 'tensors' is empty: a cache needs at least one scale")
    try:
        return CalibrationCache(algorithm=algorithm, trt_version=version, scales=scales)
    except CacheFormatError as exc:
        raise CacheFormatError(f"{source}: {exc}") from None


def _close(a: float, b: float) -> bool:
    # a scale printed with fewer digits still names the same float32 within float32 rounding
    if same_float32(a, b):
        return True
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b))
