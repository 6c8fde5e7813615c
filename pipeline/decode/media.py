"""Decoding clips with the ffmpeg binary that ships in the imageio-ffmpeg wheel.

One ffmpeg process per clip decodes the video stream once and writes, each to its own pipe:
  * a `framecrc` line for EVERY decoded frame (stream time base in its `#tb` header): the
    frames' presentation times, from which docs/spec.md §2's rule is recomputed in Python;
  * a `framecrc` line for each frame that ffmpeg's `select` filter picked by that rule;
  * the picked frames' pixels, RGB24 at native resolution (size from the `#dimensions` header);
  * the first audio stream as 16 kHz mono s16le, padded to start at output time 0.

Timestamps thus come from a machine-readable muxer, never from ffmpeg's log text (a log line
lost under load once cost a good clip). The `select` filter runs docs/spec.md §2's loop with
the same double arithmetic as OpenCV's CAP_PROP_POS_MSEC, so only the needed frames are
converted to RGB; every picked frame is checked against the Python recomputation before it is
handed on, and a disagreement (the arithmetic is the same, so it would be a bug) fails the clip
(`decode_error`) rather than hand on a frame the rule did not pick. Memory is one frame plus the
clip's audio.

The header probe that comes first (`probe`), the whitelists and the ffmpeg lookup are in
`pipeline.decode.probe`, shared with the fetcher; the synthetic test clips in `pipeline.testing.testvideo`.
"""

from __future__ import annotations

import dataclasses
import fractions
import logging
import math
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import IO

import numpy as np

from pipeline.decode.probe import MAX_FRAME_PIXELS, classify_ffmpeg_error, ffmpeg_exe, input_options, input_target
from pipeline.errors import ClipError

MAX_STEPS = 300
AUDIO_SAMPLE_RATE = 16000
MAX_START_S = 1e7
"""Starts beyond this (115 days) are past the end of any video; ffmpeg itself cannot seek there."""
TRUNCATION_TOLERANCE_S = 2.0
"""Decoded video may end this much (or 10% of the clip, if more) before the declared end."""

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DecodedStep:
    """One RGB step: `step` k and the native-resolution RGB uint8 frame [H, W, 3] it uses."""

    step: int
    frame: np.ndarray
    pts_seconds: float  # on the clip's output clock (0 = the clip's start)
    index: int = 0  # index of the frame among the clip's decoded frames (0 = first displayed)
    msec: float = 0.0  # docs/spec.md §2's time: ms after the first displayed frame


@dataclasses.dataclass
class ClipSummary:
    """Known once a clip's frames are all read."""

    duration: float  # seconds from the first displayed frame to the end of the last decoded one
    num_steps: int  # T: the number of frames docs/spec.md §2 selects (1..300)
    waveform: np.ndarray | None  # float32 in [-1, 1] at 16 kHz, None when the clip has no audio stream
    frames_decoded: int
    first_frame_seconds: float = 0.0  # output time of the first displayed frame (audio step 0 starts here)
    frames_per_second: float = 1.0

    def audio_starts(self) -> list[int]:
        """Sample index (16 kHz, output clock) where audio step k's 0.96-s window starts (docs/spec.md §2)."""
        return [int(round((self.first_frame_seconds + k / self.frames_per_second) * AUDIO_SAMPLE_RATE))
                for k in range(self.num_steps)]


