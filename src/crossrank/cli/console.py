"""What the ``crossrank`` commands print, and where: consoles, logging, progress, results and errors.

One rule for every command: ``--json`` prints JSON and nothing else on stdout (notes, progress and
errors go to stderr), ``--output PATH`` writes the JSON to a file. Text that comes from outside
(a query, a path, an error message) is escaped before rich prints it, so ``[train]`` stays
``[train]``. Where the output is not a terminal (a log, a pipe, CI) lines are not wrapped: a
status line stays one line.

This is the one place in crossrank that configures logging and progress bars; the library
itself only logs through ``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from crossrank.errors import CrossrankError

__all__ = [
    "CliConsole",
    "Progress",
    "console",
    "emit",
    "err_console",
    "errors_reported",
    "fail",
    "note",
    "setup_logging",
    "snippet",
]


class CliConsole(Console):
    """A rich console that wraps lines at the terminal's edge, and not at all where its output is
    not a terminal: there a line of any length is printed whole, never cut at 80 columns.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> CliConsole(file=out).print("word " * 30 + "end")
        >>> len(out.getvalue().splitlines())
        1
    """

    def print(self, *objects: Any, soft_wrap: bool | None = None, **kwargs: Any) -> None:
        super().print(
            *objects, soft_wrap=(not self.is_terminal) if soft_wrap is None else soft_wrap, **kwargs
        )


#: stdout: tables and the notes around them.
console = CliConsole()
#: stderr: progress, notes beside ``--json``, logs and errors.
err_console = CliConsole(stderr=True)


def setup_logging(verbose: bool) -> None:
    """Log to stderr through rich, at INFO with ``--verbose`` and WARNING otherwise; no hub progress bars."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )
    # Model-loading progress bars from transformers/hub are noise on a CLI screen.
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    try:  # the torch extra's; a torch-free install has no transformers to quiet
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    transformers_logging.disable_progress_bar()


class Progress:
    """A progress bar on stderr; where stderr is not a terminal (a log, CI), a line every ~10%."""

    def __init__(self) -> None:
        self._bar = None
        if err_console.is_terminal:
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )
        self._tasks: dict[int, tuple[str, int, int, float]] = {}

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def add_task(self, description: str, total: int) -> int:
        """A new task of ``total`` steps; returns its id for :meth:`update`."""
        if self._bar is not None:
            return self._bar.add_task(escape(description), total=total)
        task = len(self._tasks)
        self._tasks[task] = (description, total, -1, time.perf_counter())
        return task

    def update(self, task: int, completed: int) -> None:
        """``completed`` of the task's steps are done."""
        if self._bar is not None:
            self._bar.update(task, completed=completed)  # type: ignore[arg-type]
            return
        description, total, last_tenth, started = self._tasks[task]
        tenth = completed * 10 // max(total, 1)
        if tenth > last_tenth:
            self._tasks[task] = (description, total, tenth, started)
            elapsed = time.perf_counter() - started
            err_console.print(
                f"{description}: {completed}/{total} ({elapsed:.0f} s)", markup=False, highlight=False
            )


def fail(err: Exception | str) -> typer.Exit:
    """Print ``error: <err>`` on stderr; returns the exit (code 1) for the caller to raise."""
    err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
    return typer.Exit(code=1)


@contextmanager
def errors_reported() -> Iterator[None]:
    """Errors a user can fix end the command with a one-line message and exit code 1, no traceback."""
    try:
        yield
    except (CrossrankError, FileNotFoundError, ValueError) as err:
        raise fail(err) from None


def emit(payload: dict[str, Any], *, json_output: bool, output: Path | None) -> None:
    """``--output PATH`` writes the JSON there; ``--json`` prints it alone on stdout."""
    text = json.dumps(payload, ensure_ascii=False, indent=2)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    if json_output:
        typer.echo(text)


def note(message: str, *, json_output: bool) -> None:
    """A line for the reader (rich markup; escape what comes from outside): stdout with the tables,
    stderr when stdout is JSON."""
    (err_console if json_output else console).print(message, highlight=False)


def snippet(text: str, width: int = 110) -> str:
    """``text`` on one line, cut to ``width`` characters.

    Example:
        >>> snippet("a  long\\n text", width=8)
        'a long …'
    """
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
