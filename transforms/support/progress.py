"""Progress of a build: decode outcomes from every worker process, one display in the launcher.

DecodeClips calls `PROGRESS.record(ok=..., seconds=..., total=...)` once per clip, in whatever
process the runner put it. Worker processes cannot draw on the launcher's terminal, so a local
run's launcher opens a :class:`RunProgress`: it makes a private directory, names it in
VIDEO_FEATURES_PROGRESS_DIR (which the local runner's worker processes inherit, and which the
in-process modes see directly), and polls it. Each `record` call then appends one short line to
`<dir>/<pid>.log` with a single `O_APPEND` write, so lines of concurrent threads and processes
never interleave. The launcher draws one display for the whole run through
`pipeline.cli.progress_line.StatusLine` (the download tool's too): a rich progress bar when stderr is
a terminal, a plain line every VIDEO_FEATURES_PROGRESS_SECONDS (default 10) otherwise.

Without a listening launcher (Dataflow workers, tests of the transforms), each process logs its
own tallies at INFO now and then instead.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import TextIO

from pipeline.cli.progress_line import StatusLine, format_clock, is_terminal

PROGRESS_DIR_ENV = "VIDEO_FEATURES_PROGRESS_DIR"
INTERVAL_ENV = "VIDEO_FEATURES_PROGRESS_SECONDS"
DEFAULT_INTERVAL_S = 10.0
_POLL_S = 0.25  # how often the launcher reads the workers' records


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


@dataclasses.dataclass
class Tally:
    """Clips decoded and failed so far, and the seconds of video decoded."""

    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    phase: str = ""  # what the workers said they are doing (loading models, writing), latest first

    @property
    def finished(self) -> int:
        """Rows that reached an end (decoded or failed)."""
        return self.done + self.failed

    def add(self, ok: bool, seconds: float) -> None:
        """Counts one clip: decoded (with its seconds of video) or failed."""
        if ok:
            self.done += 1
            self.seconds += seconds
        else:
            self.failed += 1


class _Progress:
    """The per-process reporter behind PROGRESS; DoFn instances in threads of one process share it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tally = Tally()
        self._started = time.monotonic()
        self._last_log = self._started

    def phase(self, text: str) -> None:
        """Tells the launcher's display what this process is busy with (``loading models``, ``writing``).

        Between the clips there are long waits that are not clips: worker start, model loading,
        writing the shards. The display says which one it is instead of sitting still.
        """
        directory = os.environ.get(PROGRESS_DIR_ENV)
        if directory:
            self._write(directory, f"phase {' '.join(text.split())}\n".encode())

    def record(self, *, ok: bool, seconds: float = 0.0, total: int | None = None) -> None:
        """Counts one clip: decoded (`ok`, with its `seconds` of video) or failed."""
        directory = os.environ.get(PROGRESS_DIR_ENV)
        if directory:
            self._append(directory, ok, seconds)
        else:
            self._log(ok, seconds, total)

    @classmethod
    def _append(cls, directory: str, ok: bool, seconds: float) -> None:
        cls._write(directory, f"{'ok' if ok else 'failed'} {max(0.0, seconds):.3f}\n".encode())

    @staticmethod
    def _write(directory: str, line: bytes) -> None:
        try:
            fd = os.open(os.path.join(directory, f"{os.getpid()}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError:
            pass  # the launcher has gone or cleaned up: there is nobody left to show progress to

    def _log(self, ok: bool, seconds: float, total: int | None) -> None:
        with self._lock:
            self._tally.add(ok, seconds)
            now = time.monotonic()
            if now - self._last_log < _interval():
                return
            self._last_log = now
            tally = self._tally
        logging.info("progress [pid %d]: %d clips decoded, %d failed, %.0f s of video%s", os.getpid(), tally.done,
                     tally.failed, tally.seconds, f" (of {total} rows in the run)" if total else "")


PROGRESS = _Progress()


def read_new_records(directory: str, offsets: dict[str, int], tally: Tally) -> bool:
    """Adds the complete lines written to `directory` since the last call to `tally`; True if any."""
    changed = False
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".log"))
    except OSError:
        return False
    for name in names:
        try:
            with open(os.path.join(directory, name), "rb") as f:
                f.seek(offsets.get(name, 0))
                data = f.read()
        except OSError:
            continue
        complete = data[: data.rfind(b"\n") + 1]  # a line being written now is read next time
        offsets[name] = offsets.get(name, 0) + len(complete)
        for line in complete.splitlines():
            kind, _, seconds = line.decode("ascii", "replace").partition(" ")
            if kind == "phase":
                tally.phase, changed = seconds.strip(), True
                continue
            try:
                tally.add(kind == "ok", float(seconds) if kind == "ok" else 0.0)
            except ValueError:
                continue
            changed = True
    return changed


