"""The rendering of a progress line, shared by the command-line tools.

A tool that runs for minutes shows one status line on stderr: on a terminal it is rewritten in
place (``\\r``) a few times a second, elsewhere (logs, CI) a full line is printed every few
seconds so the log stays readable. `StatusLine` does the throttling and the drawing; the
caller only says what the line reads (`pipeline.download_yt8m`'s files, bytes, rate and ETA).
`format_clock` and `format_bytes` are the units every progress and summary line uses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["StatusLine", "format_bytes", "format_clock", "is_terminal"]


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
    """A throttled, thread-safe status line on a stream.

    Args:
        stream: Where it is drawn; None for silence.
        text: Returns the current line (without ``\\r`` or newline); called under the lock.
        interval: Seconds between full lines when ``stream`` is not a terminal.
        tty_interval: Seconds between in-place redraws on a terminal.
    """

    def __init__(self, stream: TextIO | None, text: Callable[[], str], *, interval: float = 5.0,
                 tty_interval: float = 0.2):
        self.lock = threading.Lock()
        self._stream = stream
        self._text = text
        self._tty = is_terminal(stream)
        self._interval = tty_interval if self._tty else interval
        self._last_render = float("-inf")
        self._width = 0

    def update(self, change: Callable[[], None] | None = None) -> None:
        """Applies ``change`` under the lock, then redraws if the interval has passed."""
        with self.lock:
            if change is not None:
                change()
            self._render(force=False)

    def finish(self) -> None:
        """Draws the final state and ends an in-place line."""
        with self.lock:
            self._render(force=True)
            if self._tty and self._stream is not None:
                self._stream.write("\n")
                self._stream.flush()

    def _render(self, *, force: bool) -> None:
        now = time.monotonic()
        if self._stream is None or (not force and now - self._last_render < self._interval):
            return
        self._last_render = now
        text = self._text()
        if self._tty:
            padding = " " * max(0, self._width - len(text))
            self._width = len(text)
            self._stream.write(f"\r{text}{padding}")
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
