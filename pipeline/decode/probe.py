"""Reading a media file's header with ffmpeg: the one probe of the project (fetch and decode).

There is no ffprobe in the imageio-ffmpeg wheel, so ``ffmpeg -i FILE`` with no output is the
probe: it reads the container header, prints it to stderr and exits. The header is printed once
by a process that decodes nothing, so reading it from the text is safe (unlike per-frame log
lines, which can come interleaved). Every regex is anchored at the start of a line: a stranger's metadata (a title
such as ``Duration: 99:00:00``) is printed indented behind its key, so it never matches.

This module also owns what ffmpeg may open for an input: the protocol and demuxer whitelists
(network ones from :mod:`pipeline.net.netguard`, which confines every remote byte) and the one
ffmpeg lookup.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import subprocess
from collections.abc import Mapping, Sequence

from pipeline.errors import ClipError
from pipeline.net import netguard

LOCAL_PROTOCOLS = "file,pipe,fd"
# Remote inputs never get "file": a playlist or redirect could otherwise name a local path.
# "httpproxy" lets tls reach https through a proxy (pipeline.net.netguard).
REMOTE_PROTOCOLS = netguard.NETWORK_PROTOCOLS
# Demuxers allowed for bytes a stranger chose (remote rows, fetched or gs:// copies): plain
# containers, none that opens further files by name (hls, concat, image2, ...).
UNTRUSTED_FORMATS = netguard.STRANGER_FORMATS
STRANGER_FILE_ARGS = ("-protocol_whitelist", "file", "-format_whitelist", UNTRUSTED_FORMATS)
"""Input options for a local file a stranger chose (a download): local reads, plain containers."""
MAX_FRAME_SIDE = 8192
"""Default cap on a frame's width or height (pixels); larger clips fail `too_large` before decoding."""
MAX_FRAME_PIXELS = 40_000_000
"""Default cap on width x height (40 MP): a 16000x16000 frame alone would need ~770 MB as RGB."""

_STREAM_RE = re.compile(r"^\s*Stream #\d+:\d+\S*: (?P<kind>Video|Audio): (?P<rest>.*)$")
_SIZE_RE = re.compile(r"(?:^|[ ,])(?P<w>\d{1,6})x(?P<h>\d{1,6})(?=[ ,\[]|$)")
_DURATION_RE = re.compile(r"^\s*Duration:\s*(?:(?P<h>\d+):(?P<m>\d+):(?P<s>\d+(?:\.\d+)?)|N/A)"
                          r"(?:,\s*start:\s*(?P<start>-?\d+(?:\.\d+)?))?")


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary from the imageio-ffmpeg wheel (same on laptops, CI, Dataflow)."""
    import imageio_ffmpeg  # pylint: disable=import-outside-toplevel

    return imageio_ffmpeg.get_ffmpeg_exe()


def is_remote(uri: str) -> bool:
    """Whether ffmpeg would read ``uri`` over the network (http or https, any letter case)."""
    return uri[:8].lower().startswith(("http://", "https://"))


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What the container says about a media file before decoding it.

    ``ok`` is False when ffmpeg printed no input header (not media, unreachable, timed out);
    ``stderr`` then says why.
    """

    has_video: bool
    has_audio: bool
    stderr: str
    width: int | None = None  # of the first video stream, as coded (None when the header does not say)
    height: int | None = None
    duration: float | None = None  # the container's declared duration in seconds (None: not declared)
    start: float = 0.0  # the container's start time: the origin of ffmpeg's -ss
    ok: bool = True
    timed_out: bool = False  # the probe process ran past its limit (then not ok)

    @property
    def tail(self) -> str:
        """The last lines of ffmpeg's text, for messages."""
        return " | ".join(line.strip() for line in self.stderr.strip().splitlines()[-4:])

    def summary(self) -> str:
        """One line for a message: the facts when the header was read, else ffmpeg's complaint."""
        if not self.ok:
            return self.tail
        return f"duration={self.duration}, start={self.start}, video={self.has_video}, audio={self.has_audio}"


def parse_header(stderr: str) -> ProbeResult:
    """Reads ``ffmpeg -i`` text: the first input's duration, start, streams and first video size."""
    has_video = has_audio = found = False
    width = height = duration = None
    start = 0.0
    for line in stderr.splitlines():
        d = _DURATION_RE.match(line)
        if d:
            if not found:
                found = True
                if d.group("h") is not None:
                    duration = int(d.group("h")) * 3600 + int(d.group("m")) * 60 + float(d.group("s"))
                start = float(d.group("start") or 0.0)
            continue
        m = _STREAM_RE.match(line)
        if not m:
            continue
        if m.group("kind") == "Video" and "(attached pic)" not in m.group("rest"):
            if not has_video:
                size = _SIZE_RE.search(m.group("rest"))
                if size:
                    width, height = int(size.group("w")), int(size.group("h"))
            has_video = True
        elif m.group("kind") == "Audio":
            has_audio = True
    if not found:
        return ProbeResult(has_video=False, has_audio=False, stderr=stderr, ok=False)
    return ProbeResult(has_video=has_video, has_audio=has_audio, stderr=stderr, width=width, height=height,
                       duration=duration, start=start)


