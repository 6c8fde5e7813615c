"""Ctrl-C and SIGTERM in the launcher: clean up, one line, exit 130 / 143.

The in-process runner executes bundles in the launcher's main thread and turns any exception
raised there (KeyboardInterrupt included) into a RuntimeError with the worker's traceback, so
a signal must not unwind through it. Instead the handler runs the registered clean-ups itself
(the build lock released, this run's temporary files and folder removed), prints one line with
the way to resume and ends the process at once with 128 + the signal number, as a shell reports
a process the signal ended. Further SIGINT/SIGTERM are ignored while it cleans up. A kill -9
cannot be caught: its leftovers (a lock of a dead process, `*.tmp-*` files) are found and
removed by the next run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

_HINT = ["rerun the same command with --skip_existing to resume: the records already written are kept"]
_CLEANUPS: list[Callable[[], None]] = []


def set_resume_hint(hint: str) -> None:
    """What the interrupted line tells the user to do (a fetch-only build resumes differently)."""
    _HINT[0] = hint


def message(signum: int) -> str:
    """The one line printed for an interrupted build."""
    return (f"error: interrupted ({signal.Signals(signum).name}): the build stopped; its lock and temporary files "
            f"were removed and nothing it left looks finished (no new stats.json); {_HINT[0]}")


@contextlib.contextmanager
def on_interrupt(cleanup: Callable[[], None]) -> Iterator[None]:
    """Runs `cleanup` if the process is interrupted within the block (latest registered first)."""
    _CLEANUPS.append(cleanup)
    try:
        yield
    finally:
        _CLEANUPS.remove(cleanup)


def _handle(signum: int, _frame: object) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the cleanup must not be cut short by a second Ctrl-C
    for cleanup in reversed(list(_CLEANUPS)):
        try:
            cleanup()
        except BaseException:  # noqa: BLE001 - best effort: the next run removes what is left
            pass
    try:
        print(message(signum), file=sys.stderr, flush=True)
        sys.stdout.flush()
    finally:
        os._exit(128 + signum)  # the runner's threads are not waited for: they would only print tracebacks


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM end the process as described above; the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, _handle)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
