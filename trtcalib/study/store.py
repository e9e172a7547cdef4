"""Activations captured once and kept per tensor per sample, so a sweep replays them.

Storage is decided after the first captured chunk, when the bytes per sample are known:
- "memory": all tensors fit in `memory_limit` bytes -> one preallocated numpy array per tensor.
- "memmap": more than that, an unknown sample count, or worker processes (`--jobs` > 1) ->
  one raw float32 file per tensor in a temporary directory, read back through `np.memmap`, so
  RAM holds only what the OS page cache keeps and workers share it without pickling.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_MEMORY_LIMIT = 512 * 2**20  # bytes of activations kept in RAM before switching to files


@dataclass(frozen=True)
class StoreHandle:
    """A picklable description of a memmap store: what a worker process needs to reopen it."""

    directory: str
    names: tuple[str, ...]
    sample_shapes: tuple[tuple[int, ...], ...]
    num_samples: int


@dataclass
class ActivationStore:
    """Per-tensor arrays of shape (samples, *sample_shape), float32, in RAM or memory-mapped."""

    mode: str  # "memory" | "memmap"
    reason: str
    num_samples: int
    arrays: dict[str, np.ndarray]
    directory: Path | None = None
    _owns_directory: bool = field(default=False, repr=False)
    _sample_max: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _finite: dict[str, bool] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        return list(self.arrays)

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays.values())

    def get(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def sample_max(self, name: str) -> np.ndarray:
        """max |x| of each sample over its finite values (0 for a sample with none)."""
        if name not in self._sample_max:
            maxima = np.zeros(self.num_samples, dtype=np.float64)
            finite = True
            for start, chunk in _chunks(self.arrays[name]):
                flat = chunk.reshape(chunk.shape[0], -1)
                if not flat.shape[1]:
                    continue
                # min and max propagate NaN and keep inf: finite results prove a finite chunk,
                # and then max |x| = max(-min, max) without an |x| copy (the common case)
                lo, hi = flat.min(axis=1), flat.max(axis=1)
                if np.isfinite(lo).all() and np.isfinite(hi).all():
                    maxima[start : start + chunk.shape[0]] = np.maximum(-lo, hi)
                    continue
                flat = np.abs(flat)
                ok = np.isfinite(flat)
                finite = False
                flat = np.where(ok, flat, 0.0)
                maxima[start : start + chunk.shape[0]] = flat.max(axis=1)
            self._sample_max[name] = maxima
            self._finite[name] = finite
        return self._sample_max[name]

    def all_finite(self, name: str) -> bool:
        self.sample_max(name)
        return self._finite[name]

    def nonfinite_counts(self, name: str) -> tuple[int, int]:
        """(NaN count, Inf count) of one tensor; one chunked pass, zeros when all finite."""
        if self.all_finite(name):
            return 0, 0
        nan = inf = 0
        for _, chunk in _chunks(self.arrays[name]):
            nan += int(np.count_nonzero(np.isnan(chunk)))
            inf += int(np.count_nonzero(np.isinf(chunk)))
        return nan, inf

    def handle(self) -> StoreHandle:
        if self.mode != "memmap" or self.directory is None:
            raise ValueError("only a memmap store can be shared with worker processes")
        return StoreHandle(
            str(self.directory),
            tuple(self.arrays),
            tuple(tuple(a.shape[1:]) for a in self.arrays.values()),
            self.num_samples,
        )

    @classmethod
    def from_handle(cls, handle: StoreHandle) -> ActivationStore:
        arrays = {
            name: _open_memmap(Path(handle.directory), i, shape, handle.num_samples)
            for i, (name, shape) in enumerate(zip(handle.names, handle.sample_shapes, strict=True))
        }
        return cls("memmap", "reopened in a worker", handle.num_samples, arrays, handle.directory)

    def close(self) -> None:
        """Drop the arrays and delete the temporary directory (if this store created it)."""
        self.arrays = {}
        self._sample_max = {}
        if self._owns_directory and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._owns_directory = False

    def __enter__(self) -> ActivationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _file(directory: Path, index: int) -> Path:
    # tensor names may hold '/', ':' or spaces: files are numbered, the handle keeps the names
    return directory / f"t{index:05d}.f32"


def _open_memmap(directory: Path, index: int, shape: tuple[int, ...], n: int) -> np.ndarray:
    full = (n, *shape)
    if n == 0 or 0 in shape:
        return np.zeros(full, dtype=np.float32)
    return np.memmap(_file(directory, index), dtype=np.float32, mode="r", shape=full)


def _chunks(array: np.ndarray, max_elements: int = 1 << 22) -> Iterator[tuple[int, np.ndarray]]:
    per_sample = max(1, int(np.prod(array.shape[1:], dtype=np.int64)))
    step = max(1, max_elements // per_sample)
    for start in range(0, array.shape[0], step):
        yield start, np.asarray(array[start : start + step])


class StoreWriter:
    """Receives chunks of per-sample activations and builds an ActivationStore.

    `expected_samples` (None if the source cannot tell) and `memory_limit` decide the mode on the
    first chunk; `force_memmap` is for worker processes.
    """

    def __init__(
        self,
        expected_samples: int | None,
        *,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        force_memmap: bool = False,
        force_memmap_reason: str = "worker processes read the activations from files",
        tmp_parent: str | os.PathLike[str] | None = None,
    ) -> None:
        self.expected = expected_samples
        self.memory_limit = memory_limit
        self.force_memmap = force_memmap
        self.force_reason = force_memmap_reason
        self.tmp_parent = tmp_parent
        self.mode: str | None = None
        self.reason = ""
        self.count = 0
        self.names: list[str] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._memory: dict[str, np.ndarray] = {}
        self._files: dict[str, object] = {}
        self.directory: Path | None = None

    def _decide(self, chunk: Mapping[str, np.ndarray]) -> None:
        rows = next(iter(chunk.values())).shape[0] if chunk else 0
        per_sample = sum(a[0].size * 4 for a in chunk.values()) if rows else 0
        self.names = list(chunk)
        self.shapes = {n: tuple(a.shape[1:]) for n, a in chunk.items()}
        mib = 2**20
        if self.force_memmap:
            self.mode, self.reason = "memmap", self.force_reason
        elif self.expected is None:
            self.mode = "memmap"
            self.reason = "the data source does not say how many samples it holds"
        elif per_sample * self.expected > self.memory_limit:
            self.mode = "memmap"
            self.reason = (
                f"{per_sample * self.expected / mib:.1f} MiB of activations exceed the "
                f"{self.memory_limit / mib:.0f} MiB memory limit"
            )
        else:
            self.mode = "memory"
            self.reason = (
                f"{per_sample * self.expected / mib:.1f} MiB of activations fit the "
                f"{self.memory_limit / mib:.0f} MiB memory limit"
            )
        if self.mode == "memory":
            assert self.expected is not None
            self._memory = {
                n: np.empty((self.expected, *s), dtype=np.float32) for n, s in self.shapes.items()
            }
        else:
            self.directory = Path(tempfile.mkdtemp(prefix="trtcalib-study-", dir=self.tmp_parent))
            # kept open across add() calls, closed in finish()/abort()
            self._files = {
                n: open(_file(self.directory, i), "wb")  # noqa: SIM115
                for i, n in enumerate(self.names)
            }

    def add(self, chunk: Mapping[str, np.ndarray]) -> None:
        """Append one chunk: name -> array with the samples on the leading axis."""
        if self.mode is None:
            self._decide(chunk)
        rows = next(iter(chunk.values())).shape[0] if chunk else 0
        if self.mode == "memory" and self.count + rows > next(
            (a.shape[0] for a in self._memory.values()), 0
        ):
            self._spill()
        for name in self.names:
            array = np.ascontiguousarray(chunk[name], dtype=np.float32)
            if tuple(array.shape[1:]) != self.shapes[name]:
                from trtcalib.errors import DataError

                raise DataError(
                    f"tensor {name}: per-sample shape changed from {list(self.shapes[name])} "
                    f"to {list(array.shape[1:])} during capture (the study needs a fixed shape)"
                )
            if self.mode == "memory":
                self._memory[name][self.count : self.count + rows] = array
            else:
                self._files[name].write(array.tobytes())  # type: ignore[attr-defined]
        self.count += rows

    def _spill(self) -> None:
        # the source held more samples than it announced: move to files rather than grow RAM
        self.directory = Path(tempfile.mkdtemp(prefix="trtcalib-study-", dir=self.tmp_parent))
        self._files = {}
        for i, name in enumerate(self.names):
            f = open(_file(self.directory, i), "wb")  # noqa: SIM115 (closed in finish/abort)
            f.write(self._memory[name][: self.count].tobytes())
            self._files[name] = f
        self._memory = {}
        self.mode = "memmap"
        self.reason = "the data source held more samples than it announced"

    def finish(self) -> ActivationStore:
        if self.mode is None:
            return ActivationStore("memory", "no samples", 0, {})
        if self.mode == "memory":
            arrays = {n: a[: self.count] for n, a in self._memory.items()}
            return ActivationStore("memory", self.reason, self.count, arrays)
        for f in self._files.values():
            f.close()  # type: ignore[attr-defined]
        assert self.directory is not None
        arrays = {
            n: _open_memmap(self.directory, i, self.shapes[n], self.count)
            for i, n in enumerate(self.names)
        }
        return ActivationStore(
            "memmap", self.reason, self.count, arrays, self.directory, _owns_directory=True
        )

    def abort(self) -> None:
        for f in self._files.values():
            f.close()  # type: ignore[attr-defined]
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def store_from_arrays(
    arrays: Mapping[str, np.ndarray],
    *,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    force_memmap: bool = False,
    chunk_rows: int = 256,
) -> ActivationStore:
    """Build a store from in-memory arrays (synthetic streams, tests)."""
    if not arrays:
        return ActivationStore("memory", "no tensors", 0, {})
    n = next(iter(arrays.values())).shape[0]
    writer = StoreWriter(n, memory_limit=memory_limit, force_memmap=force_memmap)
    for start in range(0, n, chunk_rows):
        writer.add({k: v[start : start + chunk_rows] for k, v in arrays.items()})
    return writer.finish()
