"""Checking data against the model inputs: names, shapes, dtypes, NaN/Inf.

One `InputChecker` lives as long as its source, so symbolic dims stay bound across chunks and
files (concatenating chunks into batches needs every non-sample dim to agree), and NaN/Inf
warnings are printed once per input however often the source is read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trtcalib.console import warn
from trtcalib.errors import DataError
from trtcalib.model import InputSpec

# dtype kinds that can never be model input data
_REFUSED_KINDS = {
    "U": "strings",
    "S": "byte strings",
    "V": "structured/void records",
    "M": "datetimes",
    "m": "timedeltas",
    "c": "complex numbers",
}


def format_shape(shape: Sequence[object]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def refuse_dtype(dtype: np.dtype, where: str, name: str | None = None) -> None:
    """Raise DataError if `dtype` cannot be data at all (objects, strings, complex...)."""
    if dtype.hasobject:
        if name is None:  # a file: its object arrays would need unpickling
            raise DataError(f"{where}: holds pickled objects; pickled objects are not loaded")
        raise DataError(
            f"{where}: input '{name}' holds Python objects (None, ragged lists...), "
            "expected numbers"
        )
    what = _REFUSED_KINDS.get(dtype.kind)
    if what is not None:
        label = f"input '{name}'" if name else "array"
        raise DataError(f"{where}: {label} holds {what} ({dtype}), expected numbers")


class InputChecker:
    """Validates and converts arrays for the model inputs (leading dim = samples)."""

    def __init__(self, inputs: Sequence[InputSpec]) -> None:
        self.inputs = {spec.name: spec for spec in inputs}
        self._bound_axes: dict[tuple[str, int], int] = {}  # (input, axis) -> size seen first
        self._bound_symbols: dict[str, tuple[int, str]] = {}  # symbol -> (size, input seen on)
        self._noted: set[str] = set()
        self._warned: set[str] = set()
        self.nan_counts: dict[str, int] = {}
        self.inf_counts: dict[str, int] = {}

    # -- shapes and dtypes ---------------------------------------------------------------------
    def check_meta(self, name: str, shape: tuple[int, ...], dtype: np.dtype, where: str) -> None:
        """Check shape (incl. the leading sample dim) and dtype without touching the data."""
        spec = self.inputs[name]
        refuse_dtype(dtype, where, name)
        self._target_dtype(spec, dtype, where)
        if not spec.shape:  # the model declares no shape: nothing to check
            return
        expected = format_shape(("N",) + tuple(spec.shape[1:]))
        if len(shape) != len(spec.shape):
            hint = ""
            if len(shape) == len(spec.shape) - 1:
                hint = " (the leading dim must count the samples)"
            raise DataError(
                f"{where}: input '{name}' expects shape {expected}, found {format_shape(shape)}"
                f"{hint}"
            )
        for axis in range(1, len(shape)):
            self._check_dim(name, spec, axis, shape[axis], shape, where)

    def _check_dim(
        self, name: str, spec: InputSpec, axis: int, size: int, shape: tuple[int, ...], where: str
    ) -> None:
        declared = spec.shape[axis]
        found = format_shape(shape)
        expected = format_shape(("N",) + tuple(spec.shape[1:]))
        if isinstance(declared, int):
            if size != declared:
                raise DataError(
                    f"{where}: input '{name}' expects shape {expected}, found {found} "
                    f"(dim {axis} must be {declared})"
                )
            return
        seen = self._bound_axes.setdefault((name, axis), size)
        if seen != size:
            raise DataError(
                f"{where}: input '{name}' has shape {found}, but dim {axis} "
                f"({declared or '?'}) was {seen} in earlier data; all samples must agree"
            )
        if isinstance(declared, str):
            bound = self._bound_symbols.setdefault(declared, (size, name))
            if bound[0] != size:
                raise DataError(
                    f"{where}: input '{name}' has shape {found}, but dim '{declared}' is "
                    f"{bound[0]} for input '{bound[1]}'"
                )

    def _target_dtype(self, spec: InputSpec, dtype: np.dtype, where: str) -> np.dtype:
        target = np.dtype(spec.dtype)
        if dtype == target:
            return target
        if target.kind == "f":
            if dtype.kind in "iub" and spec.name not in self._noted:
                self._noted.add(spec.name)
                # often uint8 pixels for a model that expects normalised input: the scales
                # would then be those of 0..255 (say so, it is not an error: some models
                # normalise inside)
                warn(
                    f"{where}: input '{spec.name}' integer data ({dtype}) cast to {target} as "
                    "it is, without scaling; if the model expects normalised input, prepare the "
                    "arrays (or use an image folder with --scale/--mean/--std)"
                )
            if dtype.kind in "fiub":
                return target
        elif target.kind in "iu":
            if dtype.kind in "iub":
                return target
            if dtype.kind == "f":
                raise DataError(
                    f"{where}: input '{spec.name}' expects {target}, found {dtype} data "
                    "(floats are not truncated to integers)"
                )
        elif target.kind == "b" and dtype.kind == "b":
            return target
        raise DataError(f"{where}: input '{spec.name}' expects {target}, found {dtype} data")

    # -- conversion ----------------------------------------------------------------------------
    def convert(self, name: str, array: np.ndarray, where: str) -> np.ndarray:
        """Check one chunk, cast it to the model dtype (C-contiguous) and count NaN/Inf."""
        self.check_meta(name, array.shape, array.dtype, where)
        spec = self.inputs[name]
        target = np.dtype(spec.dtype)
        if array.dtype != target:
            narrowing = not np.can_cast(array.dtype, target)
            if target.kind in "iu" and array.dtype.kind in "iu" and array.size and narrowing:
                limits = np.iinfo(target)
                lo, hi = array.min(), array.max()
                if lo < limits.min or hi > limits.max:
                    raise DataError(
                        f"{where}: input '{name}' values [{lo}, {hi}] do not fit {target}"
                    )
            with np.errstate(over="ignore"):  # overflow to inf is counted and warned below
                array = array.astype(target)
        array = np.ascontiguousarray(array)
        if target.kind == "f" and array.size:
            finite = np.isfinite(array)
            if not finite.all():
                nan = int(np.count_nonzero(np.isnan(array)))
                self.nan_counts[name] = self.nan_counts.get(name, 0) + nan
                self.inf_counts[name] = self.inf_counts.get(name, 0) + (
                    array.size - int(np.count_nonzero(finite)) - nan
                )
        return array

    def report_nonfinite(self, origin: str) -> None:
        """Warn once per input about NaN/Inf counted so far (not an error: TensorRT would see
        them too; the statistics ignore NaN and record Inf)."""
        for name in self.inputs:
            nan = self.nan_counts.get(name, 0)
            inf = self.inf_counts.get(name, 0)
            if (nan or inf) and name not in self._warned:
                self._warned.add(name)
                warn(f"{origin}: input '{name}' has {nan} NaN and {inf} Inf values")

    def reset_counts(self) -> None:
        self.nan_counts.clear()
        self.inf_counts.clear()


def fixed_batch_size(inputs: Sequence[InputSpec]) -> int | None:
    """The batch size the model fixes in dim 0 of its inputs (e.g. [1,3,224,224] -> 1), or None
    when the batch dim is dynamic. Data validation never checks dim 0 (it counts samples); a
    caller picking --batch should honour this."""
    # inputs with a dynamic batch follow the fixed one: [1,3,H,W] next to [N,4] runs at 1
    sizes = {s.shape[0] for s in inputs if s.shape and isinstance(s.shape[0], int)}
    if len(sizes) == 1:
        (size,) = sizes
        return size if size > 0 else None
    return None


def check_same_samples(counts: dict[str, int], where: str) -> int:
    """All inputs of one chunk must hold the same number of samples; return it."""
    values = set(counts.values())
    if len(values) > 1:
        listing = ", ".join(f"'{k}' {v}" for k, v in counts.items())
        raise DataError(f"{where}: inputs hold different numbers of samples ({listing})")
    return values.pop() if values else 0
