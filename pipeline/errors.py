"""Typed errors. Each per-clip error carries a stable snake_case reason for the failure report."""


class ClipError(Exception):
    """A clip produced no record. `reason` is a stable word; `stage` names where it happened."""

    def __init__(self, reason: str, message: str, *, stage: str = "decode"):
        super().__init__(message)
        self.reason = reason
        self.stage = stage
        self.message = message


class ModelArtifactError(Exception):
    """A model artifact is missing or does not have the official layout. The message says what to pass."""


def failure_record(*, clip_id: str, fields: dict, row: int | None, stage: str, reason: str, message: str) -> dict:
    """One line of the failure report: the input row that produced no record, and why."""
    return {"id": clip_id, "input": fields, "row": row, "stage": stage, "reason": reason, "message": message}


# Reasons a rerun with --skip_existing tries again: the row may well succeed next time. Every other
# reason is a verdict on the row itself (gone, private, not a video, ...): its failure line is carried
# into the new report unless --retry_permanent is given. `internal_error` is here because it is not a
# verdict on the row but on this code, which a rerun may have fixed.
TRANSIENT_REASONS = frozenset({"network", "timeout", "rate_limited", "internal_error"})


def is_transient(reason: str) -> bool:
    """True when a row that failed with `reason` is worth another attempt on a resumed build."""
    return reason in TRANSIENT_REASONS
