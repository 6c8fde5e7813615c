"""A progress line on stderr every few seconds while clips are decoded (per worker process)."""

from __future__ import annotations

import os
import sys
import threading
import time


class _Progress:
    """Process-wide tallies; DoFn instances in threads of one worker share it."""

    def __init__(self):
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.last_print = self.started
        self.done = 0
        self.failed = 0
        self.seconds = 0.0

    def record(self, *, ok: bool, seconds: float = 0.0, total: int | None = None) -> None:
        interval = float(os.environ.get("VIDEO_FEATURES_PROGRESS_SECONDS", "5"))
        with self._lock:
            if ok:
                self.done += 1
                self.seconds += seconds
            else:
                self.failed += 1
            now = time.monotonic()
            if now - self.last_print < interval:
                return
            self.last_print = now
            finished = self.done + self.failed
            rate = finished / max(now - self.started, 1e-9)
            line = (f"progress [pid {os.getpid()}]: {self.done} clips decoded, {self.failed} failed, "
                    f"{self.seconds:.0f} s of video, {rate:.2f} clips/s")
            if total:
                left = max(total - finished, 0)
                line += f", ~{left} left in this run, ETA {left / rate / 60:.1f} min if this worker did all"
            print(line, file=sys.stderr, flush=True)


PROGRESS = _Progress()
