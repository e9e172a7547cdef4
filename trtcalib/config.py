"""`--config FILE.toml`: defaults for `trtcalib calibrate` and per-tensor overrides.

    [calibrate]                  # any of these; the command line wins over the file
    calibrator = "percentile"
    percentile = 99.9
    batch = 32
    histogram = "exact"          # or "trt"
    growth = "pow2"              # or "square" (with histogram = "trt")
    num_bins = 2048
    tensors = ["conv1", "relu1"] # calibrate only these
    trt_version = "10.16.1"
    last_batch = "keep"          # keep | pad | drop
    [calibrate.params]           # any parameter of the calibrator, e.g. for legacy or a plugin
    quantile = 0.9999

    [[override]]                 # first matching entry wins; globs match tensor names
    tensors = "layer4.*"
    calibrator = "entropy"
    [[override]]
    tensors = ["logits"]
    skip = true                  # leave out of the cache: TensorRT keeps it in higher precision

Every problem is a ConfigError naming the file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtcalib.data.options import LAST_BATCH_POLICIES as LAST_BATCH
from trtcalib.errors import ConfigError
from trtcalib.stats.collector import GROWTH_RULES as GROWTHS
from trtcalib.stats.collector import HISTOGRAM_POLICIES as HISTOGRAMS

try:  # Python 3.11+; tomli is the same parser for 3.10
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[no-redef]

_TOP_KEYS = ("calibrate", "override")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _choice(choices: tuple[str, ...]):
    def check(value: Any) -> str | None:
        if isinstance(value, str) and value in choices:
            return None
        return f"must be one of {', '.join(choices)}"

    return check


def _positive_int(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return None
    return "must be a positive integer"


def _calibrator(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    from trtcalib.stats import available_algorithms

    known = available_algorithms()
    return None if value in known else f"unknown calibrator (available: {', '.join(known)})"


def _num_bins(value: Any) -> str | None:
    from trtcalib.calibrate import num_bins_problem

    return num_bins_problem(value)


def _percentile(value: Any) -> str | None:
    if _is_number(value) and 0.0 < value <= 100.0:
        return None
    return "must be a number in (0, 100]"


def _tensor_list(value: Any) -> str | None:
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return None
    return "must be a non-empty list of tensor names"


def _trt_version(value: Any) -> str | None:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        from trtcalib.cache import encode_trt_version

        try:
            encode_trt_version(value)
            return None
        except ValueError:
            pass
    return 'must be a TensorRT version such as "10.16.1"'


def _params(value: Any) -> str | None:
    if isinstance(value, dict) and all(_is_number(v) for v in value.values()):
        return None
    return "must be a table of numbers, e.g. { quantile = 0.9999 }"


# [calibrate] key -> checker returning None (ok) or what is wrong
CALIBRATE_KEYS = {
    "calibrator": _calibrator,
    "batch": _positive_int,
    "histogram": _choice(HISTOGRAMS),
    "growth": _choice(GROWTHS),
    "num_bins": _num_bins,
    "percentile": _percentile,
    "params": _params,
    "tensors": _tensor_list,
    "trt_version": _trt_version,
    "last_batch": _choice(LAST_BATCH),
}


@dataclass(frozen=True)
class CalibrateConfig:
    """What a config file says: `defaults` ([calibrate] keys) and raw `overrides` entries."""

    path: Path | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.defaults.get(key, default)

    def tensor_overrides(self, calibrator: str, params: Mapping[str, Any]):
        """The overrides as `TensorOverrides`, checked against the run's calibrator and params.

        Entries that name no calibrator add parameters to the run's one: they are checked here
        too, so a typo fails before any data is read. Errors name the file and the entry.
        """
        from trtcalib.stats import TensorOverrides, get_algorithm

        where = str(self.path) if self.path else "overrides"
        try:
            overrides = TensorOverrides.from_entries(self.overrides)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for entry in overrides.entries:
            if entry.calibrator is None and entry.params and not entry.skip:
                try:
                    get_algorithm(calibrator).validate({**dict(params), **entry.params})
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {entry.label()}: {exc}") from None
        return overrides


def load_config(path: str | Path) -> CalibrateConfig:
    """Parse and check a config file; ConfigError "FILE: [section] key: problem" otherwise."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a .toml config file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a TOML file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return config_from_dict(data, path)


def config_from_dict(data: Mapping[str, Any], path: Path | None = None) -> CalibrateConfig:
    """Check an already parsed config (a dict as tomllib returns it)."""
    where = str(path) if path else "config"
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(
                f"{where}: unknown section {key!r} (sections: [calibrate], [[override]])"
            )
    section = data.get("calibrate", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: 'calibrate' must be a table: [calibrate]")
    defaults: dict[str, Any] = {}
    for key, value in section.items():
        check = CALIBRATE_KEYS.get(key)
        if check is None:
            raise ConfigError(
                f"{where}: [calibrate] unknown key {key!r} (keys: {', '.join(CALIBRATE_KEYS)})"
            )
        problem = check(value)
        if problem:
            raise ConfigError(f"{where}: [calibrate] {key}: {problem}, got {value!r}")
        defaults[key] = value
    entries = data.get("override", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{where}: 'override' must be an array of tables: [[override]]")
    for index, entry in enumerate(entries, start=1):
        if "tensors" not in entry:
            raise ConfigError(f"{where}: [[override]] #{index}: missing key 'tensors'")
        for key, value in entry.items():
            if key in ("tensors", "calibrator", "skip"):
                continue  # checked by TensorOverrides.from_entries with the same wording
            if not (_is_number(value) and math.isfinite(value)):
                raise ConfigError(
                    f"{where}: [[override]] #{index} {key}: a calibrator parameter must be a "
                    f"number, got {value!r}"
                )
    return CalibrateConfig(path, defaults, [dict(e) for e in entries])


__all__ = ["CALIBRATE_KEYS", "CalibrateConfig", "config_from_dict", "load_config"]
