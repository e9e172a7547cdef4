"""Reading and atomically writing a cache and its provenance sidecar.

Write protocol of `write_cache` (why this order):
1. Both new files are written completely to temp files in the destination folder and fsynced.
   An exception or crash here leaves the previous cache and sidecar untouched (temps are removed).
2. The sidecar is renamed into place, then the cache (os.replace, atomic on POSIX and Windows);
   then the folder is fsynced so the renames survive a power loss.
A crash between the two renames pairs a NEW sidecar with the OLD cache. That can never be
trusted by mistake: the sidecar records the sha256 of the cache it describes and
`read_provenance` rejects a sidecar whose hash does not match (StaleProvenanceError). Renaming
the cache last means the cache file only ever changes once everything else is in place, which is
what consumers that ignore the sidecar (TensorRT, trtexec) see.
Writing a cache WITHOUT provenance removes an existing sidecar first (it would describe another
cache); a crash after that removal leaves the old cache without a sidecar, which is merely
"unchecked", never wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from trtcalib.cache.format import CalibrationCache, parse_cache
from trtcalib.cache.provenance import Provenance
from trtcalib.errors import CacheFormatError

#: Caches larger than this are not calibration caches (a 100k-tensor cache is ~6 MB).
MAX_CACHE_BYTES = 256 * 1024 * 1024


class StaleProvenanceError(CacheFormatError):
    """The sidecar exists and is valid JSON but describes a different cache file."""


def sidecar_path(cache_path: str | os.PathLike) -> Path:
    """`model.cache` -> `model.cache.json`."""
    return Path(f"{os.fspath(cache_path)}.json")


def read_checked_bytes(path: Path, what: str) -> bytes:
    if not path.exists():
        raise CacheFormatError(f"{path}: no such {what}")
    if path.is_dir():
        raise CacheFormatError(f"{path}: is a directory, expected a {what}")
    try:
        size = path.stat().st_size
        if size > MAX_CACHE_BYTES:
            raise CacheFormatError(f"{path}: {size} bytes is too large for a {what}")
        return path.read_bytes()
    except OSError as exc:
        raise CacheFormatError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def read_cache(path: str | os.PathLike) -> CalibrationCache:
    """Read a TensorRT calibration cache; problems raise CacheFormatError "file:line: problem"."""
    path = Path(path)
    return parse_cache(read_checked_bytes(path, "calibration cache"), source=str(path))


def cache_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_provenance(cache_path: str | os.PathLike, *, check: bool = True) -> Provenance | None:
    """The sidecar of `cache_path`, or None when there is none (e.g. a cache TensorRT wrote).

    A corrupt sidecar raises CacheFormatError naming the sidecar. With `check`, a sidecar that
    does not describe the cache's current bytes raises StaleProvenanceError.
    """
    side = sidecar_path(cache_path)
    if not side.exists():
        return None
    provenance = Provenance.from_json(
        read_checked_bytes(side, "provenance sidecar"), source=str(side)
    )
    if check and provenance.cache_sha256 is not None:
        cache = Path(cache_path)
        if cache.is_file():
            actual = cache_digest(read_checked_bytes(cache, "calibration cache"))
            if actual != provenance.cache_sha256:
                raise StaleProvenanceError(
                    f"{side}: describes a different cache than {cache} (sha256 mismatch: the "
                    "cache was changed after the sidecar was written); recalibrate or delete "
                    "the sidecar"
                )
    return provenance


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder + fsync + os.replace."""
    path = Path(path)
    tmp = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(path.parent)


def _write_temp(path: Path, data: bytes) -> Path:
    """Complete temp file next to `path` (same file system, so os.replace is atomic)."""
    folder = path.parent
    if not folder.is_dir():
        raise CacheFormatError(f"{path}: folder {folder} does not exist")
    if path.is_dir():
        raise CacheFormatError(f"{path}: is a directory")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise CacheFormatError(f"{path}: cannot write ({exc.strerror or exc})") from None
    tmp = Path(name)
    try:
        _set_mode(fd, path)
        with os.fdopen(fd, "wb") as handle:
            _write_all(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError):
            raise CacheFormatError(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise
    return tmp


def _set_mode(fd: int, path: Path) -> None:
    """mkstemp makes 0600 files: give the temp the mode the file has, or would get from open()."""
    if not hasattr(os, "fchmod"):
        return
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.fchmod(fd, mode)


def _write_all(handle, data: bytes) -> None:
    # split in chunks so a failure mid-way (disk full, interrupt) is a real partial write
    view = memoryview(data)
    step = 1 << 20
    for start in range(0, len(view), step):
        handle.write(view[start : start + step])


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_cache(
    path: str | os.PathLike, cache: CalibrationCache, provenance: Provenance | None = None
) -> Provenance | None:
    """Atomically write `cache` (and `provenance` to `<path>.json`); returns the written provenance.

    The written provenance carries `cache_sha256`, `trt_version` and `trt_algorithm` of the cache.
    See the module docstring for the crash-safety argument.
    """
    path = Path(path)
    data = cache.to_bytes()
    side = sidecar_path(path)
    if path.is_dir():
        raise CacheFormatError(f"{path}: is a directory, expected a cache file path")
    written: Provenance | None = None
    temps: list[Path] = []
    try:
        cache_tmp = _write_temp(path, data)
        temps.append(cache_tmp)
        side_tmp = None
        if provenance is not None:
            written = replace(
                provenance,
                cache_sha256=cache_digest(data),
                trt_version=cache.trt_version,
                trt_algorithm=cache.algorithm,
            )
            side_tmp = _write_temp(side, written.to_json().encode("utf-8"))
            temps.append(side_tmp)
        if side_tmp is not None:
            os.replace(side_tmp, side)
            temps.remove(side_tmp)
        elif side.is_file():
            os.unlink(side)  # it describes the cache we are replacing
        os.replace(cache_tmp, path)
        temps.remove(cache_tmp)
    except OSError as exc:
        raise CacheFormatError(f"{path}: cannot write cache ({exc.strerror or exc})") from None
    finally:
        for tmp in temps:
            _remove(tmp)
    _fsync_dir(path.parent)
    return written
