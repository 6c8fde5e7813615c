"""Retry with exponential backoff and full jitter: the one retry loop of the project (tenacity).

Used by the clip fetcher (:mod:`pipeline.fetch.clips`) and the YouTube-8M downloader
(:mod:`pipeline.download_yt8m`). The policy:

* only errors the caller calls transient are retried; any other is raised at once;
* the sleep before attempt ``n + 1`` is uniform in ``[0, min(cap, base * 2**(n-1))]`` ("full
  jitter"): many workers that failed together against one server (a rate limit, a mirror
  hiccup) spread their retries over the whole window instead of coming back in waves, which
  keeps the server's load and the total work lowest of the usual jitter policies;
* a server's ``Retry-After`` (an ``retry_after`` attribute on the error, in seconds) is a floor
  for that sleep, itself capped at ``cap``;
* attempts stop at ``max_attempts``, or before a sleep that would end past ``deadline``; the
  last error is then raised as it is.

Sleeping and randomness are injectable, so tests assert the exact delays without waiting.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

T = TypeVar("T")

_MAX_EXPONENT = 30  # 2**30 s is decades; bounds the float arithmetic for absurd attempt numbers


def full_jitter(attempt: int, *, base: float, cap: float = math.inf, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): uniform in [0, min(cap, base * 2**(n-1))]."""
    return (rng or random).uniform(0.0, min(cap, base * 2 ** min(attempt - 1, _MAX_EXPONENT)))


class _Wait(tenacity.wait.wait_base):
    """Full jitter, raised to the failed attempt's ``retry_after`` when it has one."""

    def __init__(self, *, base: float, cap: float, rng: random.Random | None):
        self._base, self._cap, self._rng = base, cap, rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        delay = full_jitter(retry_state.attempt_number, base=self._base, cap=self._cap, rng=self._rng)
        retry_after = getattr(retry_state.outcome.exception(), "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), self._cap))
        return delay


class _StopBeforeDeadline(tenacity.stop.stop_base):
    """Stops when the coming sleep would end at or past ``deadline`` (a ``clock`` time)."""

    def __init__(self, deadline: float, clock: Callable[[], float]):
        self._deadline, self._clock = deadline, clock

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self._clock() + retry_state.upcoming_sleep >= self._deadline


def call(action: Callable[[int], T], *, transient: Callable[[BaseException], bool], max_attempts: int,
         backoff_base: float, backoff_max: float = math.inf, deadline: float | None = None,
         sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
         on_retry: Callable[[BaseException, int, float], None] | None = None,
         clock: Callable[[], float] = time.monotonic) -> tuple[T, int]:
    """Runs ``action(attempt)`` (attempt is 1-based) until it returns, retrying transient errors.

    Args:
        action: The work of one attempt; raises to fail it.
        transient: Whether an error is worth another attempt.
        max_attempts: Attempts at most, the first included.
        backoff_base: Base of the exponential backoff in seconds.
        backoff_max: Cap of one sleep (and of a ``retry_after``) in seconds.
        deadline: A ``clock`` time; no sleep may end at or past it.
        sleep: Waits that many seconds; may raise to abandon the retries (an interrupt).
        rng: Source of the jitter (``random``'s global one when None).
        on_retry: Called as ``on_retry(error, attempt, delay)`` before each sleep (logging).
        clock: Monotonic seconds, for ``deadline``.

    Returns:
        ``(result, attempts)``.

    Raises:
        The error of the last attempt: a permanent one at once, a transient one when attempts or
        time run out.
    """
    stop = tenacity.stop_after_attempt(max_attempts)
    if deadline is not None:
        stop = stop | _StopBeforeDeadline(deadline, clock)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None:
            on_retry(state.outcome.exception(), state.attempt_number, state.upcoming_sleep)

    retrying = tenacity.Retrying(
        stop=stop, wait=_Wait(base=backoff_base, cap=backoff_max, rng=rng),
        retry=tenacity.retry_if_exception(transient), sleep=sleep, before_sleep=before_sleep, reraise=True)
    for attempt in retrying:
        with attempt:
            result = action(attempt.retry_state.attempt_number)
        if not attempt.retry_state.outcome.failed:
            return result, attempt.retry_state.attempt_number
    raise AssertionError("unreachable: tenacity either returns a result or raises")  # pragma: no cover
