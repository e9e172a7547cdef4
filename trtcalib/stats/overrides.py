"""Per-tensor overrides: a tensor name glob can get its own algorithm, parameters, or be skipped.

Entries (from a --config file), first match wins:
    [{"tensors": "conv*", "calibrator": "percentile", "percentile": 99.9},
     {"tensors": ["logits", "head/*"], "skip": True}]
"tensors" is a glob (fnmatch, case-sensitive) or a list of globs. Every other key except
"calibrator" and "skip" is a parameter of the entry's calibrator (or of the run's calibrator when
the entry names none).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trtcalib.errors import ConfigError
from trtcalib.stats.registry import get_algorithm

_RESERVED = ("tensors", "calibrator", "skip")


@dataclass(frozen=True)
class TensorSettings:
    algorithm: str
    params: dict[str, Any] = field(default_factory=dict)
    skip: bool = False


@dataclass(frozen=True)
class _Entry:
    index: int
    patterns: tuple[str, ...]
    calibrator: str | None
    params: dict[str, Any]
    skip: bool

    def label(self) -> str:
        return f"override #{self.index + 1} (tensors {', '.join(self.patterns)!s})"


@dataclass(frozen=True)
class TensorOverrides:
    entries: tuple[_Entry, ...] = ()

    @classmethod
    def from_entries(cls, entries: list[dict[str, Any]] | None) -> TensorOverrides:
        """Parse and validate override entries; ConfigError naming the entry on any problem."""
        if entries is None:
            return cls()
        if not isinstance(entries, list):
            raise ConfigError(f"overrides must be a list of entries, got {type(entries).__name__}")
        parsed = []
        for index, raw in enumerate(entries):
            where = f"override #{index + 1}"
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{where}: must be a table/dict, got {type(raw).__name__}")
            pats = raw.get("tensors")
            if isinstance(pats, str):
                pats = [pats]
            if (
                not isinstance(pats, list)
                or not pats
                or not all(isinstance(p, str) and p for p in pats)
            ):
                raise ConfigError(f"{where}: 'tensors' must be a glob or a list of globs")
            where = f"override #{index + 1} (tensors {', '.join(pats)})"
            calibrator = raw.get("calibrator")
            if calibrator is not None and not isinstance(calibrator, str):
                raise ConfigError(f"{where}: 'calibrator' must be a name")
            skip = raw.get("skip", False)
            if not isinstance(skip, bool):
                raise ConfigError(f"{where}: 'skip' must be true or false, got {skip!r}")
            params = {k: v for k, v in raw.items() if k not in _RESERVED}
            if calibrator is not None:
                try:
                    params = get_algorithm(calibrator).validate(params)
                    params = {k: params[k] for k in raw if k not in _RESERVED}
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
            parsed.append(_Entry(index, tuple(pats), calibrator, params, skip))
        return cls(tuple(parsed))

    def match(self, name: str) -> _Entry | None:
        for entry in self.entries:
            if any(fnmatch.fnmatchcase(name, p) for p in entry.patterns):
                return entry
        return None

    def unused(self, names: Iterable[str]) -> list[str]:
        """Labels of the entries that decide none of `names` (first match wins, so an entry
        shadowed by earlier ones counts too): a typo in a glob would otherwise pass in silence."""
        used = {entry.index for name in names if (entry := self.match(name)) is not None}
        return [entry.label() for entry in self.entries if entry.index not in used]

    def resolve(self, name: str, algorithm: str, params: Mapping[str, Any]) -> TensorSettings:
        """Settings for tensor `name` given the run's algorithm and params (first match wins).

        An entry naming a different calibrator replaces the run's params; an entry naming none
        (or the same one) adds its params on top of the run's.
        """
        entry = self.match(name)
        if entry is None:
            return TensorSettings(algorithm, dict(params), False)
        if entry.calibrator is not None and entry.calibrator != algorithm:
            return TensorSettings(entry.calibrator, dict(entry.params), entry.skip)
        merged = {**dict(params), **entry.params}
        if entry.params and not entry.skip:
            try:
                get_algorithm(algorithm).validate(merged)
            except ConfigError as exc:
                raise ConfigError(f"{entry.label()}: {exc}") from None
        return TensorSettings(algorithm, merged, entry.skip)
