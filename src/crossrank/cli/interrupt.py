"""Ctrl-C in a command whose clean-up may hang (Ray): a bounded wait, then exit 130.

Only the ``crossrank`` process itself may be ended with ``os._exit``; a host that runs a command
in-process (typer's CliRunner, a notebook) never is. :func:`crossrank.cli.main` marks the process
as the command (:func:`mark_as_command`); both settings are read when the guard is entered, so a
test may change them.
"""

from __future__ import annotations

import os
import signal
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from crossrank.cli.console import err_console

__all__ = ["INTERRUPT_GRACE_S", "as_command", "bounded_interrupt", "mark_as_command"]

#: Seconds a Ctrl-C leaves a Ray command to clean up (stop its actors, shut its local Ray down)
#: before the process exits anyway; finished shards are already on disk by then.
INTERRUPT_GRACE_S = 15.0

_state = {"as_command": False}


def mark_as_command() -> None:
    """Mark this process as the ``crossrank`` command: the guard may end it with ``os._exit``."""
    _state["as_command"] = True


def as_command() -> bool:
    """Whether this process is the ``crossrank`` command (:func:`mark_as_command` was called).

    Example:
        >>> as_command()  # a doctest runner is not the crossrank command
        False
    """
    return _state["as_command"]


@contextmanager
def bounded_interrupt(
    grace_s: float | None = None, *, hard_exit: Callable[[int], Any] = os._exit
) -> Iterator[None]:
    """Ctrl-C inside the block raises ``KeyboardInterrupt`` as usual, and arms a deadline: if the
    clean-up it starts (Ray Data's executor, ``ray.shutdown``) is still running ``grace_s`` seconds
    later (default :data:`INTERRUPT_GRACE_S`), or a second Ctrl-C comes, the process exits with 130
    at once. A local Ray started by the process goes with it (Ray ties its processes' fate to the
    driver's). Outside the main thread (where signal handlers can't be set), and outside the
    ``crossrank`` process unless a ``hard_exit`` is given, the block runs unguarded.
    """
    own_process = as_command() or hard_exit is not os._exit
    if threading.current_thread() is not threading.main_thread() or not own_process:
        yield
        return
    grace = INTERRUPT_GRACE_S if grace_s is None else grace_s
    deadline: list[threading.Timer] = []

    def on_interrupt(signum: int, frame: types.FrameType | None) -> None:
        if deadline:  # the second Ctrl-C: don't wait for the clean-up
            hard_exit(130)
            return
        err_console.print(
            f"[yellow]interrupted[/]: stopping (finished work is kept; Ctrl-C again, or {grace:g} s, "
            "to exit at once)"
        )
        timer = threading.Timer(grace, hard_exit, args=(130,))
        timer.daemon = True
        deadline.append(timer)
        timer.start()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        # None: the previous handler wasn't set from Python; the default is the closest to it.
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        for timer in deadline:
            timer.cancel()
