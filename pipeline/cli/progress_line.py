"""The one progress display of the command-line tools (the build's launcher and `download_yt8m`).

A tool that runs for minutes shows its progress on stderr. On a terminal that is a rich
progress bar (bar, completed/total, elapsed time, the caller's text), redrawn in place by
rich; elsewhere (logs, CI) it is one plain full line every ``interval`` seconds while
something changes, and the final state once at the end, so a log stays readable and
greppable. `StatusLine` does the throttling and the drawing for both tools; a caller only
says what the line reads (a text callable) and, for the bar, how far it is (completed,
total). `format_clock` and `format_bytes` are the units every progress and summary line uses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["StatusLine", "format_bytes", "format_clock", "is_terminal"]

# At most this many redraws a second on a terminal (rich redraws by itself, so elapsed time keeps moving).
_MAX_REFRESH_PER_S = 10.0


def _clock() -> float:
    """The clock of the throttle (a seam: tests of both tools move it instead of sleeping)."""
    return time.monotonic()


def format_clock(seconds: float) -> str:
    """``H:MM:SS`` (negative durations read as zero)."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def format_bytes(count: float) -> str:
    """Human-readable binary size, e.g. ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` is an interactive terminal (False for None and closed or odd streams)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


class StatusLine:
    """A throttled, thread-safe progress display on a stream: a rich bar or plain lines.

    Callers change their own counters inside `update` (under `lock`, so the text callables see
    a consistent state) and call `finish` once at the end. A plain line is printed only when
    something changed since the previous one (a change is an `update` with a ``change``), so a
    stalled run does not repeat itself and the final state is printed exactly once.

    Args:
        stream: Where it is drawn; None for silence.
        text: Returns the plain line (without newline); called under the lock.
        interval: Seconds between plain lines, counted from the start (a run shorter than this
            prints only its final line).
        tty_interval: Seconds between pushes of new values to the bar (rich redraws it by itself).
        live: Draw a rich bar; default: when ``stream`` is a terminal.
        label: The bar's leading word (what is counted, e.g. ``clips``).
        bar_text: Returns the text shown beside the bar; default ``text``. Called under the lock.
        counts: Returns ``(completed, total)`` for the bar (total None when unknown); without
            it the bar only shows elapsed time. Called under the lock.
    """

    def __init__(self, stream: TextIO | None, text: Callable[[], str], *, interval: float = 5.0,
                 tty_interval: float = 0.2, live: bool | None = None, label: str = "",
                 bar_text: Callable[[], str] | None = None,
                 counts: Callable[[], tuple[int, int | None]] | None = None):
        self.lock = threading.Lock()
        self._stream = stream
        self._text = text
        self._bar_text = bar_text or text
        self._counts = counts
        self._live = stream is not None and (is_terminal(stream) if live is None else live)
        self._interval = max(0.0, tty_interval if self._live else interval)
        self._last_render = _clock()
        self._changed = False
        self._finished = False
        self._bar: Any = None
        self._task: Any = None
        if self._live:
            self._start_bar(label, tty_interval)

    @property
    def live(self) -> bool:
        """Whether this display is a rich bar (else plain lines, or silence without a stream)."""
        return self._live

    def update(self, change: Callable[[], bool | None] | None = None) -> None:
        """Applies ``change`` under the lock, then redraws if the interval has passed.

        Args:
            change: Changes the caller's counters; it may return False to say nothing changed
                (a poll that found nothing new). None, or a change that found nothing, still
                gives a due redraw its chance: a caller that polls calls this on every tick, so
                a change is drawn on time even when nothing else happens.
        """
        with self.lock:
            if change is not None and change() is not False:
                self._changed = True
            self._render(force=False)

    def finish(self) -> None:
        """Draws the final state (a plain line only if something changed since the last) and stops."""
        with self.lock:
            if self._finished:
                return
            self._finished = True
            self._render(force=True)
            if self._bar is not None:
                self._bar.stop()

    def _render(self, *, force: bool) -> None:
        if self._stream is None or self._finished and not force:
            return
        now = _clock()
        if not force and now - self._last_render < self._interval:
            return
        if self._bar is not None:
            self._last_render = now
            completed, total = self._counts() if self._counts is not None else (0, None)
            self._bar.update(self._task, completed=completed, total=total, text=self._bar_text())
        elif self._changed:
            self._last_render = now
            self._changed = False
            self._stream.write(self._text() + "\n")
            self._stream.flush()

    def _start_bar(self, label: str, tty_interval: float) -> None:
        # Imported here: a tool whose stderr is a log never loads rich.
        # pylint: disable=import-outside-toplevel
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns: list[Any] = [TextColumn(label, markup=False)] if label else []
        if self._counts is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns += [TimeElapsedColumn(), TextColumn("{task.fields[text]}", markup=False)]
        per_second = min(_MAX_REFRESH_PER_S, 1.0 / tty_interval) if tty_interval > 0 else _MAX_REFRESH_PER_S
        self._bar = Progress(*columns, console=Console(file=self._stream, force_terminal=True),
                             refresh_per_second=per_second, transient=False)
        completed, total = self._counts() if self._counts is not None else (0, None)
        self._task = self._bar.add_task(label, completed=completed, total=total, text=self._bar_text())
        self._bar.start()
