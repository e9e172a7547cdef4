"""CLI commands, one module per area. Each module defines `register(app)`.

A module is imported only when the CLI starts, and imports its heavy dependencies inside the
command functions so `trtcalib --help` stays fast.
"""

from __future__ import annotations

import importlib

import typer

# the order is the order of `trtcalib --help`
_MODULES = [
    "calibrate",  # trtcalib calibrate
    "build",  # trtcalib build, trtcalib env
    "cache",  # trtcalib cache show|diff|verify|convert
    "qdq",  # trtcalib qdq, trtcalib eval, trtcalib compare
    "study",  # trtcalib study batch-size|scenario
    "algorithms",  # trtcalib algorithms
]


def register_all(app: typer.Typer) -> None:
    for name in _MODULES:
        importlib.import_module(f"trtcalib.commands.{name}").register(app)
