"""Terminal output shared by all commands: results on stdout, progress and warnings on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

# Console() without a file looks up sys.stdout/sys.stderr on every write, so pytest capture works.
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    err_console.print(Text.assemble(("warning: ", "yellow"), message))


def info(message: str) -> None:
    """Print a one-line status message on stderr (keeps stdout for results)."""
    err_console.print(Text(message))


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f} {self.unit}/s")


def make_progress(unit: str = "samples", *, enabled: bool = True) -> Progress:
    """A progress bar on stderr: description, bar, done/total, rate, elapsed and remaining time.

    `enabled=False` (--no-progress) gives the same object that draws nothing."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not enabled,
    )
