"""Decoding clips with the ffmpeg binary that ships in the imageio-ffmpeg wheel.

One ffmpeg process per clip streams, through pipes:
  * the RGB frames that the timing rule of SPEC §2 needs (step k uses the first decoded
    frame whose presentation time is >= k s), at native resolution, one at a time;
  * the clip's first audio stream as 16 kHz mono signed 16-bit PCM.

ffmpeg's `select` filter keeps a small superset of the needed frames (its arithmetic is in
floating point); the exact choice is made here with integer timestamps read from two
`showinfo` filters, one before `select` (every decoded frame: gives the clip duration D)
and one after it (the frames that come through the pipe). Memory is one frame plus the
clip's audio, whatever the size of the video file.
"""

from __future__ import annotations

import dataclasses
import fractions
import os
import queue
import re
import subprocess
import threading
from collections.abc import Iterator

import numpy as np

from pipeline.errors import ClipError

MAX_STEPS = 300
AUDIO_SAMPLE_RATE = 16000
LOCAL_PROTOCOLS = "file,pipe,fd"
# Remote inputs never get "file": a playlist or redirect could otherwise name a local path.
# "httpproxy" lets tls reach https through a proxy (pipeline.netguard).
REMOTE_PROTOCOLS = "http,https,tcp,tls,crypto,httpproxy"
# Demuxers allowed for bytes a stranger chose (remote rows, fetched or gs:// copies): plain
# containers, none that opens further files by name (hls, concat, image2, ...).
UNTRUSTED_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,ogg,asf,wav,mp3,aac"

# Keep a frame when an integer second k lies in (prev_t, t], with a little slack on both
# sides so that floating point never drops a frame the exact rule needs.
_SELECT_EXPR = "if(isnan(prev_t),1,gt(floor(t+1e-6),prev_t+1e-6))"

_SHOWINFO_RE = re.compile(
    r"\[Parsed_showinfo_(?P<which>\d+) @ [^\]]+\] n:\s*\d+ pts:\s*(?P<pts>-?\d+)"
    r".*?duration:\s*(?P<dur>-?\d+)"
)
_SHOWINFO_SIZE_RE = re.compile(r"\ss:(?P<w>\d+)x(?P<h>\d+)\s")
_TIMEBASE_RE = re.compile(r"\[Parsed_showinfo_0 @ [^\]]+\] config in time_base: (?P<num>\d+)/(?P<den>\d+)")
_STREAM_RE = re.compile(r"^\s*Stream #\d+:\d+.*?: (?P<kind>Video|Audio): (?P<rest>.*)$")


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary from the imageio-ffmpeg wheel (same on laptops, CI, Dataflow)."""
    import imageio_ffmpeg  # pylint: disable=import-outside-toplevel

    return imageio_ffmpeg.get_ffmpeg_exe()


def is_remote(uri: str) -> bool:
    """Whether ffmpeg would read ``uri`` over the network (http or https, any letter case)."""
    return uri[:8].lower().startswith(("http://", "https://"))


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What the container says about a media file before decoding it."""

    has_video: bool
    has_audio: bool
    stderr: str


def _protocols(uri: str) -> str:
    return REMOTE_PROTOCOLS if is_remote(uri) else LOCAL_PROTOCOLS


def _input_args(uri: str, *, start: float, duration: float | None, timeout_s: float,
                untrusted: bool = False) -> list[str]:
    """ffmpeg input options; ``untrusted`` (a stranger chose the bytes) adds the format whitelist."""
    args = ["-protocol_whitelist", _protocols(uri)]
    if untrusted or is_remote(uri):
        args += ["-format_whitelist", UNTRUSTED_FORMATS]
    if is_remote(uri):
        args += ["-rw_timeout", str(int(timeout_s * 1e6)), "-reconnect", "1", "-reconnect_on_network_error", "1"]
    if start > 0:
        args += ["-ss", f"{start:.6f}"]
    if duration is not None:
        args += ["-t", f"{duration:.6f}"]
    return args + ["-i", uri if is_remote(uri) else _file_uri(uri)]


def _file_uri(path: str) -> str:
    # "file:" stops ffmpeg from reading a name such as "http:x.mp4" or "a|b" as a protocol.
    return "file:" + os.path.abspath(path)


