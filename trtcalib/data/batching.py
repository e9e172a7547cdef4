"""Re-chunking a stream of sample chunks into batches of exactly `batch_size`.

Memory is bounded by one batch plus one chunk: only the unfinished tail of the previous chunk is
carried over, and a chunk slice that already is a whole batch is passed on as a view (no copy).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from trtcalib.data.options import LAST_BATCH_POLICIES
from trtcalib.errors import ConfigError, DataError


@dataclass(frozen=True)
class Batch:
    """`arrays[name]` has leading dim `size`; the first `num_real` samples are real data, the
    rest (only when the last batch was padded) repeat the last real sample."""

    arrays: dict[str, np.ndarray]
    index: int
    num_real: int

    @property
    def size(self) -> int:
        return len(next(iter(self.arrays.values())))

    @property
    def padded(self) -> int:
        return self.size - self.num_real


def _rows(chunk: dict[str, np.ndarray], index: int) -> int:
    # the file sources check this against the model; a plain iterable of chunks may not
    rows = {name: len(array) for name, array in chunk.items()}
    if len(set(rows.values())) > 1:
        found = ", ".join(f"{name!r} {count}" for name, count in rows.items())
        raise DataError(f"chunk {index}: its inputs hold different sample counts ({found})")
    return len(next(iter(chunk.values())))


def _join(pieces: list[dict[str, np.ndarray]], index: int) -> dict[str, np.ndarray]:
    if len(pieces) == 1:
        return pieces[0]
    first = pieces[0]
    for piece in pieces[1:]:
        if piece.keys() != first.keys():
            raise DataError(
                f"batch {index}: its chunks name different inputs "
                f"({sorted(first)} and {sorted(piece)})"
            )
        for name, array in piece.items():
            if np.shape(array)[1:] != np.shape(first[name])[1:]:
                raise DataError(
                    f"input {name!r}: batch {index} mixes samples of shape "
                    f"{list(np.shape(first[name])[1:])} and {list(np.shape(array)[1:])}"
                )
    return {k: np.concatenate([p[k] for p in pieces]) for k in first}


def batch_beyond_data(batch_size: int, num_samples: int | None, last: str) -> str | None:
    """What the batches are when `batch_size` exceeds the data (legal: it may be the engine's
    OPT batch, and it names the cache), as a warning line; None when it does not."""
    if num_samples is None or batch_size <= num_samples:
        return None
    if last == "pad":
        fill = batch_size - num_samples
        what = f"one batch of {num_samples} samples padded with {fill} repeats of the last one"
    elif last == "keep":
        what = f"one partial batch of {num_samples} samples"
    else:
        return None  # drop: iter_batches reports that no batch is left
    return f"--batch {batch_size} is larger than the {num_samples} samples: {what}"


def iter_batches(src: object, batch_size: int, last: str = "keep") -> Iterator[Batch]:
    """Batches of exactly `batch_size` samples from `src` (a BatchSource or an iterable of
    `{name: array}` chunks). The last partial batch is kept (smaller), padded (repeating the
    last real sample; `num_real` counts the real ones) or dropped, as `last` says."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
    if last not in LAST_BATCH_POLICIES:
        raise ConfigError(
            f"last batch policy must be one of {', '.join(LAST_BATCH_POLICIES)}, got {last!r}"
        )
    chunks: Iterable[dict[str, np.ndarray]] = src.samples() if hasattr(src, "samples") else src  # type: ignore[union-attr]
    pending: list[dict[str, np.ndarray]] = []
    pending_rows = 0
    index = 0
    total = 0
    for number, chunk in enumerate(chunks):
        rows = _rows(chunk, number)
        total += rows
        start = 0
        while start < rows:
            take = min(batch_size - pending_rows, rows - start)
            piece = (
                chunk
                if (start == 0 and take == rows)
                else {k: v[start : start + take] for k, v in chunk.items()}
            )
            pending.append(piece)
            pending_rows += take
            start += take
            if pending_rows == batch_size:
                yield Batch(_join(pending, index), index, batch_size)
                index += 1
                pending, pending_rows = [], 0
    if pending_rows:
        if last == "keep":
            yield Batch(_join(pending, index), index, pending_rows)
            index += 1
        elif last == "pad":
            arrays = _join(pending, index)
            fill = batch_size - pending_rows
            arrays = {
                k: np.concatenate([v, np.repeat(v[-1:], fill, axis=0)]) for k, v in arrays.items()
            }
            yield Batch(arrays, index, pending_rows)
            index += 1
    if index == 0:
        origin = getattr(src, "spec", "data")
        if total == 0:
            raise DataError(f"{origin}: zero samples")
        raise DataError(
            f"{origin}: only {total} samples, fewer than one batch of {batch_size} "
            "(the last partial batch is dropped)"
        )
