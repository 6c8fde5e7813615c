"""Per-clip media fetcher for Kinetics-style rows (YouTube id, start, end seconds).

The Beam DoFn calls :func:`fetch_clip` once per row. It is a plain function (no
Beam import, no global state beyond caches) so it can be tested against a
loopback server and reused outside the pipeline.

How a clip is fetched (one ``YoutubeDL.extract_info(download=True)`` per attempt):

1. The URL comes from ``FetchConfig.url_template`` with ``{id}`` substituted, so
   a mirror or a test server can stand in for YouTube.
2. yt-dlp resolves it and picks the smallest format whose short side is at
   most ``max_height`` (the RGB model only sees 299x299, so more pixels are
   wasted bandwidth), preferring h264/AAC in MP4.
3. yt-dlp's ``download_ranges`` always asks for ``[start, end]``. A
   ``before_dl`` hook looks at the chosen format(s): if ffmpeg can read their
   protocol and the output container is MP4-family, the section is fetched
   (``method="section"``); otherwise the hook drops the range and the whole
   file is fetched (``method="full"``) for the decoder to trim.
   For a section yt-dlp runs ffmpeg with ``-ss start`` before ``-i`` and
   ``-c copy``: nothing is re-encoded and, with HTTP Range requests, only the
   index and the bytes from the keyframe at or before ``start`` to ``end`` are
   read. ffmpeg shifts timestamps so that ``start`` lands at 0; the packets
   from the keyframe up to ``start`` (needed to decode) get negative
   timestamps, which the MP4 muxer keeps behind an edit list. Demuxers that
   honour the edit list (ffmpeg, OpenCV) present the first frame at or after
   ``start`` at time 0. Matroska/WebM cannot store negative timestamps, so
   ffmpeg would shift the pre-roll to 0 and the position of ``start`` in the
   file would be lost; that is why only MP4-family output is cut.
4. The result is probed with :func:`pipeline.decode.probe.read_header` (``ffmpeg -i``;
   there is no ffprobe, and yt-dlp is kept off every path that wants one) to
   check it is media with a video stream, to find where ``start`` lies in it
   (``FetchResult.start_offset``), and to detect sections cut short by a
   dropped connection, which ffmpeg reports as success. The header travels on
   as ``FetchResult.probe``.

``start_offset`` is measured on the timeline ffmpeg's ``-ss`` uses: seconds
from the container's start time as ``ffmpeg -i`` reports it. For a section it
is ``max(0, -container start)``, normally 0.0 (positive only if a demuxer
exposes pre-roll before 0); seeking there yields the first frame at or after
``start``, and the section's timeline is that frame's, so it can lead the
requested ``start`` by less than one frame. For a full file it is ``start``.

Every remote byte of a clip (yt-dlp's requests, the ffmpeg it runs, the probes
here) goes through one :class:`pipeline.net.guard_proxy.GuardProxy`: destinations are
checked (link-local never; loopback/private only for the template's own host and
port) and ``max_seconds`` is a hard deadline that closes slow transfers. What the
guard saw decides the reason: ``address_not_allowed`` or ``timeout`` rather than
the client's "HTTP 403" or "connection reset". ffmpeg gets network-only protocols
and plain-container formats for stranger-supplied inputs.

Failures are :class:`pipeline.errors.ClipError` with ``stage="fetch"`` and a
stable ``reason`` from :func:`pipeline.fetch.ytdlp.classify_error`. Transient failures (HTTP 5xx,
timeouts, resets, truncated bodies) are retried by :func:`pipeline.net.retry.call`
(exponential backoff, full jitter), bounded by ``max_attempts`` and
``max_seconds``; permanent ones are raised at once. The site pushing back
(``rate_limited``: 429, "try again later", the bot wall) is not a failed attempt:
every attempt waits on the process's pacer for the host and identity
(:mod:`pipeline.net.pacing`, :mod:`pipeline.fetch.identities`) right before yt-dlp's first
request, a push-back makes every fetch of that pacer wait, and a row whose next
start falls past ``max_seconds`` fails ``rate_limited`` without a request. The yt-dlp options, logger,
hooks and error table are in :mod:`pipeline.fetch.ytdlp`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse

import yt_dlp

from pipeline.dataset import fileio
from pipeline.decode import probe
from pipeline.errors import ClipError
from pipeline.fetch import attempt, bounded, identities
from pipeline.fetch.config import FetchConfig, FetchResult, check_url_scheme
from pipeline.fetch.ytdlp import AttemptError
from pipeline.net import address_policy, guard_proxy, netguard, pacing, retry

__all__ = ["download_video", "fetch_clip", "validate_youtube_id"]

_LOG = logging.getLogger(__name__)

_YOUTUBE_ID_RE = re.compile(r"[A-Za-z0-9_-]{11}")

# CR/LF (header injection), other control characters and spaces have no place in a URL.
_CONTROL_RE = re.compile(r"[\x00-\x20\x7f]")


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------


def validate_youtube_id(video_id: str) -> None:
    """Checks that ``video_id`` is a well-formed YouTube id.

    Ids end up in URLs and file names, so anything but the 11-character
    ``[A-Za-z0-9_-]`` alphabet is refused before it reaches either.

    Raises:
        ClipError: reason ``invalid_id``, stage ``read``.
    """
    if not isinstance(video_id, str) or not _YOUTUBE_ID_RE.fullmatch(video_id):
        raise ClipError("invalid_id", f"not an 11-character YouTube id: {video_id!r}", stage="read")


def fetch_clip(*, video_id: str, start: float, end: float, work_dir: str, config: FetchConfig) -> FetchResult:
    """Fetches the ``[start, end]`` seconds of one video into ``work_dir``.

    Scratch files live in a private temporary directory under ``work_dir``,
    removed on every exit path. On success the media file is moved directly
    under ``work_dir`` and returned; deleting it is the caller's job.

    Args:
        video_id: YouTube id (11 chars of ``[A-Za-z0-9_-]``).
        start: Requested start, seconds from the beginning of the video.
        end: Requested end, seconds; must be greater than ``start``.
        work_dir: Local directory for scratch and result files (created if
            missing).
        config: Fetch settings.

    Returns:
        The fetched clip; see :class:`FetchResult`.

    Raises:
        ClipError: ``invalid_id``/``invalid_segment`` (stage ``read``) for bad
            rows; stage ``fetch`` with a reason from :func:`pipeline.fetch.ytdlp.classify_error`
            (``network`` once transient failures exhaust the budget),
            ``invalid_url`` for a refused URL scheme (a redirect to ``file://``
            included), ``address_not_allowed`` for a destination the guard
            refused, ``timeout`` when ``max_seconds`` passed, or ``out_of_range``
            when the video ends before ``start``.
        OSError: ``config.cookies_file`` is unreadable or ``work_dir`` is not
            writable; these affect every clip, so they are not per-clip errors.
    """
    bounded.start(attempt.PRELOAD)  # once per process, before the clip's clock starts
    began = time.monotonic()
    validate_youtube_id(video_id)
    _validate_segment(start, end)
    url = config.url_template.replace("{id}", video_id)
    check_url_scheme(url, allow_file_urls=config.allow_file_urls, error=_invalid_url)
    try:
        policy = address_policy.AddressPolicy([url])
    except address_policy.AddressRefused as e:
        raise ClipError(e.reason, e.message, stage="fetch") from None
    os.makedirs(work_dir, exist_ok=True)
    call = _ClipFetch(video_id=video_id, start=start, end=end, work_dir=work_dir, config=config, url=url,
                      policy=policy, began=began)
    try:
        return call.run()
    finally:
        call.close()


class _ClipFetch:
    """One `fetch_clip` call: its guard, scratch folder, identities and attempt count."""

    def __init__(self, *, video_id: str, start: float, end: float, work_dir: str, config: FetchConfig, url: str,
                 policy: address_policy.AddressPolicy, began: float):
        self.video_id, self.start, self.end, self.work_dir, self.config, self.url = (
            video_id, start, end, work_dir, config, url)
        self.began = began
        # Every remote byte of this clip goes through the guard: address policy, and
        # --fetch_max_seconds as a hard deadline that closes slow transfers too.
        self.deadline = began + config.max_seconds
        self.pool = identities.pool_for(config.cookie_jars, config.proxies or ([config.proxy] if config.proxy else []))
        self.guard = guard_proxy.GuardProxy(policy, deadline=self.deadline, upstream=None)
        self.host = urllib.parse.urlsplit(url).hostname or "?"
        self.interval = pacing.start_interval(config.fetch_rate)
        self.where = f"{video_id} [{start:g}, {end:g}]s"
        self.tries = 0  # every start of the video, rate-limited ones included
        self.push_backs = 0  # starts the site refused (429, the bot wall)
        self.call_dir = tempfile.mkdtemp(prefix=f".fetch-{video_id}-", dir=work_dir)
        self.ffmpeg = ""

    def close(self) -> None:
        self.guard.stop()
        shutil.rmtree(self.call_dir, ignore_errors=True)

    def run(self) -> FetchResult:
        """Attempts with backoff on transient failures; a ClipError with the last reason when they run out."""
        self.guard.start()
        self.ffmpeg = netguard.ffmpeg_for_ytdlp(probe.ffmpeg_exe())

        def log_retry(err: BaseException, number: int, delay: float) -> None:
            _LOG.info("%s, %d attempt(s): transient failure (%s), retrying in %.2fs", self.where, number, err, delay)

        config = self.config
        try:
            result, _ = retry.call(self.attempt, transient=lambda err: isinstance(err, AttemptError) and err.transient,
                                   max_attempts=config.max_attempts, backoff_base=config.backoff_base,
                                   deadline=self.deadline, on_retry=log_retry)
        except AttemptError as err:
            done = f"{self.where}, {err.attempts} attempt(s)"
            if not err.transient:
                raise ClipError(err.reason, f"{done}: {err.message}", stage="fetch") from None
            elapsed = time.monotonic() - self.began
            reason = "rate_limited" if err.reason == "rate_limited" else "network"
            raise ClipError(reason, f"{done} in {elapsed:.1f}s, giving up: {err.message}", stage="fetch") from None
        return result

    def cookies_for(self, identity: identities.Identity) -> str | None:
        """A private copy of the identity's cookies (yt-dlp writes cookies back on close: a shared one races)."""
        path = os.path.join(self.call_dir, f"cookies-{identity.number}.txt")
        if not os.path.exists(path):
            if identity.cookies is not None:
                with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as f:
                    f.write(identity.cookies)
            elif self.config.cookies_file:
                fileio.copy_to_local(self.config.cookies_file, path)  # a gs:// cookies file too
            else:
                return None
        return path

    def attempt(self, number: int) -> FetchResult:
        """One attempt in the retry budget (``number``: its place there).

        A push-back (429, the bot wall) is not a failed attempt: the pacer decides when this row (and
        every other of this host and identity) starts again, until its deadline.
        """
        del number
        while True:
            fetched = self._start_once()
            if fetched is not None:
                break
        path = _claim(fetched.path, work_dir=self.work_dir, video_id=self.video_id, start=self.start, end=self.end)
        figures = dataclasses.replace(fetched.figures, bytes=fetched.figures.bytes or os.path.getsize(path),
                                      seconds=time.monotonic() - self.began, attempts=self.tries)
        return dataclasses.replace(fetched, path=path, figures=figures)

    def _start_once(self) -> FetchResult | None:
        """One paced start of the video; None when the site pushed back and the pacer says wait."""
        config = self.config
        identity = self.pool.current()
        pacer = pacing.pacer_for(self.host, identity.key, interval=self.interval)
        started: list[pacing.Ticket] = []
        _warm_extractors(self.url)

        def pace() -> None:
            # Called right before yt-dlp's first request: the start is timed as the site sees it.
            if pacer.backing_off:  # this row's budget now goes on the site's back-off, whoever was refused
                self.push_backs += 1
            started.append(pacer.acquire(deadline=self.deadline))

        def observe(status: int, retry_after: float | None) -> None:
            if started and (status == 429 or (status == 503 and retry_after is not None)):
                started[0].push_back(retry_after, f"HTTP {status} from {self.host}")

        self.tries += 1
        attempt_dir = os.path.join(self.call_dir, f"attempt{self.tries}")
        os.mkdir(attempt_dir)
        self.guard.set_upstream(identity.proxy)
        self.guard.on_response = observe
        remaining = config.max_seconds - (time.monotonic() - self.began)
        try:
            fetched = attempt.attempt(
                url=self.url, start=self.start, end=self.end, out_dir=attempt_dir, config=config, guard=self.guard,
                ffmpeg=self.ffmpeg, cookies_file=self.cookies_for(identity),
                timeout=max(0.1, min(config.socket_timeout, remaining)), pace=pace)
        except pacing.StillLimited as e:
            shutil.rmtree(attempt_dir, ignore_errors=True)
            err = AttemptError("rate_limited", f"still rate limited when --fetch_max_seconds "
                               f"{config.max_seconds:g} ran out: {e} [{identity.label}]", transient=False)
            err.attempts = self.tries - 1
            raise err from None
        except AttemptError as err:
            shutil.rmtree(attempt_dir, ignore_errors=True)
            self._pushed_back_or_raise(err, started[0] if started else None, identity)
            return None
        finally:
            self.guard.on_response = None
        started[0].succeeded()
        return fetched

    def _pushed_back_or_raise(self, err: AttemptError, ticket: pacing.Ticket | None,
                              identity: identities.Identity) -> None:
        """Returns when the site pushed back (the pacer and the next identity take it over); raises otherwise."""
        if ticket is not None and ticket.pushed and err.transient:
            err.reason = "rate_limited"  # the guard saw the 429 behind a vaguer client error
        err = _guard_verdict(self.guard, err, max_seconds=self.config.max_seconds)
        err.attempts = self.tries
        if err.reason == "timeout" and self.push_backs:
            # The budget went on waiting for the site: the row is rate limited, not slow.
            err = AttemptError("rate_limited", f"still rate limited when --fetch_max_seconds "
                               f"{self.config.max_seconds:g} ran out: the last start timed out after "
                               f"{self.push_backs} push-back(s) ({_short(err.message)})", transient=False)
            err.attempts = self.tries
            raise err from None
        if err.reason != "rate_limited":
            if ticket is not None and not err.transient:
                ticket.succeeded()  # the site answered (a 404 is an answer, not a push-back)
            raise err from None
        self.push_backs += 1
        if ticket is not None:
            ticket.push_back(err.retry_after, _short(err.message))
        self.pool.rotate_from(identity)
        _LOG.info("%s: rate limited (%s) [%s]; waiting for the pacer", self.where, _short(err.message), identity.label)


