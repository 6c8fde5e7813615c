"""yt-dlp for the clip fetcher: its options, logger and hooks, and what its error messages mean.

:mod:`pipeline.fetch.attempt` runs one ``YoutubeDL.extract_info(download=True)`` per attempt; this module
holds what that call is made of (see the fetcher's docstring for the section/full decision) and
:func:`classify_error`, which maps yt-dlp's, YouTube's and ffmpeg's error text to the fetch
stage's stable reasons and whether another attempt can help, and :class:`FormatProbe`, which
reads a chosen format's header as yt-dlp would reach it (its headers, through the clip's guard)
to name the reason when the ffmpeg yt-dlp ran fails without one.

yt-dlp's own retries (``retries``, ``fragment_retries``, ``extractor_retries``) stay at 0: they
retry a request or fragment on the URL already extracted, inside one attempt, and do not reach
the ffmpeg that cuts sections. The fetcher's loop (:mod:`pipeline.net.retry`) extracts afresh on
every attempt (a throttled or expired media URL is replaced), and the guard's deadline bounds
the whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import re
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import yt_dlp
from yt_dlp.downloader.external import FFmpegFD
from yt_dlp.postprocessor.common import PostProcessor
from yt_dlp.utils import download_range_func

from pipeline.decode import probe
from pipeline.net import guard_proxy, netguard
from pipeline.net.pacing import parse_retry_after

# Containers whose muxer keeps negative timestamps (edit lists), so a
# stream-copied cut keeps `start` at timestamp 0. See pipeline.fetch.clips's docstring.
_SECTION_CONTAINERS = frozenset({"mp4", "m4v", "mov"})
# yt-dlp options the fetcher relies on; `extra_ytdlp_options` may not set them,
# because changing them would break file placement, error capture, the retry
# policy or the section logic.
RESERVED_OPTIONS = frozenset({
    "logger", "quiet", "noprogress", "progress_hooks", "outtmpl", "paths",
    "download_ranges", "ffmpeg_location", "retries", "fragment_retries",
    "extractor_retries", "fixup", "cookiefile", "proxy", "ratelimit",
    "socket_timeout", "enable_file_urls", "external_downloader_args",
    "merge_output_format", "overwrites", "continuedl", "noplaylist", "extract_flat",
    "simulate", "skip_download", "ignoreerrors",
})

# (reason, transient, pattern), first match wins, so the order matters:
# specific YouTube reasons come before generic "unavailable" (the removal
# messages also say "unavailable"), "private" comes before "sign in" (the
# private message says "Sign in if you've been granted access"), and a country
# block by a rights holder ("blocked it in your country on copyright grounds")
# is a country block, not a copyright takedown, because the video exists.
# The site pushing back (HTTP 429, "rate-limited", "try again later", the "confirm you're
# not a bot" wall) comes first of all: it is about this identity and this moment, not the
# video (YouTube's rate-limit text also says "Video unavailable"), so it is retried once the
# pacer (pipeline.net.pacing) allows, never filed as gone for good. Age and membership walls
# ("Sign in to confirm your age", members-only) stay `unavailable_sign_in`.
_ERROR_TABLE: tuple[tuple[str, bool, re.Pattern[str]], ...] = tuple(
    (reason, transient, re.compile(pattern, re.IGNORECASE))
    for reason, transient, pattern in (
        ("rate_limited", True,
         r"HTTP Error 429\b|Server returned 429|\b429 Too Many Requests|Too Many Requests"
         r"|rate[- ]?limit(?:ed|ing)?\b|try again later|not a bot|unusual traffic"),
        ("unavailable_private", False,
         r"private video|video is private|been made private"),
        ("unavailable_country_block", False,
         r"in your country|from your location|geo[- ]?restrict|not available in your region"),
        ("unavailable_spam", False,
         r"spam|deceptive practices|scams"),
        ("unavailable_nudity", False,
         r"nudity|sexual content"),
        ("unavailable_harassment", False,
         r"harassment|bullying"),
        ("unavailable_harmful", False,
         r"harmful|dangerous content|violent or graphic|child safety|violent criminal"),
        ("unavailable_copyright", False,
         r"copyright"),
        ("unavailable_terms_of_service", False,
         r"terms of service"),
        ("unavailable_guidelines", False,
         r"community guidelines|hate speech"),
        ("unavailable_user_removed", False,
         r"removed by the (?:user|uploader)|account associated with this video has been"
         r"|closed their (?:youtube )?account|account has been terminated|channel (?:was|has been) removed"),
        ("unavailable_sign_in", False,
         r"sign in to confirm|confirm your age|age[- ]restricted|inappropriate for some users"
         r"|members[- ]only|channel'?s members|premium members|requires payment"
         r"|registered users|login required|account authentication is required"),
        ("not_found", False,
         r"HTTP Error 40[4]\b|HTTP Error 410\b|Server returned 404|\b404 Not Found|does not exist"
         r"|Incomplete YouTube ID"),
        # A redirect or format URL leading off http(s) (file://, ...): refused by yt-dlp or
        # by ffmpeg's protocol whitelist. Before "network": it is never worth a retry.
        ("invalid_url", False,
         r"Protocol '\w+' not on whitelist|No connection adapters were found for '(?!https?:)"
         r"|file:// URLs are disabled|Unsupported url scheme|No suitable request handler"),
        ("network", True,
         r"HTTP Error (?:403|408|425|5\d\d)\b|Server returned (?:403|5XX|5\d\d)"
         r"|timed out|\btimeout\b|Connection (?:reset|refused|aborted)"
         r"|reset by peer|Remote end closed|RemoteDisconnected|IncompleteRead|incomplete read"
         r"|content too short|Did not get any data blocks|Stream ends prematurely|truncated"
         r"|Temporary failure in name resolution|Name or service not known|Network is unreachable"
         r"|No route to host|Broken pipe|EOF occurred in violation|Input/output error"
         r"|Unable to connect to proxy|Connection to .* failed|The downloaded file is empty"),
        ("not_video", False,
         r"Unsupported URL|Invalid data found when processing input|moov atom not found"
         r"|no video stream|EBML header parsing failed|not a media file"),
        ("unavailable", False,
         r"unavailable|not available|no longer available|has been removed|live event will begin"
         r"|premieres in|DRM protected|this live stream recording"),
    )
)


def classify_error(message: str) -> tuple[str, bool]:
    """Maps a yt-dlp/YouTube/ffmpeg error message to ``(reason, transient)``.

    The failure report groups clips by ``reason``, so reasons are stable
    snake_case words; ``transient`` says whether another attempt can help.
    Transient failures are reported as ``network`` once retries run out, except
    ``rate_limited`` (the site pushing back), which keeps its reason.
    HTTP 403 counts as transient: from YouTube it usually means an expired or
    throttled media URL, which the next attempt's fresh extraction replaces.

    Args:
        message: Error text (yt-dlp's ``DownloadError`` text, ffmpeg stderr or
            the fetcher's own message).

    Returns:
        ``(reason, transient)``; ``("other", False)`` for unknown messages, so
        unknown failures are reported rather than retried blindly.
    """
    for reason, transient, pattern in _ERROR_TABLE:
        if pattern.search(message):
            return reason, transient
    return "other", False


class AttemptError(Exception):
    """One failed attempt, already classified; never leaves the fetcher (it becomes a ClipError)."""

    def __init__(self, reason: str, message: str, *, transient: bool):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = transient
        self.attempts = 0  # set by the fetcher: the attempt it ended
        self.retry_after: float | None = None  # a server's Retry-After, seconds (pipeline.net.retry reads it)

    @classmethod
    def from_message(cls, message: str) -> AttemptError:
        """The error for yt-dlp's error text, with the reason and transience `classify_error` gives it."""
        reason, transient = classify_error(message)
        return cls(reason, message, transient=transient)


def retry_after_of(exc: BaseException | None) -> float | None:
    """The Retry-After (seconds) of the HTTP response behind a yt-dlp error, when it carries one.

    yt-dlp wraps its ``networking.exceptions.HTTPError`` (which holds the response) in an
    ``ExtractorError``/``DownloadError``; over https the guard only relays a tunnel and cannot read
    the header itself, so this is where the pacer learns it.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
        if headers is not None and getattr(exc, "status", getattr(response, "status", None)) in (429, 503):
            with contextlib.suppress(Exception):
                value = parse_retry_after(headers.get("Retry-After"))
                if value is not None:
                    return value
        info = getattr(exc, "exc_info", None)
        exc = (getattr(exc, "cause", None) or (info[1] if info else None) or exc.__cause__ or exc.__context__)
    return None



# --------------------------------------------------------------------------
# yt-dlp plumbing: logger, hooks, section planner, options
# --------------------------------------------------------------------------


class CapturingLogger:
    """yt-dlp logger that prints nothing and keeps the text errors need.

    yt-dlp's error text is the input to :func:`classify_error`; its progress
    and info chatter is kept only as recent context for debugging.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.recent: deque[str] = deque(maxlen=30)

    def debug(self, msg: str) -> None:
        """Kept among the recent lines only (yt-dlp sends its progress and info chatter here too)."""
        self.recent.append(msg)

    def info(self, msg: str) -> None:
        """Kept among the recent lines only."""
        self.recent.append(msg)

    def warning(self, msg: str) -> None:
        """Kept in `warnings`, which the failure message may quote."""
        self.warnings.append(msg)

    def error(self, msg: str) -> None:
        """Kept in `errors` (blank ones dropped): the text `classify_error` reads."""
        if msg.strip():
            self.errors.append(msg.strip())


class ByteCounter:
    """Progress hook summing yt-dlp's final byte counts per downloaded file."""

    def __init__(self) -> None:
        self._by_file: dict[str, int] = {}

    def __call__(self, status: Mapping[str, Any]) -> None:
        """Notes the size of each file yt-dlp reports finished (a file reported twice counts once)."""
        if status.get("status") == "finished":
            size = status.get("downloaded_bytes") or status.get("total_bytes") or 0
            self._by_file[str(status.get("filename"))] = int(size)

    @property
    def total(self) -> int:
        """Bytes downloaded so far, over every finished file."""
        return sum(self._by_file.values())


class SectionRanges:
    """``download_ranges`` callable: always asks for [start, end] and notes the duration.

    yt-dlp calls it once per video after format selection, with the video's
    info dict, which is where the source duration is known.
    """

    def __init__(self, start: float, end: float):
        self._ranges = download_range_func(None, [(start, end)])
        self.duration: float | None = None

    def __call__(self, info: Mapping[str, Any], ydl: yt_dlp.YoutubeDL) -> Any:
        """Notes the video's duration from `info`; returns yt-dlp's range of [start, end]."""
        self.duration = _positive(info.get("duration"))
        return self._ranges(info, ydl)


class CutPlanner(PostProcessor):
    """``before_dl`` hook: sees the chosen format(s) and decides section or full.

    Running inside the one ``extract_info(download=True)`` call keeps a single
    extraction per attempt. When the cut cannot keep ``start`` at timestamp 0
    (see pipeline.fetch.clips's docstring) it drops the section fields, which makes yt-dlp
    download the whole file with its own downloader.
    """

    def __init__(self, *, start: float, ranges: SectionRanges, force_full: bool = False):
        super().__init__(None)
        self._force_full = force_full
        self._start = start
        self._ranges = ranges
        self.method: str | None = None
        self.formats: tuple[dict[str, Any], ...] = ()

    def run(self, information: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        """Keeps a section cut when the format allows it, else drops the section fields (full download).

        Returns:
            yt-dlp's `([files to delete], info)`: nothing to delete, `information` updated in place.

        Raises:
            AttemptError: `out_of_range` when the clip starts at or after the video's end.
        """
        self.formats = tuple(dict(f) for f in information.get("requested_formats") or [information])
        duration = self._ranges.duration
        if duration is not None and self._start >= duration:
            raise AttemptError("out_of_range", f"video is {duration:g}s long, clip starts at {self._start:g}s",
                                transient=False)
        if can_cut(information) and not self._force_full:
            self.method = "section"
            self._keep_cookies_off_the_command_line()
        else:
            self.method = "full"
            information.pop("section_start", None)
            information.pop("section_end", None)
        return [], information


    def _keep_cookies_off_the_command_line(self) -> None:
        """Forgets the cookies yt-dlp would hand the section's ffmpeg as ``-cookies``.

        yt-dlp passes the cookies matching a format URL to ffmpeg on its command line, where
        every local user can read them (``/proc/PID/cmdline``). Media URLs (YouTube's
        googlevideo.com) need none; the page's cookies were used for the extraction already.
        """
        jar = getattr(self._downloader, "cookiejar", None)
        if jar is None:
            return
        for fmt in self.formats:
            url = fmt.get("url")
            if not url:
                continue
            for cookie in list(jar.get_cookies_for_url(url)):
                with contextlib.suppress(KeyError):
                    jar.clear(cookie.domain, cookie.path, cookie.name)


@functools.lru_cache(maxsize=1)
def deno_exe() -> str | None:
    """Path of the deno binary of the pinned ``deno`` wheel; None when it is not installed.

    The wheel puts the binary in the environment's scripts folder (or ``bin/`` beside a
    ``pip install --target``), which is not on PATH for ``.venv/bin/python -m pipeline.build``
    or on a Dataflow worker, so the path is found from the package and handed to yt-dlp.
    """
    try:
        import deno  # pylint: disable=import-outside-toplevel  # optional at import: only YouTube needs it
    except ImportError:
        return None
    # One lookup at a time: the fetch pool's threads reach here together on a worker's first clips, and
    # the lookup reads sysconfig, whose first call fills its table unguarded (another thread then saw
    # EXE as None and the row failed with a TypeError).
    with _DENO_LOOKUP:
        try:
            path = deno.find_deno_bin()
        except FileNotFoundError:
            return None
    return path if os.access(path, os.X_OK) else None


_DENO_LOOKUP = threading.Lock()


def js_runtimes() -> dict[str, dict[str, str]]:
    """yt-dlp's ``js_runtimes`` param: deno at its package path (yt-dlp's own lookup when not installed).

    YouTube's players need their challenges solved in JavaScript (yt-dlp's EJS scripts from the
    ``yt-dlp-ejs`` package, run by deno); without a runtime, formats go missing.
    """
    path = deno_exe()
    return {"deno": {"path": path} if path else {}}


def parse_extractor_args(text: str) -> dict[str, dict[str, list[str]]]:
    """``IE_KEY:ARG=V1,V2;ARG2=V3`` (yt-dlp's ``--extractor-args``; several separated by spaces) as params.

    yt-dlp's own option parser does the parsing, so the syntax is exactly its CLI's.

    Raises:
        ValueError: a value yt-dlp's parser refuses (the message never quotes the value: it may
            hold a PO token).
    """
    argv: list[str] = []
    for part in text.split():
        if ":" not in part or not part.split(":", 1)[0]:
            raise ValueError("--yt_dlp_extractor_args must look like IE_KEY:ARG=VALUE[;ARG=VALUE] "
                             "(e.g. youtube:player_client=web)")
        argv += ["--extractor-args", part]
    try:
        parsed = yt_dlp.parse_options(argv).ydl_opts.get("extractor_args") or {}
    except (SystemExit, Exception) as e:  # its parser exits on bad input
        raise ValueError("--yt_dlp_extractor_args could not be parsed by yt-dlp "
                         "(IE_KEY:ARG=VALUE[;ARG=VALUE])") from e
    return {ie: {k: list(v) for k, v in args.items()} for ie, args in parsed.items()}


def can_cut(info: Mapping[str, Any]) -> bool:
    """Whether yt-dlp can fetch only a section and keep `start` at timestamp 0."""
    protocol = info.get("protocol")
    if not protocol or info.get("is_live"):
        return False
    return FFmpegFD.supports({**info, "protocol": protocol}) and info.get("ext") in _SECTION_CONTAINERS


def downloaded_path(done: Mapping[str, Any] | None) -> str:
    """The file yt-dlp reports it wrote; an empty or missing one is a transient failure."""
    downloads = (done or {}).get("requested_downloads") or []
    path = downloads[0].get("filepath") if downloads else None
    if not path or not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise AttemptError("network", "yt-dlp reported success but the downloaded file is empty", transient=True)
    return path


# yt-dlp's `bug_reports_message()`: on an offline or blocked machine it is the wrong advice (the
# failure is the network's, not a yt-dlp bug, and `yt-dlp -U` would replace the pinned version).
_BUG_REPORT_RE = re.compile(r"[;.]?\s*please report this issue on\s.*?yt-dlp -U\S*", re.IGNORECASE | re.DOTALL)


def strip_bug_report_advice(text: str) -> str:
    """`text` without yt-dlp's "please report this issue ... yt-dlp -U" sentence."""
    return _BUG_REPORT_RE.sub("", text).strip()


def error_text(exc: BaseException, logger: CapturingLogger) -> str:
    """yt-dlp's error message without its "ERROR:" prefix (the last logged error if it has none)
    and without its bug-report advice."""
    text = str(exc).strip() or (logger.errors[-1] if logger.errors else type(exc).__name__)
    return strip_bug_report_advice(re.sub(r"^ERROR:\s*", "", text))


def parse_rate(rate: str) -> int | None:
    """Bytes per second of a yt-dlp rate such as "500K" or "2M"; None when it is not one."""
    value = yt_dlp.utils.parse_bytes(rate)
    return int(value) if value and value > 0 else None


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 and math.isfinite(number) else None


# --------------------------------------------------------------------------
# Looking at a chosen format's URL with ffmpeg, as yt-dlp would reach it
# --------------------------------------------------------------------------


def diagnose_ffmpeg_failure(text: str, formats: Sequence[Mapping[str, Any]], *, net: FormatProbe,
                             timeout: float) -> AttemptError:
    """Classifies a failed section cut, whose ffmpeg stderr yt-dlp does not capture.

    yt-dlp only says "ffmpeg exited with code N", so each input is probed again
    with stderr captured: an HTTP error, a timeout or non-media data there names
    the reason; if every input probes fine, the failure was in transit.
    """
    for fmt in formats:
        if not fmt.get("url"):
            continue
        found = net.probe(fmt, timeout=timeout)
        if not found.ok:
            reason, transient = classify_error(found.tail)
            if reason == "other":  # Unknown ffmpeg complaint: give it another try.
                reason, transient = "network", True
            return AttemptError(reason, f"{text}; probe: {found.tail}", transient=transient)
        if not found.has_video and fmt.get("vcodec") != "none":
            return AttemptError("not_video", f"{text}; probe found no video stream", transient=False)
    return AttemptError("network", f"{text}; inputs probe fine, treating as a transfer failure", transient=True)


def _http_input_args(fmt: Mapping[str, Any], timeout: float) -> list[str]:
    """ffmpeg input options mirroring what yt-dlp sends for this format."""
    args = ["-rw_timeout", str(int(timeout * 1e6))]
    headers = fmt.get("http_headers") or {}
    if headers and re.match(r"https?://", fmt.get("url", "")):
        args += ["-headers", "".join(f"{k}: {v}\r\n" for k, v in headers.items())]
    return args


@dataclasses.dataclass(frozen=True)
class FormatProbe:
    """How the fetcher's own ffmpeg probes reach a format URL: through the clip's guard."""

    guard: guard_proxy.GuardProxy
    allow_file_urls: bool

    def probe(self, fmt: Mapping[str, Any], *, timeout: float) -> probe.ProbeResult:
        """Reads the header at ``fmt["url"]`` with yt-dlp's headers, bounded by the guard's deadline."""
        limit = _probe_timeout(timeout)
        left = self.guard.remaining()
        if left is not None:
            limit = max(0.5, min(limit, left + 1.0))
        args = [*_http_input_args(fmt, timeout), "-protocol_whitelist", probe.network_protocols(self.allow_file_urls),
                "-format_whitelist", probe.UNTRUSTED_FORMATS + ",hls"]
        return probe.read_header(fmt["url"], input_args=args, timeout=limit, env=netguard.ffmpeg_env(self.guard.url))


def _probe_timeout(timeout: float) -> float:
    # A probe makes a couple of requests, each bounded by -rw_timeout.
    return 4 * timeout + 10.0
