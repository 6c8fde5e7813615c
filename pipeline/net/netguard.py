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

The pieces: `pipeline.net.address_policy` (which destinations), `pipeline.net.guard_proxy` (the
proxy), and here the ffmpeg environment and `download` (over `pipeline.net.downloads`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
import threading
import urllib.parse

from pipeline.net import downloads
from pipeline.net.address_policy import DEFAULT_PORTS
from pipeline.net.guard_proxy import GuardProxy

__all__ = [
    "NETWORK_PROTOCOLS", "STRANGER_FORMATS", "DownloadError", "download", "ffmpeg_env",
    "ffmpeg_for_ytdlp"
]

# ffmpeg protocols a remote input may use: "httpproxy" is how ffmpeg's tls reaches
# https through the guard (CONNECT); no "file", "concat", "subfile", "data", ...
NETWORK_PROTOCOLS = "http,https,tcp,tls,crypto,httpproxy"

# Demuxers for stranger-supplied bytes: plain media containers only. No hls, dash,
# concat, ffconcat, image2 or other formats that open further files by name.
STRANGER_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,ogg,asf,wav,mp3,aac"

# Largest remote video row downloaded (a 300-s clip of 4K video is well under it).
MAX_DOWNLOAD_BYTES = 8 << 30


class DownloadError(Exception):
    """:func:`download` failed; ``reason`` is a failure-report reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


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
             max_bytes: int = MAX_DOWNLOAD_BYTES, sent: dict | None = None) -> int:
    """Downloads ``url`` to ``dest`` through ``guard``, following http(s) redirects only.

    The transfer itself is `pipeline.net.downloads`'; this adds the guard's policy: every hop
    goes through the guard proxy, and a failure is explained by what the guard saw (a refused
    destination, the clip's deadline) before what the client saw.

    Args:
        url: http(s) URL.
        dest: Local file to write.
        guard: The running guard proxy of this clip (policy and deadline).
        timeout_s: Socket timeout of each read.
        max_redirects: Redirects followed before giving up.
        max_bytes: Largest body accepted (a hostile server could fill the disk).
        sent: Filled with what the server said it sent (``url`` of the last hop, ``content_type``),
            so a body that is not media can be blamed on the server that sent it.

    Returns:
        Bytes written.

    Raises:
        DownloadError: ``invalid_url`` (a redirect to a non-http(s) URL),
            ``address_not_allowed``, ``timeout`` (the guard's deadline passed),
            ``not_found``, ``http_error``, ``too_large`` or ``network``.
    """

    def check_url(hop: str) -> None:
        parts = urllib.parse.urlsplit(hop)
        if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
            raise DownloadError("invalid_url", f"refusing non-http(s) URL {hop!r}")

    def hop_timeout() -> float:
        left = guard.remaining()
        return timeout_s if left is None else max(0.01, min(timeout_s, left))

    try:
        with downloads.open_url(url, timeout=hop_timeout, headers={"User-Agent": "yt8m-pipeline"}, proxy=guard.url,
                                max_redirects=max_redirects, check_url=check_url) as response, \
                open(dest, "wb") as out:
            if sent is not None:
                sent.update(url=response.geturl(), content_type=response.headers.get("Content-Type") or "none")
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
