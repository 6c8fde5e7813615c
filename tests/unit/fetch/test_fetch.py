"""Tests for pipeline.fetch.clips against a loopback HTTP server with injected faults.

The server supports HTTP Range requests (206 + Content-Range) so ffmpeg can
seek, logs every request (path, range, status, bytes sent) and misbehaves per
video id: 429 twice, 404, 500 forever, a connection dropped mid-body, replies
slower than the socket timeout, HTML and non-video bodies. Test media is made
with imageio-ffmpeg's ffmpeg (the only ffmpeg available).
"""

from __future__ import annotations

import dataclasses
import http.server
import os
import pickle
import random
import re
import socket
import subprocess
import threading
import time

import imageio_ffmpeg
import numpy as np
import pytest

from pipeline.decode import probe
from pipeline.errors import ClipError
from pipeline.fetch import clips as fetch
from pipeline.fetch import ytdlp
from pipeline.fetch.config import FetchConfig, FetchResult
from pipeline.net import pacing

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()

SHORT_FPS = 25
LONG_FPS = 10
WIDTH, HEIGHT = 160, 120

OK = "okClip00001"
RATE_LIMITED = "rateLimit01"
MISSING = "missing0404"
BROKEN = "serverError"
DROPPED = "dropMidBody"
SLOW = "slowReply01"
SLOW_MEDIA = "slowMedia01"
HTML = "htmlInstead"
RANDOM_BYTES = "randomBytes"
TEXT = "textAsVideo"
LONG = "longSource1"
MKV = "matroska001"
STALL_S = 2.0  # Longer than the socket timeout of the slow tests.


