"""Typed errors. Each per-clip error carries a stable snake_case reason for the failure report."""

import errno


class ClipError(Exception):
    """A clip produced no record. `reason` is a stable word; `stage` names where it happened."""

    def __init__(self, reason: str, message: str, *, stage: str = "decode"):
        super().__init__(message)
        self.reason = reason
        self.stage = stage
        self.message = message


class ModelArtifactError(Exception):
    """A model artifact is missing or does not have the official layout. The message says what to pass."""


# OS errors a clip can meet that are not bugs: their own reasons, so the report says what to fix.
_OS_REASONS = {errno.ENOSPC: "no_space", errno.EDQUOT: "no_space", errno.ENAMETOOLONG: "name_too_long"}


def os_error_reason(error: BaseException) -> str | None:
    """`no_space` (disk full, quota) or `name_too_long` for such an OSError anywhere in `error`'s chain, else None.

    Beam's file systems wrap OSErrors (BeamIOError's ``exception_details``); those count too.
    """
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _OS_REASONS:
            return _OS_REASONS[current.errno]
        details = getattr(current, "exception_details", None)
        if isinstance(details, dict):
            todo.extend(v for v in details.values() if isinstance(v, BaseException))
        todo.extend((current.__cause__, current.__context__))
    return None


# Reasons a rerun with --skip_existing tries again: the row may well succeed next time. Every other
# reason is a verdict on the row itself (gone, private, not a video, ...): its failure line is carried
# into the new report unless --retry_permanent is given. `internal_error` is here because it is not a
# verdict on the row but on this code, which a rerun may have fixed; `no_space` on the disk, which
# may have room by then.
TRANSIENT_REASONS = frozenset({"network", "timeout", "rate_limited", "internal_error", "no_space"})


def is_transient(reason: str) -> bool:
    """True when a row that failed with `reason` is worth another attempt on a resumed build."""
    return reason in TRANSIENT_REASONS


_STORE_ERROR_NAMES = ("google.api_core.exceptions.", "google.auth.exceptions.",
                      "requests.exceptions.ConnectionError", "urllib3.exceptions.")
# The GCS clients' own code: an exception raised in there (even an AttributeError on a response
# that never came, as Beam's batch copy raises when the store goes away) is the store's failure.
_STORE_CLIENT_PATHS = ("/apache_beam/io/gcp/", "/google/cloud/storage/", "/google/resumable_media/",
                       "/google/api_core/", "/google/auth/")


def storage_failure(error: BaseException) -> str | None:
    """One line on the object store's failure behind `error` (gs:// gone, refusing, retries spent), else None.

    The launcher reports such a failure in one line (`pipeline.cli.build`), and the log filter drops
    Beam's duplicate of it (`pipeline.cli.logs`). Looks through the exception's causes, the errors a
    Beam BeamIOError collects per path (a local disk's are not the store's), and the text of a
    pipeline failure (Beam re-raises a worker's exception as a RuntimeError carrying the original's
    name and message).
    """
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        kind = f"{type(current).__module__}.{type(current).__name__}"
        text = str(current).strip()
        if any(kind.startswith(name) for name in _STORE_ERROR_NAMES):
            return _first_line(f"{type(current).__name__}: {text}")
        if isinstance(current, RuntimeError):  # a worker's failure, carried as text
            first = _first_line(text)
            if any(first.startswith(name) for name in _STORE_ERROR_NAMES):
                return first
            reported = _store_failure_in_traceback_text(text)
            if reported is not None:
                return reported
        if _raised_in_store_client(current):
            return _first_line(f"{type(current).__name__}: {text}")
        details = getattr(current, "exception_details", None)  # BeamIOError: {path: exception}
        if isinstance(details, dict):
            pending += [e for e in details.values() if isinstance(e, BaseException)]
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return None


def _in_store_client(filename: str) -> bool:
    return any(part in filename.replace("\\", "/") for part in _STORE_CLIENT_PATHS)


def _raised_in_store_client(error: BaseException) -> bool:
    """Whether the innermost frame of `error`'s traceback (where it was raised) is a GCS client's code."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return _in_store_client(tb.tb_frame.f_code.co_filename)


def _store_failure_in_traceback_text(text: str) -> str | None:
    """The exception line of a traceback carried as text whose innermost frame is a GCS client's code."""
    lines = text.splitlines()
    frames = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "')]
    if not frames or not _in_store_client(lines[frames[-1]]):
        return None
    after = [line.strip() for line in lines[frames[-1] + 1:] if line.strip() and not line.startswith(" ")]
    return _first_line(after[-1]) if after else None


def one_line(error: BaseException) -> str:
    """The first line of `error`'s message (at most 300 characters), or its type's name when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


def _first_line(text: str, limit: int = 240) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."
