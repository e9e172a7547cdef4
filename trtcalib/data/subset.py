"""Choosing which samples to read (--subset-len, --sample-method, --seed).

Decision: a random subset keeps the chosen samples in SOURCE order (sorted indices). The set is
random and reproducible; the order is not shuffled, because streaming a directory or an image
folder front to back is what keeps memory bounded and reads cheap. Exactly:

    indices = sorted(numpy.random.default_rng(seed).choice(total, size=n, replace=False))

For sources of unknown length (scripts) the random subset is a reservoir sample (Algorithm R,
same generator): the script is run to the end, the n chosen samples are held in memory and then
yielded in source order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from trtcalib.console import warn
from trtcalib.data.options import DataOptions
from trtcalib.errors import ConfigError


@dataclass(frozen=True)
class Selection:
    """Samples to read from a source of known length: a prefix (`limit`) or sorted `indices`."""

    total: int  # samples in the source
    limit: int | None = None  # read samples [0, limit)
    indices: np.ndarray | None = None  # sorted, unique

    @property
    def count(self) -> int:
        if self.indices is not None:
            return len(self.indices)
        return self.total if self.limit is None else min(self.limit, self.total)

    def in_range(self, start: int, stop: int) -> slice | np.ndarray | None:
        """Local positions in [start, stop) to keep: a slice, an index array, or None (none)."""
        if self.indices is None:
            end = stop if self.limit is None else min(stop, self.limit)
            return slice(0, end - start) if end > start else None
        lo, hi = np.searchsorted(self.indices, [start, stop])
        if lo == hi:
            return None
        local = self.indices[lo:hi] - start
        if local[-1] - local[0] == len(local) - 1:  # contiguous: a view, no fancy-index copy
            return slice(int(local[0]), int(local[-1]) + 1)
        return local

    def done_after(self, stop: int) -> bool:
        """True if no sample at or after `stop` is selected (reading can stop)."""
        if self.indices is None:
            return self.limit is not None and stop >= self.limit
        return len(self.indices) == 0 or stop > self.indices[-1]


def _rng(options: DataOptions) -> np.random.Generator:
    """The generator behind --sample-method random; numpy refuses negative seeds."""
    seed = options.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(seed)


def make_selection(total: int, options: DataOptions, origin: str) -> Selection:
    n = options.subset_len
    if n is None:
        return Selection(total)
    if n > total:
        warn(f"{origin}: --subset-len {n} is more than the {total} samples available; using all")
        return Selection(total)
    if options.sample_method == "sequential":
        return Selection(total, limit=n)
    rng = _rng(options)
    indices = np.sort(rng.choice(total, size=n, replace=False))
    return Selection(total, indices=indices)


def describe_selection(selection: Selection, options: DataOptions, unit: str = "samples") -> str:
    if selection.count == selection.total:
        return f"{selection.total} {unit}"
    how = "first" if options.sample_method == "sequential" else f"random, seed {options.seed}"
    return f"{selection.count} of {selection.total} {unit} ({how})"


class _AlgorithmR:
    """Algorithm R's decisions, apart from the samples, so that the labels of a script source
    can be chosen exactly as its samples were (same generator, same draws)."""

    def __init__(self, n: int, options: DataOptions) -> None:
        self.n = n
        self.rng = _rng(options)
        self.seen = 0

    def offer(self) -> int | None:
        """The reservoir slot the next sample goes to (== current size: append), or None."""
        slot: int | None = self.seen
        if self.seen >= self.n:
            j = int(self.rng.integers(0, self.seen + 1))
            slot = j if j < self.n else None
        self.seen += 1
        return slot


def reservoir(
    chunks: Iterator[dict[str, np.ndarray]], options: DataOptions, origin: str
) -> Iterator[dict[str, np.ndarray]]:
    """Uniform random `subset_len` samples from a stream of unknown length, in source order."""
    n = options.subset_len
    assert n is not None
    draw = _AlgorithmR(n, options)
    slots: list[tuple[int, dict[str, np.ndarray]]] = []
    for chunk in chunks:
        rows = len(next(iter(chunk.values())))
        for r in range(rows):
            position = draw.seen
            slot = draw.offer()
            if slot is None:
                continue
            sample = (position, {k: v[r].copy() for k, v in chunk.items()})
            if slot == len(slots):
                slots.append(sample)
            else:
                slots[slot] = sample
    if draw.seen < n:
        warn(
            f"{origin}: --subset-len {n} is more than the {draw.seen} samples available; using all"
        )
    slots.sort(key=lambda slot: slot[0])
    step = 64
    for start in range(0, len(slots), step):
        part = [sample for _, sample in slots[start : start + step]]
        yield {k: np.stack([s[k] for s in part]) for k in part[0]}


def reservoir_positions(total: int, options: DataOptions) -> np.ndarray:
    """The sorted source positions `reservoir` keeps from a stream of `total` samples."""
    n = options.subset_len
    assert n is not None
    draw = _AlgorithmR(n, options)
    kept: list[int] = []
    for position in range(total):
        slot = draw.offer()
        if slot is None:
            continue
        if slot == len(kept):
            kept.append(position)
        else:
            kept[slot] = position
    return np.sort(np.asarray(kept, dtype=np.int64))
