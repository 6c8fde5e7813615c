"""A loopback HTTP file server with Range support, request log and injected faults.

Serves the sample demo (generated "YouTube" videos fetched by yt-dlp) and tests. It binds
127.0.0.1 only.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import threading
import urllib.parse

_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, int, bool] | None:
    """``(first, last, partial)`` that a ``Range`` header asks of ``size`` bytes; None when it starts past the end."""
    start, end = 0, size - 1
    match = _RANGE_RE.match(header or "")
    if not (match and (match.group(1) or match.group(2))):
        return start, end, False
    if match.group(1):
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else size - 1
    else:
        start = max(0, size - int(match.group(2)))
    if start >= size:
        return None
    return start, min(end, size - 1), True


def send_media_head(handler: http.server.BaseHTTPRequestHandler, first: int, last: int, size: int,
                    partial: bool) -> None:
    """The status and headers of an MP4 body of bytes ``first..last`` of ``size`` (206 for a range, else 200)."""
    if partial:
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {first}-{last}/{size}")
    else:
        handler.send_response(200)
    handler.send_header("Content-Type", "video/mp4")
    handler.send_header("Accept-Ranges", "bytes")
    handler.send_header("Content-Length", str(last - first + 1))
    handler.end_headers()


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        """Clients hang up mid-body when they seek or give up: not worth a traceback."""


class LoopbackServer:
    """`with LoopbackServer(root) as server:` serves files under `root` at `server.url`.

    Attributes:
      faults: path -> list of HTTP status codes to answer before serving normally (e.g.
        [429, 429]); a path with status 404 in `missing` is never served.
      requests: (method, path, range header, bytes sent) per request.
    """

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.faults: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str, str | None, int]] = []
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL, `http://127.0.0.1:PORT` (a file `root/a/b.mp4` is at `url + "/a/b.mp4"`)."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def bytes_sent(self, path_prefix: str = "") -> int:
        """Body bytes sent so far for paths starting with `path_prefix`: what a test's client downloaded."""
        with self._lock:
            return sum(r[3] for r in self.requests if r[1].startswith(path_prefix))

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        return type("Handler", (_FileHandler,), {"owner": self})


class _FileHandler(http.server.BaseHTTPRequestHandler):
    """Serves `owner.root` with Range support, answering `owner.faults` first and logging to `owner.requests`."""

    protocol_version = "HTTP/1.1"
    owner: LoopbackServer

    def setup(self):
        # A small send buffer keeps "bytes sent" close to what the client read when it hangs up.
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        super().setup()

    def log_message(self, *args):  # quiet
        pass

    def _record(self, sent: int) -> None:
        with self.owner._lock:  # pylint: disable=protected-access
            self.owner.requests.append((self.command, self.path, self.headers.get("Range"), sent))

    def _reply(self, status: int, body: bytes = b"", *, head: bool, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)
        self._record(0)

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head: bool = False):
        server = self.owner
        path = urllib.parse.urlparse(self.path).path
        with server._lock:  # pylint: disable=protected-access
            pending = server.faults.get(path)
            status = pending.pop(0) if pending else None
        if status is not None:
            return self._reply(status, f"injected {status}".encode(), head=head,
                               headers={"Content-Type": "text/plain"})
        local = os.path.realpath(os.path.join(server.root, path.lstrip("/")))
        if not local.startswith(server.root + os.sep) or not os.path.isfile(local):
            return self._reply(404, head=head)
        size = os.path.getsize(local)
        span = byte_range(self.headers.get("Range"), size)
        if span is None:
            return self._reply(416, head=head, headers={"Content-Range": f"bytes */{size}"})
        start, end, partial = span
        send_media_head(self, start, end, size, partial)
        self._record(0 if head else self._send_bytes(local, start, end - start + 1))
        return None

    def _send_bytes(self, local: str, start: int, count: int) -> int:
        """Writes `count` bytes of `local` from `start`; returns how many went out before the client left."""
        sent = 0
        with open(local, "rb") as f:
            f.seek(start)
            try:
                while count > 0:
                    chunk = f.read(min(1 << 16, count))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    count -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
        return sent
