"""Bounded work per clip: yt-dlp's parsing runs in a child bounded in time and memory, and the
fetch-only re-encode has the decoder's frame-size caps and timeout."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import io
import json
import os
import threading

import pytest

from pipeline import elements
from pipeline.cli import build
from pipeline.decode.config import DecodeConfig
from pipeline.errors import ClipError
from pipeline.fetch import bounded
from pipeline.fetch import clips as fetch
from pipeline.fetch.config import FetchConfig
from transforms.fetch import keep_video_row
from transforms.support.fetch_rows import ClipFetcher


def _row(video, *, start=1.0, end=2.0):
    return elements.ClipRequest(clip_id="c", source="file", video=video, start=start, end=end, labels=("a",),
                                split="all", row=2, fields={})


@pytest.mark.parametrize("limits, reason", [
    (DecodeConfig(max_frame_side=64), "too_large"),
    (DecodeConfig(max_frame_pixels=64 * 64), "too_large"),
    (DecodeConfig(timeout_s=0.001), "timeout"),
])
def test_fetch_only_re_encode_has_the_decoders_bounds(tmp_path, videos, limits, reason):
    fetcher = ClipFetcher(config=None, trim_limits=limits)
    with pytest.raises(ClipError) as e:
        keep_video_row(_row(videos["v3_30fps"]), str(tmp_path / "kept.mp4"), str(tmp_path), base_dir=".",
                       fetcher=fetcher)
    assert (e.value.reason, e.value.stage) == (reason, "fetch")
    assert not (tmp_path / "kept.mp4").exists()


def test_fetch_only_build_applies_max_frame_side(tmp_path, videos):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"video,labels,id,start,end\n{videos['v3_30fps']},a,cut,1,2\n")
    out, clips = tmp_path / "out", tmp_path / "clips"
    assert build.main(["--input_csv", str(csv_path), "--output_dir", str(out), "--features", "none",
                       "--clips_dir", str(clips), "--max_frame_side", "64"]) == 1  # no clip kept
    stats = json.load(open(out / "stats.json"))
    assert (stats["clips_kept"], stats["failures_by_reason"]) == (0, {"too_large": 1})


# ---------------------------------------------------------------------------------------------
# yt-dlp's in-process parsing: a gzip bomb page is stopped by the memory bound and the deadline.


def _bomb(inflated: int, unit: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as z:
        chunk = unit * ((1 << 20) // len(unit))
        for _ in range(inflated // len(chunk)):
            z.write(chunk)
    return out.getvalue()


@pytest.fixture(scope="module")
def bomb_server():
    pages = {
        # 1 GiB of HTML in ~1 MB: yt-dlp inflates the whole page in memory before looking at it.
        "/memoryPage1.mp4": _bomb(1 << 30, b"<p>" + b"a" * 61),
        # 48 MiB of markup that keeps the generic extractor's regular expressions busy.
        "/slowPage123.mp4": _bomb(48 << 20, b"<video src='x' data-x='" + b"<" * 40 + b"' "),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 - http.server's name
            body = pages.get(self.path.split("?", 1)[0])
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _fetch_error(url_base, name, tmp_path, **config):
    cfg = FetchConfig(url_template=url_base + "/{id}.mp4", max_attempts=1, socket_timeout=10, **config)
    with pytest.raises(ClipError) as e:
        fetch.fetch_clip(video_id=name, start=0.0, end=1.0, work_dir=str(tmp_path), config=cfg)
    assert os.listdir(tmp_path) == []
    return e.value


def test_a_gzip_bomb_page_is_stopped_by_the_memory_bound(bomb_server, tmp_path):
    before = bounded.resident_bytes(os.getpid())
    err = _fetch_error(bomb_server, "memoryPage1", tmp_path, max_memory=256 << 20, max_seconds=120)
    assert (err.reason, err.stage) == ("too_large", "fetch"), err.message
    assert "MiB" in err.message
    assert bounded.resident_bytes(os.getpid()) - before < 200 << 20  # the page never inflated in this process


def test_a_page_that_parses_past_the_deadline_is_stopped_at_it(bomb_server, tmp_path):
    err = _fetch_error(bomb_server, "slowPage123", tmp_path, max_seconds=3)
    assert (err.reason, err.stage) == ("timeout", "fetch"), err.message
    assert "still running at the clip's deadline" in err.message  # stopped there, not when yt-dlp gave up
