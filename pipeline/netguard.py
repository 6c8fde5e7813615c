"""Confinement of remote inputs: an address policy and a per-clip filtering proxy.

Remote videos (an http(s) ``video`` in a CSV, a yt-dlp fetch of a YouTube id) are
chosen by strangers, and so are the redirects, playlists and format URLs they lead
to. Every remote byte of a clip goes through one :class:`GuardProxy`: a small HTTP
proxy on 127.0.0.1 that yt-dlp (``proxy`` option) and every ffmpeg it or the
pipeline runs (``http_proxy``) are pointed at. For each connection the proxy

* resolves the destination itself and connects to the address it checked (no DNS
  rebinding between check and use);
* refuses link-local addresses (169.254.0.0/16, fe80::/10, the cloud metadata
  server) always, and loopback, private and other non-global addresses unless the
  user's own URL or ``--video_url_template`` names that host and port;
* enforces the clip's hard wall-clock deadline: when it passes, every open tunnel is
  closed and new requests are refused, so yt-dlp and ffmpeg fail promptly even
  against a server that drips one byte a second.

Refusals and the deadline are recorded on the proxy (:attr:`GuardProxy.refusals`,
:attr:`GuardProxy.deadline_hit`), so the caller reports a precise reason
(``address_not_allowed``, ``timeout``) instead of guessing from the error text of a
client that only saw "403" or "connection reset".

ffmpeg reads ``no_proxy`` from the environment and would connect directly to hosts
listed there; :func:`ffmpeg_env` and :func:`ffmpeg_for_ytdlp` give it an environment
without it.

With a user proxy (``--proxy http://host:port``) the guard still applies the same
policy to every destination it is asked for (it resolves names locally) and the
deadline, then opens each connection through the user proxy with ``CONNECT``. What
the user proxy itself does after that (its own DNS, its own redirects) is outside
the guard. SOCKS proxies are not supported behind the guard.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import http.client
import ipaddress
import logging
import os
import select
import shutil
import socket
import socketserver
import stat
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable

from pipeline import downloads

__all__ = [
    "NETWORK_PROTOCOLS",
    "STRANGER_FORMATS",
    "AddressRefused",
    "AddressPolicy",
    "DownloadError",
    "GuardProxy",
    "download",
    "ffmpeg_env",
    "ffmpeg_for_ytdlp",
]

_LOG = logging.getLogger(__name__)

# ffmpeg protocols a remote input may use: "httpproxy" is how ffmpeg's tls reaches
# https through the guard (CONNECT); no "file", "concat", "subfile", "data", ...
NETWORK_PROTOCOLS = "http,https,tcp,tls,crypto,httpproxy"

# Demuxers for stranger-supplied bytes: plain media containers only. No hls, dash,
# concat, ffconcat, image2 or other formats that open further files by name.
STRANGER_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,ogg,asf,wav,mp3,aac"

# Host names of cloud metadata servers (their addresses are link-local as well).
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "metadata.goog", "instance-data",
                             "instance-data.ec2.internal"})
_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_HEAD = 64 * 1024
_CONNECT_TIMEOUT_S = 15.0
_POLL_S = 0.25  # how often an idle tunnel looks at the deadline
_SEND_TIMEOUT_S = 60.0  # a tunnel whose reader stops for this long is closed
_ACCEPT_POLL_S = 0.02  # how long stop() may wait for the accept loop (once per clip)
# Largest remote video row downloaded (a 300-s clip of 4K video is well under it).
MAX_DOWNLOAD_BYTES = 8 << 30
# Socket buffers of a tunnel. They bound the bytes a server sends that the client never
# reads when it hangs up early (a seek, a finished section); 256 KiB upstream still
# allows ~25 MB/s at 10 ms round trip (a 360p section needs ~0.1 MB/s).
_UPSTREAM_RCVBUF = 256 * 1024
_CLIENT_SNDBUF = 64 * 1024


class AddressRefused(Exception):
    """The policy refuses a destination; ``reason`` is a failure-report reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class DownloadError(Exception):
    """:func:`download` failed; ``reason`` is a failure-report reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def _unmap(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address hidden in an IPv4-mapped or NAT64 IPv6 address, else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _canonical_host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(_unmap(ipaddress.ip_address(host)))
    except ValueError:
        return host


def _url_host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise AddressRefused("invalid_url", f"not an http(s) URL with a host: {url!r}")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError as e:
        raise AddressRefused("invalid_url", f"bad port in {url!r}") from e
    return _canonical_host(parts.hostname), port


class AddressPolicy:
    """Which destinations a clip's network traffic may reach.

    Args:
        named_urls: URLs the user wrote (the CSV's video URL, ``--video_url_template``
            with any id): their ``(host, port)`` may be loopback or private.
    """

    def __init__(self, named_urls: Iterable[str] = ()):
        self.named: frozenset[tuple[str, int]] = frozenset(
            _url_host_port(url) for url in named_urls if urllib.parse.urlsplit(url).scheme.lower() in _DEFAULT_PORTS)

    def check(self, host: str, port: int) -> list[tuple]:
        """Resolves ``host`` and returns the ``getaddrinfo`` entries that may be used.

        Raises:
            AddressRefused: ``address_not_allowed`` for a metadata server, a link-local
                address, or a non-global address the user did not name;
                ``network`` when the name does not resolve.
        """
        name = _canonical_host(host)
        if not name or not 0 < port < 65536:
            raise AddressRefused("invalid_url", f"bad destination {host!r}:{port}")
        if name in _METADATA_NAMES or name.endswith(".internal"):
            raise AddressRefused("address_not_allowed", f"refusing metadata server host {host!r}")
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise AddressRefused("network", f"cannot resolve {host!r}: {e}") from e
        named = (name, port) in self.named
        allowed = []
        for info in infos:
            ip = _unmap(ipaddress.ip_address(info[4][0].split("%", 1)[0]))
            refusal = self._refusal(ip, named=named)
            if refusal:
                raise AddressRefused("address_not_allowed", f"refusing {host}:{port} ({ip}): {refusal}")
            allowed.append(info)
        if not allowed:
            raise AddressRefused("network", f"no address for {host!r}")
        return allowed

    @staticmethod
    def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, *, named: bool) -> str | None:
        if ip in (_LINK_LOCAL_V4 if ip.version == 4 else _LINK_LOCAL_V6):
            return "link-local addresses (cloud metadata) are never fetched"
        if ip.is_multicast or ip.is_unspecified:
            return "not a unicast address"
        if not ip.is_global and not named:
            return ("loopback/private address not named by the input URL or --video_url_template "
                    "(name this host and port there to allow it)")
        return None


@dataclasses.dataclass(frozen=True)
class Refusal:
    """One destination the guard refused: what was asked and why."""

    host: str
    port: int
    reason: str
    message: str


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        _LOG.debug("guard proxy connection error", exc_info=True)


class GuardProxy:
    """``with GuardProxy(policy, deadline=...) as guard:`` proxies at ``guard.url``.

    Args:
        policy: Destinations allowed.
        deadline: ``time.monotonic()`` value after which every tunnel is closed and
            every request refused; None for no deadline.
        upstream: Optional user proxy ``http://[user:pass@]host:port``; connections are
            made through it with ``CONNECT`` after the policy check.

    Attributes:
        refusals: Destinations refused, in order.
        deadline_hit: True once the deadline closed a tunnel or refused a request.
        connections: Upstream connections made.
        closed_at_deadline: Tunnels that were open when the deadline passed.
    """

    def __init__(self, policy: AddressPolicy, *, deadline: float | None = None, upstream: str | None = None):
        self.policy = policy
        self.deadline = deadline
        self.upstream = _parse_upstream(upstream) if upstream else None
        self.refusals: list[Refusal] = []
        self.deadline_hit = False
        self.connections = 0
        self.closed_at_deadline = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": _ACCEPT_POLL_S},
                                        name="guard-proxy", daemon=True)
        self._open: set[socket.socket] = set()

    def __enter__(self) -> GuardProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @staticmethod
    def check_upstream(url: str) -> None:
        """Raises ValueError for a user proxy the guard cannot chain to (only http:// can)."""
        _parse_upstream(url)

    def start(self) -> GuardProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes every open tunnel; safe to call when never started."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for sock in list(self._open):
                _close(sock)
            self._open.clear()

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None without one; may be negative)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def first_refusal(self) -> Refusal | None:
        with self._lock:
            return self.refusals[0] if self.refusals else None

    # -- internals ---------------------------------------------------------

    def _refuse(self, host: str, port: int, reason: str, message: str) -> None:
        with self._lock:
            self.refusals.append(Refusal(host, port, reason, message))
        _LOG.info("Guard proxy refused %s:%s: %s", host, port, message)

    def _mark_deadline(self, tunnels: int = 0) -> None:
        with self._lock:
            self.deadline_hit = True
            self.closed_at_deadline += tunnels

    def _connect(self, host: str, port: int) -> socket.socket:
        """Policy check, then a connection to a checked address (or via the upstream proxy)."""
        infos = self.policy.check(host, port)
        left = self.remaining()
        timeout = _CONNECT_TIMEOUT_S if left is None else max(0.01, min(_CONNECT_TIMEOUT_S, left))
        if self.upstream is not None:
            return self.upstream.tunnel(host, port, timeout=timeout)
        last: OSError | None = None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UPSTREAM_RCVBUF)
            sock.settimeout(timeout)
            try:
                sock.connect(address)
            except OSError as e:
                sock.close()
                last = e
                continue
            return sock
        raise last or OSError(f"cannot connect to {host}:{port}")

    def _relay(self, client: socket.socket, server: socket.socket, *, rewrite_response: bool = False) -> None:
        """Copies bytes both ways until one side closes or the deadline passes.

        With ``rewrite_response`` (a forwarded plain-http request) the response head
        gets ``Connection: close``: the tunnel serves one request, and a client that
        believed the connection reusable would send its next request (perhaps to
        another host) into a closed socket.
        """
        pending = b"" if rewrite_response else None
        with self._lock:
            self._open.update((client, server))
            self.connections += 1
        try:
            peers = {client: server, server: client}
            while True:
                left = self.remaining()
                if left is not None and left <= 0:
                    self._mark_deadline(tunnels=1)
                    return
                wait = _POLL_S if left is None else min(_POLL_S, left)
                try:
                    readable, _, _ = select.select(list(peers), [], [], wait)
                except (OSError, ValueError):
                    return
                for sock in readable:
                    try:
                        data = sock.recv(1 << 16)
                    except OSError:
                        return
                    if not data:
                        return
                    if sock is server and pending is not None:
                        pending += data
                        if b"\r\n\r\n" not in pending:
                            if len(pending) > _MAX_HEAD:
                                return
                            continue
                        data, pending = _close_response_head(pending), None
                    # A peer that stops reading must not hold the tunnel past the deadline.
                    left = self.remaining()
                    peers[sock].settimeout(_SEND_TIMEOUT_S if left is None else max(0.01, min(_SEND_TIMEOUT_S, left)))
                    try:
                        peers[sock].sendall(data)
                    except OSError:
                        if self.expired():
                            self._mark_deadline(tunnels=1)
                        return
        finally:
            with self._lock:
                self._open.discard(client)
                self._open.discard(server)
            _close(server)
            _close(client)

    def _handler_class(self):
        guard = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                client: socket.socket = self.request
                client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _CLIENT_SNDBUF)
                client.settimeout(_CONNECT_TIMEOUT_S)
                try:
                    head, rest = _read_head(client)
                except (OSError, ValueError):
                    return
                try:
                    method, target, headers = _parse_head(head)
                except ValueError:
                    _reply(client, 400, "bad request")
                    return
                if guard.expired():
                    guard._mark_deadline()
                    _reply(client, 504, "clip deadline passed")
                    return
                try:
                    if method == "CONNECT":
                        host, port = _split_authority(target, default_port=443)
                        upstream = guard._connect(host, port)
                        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        if rest:
                            upstream.sendall(rest)
                    else:
                        parts = urllib.parse.urlsplit(target)
                        if parts.scheme.lower() != "http" or not parts.hostname:
                            raise AddressRefused("invalid_url", f"proxy request for a non-http URL {target!r}")
                        host, port = _url_host_port(target)
                        upstream = guard._connect(parts.hostname, port)
                        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
                        upstream.sendall(_forward_head(method, path, headers) + rest)
                except AddressRefused as e:
                    guard._refuse(target, 0, e.reason, e.message)
                    _reply(client, 403, f"{e.reason}: {e.message}")
                    return
                except (OSError, ValueError) as e:
                    if guard.expired():
                        guard._mark_deadline()
                        _reply(client, 504, "clip deadline passed")
                    else:
                        _reply(client, 502, f"cannot connect: {e}")
                    return
                guard._relay(client, upstream, rewrite_response=method != "CONNECT")

        return Handler