class FrameSelector:
    """docs/spec.md §2 (the extractor's `frame_iterator`) fed one decoded frame time at a time.

    Uses the same double arithmetic as ffmpeg's `select` expression and OpenCV's
    CAP_PROP_POS_MSEC: ((pts - pts_0) * time_base) * 1000.
    """

    def __init__(self, time_base: fractions.Fraction, *, frames_per_second: float = 1.0,
                 max_steps: int = MAX_STEPS):
        self.tb = time_base.numerator / time_base.denominator
        self.every_ms = 1000.0 / frames_per_second
        self.max_steps = max_steps
        self.first_pts: int | None = None
        self.last = 0.0
        self.emit_next = True
        self.count = 0

    def msec(self, pts: int) -> float:
        """Milliseconds from the first frame fed to the frame of `pts` (OpenCV's CAP_PROP_POS_MSEC)."""
        return (float(pts) - float(self.first_pts)) * self.tb * 1000.0

    def feed(self, pts: int) -> bool:
        """Returns whether this frame (the next in display order) is a step."""
        if self.first_pts is None:
            self.first_pts = pts
        selected = self.emit_next and self.count < self.max_steps
        self.emit_next = False
        self.count += int(selected)
        pos = self.msec(pts)
        if pos >= self.last + self.every_ms:
            self.last = pos
            self.emit_next = True
        return selected


def select_expression(frames_per_second: float, max_steps: int = MAX_STEPS) -> str:
    """FrameSelector as an ffmpeg `select` expression (st/ld variables persist across frames).

    0: initialised, 1: first pts, 2: last mark (ms), 3: emit the next frame, 4: steps emitted, 5: this frame.
    """
    every = repr(1000.0 / frames_per_second)
    return (f"if(eq(ld(0),0),st(0,1);st(1,pts);st(2,0);st(3,1));st(5,ld(3)*lt(ld(4),{max_steps}));st(3,0);"
            f"st(4,ld(4)+ld(5));if(gte((pts-ld(1))*TB*1000,ld(2)+{every}),st(2,(pts-ld(1))*TB*1000);st(3,1));ld(5)")