def classify_ffmpeg_error(stderr: str) -> tuple[str, str]:
    """Maps ffmpeg's error text to a stable reason and a short message."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lowered = stderr.lower()
    message = "; ".join(lines[-3:])[-500:] if lines else "ffmpeg failed without a message"
    table = [
        ("no such file or directory", "missing_file"),
        ("server returned 404", "not_found"),
        ("server returned 403", "http_forbidden"),
        ("server returned 4", "http_error"),
        ("server returned 5", "http_error"),
        ("connection timed out", "timeout"),
        ("operation timed out", "timeout"),
        ("connection refused", "network"),
        ("connection reset", "network"),
        ("not on whitelist", "protocol_not_allowed"),
        ("invalid data found when processing input", "invalid_video"),
        ("moov atom not found", "invalid_video"),
        ("could not find codec parameters", "invalid_video"),
        ("end of file", "invalid_video"),
    ]
    for needle, reason in table:
        if needle in lowered:
            return reason, message
    return "decode_error", message


def check_local_input(path: str) -> None:
    """Fails early and clearly for the two commonest bad inputs: a missing and an empty file."""
    if not os.path.exists(path):
        raise ClipError("missing_file", f"no such file: {path}")
    if os.path.isdir(path):
        raise ClipError("missing_file", f"is a directory, not a video file: {path}")
    if os.path.getsize(path) == 0:
        raise ClipError("empty_file", f"file is empty (0 bytes): {path}")


def probe(uri: str, *, timeout_s: float = 60.0, untrusted: bool = False) -> ProbeResult:
    """Reads the container header; raises ClipError when there is nothing decodable."""
    if not is_remote(uri):
        check_local_input(uri)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *_input_args(uri, start=0.0, duration=None, timeout_s=timeout_s,
                                                                       untrusted=untrusted)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s + 10, check=False)
    except subprocess.TimeoutExpired as e:
        raise ClipError("timeout", f"ffmpeg probe of {uri} took longer than {timeout_s:.0f} s") from e
    stderr = proc.stderr.decode("utf-8", "replace")
    has_video = has_audio = False
    for line in stderr.splitlines():
        m = _STREAM_RE.match(line)
        if not m:
            continue
        if m.group("kind") == "Video" and "attached pic" not in m.group("rest"):
            has_video = True
        elif m.group("kind") == "Audio":
            has_audio = True
    if "Input #0" not in stderr:
        reason, message = classify_ffmpeg_error(stderr)
        raise ClipError(reason if reason != "decode_error" else "invalid_video", f"cannot open {uri}: {message}")
    if not has_video:
        raise ClipError("no_video_stream", f"{uri} has no video stream")
    return ProbeResult(has_video=has_video, has_audio=has_audio, stderr=stderr)


@dataclasses.dataclass
class DecodedStep:
    """One RGB step: `step` k and the native-resolution RGB uint8 frame [H, W, 3] it uses."""

    step: int
    frame: np.ndarray
    pts_seconds: float


@dataclasses.dataclass
class ClipSummary:
    """Known once a clip's frames are all read."""

    duration: float  # D, measured on the decoded frames
    num_steps: int  # T = min(300, floor(D))
    waveform: np.ndarray | None  # float32 in [-1, 1] at 16 kHz, None when the clip has no audio stream
    frames_decoded: int


