"""The one progress display: the build's launcher and download_yt8m both draw through progress_line.

The throttle's clock is `progress_line._clock`; moving it (instead of sleeping) shows that both
tools' plain lines come from the same throttle, and a fake terminal shows both draw a rich bar.
"""

from __future__ import annotations

import io
import pathlib
import time

import pytest

from pipeline.cli import progress_line, yt8m_files
from transforms.support import progress

REPO = pathlib.Path(__file__).resolve().parents[3]


class Tty(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(progress_line, "_clock", fake)
    return fake


@pytest.fixture(autouse=True)
def _no_inherited_progress_dir(monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_DIR_ENV, raising=False)


def _wait_for(condition, what: str) -> None:
    """Waits for the build display's poll thread (it reads every 0.25 s); fails after 20 s."""
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _lines(stream: io.StringIO, prefix: str) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line.startswith(prefix)]


def test_both_tools_draw_a_rich_bar_on_a_terminal():
    download_stream = Tty()
    download = yt8m_files.Progress(total=3, stream=download_stream, tty_interval=0)
    download.add_bytes(3 * 1024)
    download.file_done("downloaded")
    download.file_done("failed")
    download.finish()

    build_stream = Tty()
    with progress.RunProgress(total=4, stream=build_stream, interval=0):
        for ok in (True, True, False):
            progress.PROGRESS.record(ok=ok, seconds=3.0, total=4)

    for text, counted in ((download_stream.getvalue(), "2/3"), (build_stream.getvalue(), "3/4")):
        # rich's bar and its in-place redraw, and none of the plain lines.
        assert "━" in text and "\x1b[2K" in text, text
        assert "[yt8m] 2/3 files" not in text and "progress: " not in text
        final = text[text.rindex("\r"):]
        assert counted in final and "ETA" in final, final
    assert "3.0 KiB" in download_stream.getvalue() and "1 failed" in download_stream.getvalue()
    assert "1 failed" in build_stream.getvalue() and "video-s/s" in build_stream.getvalue()
    # Neither tool draws by itself: rich is progress_line's business.
    for module in ("transforms/support/progress.py", "pipeline/cli/download_yt8m.py", "pipeline/cli/yt8m_files.py"):
        source = (REPO / module).read_text()
        assert "import rich" not in source and "from rich" not in source and "\\r" not in source, module


def test_download_plain_lines_follow_the_interval_and_end_once(clock):
    stream = io.StringIO()
    download = yt8m_files.Progress(total=3, stream=stream, interval=10)
    download.file_done("skipped")
    download.add_bytes(1024)
    assert stream.getvalue() == "", "no line before the interval has passed"
    clock.now += 10
    download.add_bytes(1024)  # due: one line
    clock.now += 5
    download.file_done("downloaded")  # not due
    assert [line.split(",")[0] for line in _lines(stream, "[yt8m] ")] == ["[yt8m] 1/3 files"]
    clock.now += 5
    download.file_done("failed")  # due again
    download.finish()  # nothing changed since that line: no duplicate
    download.finish()
    lines = _lines(stream, "[yt8m] ")
    assert len(lines) == 2 and lines[-1].startswith("[yt8m] 3/3 files, 2.0 KiB, ") and lines[-1].endswith("1 failed")
    assert stream.getvalue().count("\n") == 2 and "\r" not in stream.getvalue()


def test_download_final_state_is_printed_once_at_the_end(clock):
    stream = io.StringIO()
    download = yt8m_files.Progress(total=2, stream=stream, interval=10)
    download.file_done("downloaded")
    clock.now += 3
    download.file_done("skipped")
    download.finish()
    assert _lines(stream, "[yt8m] ") == [stream.getvalue().rstrip("\n")]
    assert stream.getvalue().startswith("[yt8m] 2/2 files")


def test_build_plain_lines_follow_the_interval_and_end_once(clock):
    stream = io.StringIO()
    with progress.RunProgress(total=4, stream=stream, live=False, interval=10) as run:
        progress.PROGRESS.record(ok=True, seconds=2.0, total=4)
        _wait_for(lambda: run.tally.finished == 1, "the first record")
        clock.now += 10
        _wait_for(lambda: _lines(stream, "progress: "), "the line due after the interval")
        progress.PROGRESS.record(ok=False, total=4)
        _wait_for(lambda: run.tally.finished == 2, "the second record")
        assert len(_lines(stream, "progress: ")) == 1, "not due yet"
    lines = _lines(stream, "progress: ")
    assert [line.split(" (")[0] for line in lines] == ["progress: 1/4 rows done", "progress: 2/4 rows done"]
    assert lines[-1].startswith("progress: 2/4 rows done (1 decoded, 1 failed), 2 s of video")
    assert stream.getvalue().count("\n") == 2


def test_build_prints_no_duplicate_final_line(clock):
    stream = io.StringIO()
    with progress.RunProgress(total=2, stream=stream, live=False, interval=10) as run:
        progress.PROGRESS.record(ok=True, seconds=1.0, total=2)
        progress.PROGRESS.record(ok=True, seconds=1.0, total=2)
        _wait_for(lambda: run.tally.finished == 2, "both records")
        clock.now += 10
        _wait_for(lambda: _lines(stream, "progress: "), "the line due after the interval")
    assert len(_lines(stream, "progress: ")) == 1
    assert stream.getvalue().startswith("progress: 2/2 rows done (2 decoded, 0 failed)")


def test_no_stream_is_silent_and_nothing_recorded_prints_nothing(clock):
    silent = yt8m_files.Progress(total=1, stream=None, interval=0)
    silent.file_done("downloaded")
    silent.finish()
    stream = io.StringIO()
    with progress.RunProgress(total=3, stream=stream, live=False, interval=0):
        pass
    assert stream.getvalue() == ""
