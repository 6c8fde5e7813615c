"""HTTP downloads in one place: open a URL, follow redirects, stream the body, classify failures.

Three tools fetch over HTTP: the model artifact resolver (`pipeline.features.artifacts`), the
YouTube-8M partition downloader (`pipeline.download_yt8m`) and the remote-video fetcher
(`pipeline.net.netguard.download`, through the per-clip guard proxy). They share the mechanics here:

* `open_url` opens a URL with urllib, optionally through a given HTTP proxy (then the
  environment's proxy settings, ``no_proxy`` included, are ignored: a guard proxy must see every
  hop), and follows at most ``max_redirects`` redirects itself, letting the caller check each
  new URL before it is requested.
* `read_body` streams a response into a sink in chunks, with an optional byte limit and stop
  event, and checks the length against ``Content-Length`` (``HTTPResponse.read(n)`` returns
  short data instead of raising when a peer closes early).
* every network failure becomes a `TransferError` whose ``kind`` says what happened and whose
  ``cause`` is the underlying exception; `is_transient_status` says which HTTP statuses are
  worth retrying.

Each caller keeps its own policy on top (retries, failure reasons and messages, what a refusal
of the guard means): this module decides nothing beyond the mechanics.
"""

from __future__ import annotations

import base64
import http.client
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from email.message import Message
from typing import IO

__all__ = [
    "PERMANENT_STATUSES",
    "TransferError",
    "is_transient_status",
    "open_url",
    "read_body",
    "retry_after_seconds",
]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Client errors that retrying cannot fix; other 4xx except 408/425/429 are permanent too.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 451})
_RETRYABLE_4XX = frozenset({408, 425, 429})
_DEFAULT_CHUNK = 1 << 16


class TransferError(Exception):
    """A download failed; ``kind`` says how, ``cause`` is the underlying exception if any.

    Kinds:
        ``status``: the server answered with an HTTP error (``status``, ``reason``, ``headers``).
        ``connect``: no response: the connection or the request failed (urllib's ``URLError``;
            ``cause`` is its reason, a timeout when connecting timed out).
        ``timeout``: a read timed out (waiting for the response head, or for a body chunk).
        ``network``: any other network or protocol error.
        ``incomplete``: the connection closed in the middle of a chunked body.
        ``truncated``: the body length differs from ``Content-Length`` (``received``, ``expected``).
        ``too_large``: the body exceeded the byte limit.
        ``redirect``: a redirect without ``Location`` or one too many (``status``: the 3xx code).
        ``stopped``: the stop event was set.

    Attributes:
        url: The URL being fetched when it failed (after any redirects).
        received: Body bytes received before the failure.
    """

    def __init__(self, kind: str, url: str, message: str, *, cause: BaseException | str | None = None,
                 status: int | None = None, reason: str = "", headers: Message | None = None, received: int = 0,
                 expected: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.url = url
        self.message = message
        self.cause = cause
        self.status = status
        self.reason = reason
        self.headers = headers
        self.received = received
        self.expected = expected

    def summary(self, *, timeout_s: float | None = None) -> str:
        """The failure in a few words for a message: ``HTTP 404 Not Found``, ``no answer within 10 s``, ..."""
        cause = self.cause
        if self.kind in ("status", "redirect"):
            return f"HTTP {self.status} {self.reason}".rstrip()
        if self.kind == "connect":
            return f"network error: {cause}"
        if self.kind == "timeout":
            return f"no answer within {timeout_s:g} s" if timeout_s is not None else "no answer in time"
        if self.kind == "truncated":
            return f"truncated: received {self.received} of {self.expected} bytes"
        return f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else self.message


def is_transient_status(status: int) -> bool:
    """Whether an HTTP error status may go away on a retry (5xx, 408, 425, 429; 3xx left unresolved)."""
    return not (status in PERMANENT_STATUSES or (400 <= status < 500 and status not in _RETRYABLE_4XX))


def retry_after_seconds(headers: Message | Mapping[str, str] | None) -> float | None:
    """The ``Retry-After`` delay in whole seconds, or None (absent, or given as a date)."""
    value = headers.get("Retry-After") if headers else None
    return float(value.strip()) if value and value.strip().isdigit() else None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Hands 3xx responses back to `open_url`, which follows them itself (checked and counted)."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,  # noqa: D102 - urllib's hook
                         msg: str, headers: Message, newurl: str) -> None:
        return None


