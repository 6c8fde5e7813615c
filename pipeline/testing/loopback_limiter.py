"""Loopback stand-ins for a rate-limiting video site and an authenticating proxy (tests and benchmarks).

:class:`LimiterServer` serves one generated video at ``/videos/<id>.mp4`` (Range supported, as
yt-dlp's generic extractor and ffmpeg's section cut read it) and limits *new videos*: a request
without a ``Range`` header (yt-dlp's page request; ffmpeg's media reads always send one) is a
new video. Modes:

* ``honest``: at most ``limit`` new videos in any ``period`` seconds (a sliding window); the
  rest get ``429`` with ``Retry-After`` (whole seconds until a slot frees);
* ``wall``: every new video gets ``429`` without ``Retry-After`` (a bot wall, a blocked identity).

Ids in ``drop_once`` have their first media read cut mid-body (a transient network failure).

:class:`AuthProxy` is an HTTP ``CONNECT`` proxy that demands ``Proxy-Authorization: Basic`` and
counts the tunnels it opened. Both bind 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import collections
import http.server
import math
import re
import select
import socket
import threading
import time

from pipeline.testing.loopback import _QuietServer as _Server
from pipeline.testing.loopback import byte_range, send_media_head


class LimiterServer:
    """``with LimiterServer(video_bytes, limit=4, period=4.0) as site:`` serves at ``site.url``.

    Attributes:
        new_videos: Accepted new-video requests (page requests answered 200).
        refused: 429 answers.
        page_requests: Every request without Range, answered or refused.
        cookies: The Cookie headers of page requests.
    """

    def __init__(self, video: bytes, *, limit: int = 4, period: float = 4.0, mode: str = "honest",
                 drop_once: tuple[str, ...] = ()):
        if mode not in ("honest", "wall"):
            raise ValueError(f"mode must be honest or wall, got {mode!r}")
        self.video, self.limit, self.period, self.mode = video, limit, period, mode
        self.new_videos = 0
        self.refused = 0
        self.page_requests = 0
        self.cookies: list[str] = []
        self.admitted_at: list[float] = []  # monotonic times of the accepted new videos
        self._starts: collections.deque[float] = collections.deque()
        self._drop = set(drop_once)
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``; the template of a video id is ``url + "/videos/{id}.mp4"``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> LimiterServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _admit(self) -> float | None:
        """None when a new video may start now, else the seconds until one may (0 for the wall)."""
        with self._lock:
            self.page_requests += 1
            now = time.monotonic()
            if self.mode == "wall":
                self.refused += 1
                return 0.0
            while self._starts and self._starts[0] <= now - self.period:
                self._starts.popleft()
            if len(self._starts) < self.limit:
                self._starts.append(now)
                self.admitted_at.append(now)
                self.new_videos += 1
                return None
            self.refused += 1
            return self._starts[0] + self.period - now

    def _handler(self):
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                match = re.fullmatch(r"/videos/([A-Za-z0-9_-]{11})\.mp4", self.path.split("?", 1)[0])
                if not match:
                    self.send_error(404)
                    return
                video_id = match.group(1)
                wanted = self.headers.get("Range")
                if wanted is None:
                    if self.headers.get("Cookie"):
                        with site._lock:
                            site.cookies.append(self.headers["Cookie"])
                    wait = site._admit()
                    if wait is not None:
                        body = b"Too Many Requests\n"
                        self.send_response(429)
                        if site.mode == "honest":
                            self.send_header("Retry-After", str(max(1, math.ceil(wait))))
                        self.send_header("Content-Type", "text/plain")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                data = site.video
                span = byte_range(wanted, len(data))
                if span is None:
                    self.send_error(416)
                    return
                first, last, partial = span
                send_media_head(self, first, last, len(data), partial)
                drop = False
                if wanted is not None:
                    with site._lock:
                        drop = video_id in site._drop
                        site._drop.discard(video_id)
                try:
                    if drop:  # announce the whole body, send a little, hang up
                        self.wfile.write(data[first:first + 4096])
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    for offset in range(first, last + 1, 1 << 16):
                        self.wfile.write(data[offset:min(offset + (1 << 16), last + 1)])
                except OSError:
                    self.close_connection = True

        return Handler


class AuthProxy:
    """``with AuthProxy("user", "password") as proxy:`` a CONNECT proxy at ``proxy.url`` (no credentials in it).

    Attributes:
        tunnels: CONNECTs accepted. refused: CONNECTs without the right credentials.
    """

    def __init__(self, user: str, password: str):
        self._expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.tunnels = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> AuthProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_CONNECT(self) -> None:
                if self.headers.get("Proxy-Authorization") != proxy._expected:
                    with proxy._lock:
                        proxy.refused += 1
                    self.send_response(407)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                host, _, port = self.path.rpartition(":")
                try:
                    upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
                except (OSError, ValueError):
                    self.send_error(502)
                    return
                with proxy._lock:
                    proxy.tunnels += 1
                self.send_response(200, "Connection established")
                self.end_headers()
                self.close_connection = True
                _pipe(self.connection, upstream)

        return Handler


def _pipe(a: socket.socket, b: socket.socket) -> None:
    peers = {a: b, b: a}
    try:
        while True:
            readable, _, _ = select.select(list(peers), [], [], 30)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(1 << 16)
                if not data:
                    return
                peers[sock].sendall(data)
    except OSError:
        return
    finally:
        b.close()
