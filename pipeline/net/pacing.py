"""Pacing new video fetches per destination host: a shared pacer per worker process.

At scale the fetcher is bounded by the site, not by the CPU: YouTube lets one session start
a few hundred videos an hour and answers the rest with HTTP 429, "try again later" or the
"confirm you're not a bot" wall. Every fetch of one worker process that goes to one host
with one identity (:mod:`pipeline.fetch.identities`) shares one :class:`Pacer`, which decides when
the next *new video* (a fetch attempt: one page request and the media reads that follow it)
may start:

* ``--fetch_rate N/PERIOD`` spaces starts evenly, ``PERIOD/N`` apart (plus 5% slack: the time
  from a start to its page request reaching the site varies). Evenly spaced starts stay inside
  a sliding-window limit of N per PERIOD, which a burst of N followed by a pause does not,
  and a long period (``300/h``) never makes a row wait an hour for the next window.
* When the site pushes back (a 429 or 503 the guard proxy sees, yt-dlp's HTTP error, or the
  rate-limit/bot-wall text: reason ``rate_limited``) every fetch of the pacer waits: until
  the server's ``Retry-After`` when it sent one (with up to 10% jitter so processes do not
  return together), else an exponential backoff with jitter that grows with each push-back
  in a row. The gap between starts doubles too (multiplicative decrease of the rate), and
  each video fetched takes an eighth of the base gap off again (slow additive increase): an
  AIMD loop that settles just under what the site allows.
* A start that cannot happen before its row's deadline (``--fetch_max_seconds``) is refused
  at once (:class:`StillLimited`): the row fails ``rate_limited`` without a request, so a wall
  sees a bounded number of requests however many rows are queued.

This is a token bucket of depth one (GCRA) with a server-driven block on top. Libraries such
as pyrate-limiter count requests in windows; none also takes a server's Retry-After, backs off
multiplicatively, and tells a caller before it waits whether its slot falls before its
deadline, so the few lines are written here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable

_LOG = logging.getLogger(__name__)

_SLACK = 1.05  # evenly spaced starts a little wider than PERIOD/N: the network's jitter must not break the limit
BASE_GAP_S = 1.0  # the gap between new videos after the first push-back when no --fetch_rate is given
MAX_GAP_S = 120.0
BASE_BACKOFF_S = 2.0  # the first wait after a push-back without Retry-After
MAX_BACKOFF_S = 600.0
_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0, "d": 86400.0,
          "day": 86400.0}
_RATE_RE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]*)\s*", re.IGNORECASE)


def parse_rate(text: str) -> tuple[int, float]:
    """``N/PERIOD`` (``300/h``, ``4/4s``, ``10/90s``, ``1000/1d``) as ``(N, period seconds)``.

    Raises:
        ValueError: with a one-line explanation.
    """
    match = _RATE_RE.fullmatch(text or "")
    unit = match.group(3).lower() if match else ""
    if not match or unit not in _UNITS or not (match.group(2) or unit):
        raise ValueError(f"--fetch_rate must look like N/PERIOD, e.g. 300/h or 4/4s (units s, m, h, d), got {text!r}")
    count, period = int(match.group(1)), float(match.group(2) or 1.0) * _UNITS[unit]
    if count < 1 or not (math.isfinite(period) and period > 0):
        raise ValueError(f"--fetch_rate needs N >= 1 and a period > 0, got {text!r}")
    return count, period


def start_interval(rate: str | None) -> float:
    """Seconds between evenly spaced new videos for a ``--fetch_rate`` (0.0 without one)."""
    if not rate:
        return 0.0
    count, period = parse_rate(rate)
    return period / count * _SLACK


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds of a Retry-After header value (delta-seconds or an HTTP date), capped at a day; None if absent."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return min(float(value), 86400.0)
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        when = email.utils.parsedate_to_datetime(value).timestamp()
        return min(max(0.0, when - (time.time() if now is None else now)), 86400.0)
    return None


class StillLimited(Exception):
    """The pacer's next start falls after the caller's deadline; ``wait`` is how far off it is."""

    def __init__(self, host: str, wait: float, why: str):
        super().__init__(f"the next request to {host} is allowed in {wait:.1f}s ({why})")
        self.host, self.wait, self.why = host, wait, why


@dataclasses.dataclass
class Ticket:
    """One started video: report its outcome once (the first report counts, later ones are ignored)."""

    pacer: Pacer
    started: float = 0.0  # the pacer's clock when this video started
    outcome: str | None = None  # "pushed_back" or "succeeded" once reported

    def push_back(self, retry_after: float | None = None, why: str = "pushed back") -> None:
        """The site pushed back on this video (429, bot wall): every fetch of the pacer waits."""
        if self.outcome is None:
            self.outcome = "pushed_back"
            self.pacer.pushed_back(retry_after, why, started=self.started)

    def succeeded(self) -> None:
        """The video was fetched: the pacer speeds up a little."""
        if self.outcome is None:
            self.outcome = "succeeded"
            self.pacer.succeeded()

    @property
    def pushed(self) -> bool:
        """True once this ticket reported a push-back."""
        return self.outcome == "pushed_back"


class Pacer:
    """When the next new video to one host (with one identity) may start; thread-safe.

    Args:
        host: The destination, for messages.
        interval: Seconds between evenly spaced starts (``--fetch_rate``); 0 for no cap.
        clock: Monotonic seconds. rng: jitter source.
    """

    def __init__(self, host: str, *, interval: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None):
        self.host = host
        self.interval = interval
        self.pushbacks = 0
        self.starts = 0
        self._clock = clock
        self._rng = rng or random.Random()
        self._cond = threading.Condition()
        self._next = -math.inf  # earliest start of the next new video
        self._blocked_until = -math.inf  # set by a push-back: nobody starts before it
        self._gap = 0.0  # the push-back gap between starts (on top of `interval`)
        self._streak = 0  # push-backs since the last success
        self._last_pushback = -math.inf
        self._why = "--fetch_rate"

    @property
    def backing_off(self) -> bool:
        """Whether the site pushed back since the last video fetched (a start now waits on the back-off)."""
        return self._streak > 0

    def acquire(self, deadline: float | None = None) -> Ticket:
        """Waits for this fetch's start; returns its ticket.

        Raises:
            StillLimited: the start would fall after ``deadline`` (a ``clock`` time); raised
                without waiting, and again whenever a push-back moves the start past it.
        """
        with self._cond:
            while True:
                now = self._clock()
                slot = max(now, self._next, self._blocked_until)
                if deadline is not None and slot > deadline:
                    why = (self._why if self._blocked_until >= self._next else
                           "pacing after push-back" if self._gap > self.interval else "--fetch_rate")
                    raise StillLimited(self.host, slot - now, why)
                if slot <= now:
                    self._next = now + max(self.interval, self._gap)
                    self.starts += 1
                    return Ticket(self, started=now)
                self._cond.wait(timeout=slot - now)  # a push-back or a success wakes it to look again

    def pushed_back(self, retry_after: float | None, why: str = "pushed back", *,
                    started: float | None = None) -> None:
        """The site said slow down: block every start for Retry-After (or a growing backoff), widen the gap.

        Videos already in flight at the last push-back (``started`` before it) hit the same wall:
        their push-backs extend the block but do not slow down (or back off) again, so one
        congestion event halves the rate once, as TCP's AIMD does per round trip.
        """
        with self._cond:
            now = self._clock()
            self.pushbacks += 1
            same_event = started is not None and started < self._last_pushback
            self._last_pushback = now
            if not same_event:
                self._streak += 1
            if retry_after is not None:
                wait = retry_after * self._rng.uniform(1.0, 1.1)
                self._why = f"{why}, Retry-After {retry_after:g}s"
            else:
                cap = min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** min(self._streak - 1, 20))
                wait = self._rng.uniform(cap / 2, cap)
                self._why = f"{why}, no Retry-After: backing off {wait:.0f}s after {self._streak} push-back(s) in a row"
            self._blocked_until = max(self._blocked_until, now + wait)
            if not same_event:
                self._gap = min(MAX_GAP_S, max(2 * self._gap, 2 * self.interval, BASE_GAP_S))
            self._cond.notify_all()
        _LOG.info("%s pushed back (%s): new videos wait %.1fs, then start at least %.1fs apart",
                  self.host, why, wait, self._gap)

    def succeeded(self) -> None:
        """A video was fetched: the push-back streak ends and the gap shrinks by an eighth of its base."""
        with self._cond:
            self._streak = 0
            if self._gap > 0:
                step = max(self.interval, BASE_GAP_S) / 8
                self._gap = 0.0 if self._gap - step <= self.interval else self._gap - step
            self._cond.notify_all()


_PACERS: dict[tuple, Pacer] = {}
_PACERS_LOCK = threading.Lock()


def pacer_for(host: str, identity: str = "", *, interval: float = 0.0) -> Pacer:
    """This process's pacer for ``host`` and ``identity`` (a label, never a secret), created on first use."""
    key = (host.lower(), identity, interval)
    with _PACERS_LOCK:
        pacer = _PACERS.get(key)
        if pacer is None:
            pacer = _PACERS[key] = Pacer(host, interval=interval)
        return pacer


def reset() -> None:
    """Forgets every pacer of this process (tests and benchmarks start each run afresh)."""
    with _PACERS_LOCK:
        _PACERS.clear()