class _StderrReader(threading.Thread):
    """Parses ffmpeg's stderr as it comes so that frame timestamps are known before the frame bytes."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self._stream = stream
        self.selected: queue.Queue = queue.Queue()
        self.time_base: fractions.Fraction | None = None
        self.last_pts: int | None = None
        self.last_duration: int = 0
        self.frames_decoded = 0
        self.tail: list[str] = []

    def run(self) -> None:
        for raw in iter(self._stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            m = _SHOWINFO_RE.search(line)
            if m:
                pts = int(m.group("pts"))
                if m.group("which") == "0":
                    self.frames_decoded += 1
                    self.last_pts = pts
                    self.last_duration = max(0, int(m.group("dur")))
                else:
                    size = _SHOWINFO_SIZE_RE.search(line)
                    self.selected.put((pts, int(size.group("w")), int(size.group("h"))))
                continue
            m = _TIMEBASE_RE.search(line)
            if m:
                self.time_base = fractions.Fraction(int(m.group("num")), int(m.group("den")))
                continue
            if "Parsed_showinfo" in line:
                continue  # showinfo's per-frame side-data lines
            self.tail.append(line)
            del self.tail[:-40]
        self.selected.put(None)

    def stderr_text(self) -> str:
        return "\n".join(self.tail)


def _read_exact(stream, n: int) -> bytes:
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
      duration: clip length in seconds (None: to the end); always capped at 300 s.
      has_audio: whether to decode the first audio stream (from `probe`).
      timeout_s: network read timeout, and how long ffmpeg may go silent before it is killed.
    """

    def __init__(self, uri: str, *, start: float = 0.0, duration: float | None = None, has_audio: bool = True,
                 timeout_s: float = 60.0, untrusted: bool = False):
        self.uri = uri
        self.untrusted = untrusted
        self.start = max(0.0, float(start or 0.0))
        limit = float(MAX_STEPS)
        self.duration = limit if duration is None else min(float(duration), limit)
        self.has_audio = has_audio
        self.timeout_s = timeout_s
        self.summary: ClipSummary | None = None

    def _command(self, audio_fd: int | None) -> list[str]:
        vf = f"showinfo=checksum=0,select='{_SELECT_EXPR}',showinfo=checksum=0"
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
            *_input_args(self.uri, start=self.start, duration=self.duration, timeout_s=self.timeout_s,
                         untrusted=self.untrusted),
            "-map", "0:v:0", "-vf", vf, "-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1",
        ]
        if audio_fd is not None:
            cmd += ["-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(AUDIO_SAMPLE_RATE),
                    "-af", "aresample=async=1:first_pts=0", "-f", "s16le", f"pipe:{audio_fd}"]
        return cmd

    def steps(self) -> Iterator[DecodedStep]:
        """Yields each step's frame in order; sets `summary` when done. Raises ClipError."""
        audio_r = audio_w = None
        if self.has_audio:
            audio_r, audio_w = os.pipe()
        cmd = self._command(audio_w)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=(audio_w,) if audio_w is not None else ())
        audio_chunks: list[bytes] = []
        audio_thread = None
        if audio_w is not None:
            os.close(audio_w)

            def _drain_audio(fd=audio_r):
                with os.fdopen(fd, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 16), b""):
                        audio_chunks.append(chunk)

            audio_thread = threading.Thread(target=_drain_audio, daemon=True)
            audio_thread.start()
        reader = _StderrReader(proc.stderr)
        reader.start()
        try:
            yield from self._frames(proc, reader)
            proc.stdout.close()
            try:
                rc = proc.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired as e:
                raise ClipError("timeout", f"ffmpeg did not finish decoding {self.uri}") from e
            reader.join(timeout=self.timeout_s)
            if audio_thread is not None:
                audio_thread.join(timeout=self.timeout_s)
            if rc != 0:
                reason, message = classify_ffmpeg_error(reader.stderr_text())
                raise ClipError(reason, f"ffmpeg exited with {rc} decoding {self.uri}: {message}")
            self.summary = self._summarize(reader, b"".join(audio_chunks) if self.has_audio else None)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                try:
                    stream.close()
                except OSError:
                    pass

    def _frames(self, proc, reader: _StderrReader) -> Iterator[DecodedStep]:
        next_step = 0
        while True:
            try:
                item = reader.selected.get(timeout=self.timeout_s)
            except queue.Empty as e:
                raise ClipError("timeout", f"ffmpeg produced nothing for {self.timeout_s:.0f} s on {self.uri}") from e
            if item is None:
                return
            pts, width, height = item
            data = _read_exact(proc.stdout, width * height * 3)
            if len(data) < width * height * 3:
                return  # ffmpeg stopped mid-frame; the exit status says why
            tb = reader.time_base
            if tb is None:
                raise ClipError("decode_error", f"ffmpeg reported no time base for {self.uri}")
            t = pts * tb
            # Steps k with k <= t not yet covered take this frame (the first selected frame at or past k).
            last_covered = int(t // 1) if t >= 0 else -1
            last_covered = min(last_covered, MAX_STEPS - 1)
            if last_covered < next_step:
                continue
            frame = np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
            for k in range(next_step, last_covered + 1):
                yield DecodedStep(step=k, frame=frame, pts_seconds=float(t))
            next_step = last_covered + 1

    def _summarize(self, reader: _StderrReader, audio: bytes | None) -> ClipSummary:
        if reader.frames_decoded == 0 or reader.last_pts is None or reader.time_base is None:
            raise ClipError("no_frames", f"no video frame could be decoded from {self.uri}")
        tb = reader.time_base
        end = (reader.last_pts + reader.last_duration) * tb
        duration = float(min(end, fractions.Fraction(self.duration)))
        num_steps = min(MAX_STEPS, int(duration // 1))
        waveform = None
        if audio is not None:
            usable = len(audio) - len(audio) % 2
            waveform = np.frombuffer(audio[:usable], dtype="<i2").astype(np.float32) / 32768.0
        return ClipSummary(duration=duration, num_steps=num_steps, waveform=waveform,
                           frames_decoded=reader.frames_decoded)


def generate_test_video(path: str, *, seconds: float, size: str = "320x240", rate: int = 25,
                        audio: bool = True, codec: str = "libx264") -> str:
    """Writes a synthetic clip (testsrc2 pattern, 440 Hz tone) for tests, samples and benchmarks."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    cmd += ["-c:v", codec, "-pix_fmt", "yuv420p", "-g", str(rate)]
    if codec == "libx264":
        cmd += ["-preset", "veryfast"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "64k"]
    cmd += ["-t", str(seconds), path]
    subprocess.run(cmd, check=True, capture_output=True)
    return path
