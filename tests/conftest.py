"""Shared fixtures: running the CLI in-process and capturing what it prints."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from trtcalib.cli import main


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """cli("cache", "show", path) -> CliResult, running `trtcalib` in this process."""

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return invoke