_WARM: set[str] = set()
_WARM_LOCK = threading.Lock()


def _warm_extractors(url: str) -> None:
    """Matches ``url`` against yt-dlp's extractors once per process and host, before any fetch is paced.

    The first match compiles every extractor's URL pattern (a second or more on a loaded machine);
    done inside the first paced fetches it would delay their requests by that much, and the site
    would see them bunched where the pacer spaced them.
    """
    host = urllib.parse.urlsplit(url).netloc
    with _WARM_LOCK:
        if host in _WARM:
            return
        for ie in yt_dlp.extractor.gen_extractor_classes():
            if ie.suitable(url):
                break
        _WARM.add(host)


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[:limit] + "..."


def _guard_verdict(guard: guard_proxy.GuardProxy, err: AttemptError, *, max_seconds: float) -> AttemptError:
    """What the guard saw beats the client's error text (a refused address looks like HTTP 403 to yt-dlp)."""
    refusal = guard.first_refusal()
    if refusal is not None:
        return AttemptError(refusal.reason, f"{refusal.message} (client said: {err.message})", transient=False)
    if err.reason == "rate_limited":
        return err  # the pacer names the deadline: "still rate limited when --fetch_max_seconds ran out"
    if guard.deadline_hit or guard.expired():
        return AttemptError("timeout", f"--fetch_max_seconds {max_seconds:g} passed: {err.message}",
                             transient=False)
    return err


