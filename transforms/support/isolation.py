"""Per-element isolation: an unexpected exception for one element becomes its failure line.

On Dataflow a DoFn that raises is retried four times and then fails the whole job, so a bug or
an unforeseen input in one clip of a million must not escape `process()`. `isolate` wraps a
per-element generator: whatever it raises becomes an `internal_error` failure line (exception
type and message, and the stage) on the `failures` output, and the run goes on. Problems of
the run as a whole (an unwritable output, a lost worker) are not per-element and are left to
the runner's retries.

`internal_error` is the one way an unexpected exception becomes a line. The stages that run an
element's work on a thread of their own (FetchClips' fetch pool, DecodeClips' decode-ahead
thread) catch there and call it, because the exception is raised outside `process()`; Beam's
`with_exception_handling` only sees exceptions `process()` raises itself, and would send the
element to a dead-letter output without the row's reason and stage the report needs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam

from pipeline.elements import Failure
from pipeline.errors import os_error_reason
from pipeline.net.redact import redact
from pipeline.read import annotations
from transforms.support import metrics

FAILURES = "failures"


def internal_error(*, clip_id: str, fields: dict, row: int | None, stage: str, error: BaseException,
                   count: bool = True) -> Failure:
    """The failure line of an unexpected exception; also logged with its traceback and counted.

    A full disk or a file name over the file system's limit is no bug: its line says `no_space`
    or `name_too_long` (`errors.os_error_reason`), logged without a traceback, and the run goes on.
    `count=False` leaves the counting to the caller (a thread other than the bundle's, whose
    metric updates Beam would not see; `failure_reason` says what to count).
    """
    reason = failure_reason(error)
    if reason == "internal_error":
        logging.error("Unexpected error at stage %s on clip %r (row %s)", stage, redact(str(clip_id)), row,
                      exc_info=(type(error), error, error.__traceback__))
    else:
        logging.warning("%s at stage %s on clip %r (row %s): %s", reason, stage, redact(str(clip_id)), row,
                        redact(str(error)))
    if count:
        metrics.count_failure(reason)
    return Failure.of(clip_id=str(clip_id), fields=annotations.printable(fields or {}), row=row, stage=stage,
                      reason=reason, message=f"{type(error).__name__}: {error}")


def failure_reason(error: BaseException) -> str:
    """The reason of an exception no code path expected: `no_space`, `name_too_long`, else `internal_error`."""
    return os_error_reason(error) or "internal_error"


def isolate(stage: str, describe: Callable[[object], tuple[str, dict, int | None]], *,
            element_arg: int = 0) -> Callable[[Callable[..., Iterator[Any]]], Callable[..., Iterator[Any]]]:
    """Decorates a generator taking an element (positional argument `element_arg`) so it never raises.

    Args:
      stage: the stage named in the failure line (read, resume, features, write).
      describe: element -> (clip id, input fields, row) for the failure line; it must not raise
        (it is itself guarded: a failure to describe gives an empty description).
      element_arg: 0 for a plain function, 1 for a DoFn's `process(self, element, ...)`.
    """

    def wrap(fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:  # pylint: disable=broad-except  (the point of this wrapper)
                try:
                    clip_id, fields, row = describe(args[element_arg])
                except Exception:  # pylint: disable=broad-except
                    clip_id, fields, row = "", {}, None
                yield beam.pvalue.TaggedOutput(FAILURES, internal_error(
                    clip_id=clip_id, fields=fields, row=row, stage=stage, error=e))

        return guarded

    return wrap
