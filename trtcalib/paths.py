"""Path checks shared by the commands that write files next to the files they read."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from trtcalib.errors import ConfigError


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when `a` and `b` name one file: the same resolved path, or (both existing) the same
    inode, which also catches hard links and case-insensitive file systems."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:  # e.g. a symlink loop: cannot be the same file we are about to write
        return False


def check_outputs_spare_inputs(
    outputs: Mapping[str, str | os.PathLike | None], inputs: Mapping[str, str | os.PathLike | None]
) -> None:
    """ConfigError when an output path names an input: `-o model.onnx` must not replace the model.

    `outputs` maps the option ("--cache") to the path it writes, `inputs` maps a description
    ("the model") to the path read; None entries are ignored.
    An input that is a folder (a --data folder) also spares what its scan would read back as
    data on the next run, or would read differently (see `_scan_would_read`); a cache, a JSON
    report or a file under a hidden folder may go there: the scan never reads them.
    """
    for option, out in outputs.items():
        if out is None:
            continue
        for what, path in inputs.items():
            if path is None:
                continue
            if same_file(out, path):
                raise ConfigError(f"{option} {out}: is {what}; choose another path")
            if Path(path).is_dir() and _scan_would_read(Path(out), Path(path)):
                raise ConfigError(
                    f"{option} {out}: is inside {what} ({path}), which would read it back as "
                    "data; choose another path"
                )


def check_folder_spares_inputs(
    option: str,
    folder: Path,
    names: Iterable[str],
    inputs: Mapping[str, str | os.PathLike | None],
) -> None:
    """ConfigError when one of the files `names` an output folder (study --out) gets would
    replace an input, or land where a --data folder reads it back (its PNG plots)."""
    # one entry per file: each key names its file (a shared key would keep only the last one)
    outputs = {f"{option} {folder}: its output {name}": folder / name for name in names}
    check_outputs_spare_inputs(outputs, inputs)


def model_and_weights(model: str | os.PathLike, what: str = "the model") -> dict[str, Path]:
    """{description: path} for the model file and the external weights files it names, for
    check_outputs_spare_inputs: `-o weights.bin` must not replace the model's weights either."""
    from trtcalib.model import external_weight_files

    files = {what: Path(model)}
    for path in external_weight_files(Path(model)):
        files[f"{what}'s external weights file {path}"] = path  # one entry per file
    return files


def _scan_would_read(out: Path, folder: Path) -> bool:
    """Would the next scan of the --data `folder` (data/sources.py `_open_directory`) read the
    file `out`, or read the folder differently because of it?

    Names starting with "." are never scanned. A folder with arrays at its top is an array
    folder: it reads those arrays only, and refuses images next to them. Any other folder is an
    image folder, read recursively, and an array at its top would turn it into an array folder.
    So: arrays and images directly in the folder always count; below it, images count in an
    image folder only.
    """
    from trtcalib.data.sources import ARRAY_EXTENSIONS, IMAGE_EXTENSIONS

    suffix = out.suffix.lower()
    if suffix not in (*ARRAY_EXTENSIONS, *IMAGE_EXTENSIONS):
        return False
    try:
        root = folder.resolve()
        parts = out.resolve().relative_to(root).parts
    except (ValueError, OSError):  # not inside (or a symlink loop)
        return False
    if any(part.startswith(".") for part in parts):
        return False
    if len(parts) == 1:
        return True
    return suffix in IMAGE_EXTENSIONS and not _has_top_level_arrays(root)


def _has_top_level_arrays(folder: Path) -> bool:
    from trtcalib.data.sources import ARRAY_EXTENSIONS

    try:
        return any(
            p.suffix.lower() in ARRAY_EXTENSIONS and not p.name.startswith(".") and p.is_file()
            for p in folder.iterdir()
        )
    except OSError:
        return False


def default_cache_path(model: Path, calibrator: str, batch: int) -> Path:
    """caches/<model>.<calibrator>.b<batch>.cache: `build` finds what `calibrate` wrote."""
    return Path("caches") / f"{model.stem}.{calibrator}.b{batch}.cache"


def check_writable(path: Path, *, create_parents: bool = True, kind: str = "file") -> None:
    """ConfigError before any work when `path` cannot be written (nothing is left behind).

    With `create_parents` missing folders are fine (the caller makes them just before the atomic
    write): the probe file goes to the nearest folder that exists.
    """
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a {kind} path")
    if not create_parents and not path.parent.exists():
        raise ConfigError(f"{path}: folder {path.parent} does not exist")
    _check_nearest_folder(str(path), path.parent)


def check_output_folder(path: Path, option: str) -> None:
    """ConfigError before any work when `path` cannot be (or become) a folder of outputs: it is
    a file, a file stands where a parent folder must be, or the nearest folder is read-only."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: exists and is not a folder")
    _check_nearest_folder(f"{option} {path}", path)


def _check_nearest_folder(what: str, start: Path) -> None:
    """The nearest existing path at or above `start` must be a folder we can create files in."""
    probe = start
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{what}: {probe} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise ConfigError(f"{what}: cannot write in {probe} ({exc.strerror or exc})") from None


def data_path(spec: str | os.PathLike) -> Path:
    """The file or folder a --data spec reads (`script.py:func` -> script.py)."""
    text = os.fspath(spec)
    path = Path(text)
    if not path.exists() and ":" in text:
        path = Path(text.rsplit(":", 1)[0])
    return path