class _FramecrcReader(threading.Thread):
    """Reads one `framecrc` stream (header `#tb`/`#dimensions`, then one line per frame) into a list."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self._fd = fd
        self.cond = threading.Condition()
        self.time_base: fractions.Fraction | None = None
        self.dimensions: tuple[int, int] | None = None
        self.frames: list[tuple[int, int]] = []  # (pts, duration) in the stream time base
        self.done = False
        self.error: str | None = None

    def run(self) -> None:
        try:
            with os.fdopen(self._fd, "rb") as f:
                for raw in f:
                    line = raw.decode("ascii", "replace").strip()
                    if line.startswith("#"):
                        key, _, value = line[1:].partition(":")
                        with self.cond:
                            if key.startswith("tb ") and self.time_base is None:
                                num, den = value.strip().split("/")
                                self.time_base = fractions.Fraction(int(num), int(den))
                            elif key.startswith("dimensions ") and self.dimensions is None:
                                w, h = value.strip().split("x")
                                self.dimensions = (int(w), int(h))
                            self.cond.notify_all()
                        continue
                    fields = [x.strip() for x in line.split(",")]
                    if len(fields) < 4:
                        continue
                    with self.cond:
                        self.frames.append((int(fields[2]), max(0, int(fields[3]))))
                        self.cond.notify_all()
        except (ValueError, OSError) as e:
            self.error = f"unreadable frame list from ffmpeg: {e}"
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate() or self.done, timeout=timeout_s) and (predicate() or True)


class _TailReader(threading.Thread):
    """Keeps the last lines of a stream (ffmpeg's stderr: error messages only, never data)."""

    def __init__(self, stream: IO[bytes], keep: int = 40):
        super().__init__(daemon=True)
        self._stream = stream
        self._keep = keep
        self.lines: list[str] = []

    def run(self) -> None:
        for raw in iter(self._stream.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip())
            del self.lines[:-self._keep]

    def text(self) -> str:
        return "\n".join(self.lines)


class _BytesReader(threading.Thread):
    """Drains a pipe (the audio) into memory so that ffmpeg never blocks on it."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self._fd = fd
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = threading.Event()

    def run(self) -> None:
        try:
            with os.fdopen(self._fd, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 16), b""):
                    self.chunks.append(chunk)
                    self.size += len(chunk)
        finally:
            self.done.set()


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class ClipDecoder:
    """Decodes one clip: iterate `steps()` for the RGB frames, then read `summary`.

    Args:
      uri: a local path or an http(s) URL.
      start: clip start in seconds within the source (0 for the whole video).
      duration: clip length in seconds (None: to the end).
      has_audio: whether to decode the first audio stream (from `probe`).
      timeout_s: network read timeout, and how long ffmpeg may go silent before it is killed.
      frames_per_second: F of docs/spec.md §2 (the extractor's --frames_per_second).
      declared_duration: the container's duration (`ProbeResult.duration`); enables the truncation check.
      max_frame_pixels: the decoder refuses larger frames (a clip that grows mid-stream cannot exhaust memory).
      untrusted: a stranger chose the bytes (strict whitelists, `pipeline.decode.probe.input_options`).
    """

    def __init__(self, uri: str, *, start: float = 0.0, duration: float | None = None, has_audio: bool = True,
                 timeout_s: float = 60.0, frames_per_second: float = 1.0, declared_duration: float | None = None,
                 max_frame_pixels: int = MAX_FRAME_PIXELS, untrusted: bool = False):
        start = float(start or 0.0)
        if not math.isfinite(start) or start < 0:
            raise ClipError("bad_time", f"clip start {start!r} s is not a finite time >= 0")
        if start > MAX_START_S:
            raise ClipError("bad_time", f"clip start {start:g} s is past the end of any video (> {MAX_START_S:g} s)")
        if duration is not None and not (math.isfinite(float(duration)) and float(duration) > 0):
            raise ClipError("bad_time", f"clip duration {duration!r} s is not a positive finite time")
        if not (math.isfinite(frames_per_second) and frames_per_second > 0):
            raise ValueError(f"frames_per_second must be > 0, got {frames_per_second}")
        if declared_duration is not None and start > 0 and start >= declared_duration:
            raise ClipError("bad_time", f"clip start {start:g} s is at or past the end of the video "
                                        f"({declared_duration:.3f} s)")
        self.uri = uri
        self.start = start
        self.duration = None if duration is None else float(duration)
        self.has_audio = has_audio
        self.timeout_s = timeout_s
        self.frames_per_second = float(frames_per_second)
        self.declared_duration = declared_duration
        self.max_frame_pixels = max_frame_pixels
        self.untrusted = untrusted
        self.summary: ClipSummary | None = None

    def _command(self, *, all_fd: int, sel_fd: int, audio_fd: int | None) -> list[str]:
        expr = select_expression(self.frames_per_second)
        crc = ["-c:v", "wrapped_avframe", "-enc_time_base:v", "demux", "-fps_mode", "passthrough", "-f", "framecrc"]
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
            "-max_pixels", str(int(self.max_frame_pixels)),
            *input_options(self.uri, start=self.start, duration=self.duration, timeout_s=self.timeout_s,
                           untrusted=self.untrusted),
            "-i", input_target(self.uri),
            "-filter_complex", f"[0:v:0]split=2[all][s];[s]select='{expr}',split=2[selcrc][selpix]",
            "-map", "[all]", *crc, f"pipe:{all_fd}",
            "-map", "[selcrc]", *crc, f"pipe:{sel_fd}",
            "-map", "[selpix]", "-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1",
        ]
        if audio_fd is not None:
            cmd += ["-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(AUDIO_SAMPLE_RATE),
                    "-af", "aresample=async=1:first_pts=0", "-f", "s16le", f"pipe:{audio_fd}"]
        return cmd

    def steps(self) -> Iterator[DecodedStep]:
        """Yields each step's frame in order; sets `summary` when done. Raises ClipError."""
        yield from self._run()

    def _mismatch(self, detail: str) -> ClipError:
        # The same arithmetic on both sides, so a bug: the clip fails rather than be silently wrong.
        return ClipError("decode_error", f"ffmpeg's frame choice differs from docs/spec.md §2 on {self.uri}: {detail}")

    def _run(self) -> Iterator[DecodedStep]:
        fds = {name: os.pipe() for name in (("all", "sel", "audio") if self.has_audio else ("all", "sel"))}
        cmd = self._command(all_fd=fds["all"][1], sel_fd=fds["sel"][1],
                            audio_fd=fds["audio"][1] if self.has_audio else None)
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    pass_fds=tuple(w for _, w in fds.values()))
        except BaseException:
            for r, w in fds.values():
                os.close(r)
                os.close(w)
            raise
        for _, w in fds.values():
            os.close(w)
        all_frames, selected = _FramecrcReader(fds["all"][0]), _FramecrcReader(fds["sel"][0])
        audio = _BytesReader(fds["audio"][0]) if self.has_audio else None
        stderr = _TailReader(proc.stderr)
        for thread in (all_frames, selected, audio, stderr):
            if thread is not None:
                thread.start()
        try:
            yield from self._pair(proc, all_frames, selected, audio, stderr)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                try:
                    stream.close()
                except OSError:
                    pass
            for thread in (all_frames, selected, audio, stderr):
                if thread is not None:
                    thread.join(timeout=5)

    def _pair(self, proc: subprocess.Popen, all_frames: _FramecrcReader, selected: _FramecrcReader,
              audio: _BytesReader | None, stderr: _TailReader) -> Iterator[DecodedStep]:
        """Pairs the k-th RGB frame with the k-th selected framecrc line; checks it against docs/spec.md §2."""
        selector: FrameSelector | None = None
        cursor = 0  # next frame of all_frames to feed to the selector
        steps = 0
        k = 0  # index among the selected (pixel) frames
        early_stop = False
        while True:
            if not selected.wait_for(lambda k=k: len(selected.frames) > k, self.timeout_s):
                raise ClipError("timeout", f"ffmpeg produced nothing for {self.timeout_s:.0f} s on {self.uri}")
            with selected.cond:
                if len(selected.frames) <= k:
                    break  # ffmpeg is done with the selected frames
                pts = selected.frames[k][0]
                dims = selected.dimensions
                tb = selected.time_base
            if dims is None or tb is None:
                raise ClipError("decode_error", f"ffmpeg's frame list for {self.uri} has no #tb/#dimensions header")
            width, height = dims
            data = _read_exact(proc.stdout, width * height * 3)
            if len(data) < width * height * 3:
                break  # ffmpeg stopped mid-frame; its exit status says why
            k += 1
            if selector is None:
                selector = FrameSelector(tb, frames_per_second=self.frames_per_second)
            # Feed every decoded frame up to this one to the Python rule.
            index = None
            while index is None:
                if not all_frames.wait_for(lambda cursor=cursor: len(all_frames.frames) > cursor, self.timeout_s):
                    raise ClipError("timeout", f"ffmpeg's frame list stalled for {self.timeout_s:.0f} s on {self.uri}")
                with all_frames.cond:
                    if len(all_frames.frames) <= cursor:
                        raise self._mismatch(f"selected frame pts {pts} is not among the decoded frames")
                    frame_pts = all_frames.frames[cursor][0]
                if selector.feed(frame_pts):
                    index = cursor
                cursor += 1
            if all_frames.frames[index][0] != pts:
                raise self._mismatch(f"step {steps}: ffmpeg chose pts {pts}, the rule {all_frames.frames[index][0]}")
            frame = np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
            yield DecodedStep(step=steps, frame=frame, pts_seconds=float(pts * tb), index=index,
                              msec=selector.msec(pts))
            steps += 1
            if steps >= MAX_STEPS:
                early_stop = True
                break
        if early_stop:
            self._stop_after_last_step(proc, audio, selector, all_frames)
        else:
            try:
                rc = proc.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired as e:
                raise ClipError("timeout", f"ffmpeg did not finish decoding {self.uri}") from e
            all_frames.join(timeout=self.timeout_s)
            stderr.join(timeout=self.timeout_s)
            if audio is not None:
                audio.join(timeout=self.timeout_s)
            if rc != 0:
                reason, message = classify_ffmpeg_error(stderr.text())
                raise ClipError(reason, f"ffmpeg exited with {rc} decoding {self.uri}: {message}")
            if all_frames.error:
                raise ClipError("decode_error", f"{self.uri}: {all_frames.error}")
            if not all_frames.frames or all_frames.time_base is None:
                self._no_frames()
            if selector is None:
                selector = FrameSelector(all_frames.time_base, frames_per_second=self.frames_per_second)
            # The rest of the decoded frames: docs/spec.md §2 must choose none of them (ffmpeg sent no more).
            for index in range(cursor, len(all_frames.frames)):
                if selector.feed(all_frames.frames[index][0]):
                    raise self._mismatch(f"the rule picks frame {index} that ffmpeg did not send")
            if steps == 0:
                self._no_frames()
            self._check_integrity(all_frames)
        self.summary = self._summarize(all_frames, steps, audio)

    def _no_frames(self) -> None:
        if self.start > 0 and (self.declared_duration is None or self.start >= self.declared_duration - 0.5):
            raise ClipError("bad_time", f"no video frame at or after the clip start {self.start:g} s of {self.uri}"
                                        + (f" (the video lasts {self.declared_duration:.3f} s)"
                                           if self.declared_duration is not None else ""))
        raise ClipError("no_frames", f"no video frame could be decoded from {self.uri}")

    def _stop_after_last_step(self, proc: subprocess.Popen, audio: _BytesReader | None, selector: FrameSelector,
                              all_frames: _FramecrcReader) -> None:
        """All 300 steps are out: wait only for the audio the last window needs, then stop ffmpeg."""
        if audio is not None:
            first = all_frames.frames[0][0] * all_frames.time_base
            end_s = float(first) + (MAX_STEPS - 1) / self.frames_per_second + 1.0
            needed = int(end_s * AUDIO_SAMPLE_RATE) * 2
            deadline = self.timeout_s
            while audio.size < needed and not audio.done.wait(timeout=0.05):
                deadline -= 0.05
                if deadline <= 0:
                    raise ClipError("timeout", f"ffmpeg's audio stalled for {self.timeout_s:.0f} s on {self.uri}")
        proc.kill()
        proc.wait()
        if audio is not None:
            audio.join(timeout=self.timeout_s)

    def _check_integrity(self, all_frames: _FramecrcReader) -> None:
        """A clip whose video ends well before the container says is truncated, not a short record."""
        if self.declared_duration is None:
            return
        expected = self.declared_duration - self.start
        if self.duration is not None:
            expected = min(expected, self.duration)
        pts, dur = all_frames.frames[-1]
        decoded_end = float((pts + dur) * all_frames.time_base)
        if decoded_end < expected - max(TRUNCATION_TOLERANCE_S, 0.1 * expected):
            raise ClipError("truncated", f"decoded video of {self.uri} ends at {decoded_end:.3f} s but the container "
                                         f"declares {expected:.3f} s (file cut short or damaged)")

    def _summarize(self, all_frames: _FramecrcReader, steps: int, audio: _BytesReader | None) -> ClipSummary:
        tb = all_frames.time_base
        first_pts = all_frames.frames[0][0]
        last_pts, last_dur = all_frames.frames[-1]
        waveform = None
        if audio is not None:
            raw = b"".join(audio.chunks)
            usable = len(raw) - len(raw) % 2
            waveform = np.frombuffer(raw[:usable], dtype="<i2").astype(np.float32) / 32768.0
        return ClipSummary(duration=float((last_pts + last_dur - first_pts) * tb), num_steps=steps,
                           waveform=waveform, frames_decoded=len(all_frames.frames),
                           first_frame_seconds=float(first_pts * tb), frames_per_second=self.frames_per_second)

