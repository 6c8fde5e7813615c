"""Quiet logging for the command-line tools: the project's messages at INFO, everyone else's at WARNING.

Four sources make a local run noisy, and each needs its own switch:

* Python loggers of Beam, TensorFlow, absl, gRPC, ... in the launcher process. A handler filter
  lets the project's records through at INFO (they are logged on the root logger or on
  `pipeline.*` / `transforms.*` / `benchmarks.*` loggers) and everything else from WARNING up.
* Beam SDK worker processes (`--direct_running_mode=multi_processing`). They configure their
  own logging from the pipeline options (`--default_sdk_harness_log_level`,
  `--sdk_harness_log_level_overrides`) and forward records to the launcher, which logs them as
  one long protobuf text line; :func:`harness_log_args` gives the options and the filter here
  turns forwarded records back into one readable line.
* A few Beam warnings that say nothing about the run (``_BEAM_NOISE``), in either process: the
  filter drops them by the file that logs them and how their message starts.
* TensorFlow's C++ start-up lines, written straight to file descriptor 2 in every process that
  imports it. `TF_CPP_MIN_LOG_LEVEL=2` (set before the import, inherited by the workers) drops
  most; the few that absl prints before it reads any setting ("All log messages before
  absl::InitializeLog() ...", "Could not find cuda drivers", "failed call to cuInit") are held
  back by :func:`import_tensorflow`, which replays anything else it saw.

`-v/--verbose` sets VIDEO_FEATURES_VERBOSE=1 (inherited by the workers) and lets everything through.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType
from typing import TextIO

VERBOSE_ENV = "VIDEO_FEATURES_VERBOSE"

# Loggers of this project. Most modules log on the root logger (`logging.info(...)`).
PROJECT_LOGGERS = ("root", "__main__", "pipeline", "transforms", "benchmarks")

# Beam logs what an SDK worker process sends it under this logger, as "Worker: <LogEntry text>".
_FORWARDING_LOGGER = "apache_beam.runners.portability.local_job_service"

# Worker-side Beam warnings that every local worker prints at start and that say nothing about the
# run: a worker's options parser does not know BuildOptions ("Discarding unparseable args"), and
# there is no main session to load locally ("No semi_persistent_directory found").
_WORKER_NOISE_OVERRIDES = {
    "apache_beam.options.pipeline_options": "ERROR",
    "apache_beam.runners.worker.sdk_worker_main": "ERROR",
}

# Beam warnings, from any process, that say nothing about the run: (file that logs it, message start).
# RunInference imports the stdlib `resource` module in one block with its torch-only model manager,
# so without torch it warns at every model load that it cannot measure memory (Beam 2.77).
_BEAM_NOISE = (
    ("apache_beam/ml/inference/base.py", "Resource module is not available"),
)

# What TensorFlow's C++ side prints on import and device discovery whatever TF_CPP_MIN_LOG_LEVEL
# says, because absl emits it before reading any setting.
_TF_STARTUP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:. ]+\d+ \S+:\d+\] .*"
    r"|E\d{4} [\d:. ]+\d+ cuda_platform\.cc:\d+\] failed call to cuInit.*"
    r"|To enable the following instructions: .*")


def verbose() -> bool:
    """True when -v/--verbose was given to this process or to the launcher that started it."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


class _QuietFilter(logging.Filter):
    """Passes project records from INFO, others from WARNING; rewrites records forwarded by workers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == _FORWARDING_LOGGER and record.msg == "Worker: %s" and record.args:
            location = _rewrite_worker_record(record)
            if verbose() or location.startswith(_PROJECT_DIRS):
                return True
            if location and _is_beam_noise(location.rpartition(":")[0], str(record.args[0])):
                return False
            # A worker logs a few lines before it has read its level from the pipeline options.
            return record.levelno >= (logging.ERROR if _WORKER_STARTUP in location else logging.WARNING)
        if verbose():
            return True
        if record.levelno >= logging.WARNING:
            return not _is_beam_noise(record.pathname, record.getMessage()) and not _is_reported_store_failure(record)
        return record.name.split(".", 1)[0] in PROJECT_LOGGERS


def _is_reported_store_failure(record: logging.LogRecord) -> bool:
    """Beam's log of a bundle that failed on the object store: the launcher reports it in one line itself."""
    if not record.name.startswith("apache_beam.runners") or not record.exc_info or not record.exc_info[1]:
        return False
    from pipeline.errors import storage_failure  # pylint: disable=import-outside-toplevel

    return storage_failure(record.exc_info[1]) is not None


def _is_beam_noise(path: str, message: str) -> bool:
    """True for a known Beam line that says nothing about the run (see _BEAM_NOISE)."""
    path = path.replace(os.sep, "/")
    return any(path.endswith("/" + source) and message.startswith(start) for source, start in _BEAM_NOISE)


