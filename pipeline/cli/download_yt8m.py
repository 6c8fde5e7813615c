"""Downloads one YouTube-8M partition, resumably, in parallel and with md5 checks.

This does what the official ``download.py`` (http://data.yt8m.org/download.py) does:
the same download plan, the same ``shard=X,N`` selection (md5 of the file *name*),
the same mirrors, the same ``trainAB.tfrecord`` -> ``train%04d.tfrecord`` renaming and
the same "skip files already present with the right md5" resume rule. It adds what the
official script lacks for multi-terabyte partitions: an output directory, bounded
parallel downloads, retries with exponential backoff and jitter on transient errors,
atomic writes (``NAME.part`` renamed only once its md5 matches, so a file under its
final name is always complete), a progress line, a summary, a non-zero exit code when
any file failed, a ``--base_url`` for private mirrors and tests, and ``--dry_run``.

Run it (from the repository root, or anywhere the package is installed)::

    # 1/100th of the frame-level training set into ./yt8m/frame/train:
    python -m pipeline.download_yt8m --partition 2/frame/train --shard 1,100 \\
        --output_dir yt8m/frame/train

    # Everything of the validation split from the European mirror, 8 at a time:
    python -m pipeline.download_yt8m --partition 2/frame/validate --mirror eu \\
        --parallelism 8 --output_dir yt8m/frame/validate

    # Only list what would be downloaded and under which names:
    python -m pipeline.download_yt8m --partition 2/video/test --shard 3,10 --dry_run

    # From a private mirror laid out like data.yt8m.org:
    python -m pipeline.download_yt8m --partition 2/frame/train \\
        --base_url http://mirror.example/yt8m --output_dir /data/yt8m

    # Straight into a bucket (through Beam's FileSystems, as the build writes):
    python -m pipeline.download_yt8m --partition 2/frame/validate --output_dir gs://my-bucket/yt8m/validate

Rerunning the same command resumes: complete files are recognised by their md5 and
not fetched again. The exit code is 0 when every selected file is present with the
right md5, 1 when any file failed (the summary gives the reasons), 2 for bad arguments
and 130 when interrupted.

From Python::

    from pipeline.cli import download_yt8m
    summary = download_yt8m.download(partition="2/frame/train", shard=(1, 100),
                                     output_dir="yt8m/frame/train")
    assert summary.ok, summary.failed

Tests: ``python -m pytest tests/unit/cli/test_download_yt8m.py -q`` (loopback server only).
"""


from __future__ import annotations

import concurrent.futures
import hashlib
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO, TypeVar

from pipeline.cli.yt8m_files import (
    MIRRORS,
    DownloadSummary,
    Interrupted,
    Partition,
    PermanentError,
    PlannedFile,
    Progress,
    TransientError,
    build_parser,
    md5_file,
    parse_partition,
    parse_plan,
    plan_url,
    planned_files,
    select_files,
)
from pipeline.dataset import fileio
from pipeline.net import downloads, retry

if TYPE_CHECKING:
    import http.client

T = TypeVar("T")

__all__ = ["PART_SUFFIX", "backoff_delay", "download", "fetch_plan", "main", "plan_downloads"]

PART_SUFFIX = ".part"

_CHUNK_BYTES = 1 << 20
_USER_AGENT = "yt8m-partition-downloader/1.0 (+python urllib)"


