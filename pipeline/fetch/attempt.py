"""One attempt at a clip: yt-dlp in a bounded child, then the checks of what it wrote.

`attempt` runs yt-dlp's extraction and download in a child process bounded by the clip's deadline
and memory (`pipeline.fetch.bounded`), with the options `build_params` gives it; then it probes the
result (is it media, where does ``start`` lie in it, was the section cut short), falling back to
the whole file when a section cut from a server without Range requests is not media. Failures are
`pipeline.fetch.ytdlp.AttemptError`s; `pipeline.fetch.clips` decides on retries and pacing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yt_dlp
from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

from pipeline.decode import probe
from pipeline.decode.probe import ProbeResult
from pipeline.elements import FetchFigures
from pipeline.fetch import bounded, ytdlp
from pipeline.fetch.config import FetchConfig, FetchResult
from pipeline.fetch.ytdlp import AttemptError
from pipeline.net import guard_proxy

__all__ = ["PRELOAD", "attempt", "build_params"]

_LOG = logging.getLogger(__name__)

PRELOAD = ("pipeline.fetch.ytdlp_preload",)
"""What the forkserver of the bounded yt-dlp children imports once (yt-dlp made ready)."""

# A section's length as probed is compared with what was asked for, and packet boundaries (one
# video frame, one audio frame) make it differ slightly.
_DURATION_SLACK_S = 0.5

_PROBE_TIMEOUT_S = 60.0

# The yt-dlp child may outlive the guard's deadline by this much (to report the guard's verdict).
_CHILD_GRACE_S = 2.0




def attempt(*, url: str, start: float, end: float, out_dir: str, config: FetchConfig, guard: guard_proxy.GuardProxy,
             ffmpeg: str, cookies_file: str | None, timeout: float, force_full: bool = False,
             pace: Callable[[], None] = lambda: None) -> FetchResult:
    """Resolves, downloads and checks the clip once; raises AttemptError on failure.

    ``ffmpeg`` is what yt-dlp runs (see :func:`pipeline.net.netguard.ffmpeg_for_ytdlp`);
    the probes here run the real binary with :func:`pipeline.net.netguard.ffmpeg_env`. ``pace`` waits for the
    pacer right before the first request.
    A section cut that is not media is tried again as a whole-file download (``force_full``):
    a static server without Range requests (``python -m http.server``) serving an MP4 whose
    index is at its end gives ffmpeg's cut nothing it can seek in.
    """
    net = ytdlp.FormatProbe(guard=guard, allow_file_urls=config.allow_file_urls)
    # yt-dlp parses pages in the process that calls it, where neither the deadline nor memory can
    # stop it (a gzip bomb page): it runs in a child process bounded in both (pipeline.fetch.bounded).
    # The pacer is this worker process's, shared by its fetch threads: it is waited for here.
    pace()  # may raise pacing.StillLimited: no request is made
    try:
        run = bounded.call(_extract, {"url": url, "start": start, "end": end, "out_dir": out_dir, "config": config,
                                      "proxy": guard.url, "ffmpeg": ffmpeg, "cookies_file": cookies_file,
                                      "timeout": timeout, "force_full": force_full},
                           deadline=(guard.deadline if guard.deadline is not None else time.monotonic()
                                     + config.max_seconds) + _CHILD_GRACE_S,
                           max_memory=config.max_memory, preload=PRELOAD)
    except bounded.Exceeded as e:
        if e.kind == "timeout":
            raise AttemptError("timeout", f"yt-dlp {e.message}", transient=False) from None
        if e.kind == "memory":
            raise AttemptError("too_large", f"yt-dlp's extraction of {url} {e.message} (a page or playlist of that "
                                            "size is not a video page)", transient=False) from None
        raise AttemptError("network", f"yt-dlp {e.message}", transient=True) from None
    if run["error"] is not None:
        reason, message, transient = run["error"]
        raise AttemptError(reason, message, transient=transient)
    done, method, counted, formats = run["done"], run["method"], run["bytes"], run["formats"]
    retry_full = {"url": url, "start": start, "end": end, "out_dir": out_dir, "config": config, "guard": guard,
                  "ffmpeg": ffmpeg, "cookies_file": cookies_file, "timeout": timeout}
    if run["ytdlp_error"] is not None:
        text = run["ytdlp_error"]
        if not (formats and re.search(r"ffmpeg exited with code", text)):
            failed = AttemptError.from_message(text)
            failed.retry_after = run["retry_after"]
            raise failed from None
        found = ytdlp.diagnose_ffmpeg_failure(text, formats, net=net, timeout=timeout)
        if found.reason != "not_video" or method != "section":
            raise found from None
        ranged, sent = _ask_the_server(formats, guard=guard, timeout=timeout)
        if ranged is not False:
            raise AttemptError("not_video", found.message + sent, transient=False) from None
        # What ffmpeg read through the URL is not media it can cut: without Range
        # support an index at the file's end is out of its reach. The whole file decides.
        _LOG.debug("%s: the section cut failed (%s); fetching the whole file", url, found.message)
        return _attempt_full(**retry_full)

    if not done or done.get("_type", "video") != "video" or method is None:
        kind = done.get("_type") if done else None
        raise AttemptError("not_video", f"{url} resolved to {kind or 'nothing'}, not one video", transient=False)
    path = ytdlp.downloaded_path(done)
    media = probe.read_header(path, input_args=probe.STRANGER_FILE_ARGS, timeout=_PROBE_TIMEOUT_S)
    if not media.ok or not media.has_video:
        ranged, sent = _ask_the_server(formats, guard=guard, timeout=timeout)
        if method == "section" and ranged is False:
            _LOG.debug("%s: the section cut is not media (%s); fetching the whole file", url, media.summary())
            return _attempt_full(**retry_full)
        raise AttemptError("not_video", f"the downloaded file ({os.path.getsize(path):,} bytes) is not a video"
                           f"{sent}: {media.summary()}", transient=False)
    if method == "full":
        if media.duration is not None and media.duration <= start:
            raise AttemptError("out_of_range", f"video is {media.duration:g}s long, clip starts at {start:g}s",
                                transient=False)
        offset = float(start)
    else:
        offset = max(0.0, -media.start)
        _check_section_length(media=media, offset=offset, start=start, end=end, source_duration=run["duration"],
                              formats=run["formats"], net=net, timeout=timeout)
    return FetchResult(path=path, start_offset=offset, duration=float(end - start),
                       figures=FetchFigures(method, bytes=counted, attempts=1), probe=media)


def _extract(*, url: str, start: float, end: float, out_dir: str, config: FetchConfig, proxy: str, ffmpeg: str,
             cookies_file: str | None, timeout: float, force_full: bool = False) -> dict[str, Any]:
    """One ``extract_info(download=True)``, in the bounded child; returns plain data only.

    Keys: ``done`` (``_type`` and ``requested_downloads`` of yt-dlp's answer), ``method``,
    ``formats`` and ``duration`` (the planner's), ``bytes`` (downloaded), and either
    ``error`` ((reason, message, transient) of an AttemptError) or ``ytdlp_error`` (its text).
    """
    logger = ytdlp.CapturingLogger()
    counter = ytdlp.ByteCounter()
    ranges = ytdlp.SectionRanges(start, end)
    planner = ytdlp.CutPlanner(start=start, ranges=ranges, force_full=force_full)
    params = build_params(config, out_dir=out_dir, logger=logger, hook=counter, ffmpeg=ffmpeg,
                          cookies_file=cookies_file, timeout=timeout, proxy=proxy)
    params["download_ranges"] = ranges
    out: dict[str, Any] = {"done": None, "method": None, "formats": (), "duration": None, "bytes": 0, "error": None,
                           "ytdlp_error": None, "retry_after": None}
    # FFmpegFD.available() and the section-downloader choice ignore the
    # `ffmpeg_location` param and read this context variable; there is no
    # ffmpeg on PATH. Set per call (contextvars are per thread) and restored.
    token = FFmpegPostProcessor._ffmpeg_location.set(ffmpeg)
    try:
        with yt_dlp.YoutubeDL(params) as ydl:
            ydl.add_post_processor(planner, when="before_dl")
            try:
                done = ydl.extract_info(url, download=True)
                if done:
                    out["done"] = {"_type": done.get("_type", "video"), "requested_downloads": [
                        {"filepath": d.get("filepath")} for d in done.get("requested_downloads") or []]}
            except yt_dlp.utils.YoutubeDLError as exc:
                out["ytdlp_error"] = ytdlp.error_text(exc, logger)
                out["retry_after"] = ytdlp.retry_after_of(exc)
    except AttemptError as err:
        out["error"] = (err.reason, err.message, err.transient)
    finally:
        FFmpegPostProcessor._ffmpeg_location.reset(token)
    out.update(method=planner.method, formats=_plain(planner.formats), duration=ranges.duration, bytes=counter.total)
    return out


def build_params(config: FetchConfig, *, out_dir: str, logger: ytdlp.CapturingLogger, hook: Callable[..., None],
                 ffmpeg: str, cookies_file: str | None, timeout: float, proxy: str) -> dict[str, Any]:
    """Builds YoutubeDL params: quiet, no internal retries (the fetcher's retry loop owns them)."""
    params: dict[str, Any] = {
        # Short side <= max_height, else the smallest available; h264/aac in
        # MP4 decode everywhere and allow section cuts (see the module docstring).
        "format": "bv+ba/b",
        "format_sort": [f"res:{config.max_height}", "vcodec:h264", "acodec:aac", "ext:mp4:m4a"],
        # Before the extra options, so that a caller can pick another runtime (node, ...).
        "js_runtimes": ytdlp.js_runtimes(),
        **dict(config.extra_ytdlp_options),
        "logger": logger,
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "color": {"stdout": "no_color", "stderr": "no_color"},
        "progress_hooks": [hook],
        "paths": {"home": out_dir, "temp": out_dir},
        "outtmpl": {"default": "clip.%(ext)s"},
        "merge_output_format": "mp4",
        "noplaylist": True,
        # A page that resolves to a playlist is reported, never bulk-downloaded.
        "extract_flat": "in_playlist",
        "overwrites": True,
        "continuedl": False,
        "updatetime": False,
        "fixup": "never",
        "retries": 0,
        "fragment_retries": 0,
        "extractor_retries": 0,
        "socket_timeout": timeout,
        "ffmpeg_location": ffmpeg,
        # Bounds every network read of the ffmpeg yt-dlp runs for sections; network
        # protocols only (no local file from a playlist or redirect), plain containers
        # (and HLS, whose segments the protocol list keeps on the network).
        "external_downloader_args": {"ffmpeg_i": [
            "-rw_timeout", str(int(timeout * 1e6)),
            "-protocol_whitelist", probe.network_protocols(config.allow_file_urls),
            "-format_whitelist", probe.UNTRUSTED_FORMATS + ",hls"]},
        # The merger reads the files yt-dlp downloaded: local, plain containers only.
        "postprocessor_args": {"merger+ffmpeg_i": list(probe.STRANGER_FILE_ARGS)},
        # All of yt-dlp's traffic and its ffmpeg's goes through the clip's guard proxy.
        "proxy": proxy,
        "enable_file_urls": config.allow_file_urls,
    }
    if config.rate_limit is not None:
        params["ratelimit"] = ytdlp.parse_rate(config.rate_limit)
    if cookies_file is not None:
        params["cookiefile"] = cookies_file
    if config.extractor_args:
        merged = {ie: dict(args) for ie, args in (params.get("extractor_args") or {}).items()}
        for ie, args in ytdlp.parse_extractor_args(config.extractor_args).items():
            merged.setdefault(ie, {}).update(args)
        params["extractor_args"] = merged
    return params


def _plain(formats: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    """The chosen formats as JSON-like data (yt-dlp's dicts may hold functions, which do not pickle)."""
    return tuple(json.loads(json.dumps(dict(f), default=repr)) for f in formats)


def _attempt_full(*, out_dir: str, **kwargs: Any) -> FetchResult:
    """The same attempt as a whole-file download, in a folder of its own."""
    full_dir = os.path.join(out_dir, "full")
    os.makedirs(full_dir, exist_ok=True)
    return attempt(out_dir=full_dir, force_full=True, **kwargs)


def _ask_the_server(formats: Sequence[Mapping[str, Any]], *, guard: guard_proxy.GuardProxy,
                    timeout: float) -> tuple[bool | None, str]:
    """(whether the chosen format's server honours Range, `` (from SERVER: HTTP ..., Content-Type ...)``).

    One request for the first byte (``Range: bytes=0-0``): when a fetched file is not media, the
    server that sent it is the one to blame, not the video; and only a server without Range
    support deserves the whole-file fallback. (None, "") when there is no http(s) URL to ask.
    """
    from pipeline.net import downloads  # pylint: disable=import-outside-toplevel

    # Only a plain file over http(s) can lack Range support; playlists (HLS) are not whole files.
    url = next((f.get("url") for f in formats if f.get("protocol") in ("http", "https")
                and str(f.get("url", "")).startswith(("http://", "https://"))), None)
    if not url:
        return None, ""
    try:
        with downloads.open_url(url, timeout=min(timeout, 10.0), proxy=guard.url,
                                headers={"User-Agent": "yt8m-pipeline", "Range": "bytes=0-0"}) as response:
            headers = response.headers
            host = urllib.parse.urlsplit(response.geturl()).netloc
            ranged = response.status == 206
            size = (headers.get("Content-Range") or "").rpartition("/")[2] if ranged else headers.get("Content-Length")
            return ranged, (f" (from {host}: HTTP {200 if ranged else response.status}, Content-Type "
                            f"{headers.get('Content-Type') or 'none'}, Content-Length {size or 'none'}, "
                            f"Accept-Ranges {'bytes' if ranged else 'none'})")
    except Exception as e:  # pylint: disable=broad-except  (only a better message is lost)
        return None, f" (from {urllib.parse.urlsplit(url).netloc}; asking it again failed: {type(e).__name__})"


def _check_section_length(*, media: ProbeResult, offset: float, start: float, end: float,
                          source_duration: float | None, formats: Sequence[Mapping[str, Any]],
                          net: ytdlp.FormatProbe, timeout: float) -> None:
    """Detects sections cut short (ffmpeg exits 0 when the server drops mid-body)."""
    have = (media.duration or 0.0) - offset
    if have >= (end - start) - _DURATION_SLACK_S:
        return
    if source_duration is None and formats and formats[0].get("url"):
        source = net.probe(formats[0], timeout=timeout)
        source_duration = source.duration if source.ok else None
    if source_duration is not None:
        if source_duration <= start:
            raise AttemptError("out_of_range", f"video is {source_duration:g}s long, clip starts at {start:g}s",
                                transient=False)
        if have >= min(end, source_duration) - start - _DURATION_SLACK_S:
            return  # The video ends before `end`; the section is complete.
    raise AttemptError("network", f"section truncated: got {have:.2f}s of {end - start:g}s", transient=True)
