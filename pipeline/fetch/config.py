"""What a clip fetch is told (`FetchConfig`) and what it gives back (`FetchResult`).

`FetchConfig` is built once by the launcher from the fetch flags (`pipeline.cli.options`), checked
there (a setting that would fail on every clip fails the start instead), pickled to every worker
and read by `pipeline.fetch.clips` and the fetch stage. `FetchResult` is one clip in a local file,
as one yt-dlp attempt, `pipeline.fetch.clips.fetch_clip` and the fetch stage's `ClipFetcher` (kept
clips and mirrors too) give it back.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pipeline.decode.probe import ProbeResult
from pipeline.elements import FetchFigures
from pipeline.fetch import ytdlp
from pipeline.net import guard_proxy, pacing

if TYPE_CHECKING:
    from pipeline.fetch.mirrors import ClipSources

__all__ = ["FetchConfig", "FetchResult", "check_url_scheme"]


@dataclasses.dataclass(frozen=True)
class FetchConfig:
    """How clips are fetched: the fetch stage's config. Picklable, so Beam can ship it to workers.

    Attributes:
        url_template: URL with ``{id}`` replaced by the YouTube id; a mirror or
            loopback server can stand in for YouTube.
        max_height: Largest short side (pixels) worth fetching. The smallest
            format at or below it is preferred, else the smallest above it.
        max_attempts: Attempts per clip, the first included.
        max_seconds: Time budget per clip over all attempts and backoff sleeps,
            and a hard deadline on the clip's network traffic: the guard proxy
            closes every connection when it passes (reason ``timeout``).
        backoff_base: Base of the exponential backoff (seconds); the sleep
            before attempt ``n + 1`` is uniform in ``[0, backoff_base * 2**(n-1)]``
            (full jitter, so many workers hitting one server spread out).
        socket_timeout: Seconds a network read may stall (yt-dlp's
            ``socket_timeout``; ffmpeg's ``-rw_timeout`` for section cuts).
        rate_limit: yt-dlp ``ratelimit`` such as ``"2M"`` (bytes/s). It applies
            to yt-dlp's own downloader (full files); ffmpeg section cuts are
            small and not rate limited.
        cookies_file: Netscape cookies file for yt-dlp. Each call works on a
            private copy because yt-dlp writes cookies back on close and
            concurrent workers would otherwise race on the file.
        proxy: User HTTP proxy (``http://[user:pass@]host:port``). The per-clip
            guard proxy (:mod:`pipeline.net.netguard`) still checks every destination
            and the deadline, then connects through this one; SOCKS is refused.
        allow_file_urls: Allow ``file:`` URLs; only http(s) otherwise, so a
            template cannot be turned into a local-file reader by accident.
        max_bytes: Largest http(s) video row downloaded, and largest fetched clip
            carried to the decoder in one element (``--fetch_max_bytes``); a larger
            one fails ``too_large``.
        max_memory: Resident memory of yt-dlp's child process at which an attempt
            is stopped (``too_large``): a page that inflates to gigabytes.
        extra_ytdlp_options: Extra ``YoutubeDL`` params (e.g. ``extractor_args``,
            ``http_headers``, ``format``/``format_sort`` overrides). Options the
            fetcher depends on are rejected (see ``ytdlp.RESERVED_OPTIONS``).
        fetch_rate: ``N/PERIOD`` (``300/h``): new videos started per identity and
            host in this process, evenly spaced (:mod:`pipeline.net.pacing`).
        cookie_jars: Contents of the ``--cookies`` files, read by the launcher
            (staged: workers cannot read its files). Several: one per identity.
        proxies: User proxies, one per identity (``proxy`` is the one-value form).
        extractor_args: yt-dlp ``--extractor-args`` text (``youtube:player_client=web;po_token=...``).
        clips_dir: Where clips are kept, ``DIR/{label}/{id}.mp4`` (``--clips_dir``, local or
            gs://); a clip already there is used instead of fetched again.
        concurrency: Clips fetched at once per worker process (``--fetch_concurrency``).
        sources: The ``--clip_sources`` mirrors, tried before YouTube
            (:class:`pipeline.fetch.mirrors.ClipSources`).

    Cookies, proxy passwords and tokens never appear in the config's repr.
    """

    url_template: str = "https://www.youtube.com/watch?v={id}"
    max_height: int = 360
    max_attempts: int = 5
    max_seconds: float = 300.0
    backoff_base: float = 1.0
    socket_timeout: float = 30.0
    rate_limit: str | None = None
    cookies_file: str | None = None
    proxy: str | None = dataclasses.field(default=None, repr=False)
    allow_file_urls: bool = False
    max_bytes: int = 64 << 20
    max_memory: int = 1 << 30
    extra_ytdlp_options: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    fetch_rate: str | None = None
    cookie_jars: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    proxies: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    extractor_args: str | None = dataclasses.field(default=None, repr=False)
    clips_dir: str | None = None
    concurrency: int = 4
    sources: ClipSources | None = None

    def __post_init__(self) -> None:
        """Rejects settings that would fail on every clip, before any worker runs."""
        if "{id}" not in self.url_template:
            raise ValueError(f"url_template must contain '{{id}}': {self.url_template!r}")
        check_url_scheme(self.url_template.replace("{id}", "a" * 11), allow_file_urls=self.allow_file_urls,
                          error=ValueError)
        if self.max_height < 1:
            raise ValueError(f"max_height must be >= 1, got {self.max_height}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        if not self.backoff_base >= 0:
            raise ValueError(f"backoff_base must be >= 0, got {self.backoff_base}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")
        if not self.socket_timeout > 0:
            raise ValueError(f"socket_timeout must be > 0, got {self.socket_timeout}")
        for proxy in ([self.proxy] if self.proxy is not None else []) + list(self.proxies):
            guard_proxy.GuardProxy.check_upstream(proxy)
        if self.fetch_rate is not None:
            pacing.parse_rate(self.fetch_rate)
        if self.extractor_args:
            ytdlp.parse_extractor_args(self.extractor_args)
        if self.rate_limit is not None and ytdlp.parse_rate(self.rate_limit) is None:
            raise ValueError(f"rate_limit must look like '500K' or '2M', got {self.rate_limit!r}")
        reserved = sorted(ytdlp.RESERVED_OPTIONS.intersection(self.extra_ytdlp_options))
        if reserved:
            raise ValueError(f"extra_ytdlp_options may not set {reserved}; use the FetchConfig fields")


@dataclasses.dataclass(frozen=True)
class FetchResult:
    """A clip in a local file. ``path`` belongs to the caller, who must delete it.

    Attributes:
        path: Local media file (directly under ``work_dir`` for `fetch_clip`).
        start_offset: Seconds from the beginning of ``path`` (the container
            start time, the origin of ffmpeg's ``-ss``) to the requested
            ``start``; the decoder seeks there accurately.
        duration: Requested ``end - start`` in seconds; None for the rest of the file.
        figures: What it cost (`pipeline.elements.FetchFigures`: method, bytes
            yt-dlp reported, or for a section the size of the cut file ffmpeg
            wrote; wall time, retries and waits included; attempts).
        probe: The header of ``path`` as the fetcher read it (local, strict
            whitelists), or None when ``path`` is not the file it probed. A
            decoder can check it with :func:`pipeline.decode.probe.check_decodable`
            instead of probing the file again.
    """

    path: str
    start_offset: float
    duration: float | None
    figures: FetchFigures
    probe: ProbeResult | None = dataclasses.field(default=None, compare=False, repr=False)


def check_url_scheme(url: str, *, allow_file_urls: bool, error: Callable[[str], Exception]) -> None:
    """Refuses anything but http(s) (and file: when allowed) after substitution."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    allowed = {"http", "https"} | ({"file"} if allow_file_urls else set())
    if scheme not in allowed:
        raise error(f"refusing URL scheme {scheme!r} in {url!r}; allowed: {sorted(allowed)}")
