"""Errors a user can act on. The CLI prints them as one line and exits with `exit_code`.

Exit codes: 0 success, 1 a check said no (cache diff over tolerance, cache must not be reused),
2 bad input (file, data, model, options), 3 the work stopped at a boundary this machine cannot
cross (no TensorRT libraries or no GPU) after doing everything it could.
"""

from __future__ import annotations


class TrtcalibError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in trtcalib."""

    exit_code: int = 2


class ModelError(TrtcalibError):
    """The ONNX model is missing, unreadable or unsuitable."""


class DataError(TrtcalibError):
    """Calibration or evaluation data is missing, unreadable or does not fit the model."""


class StatsError(TrtcalibError):
    """Statistics cannot be computed (e.g. an empty batch for a tensor)."""


class CacheFormatError(TrtcalibError):
    """A calibration cache (or its sidecar) is not in TensorRT's format."""


class ConfigError(TrtcalibError):
    """A --config file or an option combination is invalid."""


class TensorRTUnavailableError(TrtcalibError):
    """TensorRT's libraries or a CUDA device are missing: the GPU-only step cannot run here."""

    exit_code = 3


def first_line(exc: BaseException) -> str:
    """The first line of `exc`'s message (library errors often run to many), else its type name.

    For one-line user errors that quote a library's exception.
    """
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