_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PROJECT_DIRS = tuple(os.path.join(_ROOT, name) + os.sep for name in PROJECT_LOGGERS[2:])
_WORKER_STARTUP = os.path.join("apache_beam", "runners", "worker", "sdk_worker_main.py")


def _rewrite_worker_record(record: logging.LogRecord) -> str:
    """'Worker: severity: WARN timestamp {...} message: "..." ...' -> '[worker] ...'.

    Returns where the worker logged it (`path:line`), "" when the text does not parse.
    """
    # pylint: disable=import-outside-toplevel
    from apache_beam.portability.api import beam_fn_api_pb2
    from google.protobuf import text_format

    text = record.args[0] if isinstance(record.args, tuple) else record.args
    entry = beam_fn_api_pb2.LogEntry()
    try:
        text_format.Parse(str(text), entry)
    except text_format.ParseError:
        return ""  # keep Beam's own rendering
    message = entry.message + (f"\n{entry.trace}" if entry.trace else "")
    record.msg, record.args = "[worker] %s", (message,)
    return entry.log_location


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time, so a live progress display can redirect it."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ assigns it; the property ignores that.
        del value


def setup(*, verbose_flag: bool = False) -> None:
    """Configures this process's logging for a command-line run (idempotent).

    Sets the environment the worker processes inherit too: VIDEO_FEATURES_VERBOSE, and
    TF_CPP_MIN_LOG_LEVEL=2 unless verbose or already set by the user.
    """
    if verbose_flag:
        os.environ[VERBOSE_ENV] = "1"
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_video_features", False)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler._video_features = True  # pylint: disable=protected-access
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(_QuietFilter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # absl's Python logging (imported by TensorFlow) would otherwise install its own stderr handler.
    with contextlib.suppress(ImportError):
        import absl.logging  # pylint: disable=import-outside-toplevel

        absl.logging.set_verbosity(absl.logging.INFO if verbose() else absl.logging.WARNING)


def harness_log_args(argv: list[str]) -> list[str]:
    """Pipeline options that give local SDK worker processes the same quiet (or verbose) logging.

    Options the user passed win. Only for the local runner: on Dataflow the workers' INFO lines
    (progress included) belong in Cloud Logging.
    """
    extra = []
    if not any(a.startswith("--default_sdk_harness_log_level") for a in argv):
        extra.append(f"--default_sdk_harness_log_level={'INFO' if verbose() else 'WARNING'}")
    if not verbose() and not any(a.startswith("--sdk_harness_log_level_overrides") for a in argv):
        extra.append("--sdk_harness_log_level_overrides=" + json.dumps(_WORKER_NOISE_OVERRIDES))
    return extra


@contextlib.contextmanager
def _stderr_fd_captured() -> Iterator[list[str]]:
    """Redirects file descriptor 2 (C++ writes too) into a temporary file for the block.

    Yields a list that holds the captured lines once the block has ended, however it ended.
    """
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def import_tensorflow() -> ModuleType:
    """Imports TensorFlow (and lists its devices) without its start-up noise; returns the module.

    Only the known start-up lines are held back; anything else written meanwhile is replayed on
    stderr, and everything is when verbose or when the import fails.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    failed, captured = True, []
    try:
        with _stderr_fd_captured() as captured:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel

            tf.config.list_physical_devices()  # device discovery prints its own lines (cuInit) once
            failed = False
    finally:
        kept = [line for line in captured
                if failed or verbose() or not _TF_STARTUP_NOISE.fullmatch(line)]
        if kept:
            print("\n".join(kept), file=sys.stderr, flush=True)
    return tf


def _split_top_level(text: str, separator: str) -> list[str]:
    """`text` split at `separator` where it is outside parentheses (a path or URL in them stays whole)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        char = text[i]
        depth += (char == "(") - (char == ")")
        if depth == 0 and text.startswith(separator, i):
            parts.append(text[start:i + len(separator.rstrip())])
            start = i = i + len(separator)
            continue
        i += 1
    return [*parts, text[start:]]


def readable_error(text: str, width: int = 110) -> str:
    """A long one-line error as short lines: one per `;`-separated item, the advice after them on its own.

    A missing-models error names four files, each with its cache, URL and fix: 1,500 characters
    on one line that nobody reads to the end.
    """
    import textwrap  # pylint: disable=import-outside-toplevel

    if len(text) <= width:
        return text
    lines = []
    for k, sentence in enumerate(_split_top_level(text, ". ")):
        indent = "" if k == 0 else "  "
        first, *rest = _split_top_level(sentence, "; ")
        lines.append(textwrap.fill(first, width, initial_indent=indent, subsequent_indent=indent + "    "))
        lines += [textwrap.fill(item, width, initial_indent=indent + "  - ", subsequent_indent=indent + "    ")
                  for item in rest]
    return "\n".join(lines)
