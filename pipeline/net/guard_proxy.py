"""The guard proxy: one small HTTP proxy per clip through which every remote byte goes.

See `pipeline.net.netguard` (which re-exports `GuardProxy` and `Refusal`) for what it guards
against. For each connection it asks the address policy (`pipeline.net.address_policy`), connects
to the checked address itself (or through the user's ``--proxy`` with ``CONNECT``), relays
bytes both ways and closes every tunnel when the clip's deadline passes.

Its port on 127.0.0.1 is open to every local user, so each proxy has a credential of its own
(random, per clip): a request without ``Proxy-Authorization: Basic`` for it gets 407 and no
connection anywhere. The clients get it in the proxy URL (``guard.url``: yt-dlp's ``proxy``,
ffmpeg's ``http_proxy`` environment variable, urllib's header), never on a command line.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hmac
import http.client
import logging
import secrets
import select
import socket
import socketserver
import threading
import time
import urllib.parse
from collections.abc import Callable

from pipeline.net.address_policy import AddressPolicy, AddressRefused, url_host_port

_LOG = logging.getLogger("pipeline.net.netguard")  # the name its log lines always had

_USER = "clip"  # the user name of every guard's credential; the secret is per proxy
_MAX_HEAD = 64 * 1024
_CONNECT_TIMEOUT_S = 15.0
_POLL_S = 0.25  # how often an idle tunnel looks at the deadline
_SEND_TIMEOUT_S = 60.0  # a tunnel whose reader stops for this long is closed
_ACCEPT_POLL_S = 0.02  # how long stop() may wait for the accept loop (once per clip)
# Socket buffers of a tunnel. They bound the bytes a server sends that the client never
# reads when it hangs up early (a seek, a finished section); 256 KiB upstream still
# allows ~25 MB/s at 10 ms round trip (a 360p section needs ~0.1 MB/s).
_UPSTREAM_RCVBUF = 256 * 1024
_CLIENT_SNDBUF = 64 * 1024


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

    def handle_error(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        """A client's broken connection: logged at DEBUG, the proxy keeps serving the others."""
        _LOG.debug("guard proxy connection error", exc_info=True)


# Refusals already logged in this process, by (reason, host): a blocked run of 30 rows says so once,
# not 60 times. Bounded, so a CSV of a million hostile hosts cannot grow it without end.
_LOGGED_REFUSALS: set[tuple[str, str]] = set()
_LOGGED_REFUSALS_LOCK = threading.Lock()
_MAX_LOGGED_REFUSALS = 1000


def _first_of_its_kind(reason: str, host: str) -> bool:
    if "://" in host:  # a plain-http request names its whole URL: the destination is its host
        host = urllib.parse.urlsplit(host).hostname or host
    with _LOGGED_REFUSALS_LOCK:
        key = (reason, host)
        if key in _LOGGED_REFUSALS or len(_LOGGED_REFUSALS) >= _MAX_LOGGED_REFUSALS:
            return False
        _LOGGED_REFUSALS.add(key)
        return True


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
        unauthorized: Requests refused (407) for a missing or wrong credential.
        connections: Upstream connections made.
        closed_at_deadline: Tunnels that were open when the deadline passed.
    """

    def __init__(self, policy: AddressPolicy, *, deadline: float | None = None, upstream: str | None = None):
        self.policy = policy
        self.deadline = deadline
        self.upstream = _parse_upstream(upstream) if upstream else None
        self.refusals: list[Refusal] = []
        self.deadline_hit = False
        self.unauthorized = 0
        self._secret = secrets.token_urlsafe(24)
        self._authorization = "Basic " + base64.b64encode(f"{_USER}:{self._secret}".encode()).decode()
        self.connections = 0
        self.closed_at_deadline = 0
        # Called as on_response(status, retry_after) for each plain-http response head the guard
        # relays (the fetcher feeds 429s to its pacer); https is a tunnel whose heads it cannot read.
        self.on_response: Callable[[int, float | None], None] | None = None
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
        """The proxy with its credential, `http://clip:SECRET@127.0.0.1:PORT`: what yt-dlp, ffmpeg and urllib get."""
        return f"http://{_USER}:{self._secret}@127.0.0.1:{self._server.server_address[1]}"

    @property
    def address(self) -> str:
        """The proxy's address without the credential, `http://127.0.0.1:PORT`, for messages."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def set_upstream(self, upstream: str | None) -> None:
        """Connections from now on go through ``upstream`` (another identity's proxy), or directly."""
        self.upstream = _parse_upstream(upstream) if upstream else None

    @property
    def proxy_authorization(self) -> str:
        """The `Proxy-Authorization` header value this proxy accepts."""
        return self._authorization

    def _authorized(self, headers: list[tuple[str, str]]) -> bool:
        given = [v for k, v in headers if k.lower() == "proxy-authorization"]
        return len(given) == 1 and hmac.compare_digest(given[0].encode("latin-1"), self._authorization.encode())

    @staticmethod
    def check_upstream(url: str) -> None:
        """Raises ValueError for a user proxy the guard cannot chain to (only http:// can)."""
        _parse_upstream(url)

    def start(self) -> GuardProxy:
        """Starts serving on a background thread; returns the proxy (what `with` does on entry)."""
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
        """True once the deadline has passed (never without one): the caller stops its fetch."""
        left = self.remaining()
        return left is not None and left <= 0

    def first_refusal(self) -> Refusal | None:
        """The first destination refused so far (its reason becomes the clip's failure), or None."""
        with self._lock:
            return self.refusals[0] if self.refusals else None

    # -- internals ---------------------------------------------------------

    def _refuse(self, host: str, port: int, reason: str, message: str) -> None:
        with self._lock:
            self.refusals.append(Refusal(host, port, reason, message))
        if _first_of_its_kind(reason, host):
            _LOG.info("Guard proxy refused %s:%s: %s (logged once per destination and reason; every row's "
                      "refusal is in the failure report)", host, port, message)
        else:
            _LOG.debug("Guard proxy refused %s:%s: %s", host, port, message)

    def _observe(self, head: bytes) -> None:
        """Hands a relayed response's status and Retry-After to ``on_response``."""
        callback = self.on_response
        if callback is None:
            return
        lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        status = lines[0].split()
        if len(status) < 2 or not status[1].isdigit():
            return
        retry_after = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"retry-after":
                from pipeline.net.pacing import parse_retry_after  # pylint: disable=import-outside-toplevel

                retry_after = parse_retry_after(value.decode("latin-1"))
        try:
            callback(int(status[1]), retry_after)
        except Exception:  # pylint: disable=broad-except  (an observer never breaks the relay)
            _LOG.debug("guard proxy response observer failed", exc_info=True)

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
                        self._observe(pending)
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
                if not guard._authorized(headers):
                    # ffmpeg asks without a credential first and retries with it after the 407.
                    with guard._lock:
                        guard.unauthorized += 1
                    _reply(client, 407, "proxy authentication required",
                           extra='Proxy-Authenticate: Basic realm="clip"\r\n')
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
                        host, port = url_host_port(target)
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
        from pipeline.fetch.identities import redact_url  # pylint: disable=import-outside-toplevel

        raise ValueError("--proxy must be an http:// proxy URL when remote inputs are guarded, "
                         f"got {redact_url(url)!r}")
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


def _reply(sock: socket.socket, status: int, text: str, *, extra: str = "") -> None:
    body = text.encode("utf-8", "replace")
    phrase = http.client.responses.get(status, "Error")
    with contextlib.suppress(OSError):
        sock.sendall(f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                     f"{extra}Connection: close\r\n\r\n".encode() + body)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
