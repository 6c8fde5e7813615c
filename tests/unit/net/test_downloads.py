"""pipeline.net.downloads, the one HTTP download path, against a loopback server (no other network).

  PYTHONPATH=. python -m pytest -q tests/unit/net/test_downloads.py
"""

from __future__ import annotations

import http.server
import threading

import pytest

from pipeline.net import address_policy, downloads, guard_proxy

BODY = bytes(range(256)) * 64  # 16 KiB


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.paths.append(self.path)
        if self.path.startswith("/hop/"):  # /hop/N redirects (relative Location) down to /hop/0, which serves
            left = int(self.path.rsplit("/", 1)[1])
            if left:
                self.send_response(302)
                self.send_header("Location", f"{left - 1}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        if self.path == "/nolocation":
            self.send_response(301)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path in ("/busy", "/gone"):
            self.send_response(503 if self.path == "/busy" else 404)
            if self.path == "/busy":
                self.send_header("Retry-After", "7")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        lie = self.path == "/short"
        self.send_header("Content-Length", str(len(BODY) * (2 if lie else 1)))
        self.end_headers()
        self.wfile.write(BODY)


@pytest.fixture(name="server")
def _server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.paths = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _get(url: str, **kwargs) -> bytes:
    out = bytearray()
    with downloads.open_url(url, timeout=5, **kwargs) as response:
        downloads.read_body(response, out.extend, url=url)
    return bytes(out)


def test_redirects_are_followed_checked_and_limited(server):
    seen = []
    assert _get(f"{server.url}/hop/3", check_url=seen.append) == BODY
    assert seen == [f"{server.url}/hop/{n}" for n in (3, 2, 1, 0)]  # every hop, before it is requested
    with pytest.raises(downloads.TransferError) as error:
        _get(f"{server.url}/hop/3", max_redirects=2)
    assert error.value.kind == "redirect" and "more than 2 redirects" in error.value.message
    assert server.paths.count("/hop/0") == 1  # the refused run never reached the body
    with pytest.raises(downloads.TransferError) as error:
        _get(f"{server.url}/nolocation")
    assert error.value.kind == "redirect" and error.value.status == 301


def test_http_errors_carry_status_and_retry_after(server):
    with pytest.raises(downloads.TransferError) as error:
        _get(f"{server.url}/busy")
    assert (error.value.kind, error.value.status) == ("status", 503)
    assert downloads.retry_after_seconds(error.value.headers) == 7.0
    assert downloads.is_transient_status(503) and downloads.is_transient_status(429)
    assert not downloads.is_transient_status(404) and not downloads.is_transient_status(418)
    with pytest.raises(downloads.TransferError) as error:
        _get(f"{server.url}/gone")
    assert (error.value.kind, error.value.status) == ("status", 404)


def test_body_limits_truncation_and_stop(server):
    with pytest.raises(downloads.TransferError) as error:
        _get(f"{server.url}/short")
    assert (error.value.kind, error.value.received, error.value.expected) == ("truncated", len(BODY), 2 * len(BODY))

    sunk = bytearray()
    with downloads.open_url(f"{server.url}/ok", timeout=5) as response, pytest.raises(downloads.TransferError) as error:
        downloads.read_body(response, sunk.extend, url="u", chunk_bytes=1024, max_bytes=4000)
    assert error.value.kind == "too_large" and len(sunk) <= 4000  # the crossing chunk is not written

    stop = threading.Event()
    stop.set()
    with downloads.open_url(f"{server.url}/ok", timeout=5) as response, pytest.raises(downloads.TransferError) as error:
        downloads.read_body(response, sunk.extend, url="u", stop=stop)
    assert error.value.kind == "stopped"


def test_a_given_proxy_carries_every_request_whatever_the_environment_says(server, monkeypatch):
    """The guard proxy must see every hop: http_proxy/no_proxy in the environment must not divert it."""
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # discard port: nothing answers there
    for name in ("no_proxy", "NO_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with guard_proxy.GuardProxy(address_policy.AddressPolicy([server.url])) as guard:
        assert _get(f"{server.url}/hop/1", proxy=guard.url) == BODY
        assert guard.connections == 2  # both hops went through the guard
