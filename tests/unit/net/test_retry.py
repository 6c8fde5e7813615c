"""Tests for pipeline.net.retry: counts, delays, deadline and Retry-After, with sleep and jitter injected."""

from __future__ import annotations

import random

import pytest

from pipeline.net import retry


class Transient(Exception):
    def __init__(self, retry_after: float | None = None):
        super().__init__("transient")
        self.retry_after = retry_after


class Permanent(Exception):
    pass


def _flaky(failures: list[Exception]):
    calls: list[int] = []

    def action(attempt: int) -> str:
        calls.append(attempt)
        if failures:
            raise failures.pop(0)
        return "done"

    return action, calls


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, Transient)


def test_transient_errors_are_retried_with_full_jitter_delays():
    action, calls = _flaky([Transient(), Transient()])
    slept: list[float] = []
    seen: list[tuple[int, float]] = []
    result = retry.call(action, transient=_is_transient, max_attempts=5, backoff_base=1.0, sleep=slept.append,
                        rng=random.Random(7), on_retry=lambda error, n, delay: seen.append((n, delay)))
    assert result == ("done", 3)
    assert calls == [1, 2, 3]
    expected_rng = random.Random(7)
    expected = [retry.full_jitter(n, base=1.0, rng=expected_rng) for n in (1, 2)]
    assert slept == expected
    assert seen == [(1, expected[0]), (2, expected[1])]
    assert 0 <= slept[0] <= 1.0 and 0 <= slept[1] <= 2.0


def test_permanent_error_is_raised_at_once():
    action, calls = _flaky([Permanent()])
    slept: list[float] = []
    with pytest.raises(Permanent):
        retry.call(action, transient=_is_transient, max_attempts=5, backoff_base=1.0, sleep=slept.append)
    assert calls == [1] and slept == []


def test_attempts_run_out_and_the_last_error_is_raised():
    errors = [Transient(), Transient(), Transient()]
    last = errors[-1]
    action, calls = _flaky(errors + [Transient()])
    slept: list[float] = []
    with pytest.raises(Transient) as info:
        retry.call(action, transient=_is_transient, max_attempts=3, backoff_base=0.5, backoff_max=0.6,
                   sleep=slept.append, rng=random.Random(1))
    assert info.value is last
    assert calls == [1, 2, 3]
    assert len(slept) == 2 and all(0 <= d <= 0.6 for d in slept)


def test_deadline_stops_before_a_sleep_that_would_pass_it():
    now = [100.0]

    def sleep(delay: float) -> None:
        now[0] += delay

    action, calls = _flaky([Transient()] * 50)
    with pytest.raises(Transient):
        retry.call(action, transient=_is_transient, max_attempts=50, backoff_base=4.0, deadline=110.0,
                   sleep=sleep, rng=random.Random(3), clock=lambda: now[0])
    assert 1 <= len(calls) < 50
    assert now[0] < 110.0  # no sleep ran past the deadline


def test_retry_after_is_a_floor_capped_at_the_maximum():
    slept: list[float] = []
    action, _ = _flaky([Transient(retry_after=7.0), Transient(retry_after=500.0)])
    retry.call(action, transient=_is_transient, max_attempts=3, backoff_base=0.01, backoff_max=60.0,
               sleep=slept.append)
    assert slept[0] >= 7.0 and slept[0] <= 60.0
    assert slept[1] == 60.0


def test_an_exception_from_sleep_abandons_the_retries():
    class Stop(Exception):
        pass

    def sleep(delay: float) -> None:
        raise Stop()

    action, calls = _flaky([Transient(), Transient()])
    with pytest.raises(Stop):
        retry.call(action, transient=_is_transient, max_attempts=5, backoff_base=1.0, sleep=sleep)
    assert calls == [1]
