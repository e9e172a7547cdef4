"""Data sources for `--data`: what `open_source` returns, and the array-file sources.

Every source is validated against the model inputs when it is opened (names, ranks, fixed dims,
dtypes from the file headers), and can be read any number of times with `samples()`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from trtcalib.data.arrays import ArrayFile
from trtcalib.data.options import DataOptions
from trtcalib.data.subset import Selection, describe_selection, make_selection
from trtcalib.data.validate import InputChecker, check_same_samples, format_shape
from trtcalib.errors import ConfigError, DataError
from trtcalib.model import InputSpec

CHUNK_BYTES = 16 * 2**20  # rows read at once: enough to amortise I/O, small next to a batch
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
ARRAY_EXTENSIONS = (".npy", ".npz")


class BatchSource(ABC):
    """Validated model-input data. `samples()` yields `{input_name: array}` chunks whose leading
    dim counts samples (any chunk size; use `iter_batches` for exact batches)."""

    kind: str = "data"
    # Each chunk's arrays are new and never written again, so batches may be read ahead in a
    # thread (calibrate). False where user code yields them: it may refill one buffer in place,
    # or be tied to its thread (a database cursor).
    fresh_arrays: bool = False

    def __init__(self, spec: str, inputs: Sequence[InputSpec], options: DataOptions) -> None:
        self.spec = spec
        self.inputs = list(inputs)
        self.options = options
        self.checker = InputChecker(self.inputs)

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    @abstractmethod
    def num_samples(self) -> int | None:
        """Samples `samples()` will yield (after subsetting); None if unknown before reading."""

    @abstractmethod
    def describe(self) -> str:
        """One line for the user: where the data comes from and what is used."""

    def label_rows(self, num_labels: int, origin: str) -> np.ndarray | slice:
        """Which of `num_labels` per-sample values (labels of the whole source, in its order)
        go with the samples `samples()` yields, after --subset-len/--sample-method.

        DataError when they cannot be this source's labels (another count). This default is
        for sources of known length with a `selection`; a script source overrides it.
        """
        selection: Selection = self.selection  # type: ignore[attr-defined]
        if num_labels != selection.total:
            raise DataError(
                f"{origin}: {num_labels} labels for the {selection.total} samples of {self.spec}"
            )
        if selection.indices is not None:
            return selection.indices
        return slice(0, selection.count)

    @abstractmethod
    def _chunks(self) -> Iterator[dict[str, np.ndarray]]:
        """Validated, converted chunks (subclasses)."""

    def samples(self) -> Iterator[dict[str, np.ndarray]]:
        try:
            yield from self._chunks()
        finally:
            # counts start at open (a script's first item is checked then) and end with a pass
            self.checker.report_nonfinite(self.spec)
            self.checker.reset_counts()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def _inputs_line(self) -> str:
        return ", ".join(
            f"'{s.name}' {np.dtype(s.dtype)} {format_shape(('N',) + tuple(s.shape[1:]))}"
            for s in self.inputs
        )


class ArraySource(BatchSource):
    """An .npz, an .npy, or a directory of them (files in name order, one file open at a time)."""

    fresh_arrays = True  # rows are read into new arrays (never a view of a memory map)

    def __init__(
        self,
        spec: str,
        files: list[Path],
        inputs: Sequence[InputSpec],
        options: DataOptions,
        *,
        kind: str,
        chunk_rows: int | None = None,
    ) -> None:
        super().__init__(spec, inputs, options)
        self.kind = kind
        self.files: list[tuple[ArrayFile, dict[str, str], int]] = []  # file, name->key, offset
        self.ignored: set[str] = set()
        offset = 0
        for path in files:
            array_file = ArrayFile(path)
            keys = self._match_keys(array_file)
            counts = {}
            for name, key in keys.items():
                header = array_file.headers[key]
                where = str(path) + (f" array '{key}'" if key else "")
                self.checker.check_meta(name, header.shape, header.dtype, where)
                counts[name] = header.shape[0]
            offset_count = check_same_samples(counts, str(path))
            self.files.append((array_file, keys, offset))
            offset += offset_count
        if offset == 0:
            raise DataError(f"{spec}: zero samples")
        self.total = offset
        self.selection: Selection = make_selection(offset, options, spec)
        self._chunk_rows = chunk_rows

    def _match_keys(self, array_file: ArrayFile) -> dict[str, str]:
        names = self.input_names
        available = list(array_file.headers)
        if not array_file.is_npz:
            if len(names) != 1:
                raise DataError(
                    f"{array_file.path}: an .npy holds one array but the model has "
                    f"{len(names)} inputs ({', '.join(names)}); use an .npz with one array each"
                )
            return {names[0]: ""}
        if all(n in array_file.headers for n in names):
            self.ignored.update(k for k in available if k not in names)
            return {n: n for n in names}
        if len(names) == 1 and len(available) == 1:
            return {names[0]: available[0]}
        missing = [n for n in names if n not in array_file.headers]
        raise DataError(
            f"{array_file.path}: no array for model input '{missing[0]}' "
            f"(arrays: {', '.join(available)}; inputs: {', '.join(names)})"
        )

    @property
    def num_samples(self) -> int:
        return self.selection.count

    def describe(self) -> str:
        where = self.spec
        if self.kind == "directory":
            where += f" ({len(self.files)} files)"
        selected = describe_selection(self.selection, self.options)
        text = f"{where}: {selected}; inputs {self._inputs_line()}"
        if self.ignored:
            text += f"; ignored arrays: {', '.join(sorted(self.ignored))}"
        return text

    def _rows_per_chunk(self, array_file: ArrayFile, keys: dict[str, str]) -> int:
        if self._chunk_rows:
            return self._chunk_rows
        row_bytes = 0
        for key in keys.values():
            header = array_file.headers[key]
            row_bytes += int(np.prod(header.shape[1:], dtype=np.int64)) * header.dtype.itemsize
        return max(1, CHUNK_BYTES // max(row_bytes, 1))

    def _chunks(self) -> Iterator[dict[str, np.ndarray]]:
        selection = self.selection
        for array_file, keys, offset in self.files:
            if selection.done_after(offset):
                return
            where = str(array_file.path)

            def pick(start: int, stop: int, offset: int = offset) -> object:
                if selection.done_after(offset + start):
                    return False
                return selection.in_range(offset + start, offset + stop)

            rows = self._rows_per_chunk(array_file, keys)
            for raw in array_file.read(keys, rows, pick):  # type: ignore[arg-type]
                yield {name: self.checker.convert(name, raw[name], where) for name in keys}


def _split_script_spec(spec: str) -> tuple[str, str] | None:
    """'load.py' -> ('load.py', 'load_data'); 'load.py:make' -> ('load.py', 'make')."""
    head, sep, tail = spec.rpartition(":")
    if sep and head.lower().endswith(".py") and tail.isidentifier():
        return head, tail
    if spec.lower().endswith(".py"):
        return spec, "load_data"
    return None


def open_source(
    spec: str | Path, inputs: Sequence[InputSpec], options: DataOptions | None = None
) -> BatchSource:
    """Open `--data`: file.npz | file.npy | directory of .npy/.npz | image folder |
    script.py[:func]. Validates against `inputs` (from `trtcalib.model.input_specs`) now."""
    options = options if options is not None else DataOptions()
    inputs = list(inputs)
    if not inputs:
        raise DataError(f"{spec}: the model has no inputs to feed")
    text = str(spec)
    script = _split_script_spec(text)
    if script is not None:
        path = Path(script[0])
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        from trtcalib.data.script import ScriptSource

        _refuse_image_options(options, f"{text} is a load_data() script")
        return ScriptSource(text, path, script[1], inputs, options)
    path = Path(text)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return _open_directory(text, path, inputs, options)
    suffix = path.suffix.lower()
    if suffix in ARRAY_EXTENSIONS:
        _refuse_image_options(options, f"{text} holds arrays")
        return ArraySource(text, [path], inputs, options, kind=suffix[1:])
    raise DataError(
        f"{path}: unknown data format '{path.suffix or path.name}' "
        "(expected .npz, .npy, a folder of them, an image folder, or script.py[:func])"
    )


def _refuse_image_options(options: DataOptions, what: str) -> None:
    """--resize, --mean, ... only shape images: given for arrays they would be ignored, and the
    user who wrote --mean 0.5 expects normalised data."""
    from dataclasses import fields

    from trtcalib.data.options import ImageOptions

    default = ImageOptions()
    given = [
        "--" + f.name.replace("_", "-")
        for f in fields(ImageOptions)
        if getattr(options.image, f.name) != getattr(default, f.name)
    ]
    if given:
        raise ConfigError(
            f"{', '.join(given)}: image options, but {what}: prepare the arrays as the model "
            "expects them (or point --data at an image folder)"
        )


def _hidden(path: Path, root: Path) -> bool:
    # macOS leaves AppleDouble "._photo.jpg" files (not images) on shared drives and archives;
    # like `ls`, skip names and folders starting with "." (.ipynb_checkpoints, .git, ...)
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _open_directory(
    text: str, path: Path, inputs: list[InputSpec], options: DataOptions
) -> BatchSource:
    arrays = sorted(
        (
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in ARRAY_EXTENSIONS and not _hidden(p, path)
        ),
        key=lambda p: p.name,
    )
    if arrays:
        images_here = [
            p
            for p in path.iterdir()
            if p.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(p, path)
        ]
        if images_here:
            raise DataError(
                f"{path}: mixes .npy/.npz files and images ({images_here[0].name}); "
                "use one kind per folder"
            )
        _refuse_image_options(options, f"{text} is a folder of arrays")
        return ArraySource(text, arrays, inputs, options, kind="directory")
    images = sorted(
        (
            p
            for p in path.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not _hidden(p, path)
        ),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    if not images:
        raise DataError(
            f"{path}: empty data folder (no .npy/.npz files and no "
            f"{'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} images)"
        )
    from trtcalib.data.images import ImageSource

    return ImageSource(text, images, inputs, options)
