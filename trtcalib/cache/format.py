"""TensorRT's calibration cache text format: parsing, serialising, scale <-> hex, version codes.

Format (TensorRT writes it from `IInt8Calibrator::writeCalibrationCache`, trtexec reads it):

    TRT-<version>-<Algorithm>
    <tensor name>: <hex>

`<hex>` is the IEEE-754 float32 bit pattern of the scale (amax / 127), lower case, no `0x`, no zero
padding (`0` for an all-zero tensor). Names may contain ': ', so a line is split at its LAST ':'.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import numpy as np

from trtcalib.errors import CacheFormatError

#: Target TensorRT version of caches we write: the newest 10.x (10.16.1), the last line with
#: implicit-quantization calibrators. TRT 11 has no calibrators (see TENSORRT-CALIBRATION.md §1).
DEFAULT_TRT_VERSION = 101601

#: Algorithm names TensorRT writes in cache headers (`IInt8*Calibrator` -> header name).
TRT_ALGORITHMS = (
    "EntropyCalibration2",
    "MinMaxCalibration",
    "EntropyCalibration",
    "LegacyCalibration",
)

_HEADER = re.compile(r"TRT-(\d{1,9})-([A-Za-z_][A-Za-z0-9_]*)")
_HEX = re.compile(r"[0-9a-fA-F]+")


# ---------------------------------------------------------------- version codes


def encode_trt_version(version: str | tuple[int, ...] | int) -> int:
    """TensorRT version -> the integer TensorRT writes in cache headers.

    TRT <= 8: major*1000 + minor*100 + patch (8.6.1 -> 8601); TRT >= 9: major*10000 + minor*100 +
    patch (10.14.1 -> 101401). Accepts "10.14.1", "10.14.1.16" (build number ignored), (10, 14, 1)
    or an already encoded int (validated and returned).
    """
    if isinstance(version, int) and not isinstance(version, bool):
        decode_trt_version(version)  # validates
        return version
    if isinstance(version, str):
        text = version.strip()
        if re.fullmatch(r"\d{4,6}", text):  # an encoded code given as text, e.g. "101601"
            return encode_trt_version(int(text))
        if not re.fullmatch(r"\d+(\.\d+){0,3}", text):
            raise ValueError(f"not a TensorRT version: {version!r} (expected e.g. 10.16.1)")
        parts = tuple(int(p) for p in text.split("."))
    else:
        try:
            parts = tuple(int(p) for p in version)
        except (TypeError, ValueError):
            raise ValueError(f"not a TensorRT version: {version!r}") from None
    if not 1 <= len(parts) <= 4:
        raise ValueError(f"not a TensorRT version: {version!r}")
    major, minor, patch = (tuple(parts[:3]) + (0, 0))[:3]
    if major < 1 or minor < 0 or patch < 0 or patch > 99:
        raise ValueError(f"not a TensorRT version: {version!r}")
    if major <= 8:
        if minor > 9:
            raise ValueError(f"TensorRT {major}.{minor}: minor version > 9 cannot be encoded")
        return major * 1000 + minor * 100 + patch
    if minor > 99:
        raise ValueError(f"not a TensorRT version: {version!r}")
    return major * 10000 + minor * 100 + patch


def decode_trt_version(code: int) -> tuple[int, int, int]:
    """Cache header integer -> (major, minor, patch); 8601 -> (8, 6, 1), 101401 -> (10, 14, 1).

    Codes 1000..9999 use the TRT <= 8 scheme (major in the thousands); codes 90000..999999 the
    TRT >= 9 scheme. Anything else is a ValueError. (Which scheme TRT 9 wrote is open: both are
    read; we write 9.x with the new scheme.)
    """
    if isinstance(code, bool) or not isinstance(code, (int, np.integer)):
        raise ValueError(f"not a TensorRT version code: {code!r}")
    code = int(code)
    if 1000 <= code <= 9999:
        return code // 1000, (code % 1000) // 100, code % 100
    if 90000 <= code <= 999999:
        return code // 10000, (code % 10000) // 100, code % 100
    raise ValueError(f"not a TensorRT version code: {code}")


def format_trt_version(code: int | None) -> str:
    """8601 -> "8.6.1"; None -> "unknown"."""
    if code is None:
        return "unknown"
    return ".".join(str(p) for p in decode_trt_version(code))


# ---------------------------------------------------------------- scale <-> hex


def scale_to_hex(scale: float) -> str:
    """float32 bits of `scale`, lower case, no padding: 1.0 -> "3f800000", 0.0 -> "0"."""
    if scale == 0:  # also -0.0: one spelling for "nothing to quantize"
        return "0"
    bits = np.array(scale, dtype=np.float32).view(np.uint32).item()
    return format(bits, "x")


def hex_to_scale(text: str) -> float:
    """Inverse of scale_to_hex; accepts upper case and zero padding (up to 8 hex digits)."""
    text = text.strip()
    if not _HEX.fullmatch(text) or len(text) > 8:
        raise ValueError(f"not a float32 hex value: {text!r}")
    return float(np.array(int(text, 16), dtype=np.uint32).view(np.float32))


def to_float32(value: float) -> float:
    """Round to float32 (as a Python float). Overflowing values become inf, like float32 does."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def same_float32(a: float, b: float) -> bool:
    """Equal as float32 values (bit patterns of non-NaN values, any NaN equals any NaN)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return scale_to_hex(a) == scale_to_hex(b) or a == b  # 0.0 == -0.0 both ways is fine


# ---------------------------------------------------------------- the cache object


class CalibrationCache:
    """A calibration cache: header fields plus an ordered name -> float32 scale mapping.

    `scales` keeps the file's tensor order. A cache parsed from bytes remembers how it was spelled
    (line ending, hex spelling, trailing newline), so `to_bytes()` of an unmodified cache gives
    back exactly the bytes that were read; modified entries are written in TensorRT's spelling.
    """

    def __init__(
        self,
        algorithm: str = "EntropyCalibration2",
        trt_version: int | None = DEFAULT_TRT_VERSION,
        scales: Mapping[str, float] | Iterable[tuple[str, float]] = (),
    ) -> None:
        self.algorithm = algorithm
        self.trt_version = trt_version
        items = scales.items() if isinstance(scales, Mapping) else scales
        self.scales: dict[str, float] = {}
        for name, value in items:
            _check_name(name)
            if name in self.scales:
                raise CacheFormatError(f"tensor {name!r}: listed twice")
            self.scales[name] = to_float32(value)
        # how the source spelled things (only set by parse_cache)
        self._newline = "\n"
        self._trailing_newline = True
        self._header_text: str | None = None
        self._raw_lines: dict[str, tuple[str, str]] = {}  # name -> (line text, hex as read)
        self._source: bytes | None = None
        self._source_state: tuple | None = None

    @classmethod
    def from_scales(
        cls,
        scales: Mapping[str, float],
        algorithm: str = "EntropyCalibration2",
        trt_version: int | None = DEFAULT_TRT_VERSION,
    ) -> CalibrationCache:
        """A new cache (TensorRT spelling) from name -> scale; scales are rounded to float32."""
        return cls(algorithm=algorithm, trt_version=trt_version, scales=scales)

    # -- header fields (validated on every assignment)

    @property
    def algorithm(self) -> str:
        """Header algorithm name, e.g. EntropyCalibration2 (any identifier is accepted)."""
        return self._algorithm

    @algorithm.setter
    def algorithm(self, value: str) -> None:
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise CacheFormatError(f"cache algorithm {value!r}: must be an identifier")
        self._algorithm = value

    @property
    def trt_version(self) -> int | None:
        """Header version code (8601, 101401); None only for caches built in memory."""
        return self._trt_version

    @trt_version.setter
    def trt_version(self, value: int | None) -> None:
        if value is not None:
            try:
                decode_trt_version(value)
            except ValueError as exc:
                raise CacheFormatError(f"cache header: {exc}") from None
            value = int(value)
        self._trt_version = value

    # -- views

    @property
    def amax(self) -> dict[str, float]:
        """name -> amax = 127 * scale (float32 arithmetic, as TensorRT's dynamic range)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return {n: float(np.float32(127.0) * np.float32(s)) for n, s in self.scales.items()}

    def hex(self, name: str) -> str:
        """The hex spelling of a tensor's scale (as read if unchanged, else TensorRT's)."""
        scale = self.scales[name]
        raw = self._raw_lines.get(name)
        if raw is not None and same_float32(hex_to_scale(raw[1]), scale):
            return raw[1]
        return scale_to_hex(scale)

    @property
    def header(self) -> str:
        version = "" if self.trt_version is None else str(self.trt_version)
        return f"TRT-{version}-{self.algorithm}"

    @property
    def trt_major(self) -> int | None:
        return None if self.trt_version is None else decode_trt_version(self.trt_version)[0]

    def __len__(self) -> int:
        return len(self.scales)

    def __contains__(self, name: object) -> bool:
        return name in self.scales

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CalibrationCache):
            return NotImplemented
        return (
            self.algorithm == other.algorithm
            and self.trt_version == other.trt_version
            and list(self.scales) == list(other.scales)
            and all(same_float32(self.scales[n], other.scales[n]) for n in self.scales)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"CalibrationCache(algorithm={self.algorithm!r}, trt_version={self.trt_version}, "
            f"{len(self.scales)} tensors)"
        )

    # -- serialising

    def _state(self) -> tuple:
        return (
            self.algorithm,
            self.trt_version,
            tuple(
                (n, scale_to_hex(s) if not math.isnan(s) else "nan") for n, s in self.scales.items()
            ),
        )

    def to_bytes(self) -> bytes:
        """The cache file's bytes. An unmodified parsed cache gives back its exact input bytes."""
        if self._source is not None and self._state() == self._source_state:
            return self._source
        if self.trt_version is None:
            raise CacheFormatError(
                "cache has no TensorRT version: set trt_version (e.g. 101601 for 10.16.1)"
            )
        header = self.header
        if self._header_text is not None and _HEADER.fullmatch(self._header_text):
            m = _HEADER.fullmatch(self._header_text)
            if int(m.group(1)) == self.trt_version and m.group(2) == self.algorithm:
                header = self._header_text  # keep e.g. leading zeros of the version
        lines = [header]
        for name, scale in self.scales.items():
            _check_name(name)  # `scales` is a plain dict: an entry may bypass the checks
            raw = self._raw_lines.get(name)
            if raw is not None and same_float32(hex_to_scale(raw[1]), scale):
                lines.append(raw[0])
            else:
                lines.append(f"{name}: {scale_to_hex(scale)}")
        text = self._newline.join(lines)
        if self._trailing_newline:
            text += self._newline
        return text.encode("utf-8")


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise CacheFormatError(f"tensor name {name!r}: must be a non-empty string")
    if "\n" in name or "\r" in name or "\x00" in name:
        raise CacheFormatError(f"tensor name {name!r}: contains a line break or NUL")


