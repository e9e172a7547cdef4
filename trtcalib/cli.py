"""The one command-line entry: `trtcalib <command>`.

Each command lives in `trtcalib.commands.<area>` and registers itself on `app`; this file only
assembles them and turns `TrtcalibError` into a one-line message and an exit code.
"""

from __future__ import annotations

import sys

import typer
from rich.text import Text

from trtcalib.console import err_console
from trtcalib.errors import TrtcalibError

app = typer.Typer(
    name="trtcalib",
    help=(
        "TensorRT INT8 calibration you can trust: TensorRT-exact calibration statistics on the "
        "CPU, calibration caches in TensorRT's format with provenance, Q/DQ export for "
        "TensorRT 11, "
        "and engine builds on a GPU host."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_registered = False


def _print_version(value: bool) -> None:
    if value:
        from trtcalib import __version__

        typer.echo(f"trtcalib {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print version and exit."
    ),
) -> None:
    """TensorRT INT8 calibration you can trust."""


def _register_commands() -> None:
    global _registered
    if not _registered:
        from trtcalib.commands import register_all

        register_all(app)
        _registered = True


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    _register_commands()
    try:
        # standalone mode: typer/click print usage errors themselves and end with SystemExit
        app(args=argv, prog_name="trtcalib")
    except SystemExit as exc:
        if _caused_by_interrupt(exc):  # typer turns Ctrl-C into Exit(130) before we see it
            err_console.print("interrupted (outputs are written atomically: none is half-written)")
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    except TrtcalibError as exc:
        err_console.print(Text.assemble(("error: ", "red"), str(exc)))
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except MemoryError as exc:  # e.g. numpy's "Unable to allocate 715. GiB for an array ..."
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "allocation failed"
        err_console.print(
            Text.assemble(
                ("error: ", "red"),
                f"out of memory ({detail}): use a smaller --batch (or fewer samples)",
            )
        )
        return 1
    return 0


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
