"""The CLI entry itself: help, unknown commands, and error translation."""

from __future__ import annotations

import subprocess
import sys


def test_help_lists_commands(cli):
    result = cli("--help")
    assert result.exit_code == 0
    assert "calibration" in result.stdout.lower()


def test_unknown_command_is_usage_error(cli):
    result = cli("no-such-command")
    assert result.exit_code == 2


def test_python_dash_m_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "trtcalib", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "trtcalib" in proc.stdout


def test_import_does_not_pull_tensorrt_or_cuda():
    """Not even an attempt (a failed import leaves no trace in sys.modules)."""
    from importwatch import watch_imports

    code = watch_imports(
        "import trtcalib, trtcalib.cli; trtcalib.cli._register_commands()",
        ("tensorrt", "tensorrt_bindings", "cuda", "pycuda"),
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_ctrl_c_says_interrupted(cli, monkeypatch):
    import trtcalib.stats

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # the `algorithms` command builds its table from available_algorithms(): interrupt it there
    monkeypatch.setattr(trtcalib.stats, "available_algorithms", interrupted)
    result = cli("algorithms")
    assert result.exit_code == 130
    assert "interrupted" in result.stderr
