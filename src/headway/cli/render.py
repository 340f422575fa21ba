"""Terminal output: steps with timings for people (rich), JSON for machines."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from headway.errors import HeadwayError
from headway.release.report import RecordingReporter, Step

_WIDTH = None if sys.stdout.isatty() else 160  # tables piped to a file or CI keep whole names


class _LazyConsole:
    """A rich Console made on first use: `headway --version` and friends never import rich."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


err_console: Any = _LazyConsole(stderr=True, highlight=False, soft_wrap=True)
out_console: Any = _LazyConsole(highlight=False, soft_wrap=True, width=_WIDTH)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def Table(*columns: str, **options: Any) -> Any:  # noqa: N802 - stands in for rich's class
    from rich.table import Table as RichTable

    return RichTable(*columns, **options)


class ConsoleReporter(RecordingReporter):
    """Prints each step as it starts and ends, and still records them for --json."""

    def __init__(self, quiet: bool = False) -> None:
        super().__init__()
        self.quiet = quiet
        self._t0 = time.monotonic()

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        if not self.quiet:
            err_console.print(f"[dim]{self._clock()}[/dim] [bold]→[/bold] {escape(name)}")
        with super().step(name) as step:
            try:
                yield step
            except BaseException:
                if not self.quiet:
                    err_console.print(f"[dim]{self._clock()}[/dim] [red]✗[/red] {escape(name)} "
                                      f"[dim]({time.monotonic() - self._t0:.1f}s)[/dim]")
                raise
        if not self.quiet:
            detail = f" — {escape(step.detail)}" if step.detail else ""
            err_console.print(f"[dim]{self._clock()}[/dim] [green]✓[/green] {escape(name)}{detail} "
                              f"[dim]({step.seconds:.2f}s)[/dim]")

    def info(self, message: str) -> None:
        super().info(message)
        if not self.quiet:
            err_console.print(escape(message))

    def output(self, line: str) -> None:
        super().output(line)
        if not self.quiet:
            err_console.print(f"    [dim]│ {escape(line)}[/dim]")

    def _clock(self) -> str:
        return f"{time.monotonic() - self._t0:6.1f}s"


def print_error(exc: HeadwayError) -> None:
    err_console.print(f"[bold red]error:[/bold red] {escape(exc.message)}")
    if exc.details:
        for line in exc.details.rstrip().splitlines()[-40:]:
            err_console.print(f"  [dim]{escape(line)}[/dim]")
    if exc.fix:
        err_console.print(f"[yellow]fix:[/yellow] {escape(exc.fix)}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()