def parse_cache(data: bytes, source: str = "<bytes>") -> CalibrationCache:
    """Parse a TensorRT calibration cache. Any problem is a CacheFormatError "source:line: ..."."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not data.strip():
        raise CacheFormatError(
            f"{source}:1: empty file, expected a 'TRT-<version>-<Algorithm>' header"
        )
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise CacheFormatError(f"{source}:{line}: binary data (NUL byte), not a calibration cache")
    try:
        # a byte order mark (Windows editors) is not part of the header
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CacheFormatError(
            f"{source}:{line}: not UTF-8 text (byte {exc.start}), not a calibration cache"
        ) from None
    newline = "\r\n" if "\r\n" in text else "\n"
    trailing = text.endswith("\n")
    lines = text.split("\n")
    if trailing:
        lines.pop()
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]

    header_text = lines[0].strip()
    m = _HEADER.fullmatch(header_text)
    if m is None:
        shown = header_text if len(header_text) <= 40 else header_text[:40] + "..."
        raise CacheFormatError(
            f"{source}:1: unknown header {shown!r}, expected 'TRT-<version>-<Algorithm>' "
            "(e.g. TRT-101601-EntropyCalibration2)"
        )
    try:
        trt_version = int(m.group(1))
        decode_trt_version(trt_version)
    except ValueError:
        raise CacheFormatError(
            f"{source}:1: unknown TensorRT version {m.group(1)!r} in header "
            "(expected e.g. 8601 for 8.6.1 or 101401 for 10.14.1)"
        ) from None
    cache = CalibrationCache(algorithm=m.group(2), trt_version=trt_version)
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue  # blank lines carry nothing; the exact bytes are kept via _source
        if "\r" in line:
            raise CacheFormatError(f"{source}:{number}: stray carriage return in line")
        name, colon, value = line.rpartition(":")
        if not colon:
            raise CacheFormatError(f"{source}:{number}: expected '<tensor name>: <hex>', no ':'")
        if not name:
            raise CacheFormatError(f"{source}:{number}: empty tensor name")
        hex_text = value.strip()
        if not hex_text:
            raise CacheFormatError(f"{source}:{number}: tensor {name!r}: no value after ':'")
        if not _HEX.fullmatch(hex_text):
            raise CacheFormatError(
                f"{source}:{number}: tensor {name!r}: value {_short(hex_text)!r} is not hex"
            )
        if len(hex_text) > 8:
            raise CacheFormatError(
                f"{source}:{number}: tensor {name!r}: value {_short(hex_text)!r} has "
                f"{len(hex_text)} hex digits, a float32 has at most 8"
            )
        if name in first_line:
            raise CacheFormatError(
                f"{source}:{number}: tensor {name!r} listed twice "
                f"(first at line {first_line[name]})"
            )
        first_line[name] = number
        cache.scales[name] = hex_to_scale(hex_text)
        cache._raw_lines[name] = (line, hex_text)
    cache._newline = newline
    cache._trailing_newline = trailing
    cache._header_text = lines[0]
    cache._source = bytes(data)
    cache._source_state = cache._state()
    return cache


def _short(text: str) -> str:
    return text if len(text) <= 24 else text[:24] + "..."
