"""A loopback HTTP server with Range support that counts the bytes it sends (fetch benchmark)."""

from __future__ import annotations

import http.server
import re
import socket
import threading


class CountingServer(http.server.ThreadingHTTPServer):
    """Serves /videos/<anything>.mp4 (one file's bytes, kept in memory); counts bytes and requests."""

    daemon_threads = True

    def __init__(self, data: bytes):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.data = data
        self.lock = threading.Lock()
        self.bytes_sent = 0
        self.requests = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def reset(self) -> None:
        with self.lock:
            self.bytes_sent = 0
            self.requests = 0

    def handle_error(self, request, client_address) -> None:
        """Clients hang up mid-body when they seek: stay quiet."""

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CountingServer

    def setup(self) -> None:
        # A small send buffer keeps "bytes sent" close to what the client read when it hangs up.
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        super().setup()

    def log_message(self, format: str, *args) -> None:  # pylint: disable=redefined-builtin
        pass

    def _count(self, n: int) -> None:
        with self.server.lock:
            self.server.bytes_sent += n

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def do_GET(self) -> None:
        self._respond(head=False)

    def _respond(self, *, head: bool) -> None:
        with self.server.lock:
            self.server.requests += 1
        if not re.fullmatch(r"/videos/[A-Za-z0-9_-]+\.mp4", self.path):
            self.send_error(404)
            return
        data = self.server.data
        first, last = 0, len(data) - 1
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", (rng or "").strip())
        if rng and m and (m.group(1) or m.group(2)):
            if m.group(1):
                first = int(m.group(1))
                last = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
            else:
                first = max(0, len(data) - int(m.group(2)))
            if first >= len(data) or first > last:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        if head:
            return
        try:
            for offset in range(first, last + 1, 65536):
                chunk = data[offset:min(offset + 65536, last + 1)]
                self.wfile.write(chunk)
                self._count(len(chunk))
        except OSError:
            self.close_connection = True