class RunProgress:
    """One progress display for a local run, fed by every worker process (a context manager).

    The drawing (a rich bar on a terminal, throttled plain lines otherwise) is
    `pipeline.cli.progress_line.StatusLine`'s, the same as `pipeline.download_yt8m`'s; this class
    collects the workers' records and says what the display reads.

    Args:
        total: Rows of the input CSV, for the bar and the ETA (rows that never reach decoding,
            such as invalid or already written ones, leave the bar short of it).
        stream: Where the display goes (stderr).
        live: Draw a rich progress bar; default: when `stream` is a terminal.
        interval: Seconds between plain lines; default VIDEO_FEATURES_PROGRESS_SECONDS or 10.
    """

    def __init__(self, *, total: int | None, stream: TextIO | None = None, live: bool | None = None,
                 interval: float | None = None, done_word: str = "decoded"):
        self.total = total
        self.done_word = done_word  # what a clip that made it is: decoded, or kept (fetch-only builds)
        self._closing = False
        self._said_starting = False
        self.stream = stream if stream is not None else sys.stderr
        self.live = is_terminal(self.stream) if live is None else live
        self.interval = _interval() if interval is None else interval
        self.tally = Tally()
        self._offsets: dict[str, int] = {}
        self._directory = ""
        self._previous_env: str | None = None
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._display: StatusLine | None = None

    def __enter__(self) -> RunProgress:
        self._directory = tempfile.mkdtemp(prefix="video-features-progress-")
        self._previous_env = os.environ.get(PROGRESS_DIR_ENV)
        os.environ[PROGRESS_DIR_ENV] = self._directory
        self._started = time.monotonic()
        self._display = StatusLine(self.stream, self.line, interval=self.interval, live=self.live, label="clips",
                                   bar_text=self._bar_text, counts=lambda: (self.tally.finished, self.total))
        self._thread = threading.Thread(target=self._poll_loop, name="run-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._closing = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._display is not None:
            self._display.update(self._read)  # the final state once: not again if the last line showed it
            self._display.finish()
        if self._previous_env is None:
            os.environ.pop(PROGRESS_DIR_ENV, None)
        else:
            os.environ[PROGRESS_DIR_ENV] = self._previous_env
        shutil.rmtree(self._directory, ignore_errors=True)

    def _read(self) -> bool:
        return read_new_records(self._directory, self._offsets, self.tally)

    def _poll_loop(self) -> None:
        # The display decides when to draw; this loop only reads what the workers wrote.
        while not self._stop.wait(_POLL_S):
            self._display.update(lambda: self._read() or self._starting_is_news())

    def _starting_is_news(self) -> bool:
        # Workers take seconds to start and say nothing meanwhile: after a second of that, a line says so.
        if self._said_starting or self.tally.finished or time.monotonic() - self._started < 1.0:
            return False
        self._said_starting = True
        return True

    def waiting_for(self) -> str:
        """What the run waits for when no clip moves: workers starting, models loading, writing; "" otherwise."""
        t = self.tally
        if self._closing:
            return ""
        if t.phase.startswith("writing"):
            return t.phase
        if self.total and t.finished >= self.total:
            return "writing the dataset, stopping workers"
        if not t.finished:
            return t.phase or "starting workers"
        return t.phase if t.phase == "loading models" else ""

    def line(self) -> str:
        """The plain progress line for the current tallies."""
        t, elapsed = self.tally, max(time.monotonic() - self._started, 1e-9)
        of = f"/{self.total}" if self.total else ""
        waiting = self.waiting_for()
        if self.done_word != "decoded":  # fetch-only: no video is decoded, so no video-s/s
            return (f"progress: {t.finished}{of} rows done ({t.done} {self.done_word}, {t.failed} failed), elapsed "
                    f"{format_clock(elapsed)}" + (f"; {waiting}" if waiting else self._eta(elapsed)))
        text = (f"progress: {t.finished}{of} rows done ({t.done} decoded, {t.failed} failed), "
                f"{t.seconds:.0f} s of video at {t.seconds / elapsed:.1f} video-s/s, elapsed {format_clock(elapsed)}")
        return text + (f"; {waiting}" if waiting else self._eta(elapsed))

    def _bar_text(self) -> str:
        """What the bar shows beside clips done/total and elapsed time."""
        t, elapsed = self.tally, max(time.monotonic() - self._started, 1e-9)
        waiting = self.waiting_for()
        rate = "" if self.done_word != "decoded" else f", {t.seconds / elapsed:.1f} video-s/s"
        return f"{t.failed} failed{rate}" + (f"; {waiting}..." if waiting else self._eta(elapsed))

    def _eta(self, elapsed: float) -> str:
        if not (self.total and self.tally.finished):
            return ""
        left = max(self.total - self.tally.finished, 0)
        return f", ETA {format_clock(left * elapsed / self.tally.finished)}"
