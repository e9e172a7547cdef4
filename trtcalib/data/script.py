"""Polygraphy-style data scripts: `script.py[:func]`, func (default `load_data`) yields
`{input_name: array}` per sample (rank = input rank - 1) or per batch (rank = input rank).

The script is imported from its path under a private module name (never as `__main__`, never
left in sys.modules), with its folder on sys.path while it runs so it can import its neighbours.
Exceptions raised by the script become a DataError naming the script, the line and the error.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from trtcalib.console import info, warn
from trtcalib.data.options import DataOptions
from trtcalib.data.sources import BatchSource
from trtcalib.data.subset import reservoir, reservoir_positions
from trtcalib.data.validate import check_same_samples, format_shape, refuse_dtype
from trtcalib.errors import DataError, TrtcalibError
from trtcalib.model import InputSpec

_counter = 0


@contextmanager
def _script_dir_on_path(path: Path) -> Iterator[None]:
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.path.remove(folder)


def _line_in(path: Path, exc: BaseException) -> str:
    """' (line N)' for the innermost frame of the traceback that lies in the script."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" (line {exc.lineno})"
    target = str(path.resolve())
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == target or frame.filename == str(path):
            line = frame.lineno
    return f" (line {line})" if line else ""


def _describe_exc(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def load_function(path: Path, func: str) -> Callable[[], Any]:
    """Import `path` in its own namespace and return its `func`."""
    global _counter
    _counter += 1
    module_name = f"_trtcalib_data_script_{_counter}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise DataError(f"{path}: cannot import as a Python script")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses & pickling look the module up while it runs
    try:
        with _script_dir_on_path(path):
            spec.loader.exec_module(module)
    except TrtcalibError:
        raise
    except SystemExit as exc:
        # e.g. argparse or sys.exit() at module level: would end trtcalib with the script's
        # status (3 reads as "stopped at the GPU boundary") and no message
        raise DataError(
            f"{path}: the script called sys.exit({exc.code!r}) while being imported"
            f"{_line_in(path, exc)}; put its command-line code under "
            "`if __name__ == '__main__':`"
        ) from None
    except Exception as exc:
        raise DataError(
            f"{path}: error while importing the script: {_describe_exc(exc)}{_line_in(path, exc)}"
        ) from None
    finally:
        sys.modules.pop(module_name, None)
    function = getattr(module, func, None)
    if function is None:
        raise DataError(
            f"{path}: has no function '{func}' (define `def {func}(): yield {{input_name: array}}`"
            f" or name another with {path}:FUNC)"
        )
    if not callable(function):
        raise DataError(f"{path}: '{func}' is not a function")
    return function


class ScriptSource(BatchSource):
    """Data produced by a user's function. Length is unknown until it has run."""

    kind = "script"

    def __init__(
        self,
        spec: str,
        path: Path,
        func: str,
        inputs: Sequence[InputSpec],
        options: DataOptions,
    ) -> None:
        super().__init__(spec, inputs, options)
        self.path = path
        self.func = func
        self.label = f"{path}:{func}"
        self.function = load_function(path, func)
        self.ignored: set[str] = set()
        self._count: int | None = None
        self._expected: tuple[int, str] | None = None  # (labels, their origin): see label_rows
        # Validate the first item now, "before any work"; keep the started generator for reuse.
        items = self._call()
        first = self._next(items, 0)
        if first is None:
            raise DataError(f"{self.label}: yielded no data (zero samples)")
        self._first = (self._convert(first, 0), items)

    @property
    def num_samples(self) -> int | None:
        limit = self.options.subset_len
        if self._count is not None:
            return self._count if limit is None else min(limit, self._count)
        return None

    def label_rows(self, num_labels: int, origin: str) -> np.ndarray | slice:
        """As the base class; the script's length is unknown until it has run, so the labels
        set it: a script that then yields another count is an error (checked when it ends)."""
        if self._count is not None and self._count != num_labels:
            raise DataError(
                f"{origin}: {num_labels} labels for the {self._count} samples of {self.label}"
            )
        self._expected = (num_labels, origin)
        limit = self.options.subset_len
        if limit is None or limit >= num_labels:
            return slice(0, num_labels)
        if self.options.sample_method == "sequential":
            return slice(0, limit)
        return reservoir_positions(num_labels, self.options)  # the draws _chunks makes

    def describe(self) -> str:
        n = self.num_samples
        count = "samples counted while reading" if n is None else f"{n} samples"
        limit = self.options.subset_len
        if limit is not None:
            how = (
                "first"
                if self.options.sample_method == "sequential"
                else (f"random, seed {self.options.seed}, reservoir")
            )
            count = f"{limit} samples ({how})"
        text = f"{self.label}: {count}; inputs {self._inputs_line()}"
        if self.ignored:
            text += f"; ignored keys: {', '.join(sorted(self.ignored))}"
        return text

    def _call(self) -> Iterator[Any]:
        try:
            with _script_dir_on_path(self.path):
                result = self.function()
        except TrtcalibError:
            raise
        except (Exception, SystemExit) as exc:  # sys.exit() in the function: see load_function
            raise DataError(
                f"{self.label} raised {_describe_exc(exc)}{_line_in(self.path, exc)}"
            ) from None
        if isinstance(result, dict):
            raise DataError(
                f"{self.label} returned one dict; yield dicts (or return a list of them)"
            )
        try:
            return iter(result)
        except TypeError:
            raise DataError(
                f"{self.label} returned {type(result).__name__}, expected an iterable of "
                "{input_name: array} dicts"
            ) from None

    def _next(self, items: Iterator[Any], index: int) -> Any | None:
        try:
            with _script_dir_on_path(self.path):
                return next(items)
        except StopIteration:
            return None
        except TrtcalibError:
            raise
        except (Exception, SystemExit) as exc:  # sys.exit() in the generator: see load_function
            raise DataError(
                f"{self.label} raised {_describe_exc(exc)}{_line_in(self.path, exc)} (item {index})"
            ) from None

    def _convert(self, item: Any, index: int) -> dict[str, np.ndarray]:
        where = f"{self.label} item {index}"
        if not isinstance(item, dict):
            raise DataError(
                f"{where}: yielded {type(item).__name__}, expected a dict {{input_name: array}}"
            )
        missing = [n for n in self.input_names if n not in item]
        if missing:
            keys = ", ".join(map(str, item)) or "none"
            raise DataError(
                f"{where}: no '{missing[0]}' (keys: {keys}); inputs: {', '.join(self.input_names)}"
            )
        self.ignored.update(str(k) for k in item if k not in self.input_names)
        arrays: dict[str, np.ndarray] = {}
        borrowed: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            value = item[spec.name]
            try:
                array = np.asarray(value)
            except Exception as exc:
                raise DataError(
                    f"{where}: input '{spec.name}' is not an array ({_describe_exc(exc)})"
                ) from None
            if array is value or array.base is not None:
                borrowed[spec.name] = array  # the script's memory, not a fresh conversion
            refuse_dtype(array.dtype, where, spec.name)
            rank = len(spec.shape)
            if array.ndim == 0 and rank != 1:  # for a [N] input a scalar is one sample
                raise DataError(f"{where}: input '{spec.name}' is a scalar, expected an array")
            if rank and array.ndim == rank - 1:
                array = array[np.newaxis]  # one sample
            elif rank and array.ndim != rank:
                raise DataError(
                    f"{where}: input '{spec.name}' expects one sample "
                    f"{format_shape(spec.shape[1:])} or a batch "
                    f"{format_shape(('N',) + tuple(spec.shape[1:]))}, found "
                    f"{format_shape(array.shape)}"
                )
            arrays[spec.name] = array
        check_same_samples({k: len(v) for k, v in arrays.items()}, where)
        converted = {k: self.checker.convert(k, v, where) for k, v in arrays.items()}
        # A script may refill one buffer and yield it again (Polygraphy's loaders often do);
        # batching and the random subset hold samples across items, so never keep a view of
        # the script's memory.
        for name, source in borrowed.items():
            if np.may_share_memory(converted[name], source):
                converted[name] = converted[name].copy()
        return converted

    def _all(self) -> Iterator[dict[str, np.ndarray]]:
        if self._first is not None:
            chunk, items = self._first
            self._first = None
        else:
            items = self._call()
            raw = self._next(items, 0)
            if raw is None:
                raise DataError(f"{self.label}: yielded no data (zero samples)")
            chunk = self._convert(raw, 0)
        count = 0
        index = 0
        try:
            while True:
                rows = len(next(iter(chunk.values())))
                if rows:
                    count += rows
                    yield chunk
                index += 1
                raw = self._next(items, index)
                if raw is None:
                    break
                chunk = self._convert(raw, index)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        if count == 0:
            raise DataError(f"{self.label}: zero samples")
        if self._expected is not None and count != self._expected[0]:
            num_labels, origin = self._expected
            raise DataError(
                f"{origin}: {num_labels} labels for the {count} samples of {self.label}"
            )
        self._count = count

    def _chunks(self) -> Iterator[dict[str, np.ndarray]]:
        limit = self.options.subset_len
        if limit is None:
            yield from self._all()
        elif self.options.sample_method == "random":
            # a uniform subset of a stream needs all of it: an endless load_data() never ends
            info(
                f"{self.label}: --sample-method random reads every sample load_data() yields "
                "before the first batch (it must end; sequential stops after --subset-len)"
            )
            yield from reservoir(self._all(), self.options, self.label)
        else:
            remaining = limit
            stream = self._all()
            for chunk in stream:
                rows = len(next(iter(chunk.values())))
                if rows >= remaining:
                    yield {k: v[:remaining] for k, v in chunk.items()}
                    stream.close()  # stop the user's generator: no more data needed
                    return
                remaining -= rows
                yield chunk
            warn(
                f"{self.label}: --subset-len {limit} is more than the "
                f"{limit - remaining} samples available; using all"
            )