class _Upstream:
    """A user-supplied HTTP proxy the guard connects through with CONNECT."""

    def __init__(self, host: str, port: int, auth: str | None):
        self.host, self.port, self.auth = host, port, auth

    def tunnel(self, host: str, port: int, *, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if self.auth:
            import base64  # pylint: disable=import-outside-toplevel

            lines.append("Proxy-Authorization: Basic " + base64.b64encode(self.auth.encode()).decode())
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head, _ = _read_head(sock)
        status = head.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or status[1] != b"200":
            sock.close()
            raise OSError(f"--proxy refused CONNECT {authority}: {head.splitlines()[0]!r}")
        return sock


def _parse_upstream(url: str) -> _Upstream:
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise ValueError(f"--proxy must be an http:// proxy URL when remote inputs are guarded, got {url!r}")
    auth = None
    if parts.username is not None:
        auth = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    return _Upstream(parts.hostname, parts.port or 8080, auth)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > _MAX_HEAD:
            raise ValueError("request head too large")
        chunk = sock.recv(8192)
        if not chunk:
            raise ValueError("connection closed before the request head ended")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head, rest


def _parse_head(head: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"bad request line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return parts[0].upper(), parts[1], headers


_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate",
                         "te", "trailer", "upgrade"})


def _forward_head(method: str, path: str, headers: list[tuple[str, str]]) -> bytes:
    """The request in origin form; one request per connection (``Connection: close``).

    Closing after one response keeps every request on its own checked connection: a
    client reusing the connection for another host cannot slip past the policy.
    """
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_BY_HOP]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _close_response_head(data: bytes) -> bytes:
    """``data`` (a response head and maybe body bytes) with ``Connection: close``."""
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    kept = [lines[0]] + [line for line in lines[1:]
                         if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive",
                                                                          b"proxy-connection")]
    return b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n" + rest