# --------------------------------------------------------------------------
# Media
# --------------------------------------------------------------------------


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Generates the test media once: B-frames, 2 s GOP, faststart MP4s."""
    root = tmp_path_factory.mktemp("media")
    short, long_, mkv = str(root / "short.mp4"), str(root / "long.mp4"), str(root / "short.mkv")
    # 30 s, 25 fps, x264 with B-frames, keyframe every 2 s, AAC audio.
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={SHORT_FPS}",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050", "-t", "30",
            "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "32k", "-movflags", "+faststart", short)
    # 300 s low-bitrate source with 1 s keyframes, for the bytes test.
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={LONG_FPS}",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000", "-t", "300",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "16k", "-movflags", "+faststart", long_)
    _ffmpeg("-i", short, "-c", "copy", mkv)
    return {"short": short, "long": long_, "mkv": mkv}


# --------------------------------------------------------------------------
# Loopback server
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Request:
    video_id: str
    path: str
    range: str | None
    status: int | None = None
    sent: int = 0
    cookie: str | None = None
    marker: str | None = None


class MediaServer(http.server.ThreadingHTTPServer):
    """Serves /videos/<id>.mp4 and /mkv/<id>.mkv; misbehaves per id."""

    daemon_threads = True

    def __init__(self, media: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.media = media
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.hits: dict[str, int] = {}
        self.drops_left = {DROPPED: 1}

    def handle_error(self, request, client_address) -> None:
        """Clients hang up mid-body on purpose (seeks, timeouts): stay quiet."""

    def log_for(self, video_id: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.video_id == video_id]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MediaServer

    def setup(self) -> None:
        # A small send buffer keeps "bytes sent" close to what the client read;
        # otherwise megabytes sit in loopback socket buffers when it hangs up.
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        super().setup()

    def log_message(self, format: str, *args) -> None:
        pass

    def do_GET(self) -> None:
        match = re.fullmatch(r"/(videos|mkv)/([A-Za-z0-9_-]{11})\.(mp4|mkv)", self.path)
        if not match:
            self.send_error(404)
            return
        kind, video_id = match.group(1), match.group(2)
        req = Request(video_id=video_id, path=self.path, range=self.headers.get("Range"),
                      cookie=self.headers.get("Cookie"), marker=self.headers.get("X-Fetch-Test"))
        with self.server.lock:
            self.server.requests.append(req)
            self.server.hits[video_id] = hit = self.server.hits.get(video_id, 0) + 1
        try:
            self._respond(kind, video_id, hit, req)
        except OSError:
            self.close_connection = True

    def _respond(self, kind: str, video_id: str, hit: int, req: Request) -> None:
        if video_id == RATE_LIMITED and hit <= 2:
            return self._plain(429, b"slow down\n", req)
        if video_id == MISSING:
            return self._plain(404, b"no such video\n", req)
        if video_id == BROKEN:
            return self._plain(500, b"internal error\n", req)
        if video_id == SLOW or (video_id == SLOW_MEDIA and req.range):
            time.sleep(STALL_S)
        if video_id == HTML:
            page = b"<!DOCTYPE html><html><head><title>Hi</title></head><body>No video here.</body></html>"
            return self._plain(200, page, req, content_type="text/html; charset=utf-8")
        if video_id == RANDOM_BYTES:
            return self._body(random.Random(0).randbytes(300_000), req)
        if video_id == TEXT:
            return self._body(b"this is a text file, not a video\n" * 5000, req)
        if kind == "mkv":
            return self._body(self.server.media["mkv"], req, content_type="video/x-matroska")
        drop_after = None
        start = _range_start(req.range)
        if video_id == DROPPED and start:
            with self.server.lock:
                if self.server.drops_left[DROPPED] > 0:
                    self.server.drops_left[DROPPED] -= 1
                    drop_after = 16384
        data = self.server.media["long" if video_id == LONG else "short"]
        return self._body(data, req, drop_after=drop_after)

    def _plain(self, status: int, body: bytes, req: Request, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        req.status = status
        self.wfile.write(body)
        req.sent = len(body)

    def _body(self, data: bytes, req: Request, *, content_type: str = "video/mp4",
              drop_after: int | None = None) -> None:
        first, last = 0, len(data) - 1
        if req.range:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", req.range.strip())
            if not m or (not m.group(1) and not m.group(2)):
                return self._plain(416, b"", req)
            if m.group(1):
                first = int(m.group(1))
                last = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
            else:  # Suffix range: the last N bytes.
                first = max(0, len(data) - int(m.group(2)))
            if first >= len(data) or first > last:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                req.status = 416
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
            req.status = 206
        else:
            self.send_response(200)
            req.status = 200
        self.send_header("Content-Type", content_type)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        for offset in range(first, last + 1, 16384):
            if drop_after is not None and req.sent >= drop_after:
                # Hang up mid-body: the client sees fewer bytes than announced.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            chunk = data[offset:min(offset + 16384, last + 1)]
            self.wfile.write(chunk)
            req.sent += len(chunk)
        return None


def _range_start(value: str | None) -> int:
    m = re.match(r"bytes=(\d+)-", value or "")
    return int(m.group(1)) if m else 0


@pytest.fixture(autouse=True)
def _fresh_pacers():
    # Pacers are per process and host: one test's 429s must not make the next one wait.
    pacing.reset()


@pytest.fixture(scope="module")
def server(media: dict[str, str]):
    data = {name: open(path, "rb").read() for name, path in media.items()}
    srv = MediaServer(data)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _config(server: MediaServer, **overrides) -> FetchConfig:
    values = dict(url_template=f"http://127.0.0.1:{server.server_address[1]}/videos/{{id}}.mp4",
                  backoff_base=0.01, socket_timeout=5.0, max_attempts=3, max_seconds=60.0)
    values.update(overrides)
    return FetchConfig(**values)


# --------------------------------------------------------------------------
# Frame checks
# --------------------------------------------------------------------------


def _gray_frame(path: str, seek: float) -> np.ndarray:
    """Decodes the first frame at or after `seek` (accurate input seeking)."""
    out = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-ss", f"{seek:.6f}",
                          "-i", path, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         capture_output=True, check=True).stdout
    assert len(out) == WIDTH * HEIGHT, f"no frame at {seek}s in {path}"
    return np.frombuffer(out, dtype=np.uint8).astype(np.float32)


def _assert_frame_matches(fetched: str, fetched_at: float, source: str, source_at: float, fps: float,
                          *, exact: bool = True) -> None:
    """The fetched frame is the source frame at `source_at` (or, unless exact, a neighbour)."""
    got = _gray_frame(fetched, fetched_at)
    diffs = {k: float(np.abs(got - _gray_frame(source, source_at + k / fps)).mean()) for k in (-1, 0, 1)}
    if exact:
        assert diffs[0] < 0.5, diffs
        assert diffs[0] < min(diffs[-1], diffs[1]), diffs
    else:
        assert min(diffs.values()) < 0.5, diffs


def _assert_clip_is_exact(result: FetchResult, source: str, start: float, end: float, fps: float) -> None:
    """Seeking to start_offset gives the source's first frame at or after `start`, and the
    clip reaches `end`. A section's timeline starts at that first frame, so it may be
    shifted by less than one frame against `start`; later frames are checked within one frame.
    """
    _assert_frame_matches(result.path, result.start_offset, source, start, fps)
    last = end - start - 1.5 / fps
    _assert_frame_matches(result.path, result.start_offset + last, source, start + last, fps, exact=False)


# --------------------------------------------------------------------------
# Success paths
# --------------------------------------------------------------------------


def test_section_fetch_starts_within_one_frame(server, media, tmp_path):
    start, end = 13.33, 18.33  # Between keyframes (12 s, 14 s) and between frames.
    result = fetch.fetch_clip(video_id=OK, start=start, end=end, work_dir=str(tmp_path), config=_config(server))

    assert result.figures.method == "section"
    assert result.figures.attempts == 1
    assert result.duration == pytest.approx(5.0)
    assert os.path.dirname(result.path) == str(tmp_path)
    assert os.listdir(tmp_path) == [os.path.basename(result.path)]  # Scratch dir removed.
    assert 0 < result.figures.bytes == os.path.getsize(result.path)
    _assert_clip_is_exact(result, media["short"], start, end, SHORT_FPS)
    assert any(r.range and _range_start(r.range) > 0 for r in server.log_for(OK)), "ffmpeg did not seek"
    # The header the fetcher read travels on: the decoder's own probe would say the same.
    decoded = probe.probe(result.path, untrusted=True)
    assert result.probe is not None and probe.check_decodable(result.probe, result.path) is result.probe
    assert (result.probe.duration, result.probe.width, result.probe.has_audio) == (
        decoded.duration, decoded.width, decoded.has_audio)


def test_section_downloads_a_fraction_of_a_long_source(server, media, tmp_path):
    start, end = 100.55, 110.55
    size = os.path.getsize(media["long"])
    result = fetch.fetch_clip(video_id=LONG, start=start, end=end, work_dir=str(tmp_path), config=_config(server))

    sent = sum(r.sent for r in server.log_for(LONG))
    print(f"\nsection {end - start:g}s of 300s: bytes_downloaded={result.figures.bytes} "
          f"server_sent={sent} file={size} ({result.figures.bytes / size:.1%} / {sent / size:.1%}); "
          f"requests={[(r.range, r.sent) for r in server.log_for(LONG)]}")
    assert result.figures.method == "section"
    assert result.figures.bytes < 0.4 * size
    assert sent < 0.4 * size
    _assert_clip_is_exact(result, media["long"], start, end, LONG_FPS)


def test_full_download_when_the_container_cannot_keep_the_cut(server, media, tmp_path):
    # Matroska cannot store the negative pre-roll timestamps of a stream-copied
    # cut, so the whole file is fetched and start_offset is `start` itself.
    start, end = 7.1, 9.1
    config = _config(server, url_template=f"http://127.0.0.1:{server.server_address[1]}/mkv/{{id}}.mkv")
    result = fetch.fetch_clip(video_id=MKV, start=start, end=end, work_dir=str(tmp_path), config=config)

    assert result.figures.method == "full"
    assert result.start_offset == pytest.approx(start)
    assert result.figures.bytes == os.path.getsize(media["mkv"])
    _assert_clip_is_exact(result, media["short"], start, end, SHORT_FPS)


def test_rate_limited_twice_then_succeeds_on_third_attempt(server, media, tmp_path):
    result = fetch.fetch_clip(video_id=RATE_LIMITED, start=3.0, end=6.0, work_dir=str(tmp_path),
                              config=_config(server, max_attempts=5))

    assert result.figures.attempts == 3
    assert [r.status for r in server.log_for(RATE_LIMITED)][:3] == [429, 429, 200]
    _assert_clip_is_exact(result, media["short"], 3.0, 6.0, SHORT_FPS)


def test_connection_dropped_mid_body_is_retried(server, media, tmp_path):
    start, end = 13.33, 18.33
    result = fetch.fetch_clip(video_id=DROPPED, start=start, end=end, work_dir=str(tmp_path),
                              config=_config(server))

    log = server.log_for(DROPPED)
    truncated = [r for r in log if r.range and _range_start(r.range) > 0 and r.sent <= 16384]
    assert truncated, [(r.range, r.sent) for r in log]
    assert result.figures.attempts == 2
    assert os.listdir(tmp_path) == [os.path.basename(result.path)]
    _assert_clip_is_exact(result, media["short"], start, end, SHORT_FPS)


def test_cookies_and_extra_options_reach_the_server(server, media, tmp_path):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tsession\tabc123\n")
    before = cookies.read_bytes()
    work = tmp_path / "work"
    config = _config(server, cookies_file=str(cookies), extra_ytdlp_options={"http_headers": {"X-Fetch-Test": "1"}})
    result = fetch.fetch_clip(video_id="cookieClip1", start=5.0, end=7.0, work_dir=str(work), config=config)

    log = server.log_for("cookieClip1")
    page = [r for r in log if r.range is None]
    media_reads = [r for r in log if r.range]
    assert page and all("session=abc123" in (r.cookie or "") and r.marker == "1" for r in page)
    # Headers reach ffmpeg's media reads too. (Its cookie matching skips
    # IP-literal hosts such as 127.0.0.1, so cookies are checked on the page.)
    assert media_reads and all(r.marker == "1" for r in media_reads)
    assert cookies.read_bytes() == before  # yt-dlp wrote back to a private copy only.
    assert os.listdir(work) == [os.path.basename(result.path)]


def test_file_urls_need_opt_in(media, tmp_path):
    with pytest.raises(ValueError, match="scheme"):
        FetchConfig(url_template="file:///srv/{id}.mp4")
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    os.symlink(media["short"], source_dir / f"{OK}.mp4")
    config = FetchConfig(url_template=f"file://{source_dir}/{{id}}.mp4", allow_file_urls=True,
                               backoff_base=0.01)
    work = tmp_path / "work"
    result = fetch.fetch_clip(video_id=OK, start=2.0, end=4.0, work_dir=str(work), config=config)
    assert os.listdir(work) == [os.path.basename(result.path)]
    _assert_clip_is_exact(result, media["short"], 2.0, 4.0, SHORT_FPS)


# --------------------------------------------------------------------------
# Failure paths: reason, retries, cleanup
# --------------------------------------------------------------------------


def _fail(server, video_id: str, tmp_path, **overrides) -> ClipError:
    with pytest.raises(ClipError) as info:
        fetch.fetch_clip(video_id=video_id, start=13.33, end=18.33, work_dir=str(tmp_path),
                         config=_config(server, **overrides))
    assert info.value.stage == "fetch"
    assert os.listdir(tmp_path) == [], "scratch files left behind"
    return info.value


def test_404_is_not_found_without_retries(server, tmp_path):
    err = _fail(server, MISSING, tmp_path)
    assert err.reason == "not_found"
    assert "1 attempt(s)" in err.message
    assert len(server.log_for(MISSING)) == 1


def test_500_forever_ends_as_network_after_max_attempts(server, tmp_path):
    err = _fail(server, BROKEN, tmp_path, max_attempts=3)
    assert err.reason == "network"
    assert "3 attempt(s)" in err.message
    assert [r.status for r in server.log_for(BROKEN)] == [500, 500, 500]


def test_budget_stops_retries_before_max_attempts(server, tmp_path):
    # Backoff sleeps that cannot fit in max_seconds end the retries early.
    before = len(server.log_for(BROKEN))
    err = _fail(server, BROKEN, tmp_path, max_attempts=50, backoff_base=5.0, max_seconds=2.0)
    assert err.reason == "network"
    assert 1 <= len(server.log_for(BROKEN)) - before < 5


def test_slow_reply_times_out_as_network(server, tmp_path):
    err = _fail(server, SLOW, tmp_path, socket_timeout=0.5, max_attempts=2)
    assert err.reason == "network"
    assert "timed out" in err.message
    assert len(server.log_for(SLOW)) == 2  # each attempt ended by the socket timeout, then given up


def test_stalled_media_transfer_times_out_as_network(server, tmp_path):
    # The page request answers at once; ffmpeg's ranged reads stall and are
    # bounded by -rw_timeout.
    err = _fail(server, SLOW_MEDIA, tmp_path, socket_timeout=0.5, max_attempts=2)
    assert err.reason == "network"
    assert len([r for r in server.log_for(SLOW_MEDIA) if r.range is None]) == 2


@pytest.mark.parametrize("video_id", [HTML, RANDOM_BYTES, TEXT])
def test_non_video_bodies_are_not_video_without_retries(server, tmp_path, video_id):
    err = _fail(server, video_id, tmp_path)
    assert err.reason == "not_video"
    assert "1 attempt(s)" in err.message
    assert len([r for r in server.log_for(video_id) if r.range is None]) == 1


def test_start_beyond_the_end_is_out_of_range(server, tmp_path):
    with pytest.raises(ClipError) as info:
        fetch.fetch_clip(video_id=OK, start=40.0, end=45.0, work_dir=str(tmp_path), config=_config(server))
    assert info.value.reason == "out_of_range"
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------
# Validation and classification (no server)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("video_id", ["abc", "a" * 12, "abc/def_123", "abc def_123", "../etc/pass", "", None])
def test_invalid_ids_are_refused(video_id, tmp_path):
    with pytest.raises(ClipError) as info:
        fetch.validate_youtube_id(video_id)
    assert (info.value.reason, info.value.stage) == ("invalid_id", "read")
    with pytest.raises(ClipError):
        fetch.fetch_clip(video_id=video_id, start=0, end=1, work_dir=str(tmp_path), config=FetchConfig())
    assert os.listdir(tmp_path) == []


def test_valid_ids_pass():
    for video_id in ("dQw4w9WgXcQ", "-_-_-_-_-_-", "AAAAAAAAAAA"):
        fetch.validate_youtube_id(video_id)


@pytest.mark.parametrize("start,end", [(5, 5), (6, 5), (-1, 2), (float("nan"), 3), (0, float("inf"))])
def test_invalid_segments_are_refused(start, end, tmp_path):
    with pytest.raises(ClipError) as info:
        fetch.fetch_clip(video_id=OK, start=start, end=end, work_dir=str(tmp_path), config=FetchConfig())
    assert (info.value.reason, info.value.stage) == ("invalid_segment", "read")


def test_config_rejects_settings_that_would_fail_every_clip():
    with pytest.raises(ValueError):
        FetchConfig(url_template="https://example.com/watch")  # No {id}.
    with pytest.raises(ValueError):
        FetchConfig(extra_ytdlp_options={"outtmpl": "x"})
    with pytest.raises(ValueError):
        FetchConfig(rate_limit="fast")
    config = FetchConfig(rate_limit="2M", extra_ytdlp_options={"extractor_args": {}})
    assert pickle.loads(pickle.dumps(config)) == config  # Beam ships it to workers.


@pytest.mark.parametrize("message,expected", [
    ("[youtube] abcdefghijk: Video unavailable. This video is private",
     ("unavailable_private", False)),
    ("[youtube] abcdefghijk: Private video. Sign in if you've been granted access to this video. "
     "Use --cookies-from-browser or --cookies for the authentication.",
     ("unavailable_private", False)),
    ("[youtube] abcdefghijk: Video unavailable. This video has been removed by the uploader",
     ("unavailable_user_removed", False)),
    ("[youtube] abcdefghijk: Video unavailable. This video is no longer available because the YouTube "
     "account associated with this video has been terminated.",
     ("unavailable_user_removed", False)),
    ("[youtube] abcdefghijk: Video unavailable. This video is no longer available due to a copyright "
     "claim by Sony Music Entertainment",
     ("unavailable_copyright", False)),
    ("[youtube] abcdefghijk: Video unavailable. This video contains content from UMG, who has blocked it "
     "in your country on copyright grounds.",
     ("unavailable_country_block", False)),
    ("[youtube] abcdefghijk: The uploader has not made this video available in your country",
     ("unavailable_country_block", False)),
    ("[youtube] abcdefghijk: This video is not available from your location due to geo restriction",
     ("unavailable_country_block", False)),
    ("[youtube] abcdefghijk: Sign in to confirm your age. This video may be inappropriate for some users.",
     ("unavailable_sign_in", False)),
    # The bot wall is the site pushing back on this identity, not the video gone: retried, paced.
    ("[youtube] abcdefghijk: Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or "
     "--cookies for the authentication. See  https://github.com/yt-dlp/yt-dlp/wiki/FAQ#how-do-i-pass-cookies-"
     "to-yt-dlp  for how to manually pass cookies.",
     ("rate_limited", True)),
    ("[youtube] abcdefghijk: Sign in to confirm you're not a bot. This helps protect our community. Learn more",
     ("rate_limited", True)),
    ("[youtube] abcdefghijk: Video unavailable. This content isn't available, try again later. The current "
     "session has been rate-limited by YouTube for up to an hour. It is recommended to use `-t sleep` to add "
     "a delay between video requests to avoid exceeding the rate limit.",
     ("rate_limited", True)),
    ("[youtube] abcdefghijk: This content isn\u2019t available, try again later.", ("rate_limited", True)),
    ("ERROR: unable to download video data: HTTP Error 429: Too Many Requests", ("rate_limited", True)),
    ("[youtube] abcdefghijk: This video is only available to Music Premium members",
     ("unavailable_sign_in", False)),
    ("[youtube] abcdefghijk: This video is age-restricted and only available on YouTube. Use --cookies",
     ("unavailable_sign_in", False)),
    ("[youtube] abcdefghijk: Join this channel to get access to members-only content like this video, "
     "and other exclusive perks.",
     ("unavailable_sign_in", False)),
    ("[youtube] abcdefghijk: Video unavailable. This video has been removed for violating YouTube's "
     "Community Guidelines",
     ("unavailable_guidelines", False)),
    ("[youtube] abcdefghijk: This video has been removed for violating YouTube's policy on spam, "
     "deceptive practices, and scams.",
     ("unavailable_spam", False)),
    ("[youtube] abcdefghijk: This video has been removed for violating YouTube's policy on nudity or "
     "sexual content.",
     ("unavailable_nudity", False)),
    ("[youtube] abcdefghijk: This video has been removed for violating YouTube's policy on harassment "
     "and bullying.",
     ("unavailable_harassment", False)),
    ("[youtube] abcdefghijk: This video has been removed for violating YouTube's Terms of Service.",
     ("unavailable_terms_of_service", False)),
    ("[youtube] abcdefghijk: This video has been removed for violating YouTube's policy on harmful or "
     "dangerous content.",
     ("unavailable_harmful", False)),
    ("[youtube] abcdefghijk: Video unavailable", ("unavailable", False)),
    ("[youtube] abcdefghijk: This live event will begin in 3 hours.", ("unavailable", False)),
    ("[generic] abcdefghijk: Unable to download webpage: HTTP Error 404: Not Found "
     "(caused by <HTTPError 404: Not Found>)", ("not_found", False)),
    ("[generic] abcdefghijk: Unable to download webpage: HTTP Error 429: Too Many Requests "
     "(caused by <HTTPError 429: Too Many Requests>)", ("rate_limited", True)),
    ("unable to download video data: HTTP Error 503: Service Unavailable", ("network", True)),
    ("[generic] x: Unable to download webpage: HTTPConnectionPool(host='h', port=1): Read timed out. "
     "(read timeout=0.5)", ("network", True)),
    ("unable to download video data: [Errno 104] Connection reset by peer", ("network", True)),
    ("content too short (expected 1000 bytes and served 10)", ("network", True)),
    ("unable to download video data: IncompleteRead(10 bytes read, 990 more expected)", ("network", True)),
    ("ffmpeg exited with code 8; probe: Error opening input: Server returned 5XX Server Error reply",
     ("network", True)),
    ("Unsupported URL: http://127.0.0.1/videos/abcdefghijk.mp4", ("not_video", False)),
    ("ffmpeg exited with code 183; probe: Error opening input: Invalid data found when processing input",
     ("not_video", False)),
    ("something nobody has seen before", ("other", False)),
])
def test_classify_error(message, expected):
    assert ytdlp.classify_error(message) == expected


def test_a_start_that_times_out_after_push_backs_is_rate_limited(tmp_path):
    """The budget went on waiting for the site: the row ends rate_limited (retryable), the timeout in its message."""
    from pipeline.net import address_policy

    url = "http://127.0.0.1:9/videos/abcdefghijk.mp4"
    call = fetch._ClipFetch(video_id="abcdefghijk", start=0, end=1, work_dir=str(tmp_path),
                            config=FetchConfig(max_seconds=4.0), url=url,
                            policy=address_policy.AddressPolicy([url]), began=time.monotonic())
    try:
        timeout = ytdlp.AttemptError("timeout", "--fetch_max_seconds 4 passed: read timed out", transient=False)
        with pytest.raises(ytdlp.AttemptError) as first:
            call._pushed_back_or_raise(timeout, None, call.pool.current())
        assert first.value.reason == "timeout"  # no push-back yet: a slow site is a timeout
        call._pushed_back_or_raise(ytdlp.AttemptError("rate_limited", "HTTP Error 429", transient=True), None,
                                   call.pool.current())  # the site pushed back: the loop goes on
        with pytest.raises(ytdlp.AttemptError) as second:
            call._pushed_back_or_raise(timeout, None, call.pool.current())
        assert second.value.reason == "rate_limited" and not second.value.transient
        assert "still rate limited when --fetch_max_seconds 4 ran out" in second.value.message
        assert "read timed out" in second.value.message
    finally:
        call.close()
