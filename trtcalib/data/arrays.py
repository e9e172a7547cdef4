"""Reading .npy and .npz files without pickles and without loading them whole.

Headers are read first (shape, dtype) so a source is validated before any data is touched.
.npy files are memory-mapped; .npz members are streamed row block by row block straight out of
the zip (stored or deflated), so a large archive never sits in memory at once.
"""

from __future__ import annotations

import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import numpy.lib.format as npformat

from trtcalib.data.validate import refuse_dtype
from trtcalib.errors import DataError

# What a damaged file raises from numpy's header parser (it tokenizes and literal_evals the
# header text) and from zipfile's inflater; each becomes a DataError naming the file.
_BAD_HEADER = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, zlib.error)
_BAD_MEMBER = (zipfile.BadZipFile, OSError, EOFError, zlib.error)

Picker = slice | np.ndarray
# pick(start, stop) -> rows of [start, stop) to keep, None to skip the block, False to stop
PickFn = Callable[[int, int], "Picker | None | bool"]


@dataclass(frozen=True)
class ArrayHeader:
    key: str  # npz key ("" for a .npy file)
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool


def _read_header(fp: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = npformat.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fp)
        else:  # 2.0 and 3.0 differ only in the header's length field / text encoding
            shape, fortran, dtype = npformat.read_array_header_2_0(fp)
    except _BAD_HEADER as exc:
        raise DataError(f"{where}: not a valid .npy array ({_reason(exc)})") from None
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise DataError(f"{where}: holds object arrays; pickled objects are not loaded")
    return tuple(int(d) for d in shape), bool(fortran), dtype


def _reason(exc: BaseException) -> str:
    if isinstance(exc, tokenize.TokenError | SyntaxError):
        return "its header is not a Python dict literal"
    return str(exc) or type(exc).__name__


class ArrayFile:
    """One .npy or .npz file: its arrays' headers, and row-range reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_npz = path.suffix.lower() == ".npz"
        self.headers: dict[str, ArrayHeader] = {}
        if self.is_npz:
            self._read_npz_headers()
        else:
            try:
                with open(path, "rb") as fp:
                    shape, fortran, dtype = _read_header(fp, str(path))
            except OSError as exc:
                raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
            self.headers[""] = ArrayHeader("", shape, dtype, fortran)
        for header in self.headers.values():
            where = f"{path}" + (f" array '{header.key}'" if header.key else "")
            refuse_dtype(header.dtype, where)
            if not header.shape:
                raise DataError(f"{where}: is a scalar, expected a leading sample dim")

    def _read_npz_headers(self) -> None:
        try:
            with zipfile.ZipFile(self.path) as zf:
                names = [n for n in zf.namelist() if n.endswith(".npy")]
                for name in names:
                    key = name[: -len(".npy")]
                    with zf.open(name) as fp:
                        shape, fortran, dtype = _read_header(fp, f"{self.path} array '{key}'")
                    self.headers[key] = ArrayHeader(key, shape, dtype, fortran)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{self.path}: not a valid .npz file ({exc})") from None
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        if not self.headers:
            raise DataError(f"{self.path}: .npz holds no arrays")

    def read(
        self, keys: dict[str, str], chunk_rows: int, pick: PickFn
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield `{name: rows}` for `keys` (input name -> array key), `chunk_rows` rows at a
        time, keeping the rows `pick` chooses."""
        total = self.headers[next(iter(keys.values()))].shape[0]
        if total == 0:
            return
        if self.is_npz:
            yield from self._read_npz(keys, total, chunk_rows, pick)
        else:
            yield from self._read_npy(keys, total, chunk_rows, pick)

    def _read_npy(
        self, keys: dict[str, str], total: int, chunk_rows: int, pick: PickFn
    ) -> Iterator[dict[str, np.ndarray]]:
        try:
            mapped = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{self.path}: cannot read ({exc})") from None
        try:
            for start in range(0, total, chunk_rows):
                stop = min(start + chunk_rows, total)
                which = pick(start, stop)
                if which is False:
                    return
                if which is None:
                    continue
                rows = mapped[start:stop][which]
                # copy a slice (never hand out the mmap); fancy indexing has already copied
                rows = np.array(rows) if isinstance(which, slice) else np.asarray(rows)
                yield {name: rows for name in keys}
        finally:
            del mapped

    def _read_npz(
        self, keys: dict[str, str], total: int, chunk_rows: int, pick: PickFn
    ) -> Iterator[dict[str, np.ndarray]]:
        try:
            zf = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{self.path}: cannot read ({exc})") from None
        with zf:
            streams = {
                name: _MemberStream(zf, self.headers[key], self.path) for name, key in keys.items()
            }
            try:
                for start in range(0, total, chunk_rows):
                    stop = min(start + chunk_rows, total)
                    which = pick(start, stop)
                    if which is False:
                        return
                    blocks = {name: s.read_rows(start, stop) for name, s in streams.items()}
                    if which is None:
                        continue
                    yield {
                        name: b[which] if not _is_full(which, stop - start) else b
                        for name, b in blocks.items()
                    }
            finally:
                for s in streams.values():
                    s.close()


def _is_full(which: Picker, rows: int) -> bool:
    return isinstance(which, slice) and which == slice(0, rows)


class _MemberStream:
    """Sequential row reader for one array inside an .npz (C order streamed; Fortran order is
    rare and read whole)."""

    def __init__(self, zf: zipfile.ZipFile, header: ArrayHeader, path: Path) -> None:
        self.header = header
        self.where = f"{path} array '{header.key}'"
        try:
            self.fp = zf.open(header.key + ".npy")
            _read_header(self.fp, self.where)
        except _BAD_MEMBER as exc:
            raise DataError(f"{self.where}: cannot read ({_reason(exc)})") from None
        self.position = 0
        self.whole: np.ndarray | None = None
        if header.fortran:
            # rows of a Fortran-order array are not contiguous in the file: read it whole
            count = int(np.prod(header.shape, dtype=np.int64))
            try:
                raw = self.fp.read()
            except _BAD_MEMBER as exc:
                raise DataError(f"{self.where}: corrupt data ({_reason(exc)})") from None
            if len(raw) < count * header.dtype.itemsize:
                raise DataError(f"{self.where}: file is truncated")
            flat = np.frombuffer(raw, dtype=header.dtype, count=count)
            self.whole = np.ascontiguousarray(flat.reshape(header.shape, order="F"))

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        if self.whole is not None:
            return self.whole[start:stop]
        assert start == self.position, "npz members are read front to back"
        out = np.empty((stop - start,) + self.header.shape[1:], dtype=self.header.dtype)
        view = memoryview(out).cast("B") if out.nbytes else None
        filled = 0
        while view is not None and filled < out.nbytes:
            try:
                n = self.fp.readinto(view[filled:])
            except _BAD_MEMBER as exc:
                raise DataError(f"{self.where}: corrupt data ({_reason(exc)})") from None
            if not n:
                raise DataError(f"{self.where}: file is truncated")
            filled += n
        self.position = stop
        return out

    def close(self) -> None:
        self.fp.close()