def read_header(target: str, *, input_args: Sequence[str] = (), timeout: float = 60.0,
                env: Mapping[str, str] | None = None) -> ProbeResult:
    """Runs ``ffmpeg -i target`` and parses its header; never raises for a bad input.

    Args:
        target: What follows ``-i``: a ``file:`` path, a local path or a URL.
        input_args: Options placed before ``-i`` (whitelists, timeouts, headers).
        timeout: Wall-clock limit of the process; past it the result is not ``ok``.
        env: Environment of ffmpeg (a guard proxy for URLs); None: this process's.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *input_args, "-i", target]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False,
                              env=None if env is None else dict(env))
    except subprocess.TimeoutExpired:
        return ProbeResult(has_video=False, has_audio=False, stderr=f"probe timed out after {timeout:g}s", ok=False,
                           timed_out=True)
    return parse_header(proc.stderr.decode("utf-8", "replace"))


def input_options(uri: str, *, start: float = 0.0, duration: float | None = None, timeout_s: float = 60.0,
                  untrusted: bool = False) -> list[str]:
    """ffmpeg options before ``-i`` for the decoder and its probe.

    ``untrusted`` (a stranger chose the bytes) adds the format whitelist; remote inputs always
    get it, network-only protocols and a read timeout.
    """
    remote = is_remote(uri)
    args = ["-protocol_whitelist", REMOTE_PROTOCOLS if remote else LOCAL_PROTOCOLS]
    if untrusted or remote:
        args += ["-format_whitelist", UNTRUSTED_FORMATS]
    if remote:
        args += ["-rw_timeout", str(int(timeout_s * 1e6)), "-reconnect", "1", "-reconnect_on_network_error", "1"]
    if start > 0:
        args += ["-ss", f"{start:.6f}"]
    if duration is not None:
        args += ["-t", f"{duration:.6f}"]
    return args


def input_target(uri: str) -> str:
    """What follows ``-i``: a URL as is, a path as ``file:`` + absolute path.

    "file:" stops ffmpeg from reading a name such as "http:x.mp4" or "a|b" as a protocol.
    """
    return uri if is_remote(uri) else "file:" + os.path.abspath(uri)


def classify_ffmpeg_error(stderr: str) -> tuple[str, str]:
    """Maps ffmpeg's error text to a stable decode-stage reason and a short message.

    The fetch stage classifies with :func:`pipeline.fetch.ytdlp.classify_error` instead: its text
    is mostly yt-dlp's and YouTube's, and it also decides whether another attempt can help.
    """
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


def check_frame_size(width: int | None, height: int | None, *, max_side: int = MAX_FRAME_SIDE,
                     max_pixels: int = MAX_FRAME_PIXELS, what: str = "the video") -> None:
    """Raises ClipError `too_large` for frames over the caps, so a tiny file cannot claim GBs of memory."""
    if width is None or height is None:
        return
    if max(width, height) > max_side or width * height > max_pixels:
        raise ClipError("too_large", f"{what} has {width}x{height} frames ({width * height / 1e6:.1f} MP); the caps "
                                     f"are {max_side} px a side and {max_pixels / 1e6:g} MP (--max_frame_side, "
                                     "--max_frame_pixels)")


def check_decodable(info: ProbeResult, uri: str, *, max_frame_side: int = MAX_FRAME_SIDE,
                    max_frame_pixels: int = MAX_FRAME_PIXELS) -> ProbeResult:
    """Raises ClipError unless a probed file has a header, a video stream and frames within the caps.

    A caller that already holds a file's header (:attr:`pipeline.fetch.config.FetchResult.probe`) can
    check it here instead of probing the file again.
    """
    if not info.ok:
        if info.timed_out:
            raise ClipError("timeout", f"ffmpeg {info.stderr} on {uri}")
        reason, message = classify_ffmpeg_error(info.stderr)
        raise ClipError(reason if reason != "decode_error" else "invalid_video", f"cannot open {uri}: {message}")
    if not info.has_video:
        raise ClipError("no_video_stream", f"{uri} has no video stream")
    check_frame_size(info.width, info.height, max_side=max_frame_side, max_pixels=max_frame_pixels, what=uri)
    return info


def probe(uri: str, *, timeout_s: float = 60.0, untrusted: bool = False, max_frame_side: int = MAX_FRAME_SIDE,
          max_frame_pixels: int = MAX_FRAME_PIXELS) -> ProbeResult:
    """Reads the container header; raises ClipError when there is nothing decodable or frames are too large.

    The frame-size cap is applied here, before any decoding.
    """
    if not is_remote(uri):
        check_local_input(uri)
    info = read_header(input_target(uri), input_args=input_options(uri, timeout_s=timeout_s, untrusted=untrusted),
                       timeout=timeout_s + 10)
    if info.timed_out:
        raise ClipError("timeout", f"ffmpeg probe of {uri} took longer than {timeout_s:.0f} s")
    return check_decodable(info, uri, max_frame_side=max_frame_side, max_frame_pixels=max_frame_pixels)


def network_protocols(allow_file: bool = False) -> str:
    """Protocols for a stranger's URL (yt-dlp's section cuts, the fetcher's probes); ``file`` only if opted in."""
    return REMOTE_PROTOCOLS + (",file" if allow_file else "")
