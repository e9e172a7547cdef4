"""The calibrator plugin set: amax algorithms found by name.

Built-ins live in `trtcalib.stats.algorithms`. A user adds one by decorating an `AmaxAlgorithm`
subclass with ``@register_algorithm("name")`` or by declaring it in the Python entry point group
``trtcalib.algorithms`` (``name = "package.module:ClassName"``); entry points are loaded lazily, on
the first lookup, and an algorithm found either way is usable everywhere a built-in one is.

A subclass implements ``compute(self, stats, **params) -> float``. The public
``compute_amax(stats, **params)`` checks the parameters against ``defaults`` (unknown name or
non-number -> ConfigError), fills in defaults, and answers the edge cases itself so no algorithm
has to: any inf seen -> inf (TensorRT writes inf), no finite value or amax 0 -> 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, ClassVar, TypeVar

from trtcalib.errors import ConfigError
from trtcalib.stats.collector import TensorStats

ENTRY_POINT_GROUP = "trtcalib.algorithms"


class AmaxAlgorithm:
    """One way of turning `TensorStats` into an amax. Subclass and implement `compute`."""

    name: ClassVar[str] = ""
    trt_algorithm: ClassVar[str] = "MinMaxCalibration"  # header name in the calibration cache
    defaults: ClassVar[dict[str, float]] = {}
    description: ClassVar[str] = ""

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults merged with `params`; ConfigError on an unknown or ill-typed parameter."""
        merged: dict[str, Any] = dict(self.defaults)
        for key, value in params.items():
            if key not in self.defaults:
                known = ", ".join(sorted(self.defaults)) or "none"
                raise ConfigError(
                    f"calibrator {self.name!r}: unknown parameter {key!r} (parameters: {known})"
                )
            merged[key] = self.check_param(key, value)
        return merged

    def check_param(self, key: str, value: Any) -> Any:
        """Validate one parameter; the default accepts finite real numbers."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"calibrator {self.name!r}: parameter {key!r} must be a number, got {value!r}"
                ) from None
        if not math.isfinite(value):
            raise ConfigError(
                f"calibrator {self.name!r}: parameter {key!r} must be finite, got {value!r}"
            )
        return float(value)

    def check_num_bins(self, params: Mapping[str, Any], num_bins: int) -> None:
        """ConfigError when validated `params` do not fit a `num_bins`-bin histogram (a bin
        index beyond it, say); the default accepts any."""

    def compute_amax(self, stats: TensorStats, **params: Any) -> float:
        merged = self.validate(params)
        self.check_num_bins(merged, stats.num_bins)
        if stats.inf_count:
            return math.inf
        if stats.count == 0 or stats.amax == 0.0 or stats.range_max == 0.0:
            return 0.0
        return float(self.compute(stats, **merged))

    def compute(self, stats: TensorStats, **params: Any) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<AmaxAlgorithm {self.name!r} ({self.trt_algorithm})>"


_REGISTRY: dict[str, AmaxAlgorithm] = {}
_builtins_loaded = False
_entry_points_loaded = False

A = TypeVar("A", bound=type[AmaxAlgorithm])


def register_algorithm(name: str) -> Callable[[A], A]:
    """Class decorator: register an `AmaxAlgorithm` subclass under `name` (replaces same name)."""

    def decorate(cls: A) -> A:
        if not (isinstance(cls, type) and issubclass(cls, AmaxAlgorithm)):
            raise TypeError(f"@register_algorithm({name!r}) needs an AmaxAlgorithm subclass")
        cls.name = name
        _REGISTRY[name] = cls()
        return cls

    return decorate


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        import trtcalib.stats.algorithms  # noqa: F401  (registers the built-ins)


def _load_entry_points(force: bool = False) -> None:
    global _entry_points_loaded
    if _entry_points_loaded and not force:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue  # loaded before, or a name already taken (built-ins win)
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must name itself, not crash with a traceback
            raise ConfigError(
                f"calibrator plugin {ep.name!r} ({ep.value}): cannot be loaded: {exc}"
            ) from exc
        if isinstance(obj, type) and issubclass(obj, AmaxAlgorithm):
            register_algorithm(ep.name)(obj)
        elif isinstance(obj, AmaxAlgorithm):
            _REGISTRY[ep.name] = obj
        else:
            raise ConfigError(
                f"calibrator plugin {ep.name!r} ({ep.value}): not an AmaxAlgorithm subclass"
            )


def available_algorithms() -> list[str]:
    """Names of every registered algorithm (built-ins, decorated classes, entry points)."""
    _load_builtins()
    _load_entry_points()
    return sorted(_REGISTRY)


def get_algorithm(name: str) -> AmaxAlgorithm:
    """The algorithm registered as `name`; ConfigError listing the available ones otherwise."""
    _load_builtins()
    _load_entry_points()
    if name not in _REGISTRY:
        _load_entry_points(force=True)  # a plugin installed since the first lookup
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown calibrator {name!r} (available: {', '.join(sorted(_REGISTRY))})"
        ) from None


def compute_amax(stats: TensorStats, algorithm: str = "entropy", **params: Any) -> float:
    """amax of one tensor by the named algorithm (edge cases: inf -> inf, nothing/0 -> 0)."""
    return get_algorithm(algorithm).compute_amax(stats, **params)
