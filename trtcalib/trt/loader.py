"""Finding and importing TensorRT's Python bindings, and saying clearly why they are unusable.

The full `tensorrt` package (`pip install tensorrt-cu12`) installs a module `tensorrt` that
re-exports `tensorrt_bindings` (the wheel `tensorrt-cu12-bindings`); a machine may have only the
bindings wheel. Both expose the same classes, so we import whichever exists, `tensorrt` first.
The bindings' extension links libnvinfer.so.<major> etc., so "installed" and "loads" differ.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from types import ModuleType

from trtcalib.errors import TensorRTUnavailableError

MODULE_NAMES = ("tensorrt", "tensorrt_bindings")
# distributions that install one of MODULE_NAMES, newest naming first
_DISTRIBUTIONS = (
    "tensorrt-cu12-bindings",
    "tensorrt-cu13-bindings",
    "tensorrt-cu11-bindings",
    "tensorrt-bindings",
    "tensorrt-cu12",
    "tensorrt",
)
LAST_IMPLICIT_MAJOR = 10  # TensorRT 11 removed calibrators (implicit quantization)
# the majors trtcalib builds for: 10 (calibrators) and 11 (Q/DQ). TensorRT 8/9 bindings differ in
# API and cache header, a future 12 in what it accepts: neither is guessed at
SUPPORTED_MAJORS = (10, 11)


@dataclass(frozen=True)
class TensorRTInfo:
    """What this Python environment has of TensorRT."""

    version: str | None  # e.g. "10.16.1.11"; None when no bindings are installed
    module: str | None  # the module that imported (or would import)
    loaded: bool  # the bindings imported, i.e. the TensorRT libraries were found
    error: str | None  # why not, one line

    @property
    def major(self) -> int | None:
        return version_major(self.version)

    @property
    def quantization(self) -> str | None:
        """'implicit' (calibrators, TensorRT <= 10) or 'explicit' (Q/DQ only, TensorRT >= 11)."""
        return quantization_mode(self.version)


def version_major(version: str | None) -> int | None:
    match = re.match(r"(\d+)", version or "")
    return int(match.group(1)) if match else None


def quantization_mode(version: str | None) -> str | None:
    major = version_major(version)
    if major is None:
        return None
    return "implicit" if major <= LAST_IMPLICIT_MAJOR else "explicit"


def dist_version(*names: str) -> str | None:
    """The version of the first of these pip distributions that is installed, else None."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _missing_library(message: str) -> str | None:
    match = re.search(r"(lib[\w.+-]+\.so(?:\.\d+)*)", message)
    return match.group(1) if match else None


def _import() -> tuple[ModuleType | None, str | None, str | None]:
    """(module, module name, error) trying `tensorrt`, then `tensorrt_bindings`."""
    error = None
    name = None
    for candidate in MODULE_NAMES:
        try:
            return importlib.import_module(candidate), candidate, None
        except ModuleNotFoundError as exc:
            if exc.name != candidate:  # the package is there but something it needs is not
                return None, candidate, f"{candidate} is installed but cannot import {exc.name}"
        except ImportError as exc:  # the extension is there, its shared libraries are not
            name = name or candidate
            lib = _missing_library(str(exc))
            error = error or (
                f"the TensorRT libraries are missing ({lib} not found)"
                if lib
                else f"{candidate} does not import: {str(exc).splitlines()[0]}"
            )
    return None, name, error


def probe_tensorrt() -> TensorRTInfo:
    """Try to import TensorRT (at most once per process, like any import) and describe it."""
    module, name, error = _import()
    if module is not None:
        version = getattr(module, "__version__", None) or dist_version(*_DISTRIBUTIONS)
        return TensorRTInfo(version, name, True, None)
    version = dist_version(*_DISTRIBUTIONS)
    if version is None and error is None:
        return TensorRTInfo(None, None, False, "TensorRT is not installed")
    return TensorRTInfo(version, name, False, error or "TensorRT does not import")


def load_tensorrt() -> ModuleType:
    """The imported TensorRT module, or TensorRTUnavailableError saying what is missing."""
    for name in MODULE_NAMES:
        module = sys.modules.get(name)
        if module is not None:
            return module
    module, _, _ = _import()
    if module is not None:
        return module
    info = probe_tensorrt()
    what = info.error or "TensorRT does not import"
    if info.version:
        what = f"TensorRT {info.version} bindings are installed but {what}"
    raise TensorRTUnavailableError(what)