def _split_authority(target: str, *, default_port: int) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(f"//{target}")
    if not parts.hostname:
        raise AddressRefused("invalid_url", f"bad CONNECT target {target!r}")
    try:
        return parts.hostname, parts.port or default_port
    except ValueError as e:
        raise AddressRefused("invalid_url", f"bad CONNECT target {target!r}") from e


def _reply(sock: socket.socket, status: int, text: str) -> None:
    body = text.encode("utf-8", "replace")
    phrase = http.client.responses.get(status, "Error")
    with contextlib.suppress(OSError):
        sock.sendall(f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


# --------------------------------------------------------------------------
# ffmpeg and downloads through the guard
# --------------------------------------------------------------------------


def ffmpeg_env(proxy_url: str | None = None) -> dict[str, str]:
    """The environment for an ffmpeg that reads remote inputs: no ``no_proxy`` bypass.

    With ``proxy_url`` every http(s) open, nested ones (playlist entries, redirects)
    included, goes through it.
    """
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    if proxy_url:
        env["http_proxy"] = proxy_url
    return env


def ffmpeg_for_ytdlp(ffmpeg: str) -> str:
    """The ffmpeg yt-dlp should run: ``ffmpeg`` itself, or a wrapper when ``no_proxy`` is set.

    yt-dlp runs ffmpeg with a copy of this process's environment, and ffmpeg would
    bypass the guard for hosts listed in ``no_proxy`` (on cloud workers often the
    metadata server itself). When the variable is set, a wrapper script that unsets it
    is written once per process into a private temporary directory (removed at exit);
    one stable path also keeps yt-dlp's per-path version cache to one entry.
    """
    if not any(k.lower() == "no_proxy" for k in os.environ):
        return ffmpeg
    with _WRAPPERS_LOCK:
        path = _WRAPPERS.get(ffmpeg)
        if path is None or not os.path.exists(path):
            directory = tempfile.mkdtemp(prefix="yt8m-ffmpeg-")
            atexit.register(shutil.rmtree, directory, True)
            path = os.path.join(directory, "ffmpeg")
            with open(path, "w", encoding="utf-8") as f:
                f.write(f"#!/bin/sh\nunset no_proxy NO_PROXY\nexec {_sh_quote(ffmpeg)} \"$@\"\n")
            os.chmod(path, stat.S_IRWXU)
            _WRAPPERS[ffmpeg] = path
        return path


_WRAPPERS: dict[str, str] = {}
_WRAPPERS_LOCK = threading.Lock()


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def download(url: str, dest: str, *, guard: GuardProxy, timeout_s: float, max_redirects: int = 5,
             max_bytes: int = MAX_DOWNLOAD_BYTES) -> int:
    """Downloads ``url`` to ``dest`` through ``guard``, following http(s) redirects only.

    The transfer itself is `pipeline.downloads`'; this adds the guard's policy: every hop
    goes through the guard proxy, and a failure is explained by what the guard saw (a refused
    destination, the clip's deadline) before what the client saw.

    Args:
        url: http(s) URL.
        dest: Local file to write.
        guard: The running guard proxy of this clip (policy and deadline).
        timeout_s: Socket timeout of each read.
        max_redirects: Redirects followed before giving up.
        max_bytes: Largest body accepted (a hostile server could fill the disk).

    Returns:
        Bytes written.

    Raises:
        DownloadError: ``invalid_url`` (a redirect to a non-http(s) URL),
            ``address_not_allowed``, ``timeout`` (the guard's deadline passed),
            ``not_found``, ``http_error``, ``too_large`` or ``network``.
    """

    def check_url(hop: str) -> None:
        parts = urllib.parse.urlsplit(hop)
        if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
            raise DownloadError("invalid_url", f"refusing non-http(s) URL {hop!r}")

    def hop_timeout() -> float:
        left = guard.remaining()
        return timeout_s if left is None else max(0.01, min(timeout_s, left))

    try:
        with downloads.open_url(url, timeout=hop_timeout, headers={"User-Agent": "yt8m-pipeline"}, proxy=guard.url,
                                max_redirects=max_redirects, check_url=check_url) as response, \
                open(dest, "wb") as out:
            written = downloads.read_body(response, out.write, url=response.geturl(), max_bytes=max_bytes)
    except downloads.TransferError as error:
        raise _download_failure(guard, error) from None
    if guard.deadline_hit or guard.expired():
        raise DownloadError("timeout", f"{url}: clip deadline passed after {written} bytes")
    return written


def _download_failure(guard: GuardProxy, error: downloads.TransferError) -> DownloadError:
    """The reason of a failed download: the guard's refusal or deadline first, then the client's error."""
    url = error.url
    refusal = guard.first_refusal()
    if error.kind == "status":
        if error.status == 403 and refusal:
            return DownloadError(refusal.reason, refusal.message)
        if error.status in (404, 410):
            return DownloadError("not_found", f"{url}: HTTP {error.status}")
        if error.status == 504 and guard.deadline_hit:
            return DownloadError("timeout", f"{url}: clip deadline passed")
        return DownloadError("http_error", f"{url}: HTTP {error.status}")
    if error.kind in ("redirect", "too_large"):
        return DownloadError("http_error" if error.kind == "redirect" else "too_large", error.message)
    if error.kind == "truncated":
        if guard.deadline_hit or guard.expired():
            return DownloadError("timeout", f"{url}: clip deadline passed after {error.received} bytes")
        return DownloadError("network", f"{url}: truncated body ({error.received} of {error.expected} bytes)")
    if refusal is not None:
        return DownloadError(refusal.reason, refusal.message)
    if guard.deadline_hit or guard.expired():
        return DownloadError("timeout", f"{url}: clip deadline passed")
    if error.kind == "timeout" or isinstance(error.cause, TimeoutError):
        return DownloadError("timeout", f"{url}: no data for the read timeout")
    cause = error.cause if isinstance(error.cause, BaseException) else OSError(error.cause)
    return DownloadError("network", f"{url}: {type(cause).__name__}: {cause}")