def _opener(proxy: str | None) -> urllib.request.OpenerDirector:
    # With a proxy of our own, an empty ProxyHandler keeps http_proxy/no_proxy from the
    # environment out of it; without one, urllib's default (the environment's proxies) stays.
    handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
    if proxy is not None:
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def _request(url: str, headers: Mapping[str, str], proxy: str | None) -> urllib.request.Request:
    request = urllib.request.Request(url, headers=dict(headers))
    if proxy is not None:
        # Public Request API: http goes to the proxy in absolute form, https through CONNECT
        # (urllib moves a Proxy-Authorization header onto the CONNECT request).
        parts = urllib.parse.urlsplit(proxy)
        request.set_proxy(parts.hostname + (f":{parts.port}" if parts.port else ""), "http")
        if parts.username is not None:
            credential = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            request.add_header("Proxy-Authorization", "Basic " + base64.b64encode(credential.encode()).decode())
    return request


def open_url(url: str, *, timeout: float | Callable[[], float], headers: Mapping[str, str] | None = None,
             proxy: str | None = None, max_redirects: int = 10,
             check_url: Callable[[str], None] | None = None) -> http.client.HTTPResponse:
    """Opens ``url`` for a GET and returns the response of the last redirect hop.

    Args:
        url: http(s) URL.
        timeout: Socket timeout in seconds (connect and each read), or a function giving it
            before each hop (a deadline that shrinks).
        headers: Request headers (User-Agent, ...).
        proxy: ``http://host:port`` of a proxy every hop goes through (the environment's proxy
            settings are then ignored); None for urllib's defaults.
        max_redirects: Redirects followed before giving up.
        check_url: Called with ``url`` and with every redirect target before it is requested;
            it raises (its own exception) to refuse one.

    Returns:
        The open response (a context manager); the caller reads and closes it.

    Raises:
        TransferError: ``status``, ``connect``, ``timeout``, ``network`` or ``redirect``.
        Whatever ``check_url`` raises.
    """
    opener = _opener(proxy)
    status = None
    for _ in range(max_redirects + 1):
        if check_url is not None:
            check_url(url)
        try:
            return opener.open(_request(url, headers or {}, proxy),
                               timeout=timeout() if callable(timeout) else timeout)
        except urllib.error.HTTPError as error:
            location = error.headers.get("Location") if error.headers else None
            status, reason, error_headers = error.code, str(error.reason), error.headers
            error.close()
            if status not in REDIRECT_STATUSES:
                raise TransferError("status", url, f"HTTP {status} for {url}", cause=error, status=status,
                                    reason=reason, headers=error_headers) from None
            if not location:
                raise TransferError("redirect", url, f"redirect without Location from {url}", status=status,
                                    headers=error_headers) from None
            url = urllib.parse.urljoin(url, location)
        except urllib.error.URLError as error:
            raise TransferError("connect", url, f"{url}: {error.reason}", cause=error.reason) from None
        except TimeoutError as error:
            raise TransferError("timeout", url, f"timed out waiting for {url}", cause=error) from None
        except (http.client.HTTPException, OSError) as error:
            raise TransferError("network", url, f"{url}: {error}", cause=error) from None
    raise TransferError("redirect", url, f"more than {max_redirects} redirects from {url}", status=status)


def read_body(response: http.client.HTTPResponse, sink: Callable[[bytes], object], *, url: str,
              chunk_bytes: int = _DEFAULT_CHUNK, max_bytes: int | None = None,
              stop: threading.Event | None = None) -> int:
    """Streams the body into ``sink(chunk)`` and returns the bytes received.

    A failing sink (a full disk) raises its own error unchanged: a local write error is not a
    network error to retry.

    Args:
        response: From `open_url`.
        sink: Receives each chunk in order.
        url: For messages.
        chunk_bytes: Largest read.
        max_bytes: Largest body accepted (a hostile server could fill the disk); the chunk that
            crosses it is not passed to ``sink``.
        stop: Checked before each read; once set the transfer is abandoned.

    Raises:
        TransferError: ``stopped``, ``timeout``, ``incomplete``, ``network``, ``too_large`` or
            ``truncated``.
    """
    expected = response.headers.get("Content-Length")
    received = 0
    while True:
        if stop is not None and stop.is_set():
            raise TransferError("stopped", url, f"{url}: stopped after {received} bytes", received=received)
        try:
            chunk = response.read(chunk_bytes)
        except TimeoutError as error:
            raise TransferError("timeout", url, f"timed out reading {url} after {received} bytes", cause=error,
                                received=received) from None
        except http.client.IncompleteRead as error:
            raise TransferError("incomplete", url, f"{url}: connection closed mid-body after {received} bytes",
                                cause=error, received=received) from None
        except (http.client.HTTPException, OSError) as error:
            raise TransferError("network", url, f"{url} after {received} bytes: {error}", cause=error,
                                received=received) from None
        if not chunk:
            break
        received += len(chunk)
        if max_bytes is not None and received > max_bytes:
            raise TransferError("too_large", url, f"{url}: more than {max_bytes} bytes", received=received)
        sink(chunk)
    if expected is not None and expected.isdigit() and received != int(expected):
        raise TransferError("truncated", url, f"{url}: got {received} of {expected} bytes", received=received,
                            expected=int(expected))
    return received