# ------------------------------------------------------------------------ retries


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    The project's one policy (:mod:`pipeline.net.retry`): exponential (``base * 2**(attempt-1)``,
    capped) with full jitter, so parallel workers that failed together (a mirror hiccup)
    spread their retries over the whole window.
    """
    return retry.full_jitter(attempt, base=base, cap=cap, rng=rng)


def _with_retries(action: Callable[[int], T], *, max_attempts: int, backoff_base: float, backoff_max: float,
                  stop: threading.Event, rng: random.Random) -> tuple[T, int]:
    """Runs ``action(attempt)``, retrying TransientError with backoff (:func:`pipeline.net.retry.call`).

    A ``Retry-After`` on the error is a floor for the sleep (capped at ``backoff_max``);
    ``stop`` ends the sleeps and the attempts with Interrupted. Returns ``(result, attempts)``;
    raises the last TransientError (with ``attempts`` set) or the PermanentError at once.
    """
    def attempt(number: int):
        if stop.is_set():
            raise Interrupted()
        try:
            return action(number)
        except (TransientError, PermanentError) as error:
            error.attempts = number
            raise

    def sleep(delay: float) -> None:
        if stop.wait(delay):
            raise Interrupted()

    return retry.call(attempt, transient=lambda error: isinstance(error, TransientError), max_attempts=max_attempts,
                      backoff_base=backoff_base, backoff_max=backoff_max, sleep=sleep, rng=rng)


# -------------------------------------------------------------------- transfers


def _open(url: str, *, timeout: float):
    """Opens ``url`` (`pipeline.net.downloads`), turning every failure into a Transient/PermanentError."""
    try:
        return downloads.open_url(url, timeout=timeout, headers={"User-Agent": _USER_AGENT})
    except downloads.TransferError as error:
        if error.kind == "status":
            code = error.status
            if not downloads.is_transient_status(code):
                raise PermanentError(f"http_{code}", f"HTTP {code} for {url}") from None
            raise TransientError(f"http_{code}", f"HTTP {code} for {url}",
                                 retry_after=downloads.retry_after_seconds(error.headers)) from None
        if error.kind == "redirect":
            raise TransientError(f"http_{error.status}", f"{error.message} (for {url})") from None
        if error.kind == "connect" and isinstance(error.cause, TimeoutError):
            raise TransientError("timeout", f"timed out connecting to {url}") from None
        if error.kind == "timeout":
            raise TransientError("timeout", f"timed out waiting for {url}") from None
        # DNS hiccups and refused connections are usually brief on big mirrors.
        raise TransientError("connection_error", f"{url}: {error.cause}") from None


# A plan is remote input held in memory: the official ones are ~100 KB (a few thousand names and md5s).
MAX_PLAN_BYTES = 16 << 20

_BODY_REASONS = {"timeout": "timeout", "incomplete": "truncated", "truncated": "truncated",
                 "network": "connection_error"}


def _read_body(response: http.client.HTTPResponse, url: str, sink: Callable[[bytes], object], *,
               stop: threading.Event, max_bytes: int | None = None) -> int:
    """Streams the body into ``sink(chunk)`` (`pipeline.net.downloads`); detects truncation.

    A local write error in ``sink`` (disk full) is raised as it is: not a network error to retry.
    A body over ``max_bytes`` is a PermanentError ``too_large``.
    """
    try:
        return downloads.read_body(response, sink, url=url, chunk_bytes=_CHUNK_BYTES, stop=stop, max_bytes=max_bytes)
    except downloads.TransferError as error:
        if error.kind == "stopped":
            raise Interrupted() from None
        if error.kind == "too_large":
            raise PermanentError("too_large", error.message) from None
        raise TransientError(_BODY_REASONS[error.kind], error.message) from None


def fetch_plan(url: str, *, timeout: float = 60.0, max_attempts: int = 5, backoff_base: float = 1.0,
               backoff_max: float = 60.0, stop: threading.Event | None = None) -> dict[str, str]:
    """Downloads and parses a plan (name -> md5), retrying transient errors.

    Raises:
        TransientError: Still failing after ``max_attempts``.
        PermanentError: HTTP 404/403 or a plan of the wrong shape.
    """
    stop = stop or threading.Event()

    def attempt(_: int) -> dict[str, str]:
        buffer = bytearray()
        with _open(url, timeout=timeout) as response:
            try:
                _read_body(response, url, buffer.extend, stop=stop, max_bytes=MAX_PLAN_BYTES)
            except PermanentError as error:
                raise PermanentError("bad_plan", f"download plan is over {MAX_PLAN_BYTES:,} bytes "
                                     f"({error.message})") from None
        return parse_plan(bytes(buffer))

    plan, _ = _with_retries(attempt, max_attempts=max_attempts, backoff_base=backoff_base,
                            backoff_max=backoff_max, stop=stop, rng=random.Random())
    return plan


def plan_downloads(*, partition: str | Partition, shard: tuple[int, int] = (1, 1), mirror: str = "us",
                   base_url: str | None = None, timeout: float = 60.0, max_attempts: int = 5,
                   backoff_base: float = 1.0, backoff_max: float = 60.0) -> list[PlannedFile]:
    """Fetches the plan and returns the selected files with their names and URLs.

    Raises:
        ValueError: Bad partition/shard/mirror, or two files mapping to one name.
        TransientError, PermanentError: The plan could not be fetched.
    """
    part = parse_partition(partition) if isinstance(partition, str) else partition
    shard_index, num_shards = shard
    if not 1 <= shard_index <= num_shards:
        raise ValueError(f"shard X,N needs 1 <= X <= N; got {shard_index},{num_shards}")
    if not base_url and mirror not in MIRRORS:
        raise ValueError(f"mirror must be one of {', '.join(MIRRORS)}; got {mirror!r}")
    files = fetch_plan(plan_url(part, base_url=base_url), timeout=timeout, max_attempts=max_attempts,
                       backoff_base=backoff_base, backoff_max=backoff_max)
    return planned_files(part, select_files(files, shard_index=shard_index, num_shards=num_shards),
                    mirror=mirror, base_url=base_url)


def _has_md5(path: str, md5: str) -> bool:
    """Whether a file is at ``path`` (local or gs://) with content of hex digest ``md5``."""
    if fileio.is_local(path):
        if not os.path.isfile(path):
            return False
    elif not fileio.exists(path):
        return False
    return md5_file(path) == md5


class _Downloader:
    """Fetches one PlannedFile at a time into ``output_dir``; shared by the workers."""

    def __init__(self, *, output_dir: str, timeout: float,
                 max_attempts: int, backoff_base: float, backoff_max: float, progress: Progress,
                 stop: threading.Event):
        self.output_dir = output_dir
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.progress = progress
        self.stop = stop

    def already_present(self, item: PlannedFile) -> bool:
        """True if the file is in place with the right md5 (the resume rule).

        A copy under the plan's original name (left by the official script) is
        accepted too and moved to the final name, so the directory ends up uniform.
        """
        target = fileio.join(self.output_dir, item.final_name)
        if _has_md5(target, item.md5):
            return True
        original = fileio.join(self.output_dir, item.name)
        if item.name != item.final_name and _has_md5(original, item.md5):
            fileio.rename(original, target)
            return True
        return False

    def fetch(self, item: PlannedFile) -> str:
        """Returns ``skipped`` or ``downloaded``; raises on final failure."""
        if self.already_present(item):
            return "skipped"
        rng = random.Random()
        _with_retries(lambda _: self._attempt(item), max_attempts=self.max_attempts,
                      backoff_base=self.backoff_base, backoff_max=self.backoff_max, stop=self.stop, rng=rng)
        return "downloaded"

    def outcome(self, item: PlannedFile) -> tuple[str, str] | None:
        """``(downloaded|skipped|failed, failure detail)`` for one file; None when interrupted.

        A file's failure never stops the others: network and md5 errors after their retries, and
        local disk or store errors (a gs:// client raises its own kinds), become its detail line.
        """
        local = fileio.is_local(self.output_dir)
        try:
            return self.fetch(item), ""
        except Interrupted:
            return None
        except (TransientError, PermanentError) as error:
            attempts = getattr(error, "attempts", 1)
            return "failed", f"{error.reason} after {attempts} attempt{'s' if attempts != 1 else ''}: {error.message}"
        except OSError as error:  # disk or store trouble (Beam's BeamIOError is one)
            return "failed", f"{'local_io_error' if local else 'storage_error'}: {error}"
        except Exception as error:  # pylint: disable=broad-except
            if local:
                raise
            return "failed", f"storage_error: {type(error).__name__}: {error}"  # google.api_core's NotFound, ...

    def _attempt(self, item: PlannedFile) -> None:
        target = fileio.join(self.output_dir, item.final_name)
        partial = target + PART_SUFFIX
        digest = hashlib.md5()
        # Renamed to the final name only when the block completes: readers see no file or the complete one;
        # an md5 mismatch (or any error) removes the .part, and a rerun overwrites a stale one.
        with fileio.atomic_write(target, temp_path=partial) as handle, \
                _open(item.url, timeout=self.timeout) as response:
            def sink(chunk: bytes) -> None:
                handle.write(chunk)
                digest.update(chunk)
                self.progress.add_bytes(len(chunk))

            _read_body(response, item.url, sink, stop=self.stop)
            if fileio.is_local(target):
                handle.flush()
                os.fsync(handle.fileno())
            actual = digest.hexdigest()
            if actual != item.md5:
                raise TransientError("md5_mismatch", f"{item.name}: md5 {actual}, plan says {item.md5}")


def _run_parallel(items: list[PlannedFile], run_one: Callable[[PlannedFile], None], *, parallelism: int,
                  stop: threading.Event) -> None:
    """``run_one(item)`` for every item on ``parallelism`` threads; on Ctrl-C the workers drop their transfers."""
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="yt8m")
    try:
        futures = [executor.submit(run_one, item) for item in items]
        for future in concurrent.futures.as_completed(futures):
            future.result()
    except BaseException:
        stop.set()  # Ctrl-C lands here in the main thread
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def download(*, partition: str | Partition, output_dir: str | os.PathLike[str] = ".",
             shard: tuple[int, int] = (1, 1), mirror: str = "us", base_url: str | None = None,
             parallelism: int = 4, max_attempts: int = 5, timeout: float = 60.0, backoff_base: float = 1.0,
             backoff_max: float = 60.0, progress_stream: TextIO | None = None, progress_interval: float = 5.0,
             stop: threading.Event | None = None) -> DownloadSummary:
    """Downloads the selected files of a partition into ``output_dir``.

    Safe to rerun: files present with the right md5 are skipped, stale ``.part``
    files are overwritten, and nothing appears under a final name before its md5
    matched. Per-file failures are collected, not raised, so one bad file does not
    stop a multi-day download; check ``summary.ok``.

    Args:
        partition: ``"2/frame/train"`` or a `Partition`.
        output_dir: A local directory (created if missing) or a gs:// prefix; files are written through
            Beam's FileSystems, each under its final name only once its md5 matched.
        shard: ``(X, N)``: keep the X-th (1-based) of N name-hash shards.
        mirror: ``us``, ``eu`` or ``asia``; ignored when ``base_url`` is given.
        base_url: Serve plan and files from here instead of the official hosts.
        parallelism: Concurrent downloads.
        max_attempts: Attempts per file (and for the plan) on transient errors.
        timeout: Socket timeout in seconds (connect and each read).
        backoff_base: First retry delay scale in seconds; doubles per attempt.
        backoff_max: Cap on one retry delay.
        progress_stream: Where the progress line goes; None for silence.
        progress_interval: Seconds between progress lines when not a terminal.
        stop: Set it (e.g. from a signal handler) to stop early; the summary then has
            ``interrupted=True``.

    Raises:
        ValueError: Bad arguments.
        TransientError, PermanentError: The plan itself could not be fetched.
    """
    if parallelism < 1:
        raise ValueError(f"parallelism must be >= 1, got {parallelism}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    stop = stop or threading.Event()
    started = time.monotonic()
    planned = plan_downloads(partition=partition, shard=shard, mirror=mirror, base_url=base_url, timeout=timeout,
                             max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max)
    out = os.fspath(output_dir)
    if fileio.is_local(out):
        os.makedirs(out, exist_ok=True)
    progress = Progress(total=len(planned), stream=progress_stream, interval=progress_interval)
    worker = _Downloader(output_dir=out, timeout=timeout,
                         max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max,
                         progress=progress, stop=stop)
    summary = DownloadSummary()
    results_lock = threading.Lock()

    def run_one(item: PlannedFile) -> None:
        if stop.is_set():
            return
        result = worker.outcome(item)
        if result is None:  # interrupted
            return
        outcome, detail = result
        with results_lock:
            if outcome == "failed":
                summary.failed[item.final_name] = detail
            else:
                (summary.downloaded if outcome == "downloaded" else summary.skipped).append(item.final_name)
        progress.file_done(outcome)

    try:
        _run_parallel(planned, run_one, parallelism=parallelism, stop=stop)
    finally:
        progress.finish()  # on Ctrl-C too: a terminal gets its cursor and a whole last line back
    summary.interrupted = stop.is_set()
    summary.downloaded.sort()
    summary.skipped.sort()
    summary.bytes_downloaded = progress.bytes
    summary.seconds = time.monotonic() - started
    return summary


# -------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 1 failures, 2 usage, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        if args.dry_run:
            planned = plan_downloads(partition=args.partition, shard=args.shard, mirror=args.mirror,
                                     base_url=args.base_url, timeout=args.timeout, max_attempts=args.max_attempts,
                                     backoff_base=args.backoff_base, backoff_max=args.backoff_max)
            for item in planned:
                print(f"{item.name}\t{item.final_name}\t{item.url}")
            print(f"[yt8m] dry run: {len(planned)} files selected for {args.partition} shard "
                  f"{args.shard[0]},{args.shard[1]}", file=sys.stderr)
            return 0
        summary = download(partition=args.partition, output_dir=args.output_dir, shard=args.shard,
                           mirror=args.mirror, base_url=args.base_url, parallelism=args.parallelism,
                           max_attempts=args.max_attempts, timeout=args.timeout, backoff_base=args.backoff_base,
                           backoff_max=args.backoff_max, progress_stream=sys.stderr,
                           progress_interval=args.progress_interval)
    except (TransientError, PermanentError) as error:
        print(f"error: could not get the download plan ({error.reason}): {error.message}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    print(summary.format())
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