def download_video(url: str, dest: str, *, config: FetchConfig, sent: dict | None = None) -> int:
    """Downloads an http(s) video of a CSV row to ``dest`` through a guard proxy.

    The same confinement as :func:`fetch_clip`: only the row's own host may be
    loopback/private, link-local never, http(s) redirects only, and
    ``config.max_seconds`` is a hard deadline.

    Returns:
        Bytes written.

    Raises:
        ClipError: stage ``fetch``; reasons ``invalid_url`` (not http(s), or control
            characters such as CR/LF), ``address_not_allowed``, ``timeout``, ``not_found``,
            ``http_error``, ``too_large`` (over ``config.max_bytes``) or ``network``.
    """
    if _CONTROL_RE.search(url):
        # urllib would refuse it as a protocol error ("network"); it is the row's URL that is wrong.
        raise _invalid_url(f"refusing a URL with control characters or spaces: {url!r}")
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise _invalid_url(f"refusing URL scheme in {url!r}; allowed: http, https")
    try:
        policy = address_policy.AddressPolicy([url])
    except address_policy.AddressRefused as e:
        raise ClipError(e.reason, e.message, stage="fetch") from None
    proxy = identities.pool_for(config.cookie_jars, config.proxies or ([config.proxy] if config.proxy else [])
                                ).current().proxy
    with guard_proxy.GuardProxy(policy, deadline=time.monotonic() + config.max_seconds, upstream=proxy) as guard:
        try:
            return netguard.download(url, dest, guard=guard, timeout_s=config.socket_timeout, sent=sent,
                                     max_bytes=config.max_bytes)
        except netguard.DownloadError as e:
            raise ClipError(e.reason, e.message, stage="fetch") from None


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _validate_segment(start: float, end: float) -> None:
    if not (isinstance(start, (int, float)) and isinstance(end, (int, float))
            and math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise ClipError("invalid_segment", f"need 0 <= start < end, got start={start!r} end={end!r}", stage="read")


def _invalid_url(message: str) -> ClipError:
    return ClipError("invalid_url", message, stage="fetch")


def _claim(path: str, *, work_dir: str, video_id: str, start: float, end: float) -> str:
    """Moves the result out of the scratch directory under a unique name."""
    ext = os.path.splitext(path)[1] or ".mp4"
    fd, final = tempfile.mkstemp(prefix=f"{video_id}_{start:g}-{end:g}_", suffix=ext, dir=work_dir)
    os.close(fd)
    try:
        os.replace(path, final)
    except BaseException:
        os.unlink(final)
        raise
    return final
