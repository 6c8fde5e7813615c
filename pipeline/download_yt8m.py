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

Rerunning the same command resumes: complete files are recognised by their md5 and
not fetched again. The exit code is 0 when every selected file is present with the
right md5, 1 when any file failed (the summary gives the reasons), 2 for bad arguments
and 130 when interrupted.

From Python::

    from pipeline import download_yt8m
    summary = download_yt8m.download(partition="2/frame/train", shard=(1, 100),
                                     output_dir="yt8m/frame/train")
    assert summary.ok, summary.failed

Tests: ``python -m pytest tests/test_download_yt8m.py -q`` (loopback server only).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import http.client
import json
import math
import os
import pathlib
import random
import re
import socket
import string
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import TextIO

from pipeline import fileio, retry

#: Host of the download plans when no ``--base_url`` is given.
PLAN_HOST = "http://data.yt8m.org"
#: Host template of the data files; ``{mirror}`` is one of ``MIRRORS``.
FILE_HOST_TEMPLATE = "http://{mirror}.data.yt8m.org"
MIRRORS = ("us", "eu", "asia")
#: ``frame``/``video`` are the current names; ``*_level`` are version 1's.
LEVELS = ("frame", "video", "frame_level", "video_level")
SPLITS = ("train", "validate", "test")
#: The two-character file ids of the official plan enumerate pairs over this alphabet.
ALPHABET = string.ascii_lowercase + string.ascii_uppercase + string.digits
PART_SUFFIX = ".part"

_CHUNK_BYTES = 1 << 20
_USER_AGENT = "yt8m-partition-downloader/1.0 (+python urllib)"
_NAME_RE = re.compile(r"^(?P<prefix>.*)(?P<id>[a-zA-Z0-9]{2})\.tfrecord$", re.DOTALL)
_PERMANENT_HTTP = frozenset({400, 401, 403, 404, 405, 410, 451})


# --------------------------------------------------------------------------- errors


class TransientError(Exception):
    """A failure that may not happen again (network, overload, corrupt transfer).

    Attributes:
        reason: Stable snake_case word for the summary, e.g. ``http_503``.
        retry_after: Seconds the server asked us to wait (``Retry-After``), if any.
    """

    def __init__(self, reason: str, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.attempts = 1


class PermanentError(Exception):
    """A failure that retrying cannot fix (missing file, forbidden, bad plan).

    Attributes:
        reason: Stable snake_case word for the summary, e.g. ``http_404``.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.attempts = 1


class Interrupted(Exception):
    """Raised inside workers once a stop was requested, so they give up quickly."""


# ----------------------------------------------------------------- pure functions


@dataclasses.dataclass(frozen=True)
class Partition:
    """A ``{version}/{level}/{split}`` partition such as ``2/frame/train``."""

    version: str
    level: str
    split: str

    def __str__(self) -> str:
        return f"{self.version}/{self.level}/{self.split}"


def parse_partition(text: str) -> Partition:
    """Parses ``2/frame/train`` into a `Partition`.

    Validated up front because a typo would otherwise surface as an HTTP 404 for the
    plan, which says nothing about which part was wrong.

    Raises:
        ValueError: If the text is not ``{digits}/{level}/{split}`` with known values.
    """
    parts = text.strip().strip("/").split("/")
    if len(parts) != 3:
        raise ValueError(f"partition must be VERSION/LEVEL/SPLIT, e.g. 2/frame/train; got {text!r}")
    version, level, split = parts
    if not version.isdigit():
        raise ValueError(f"partition version must be a number, got {version!r}")
    if level not in LEVELS:
        raise ValueError(f"partition level must be one of {', '.join(LEVELS)}; got {level!r}")
    if split not in SPLITS:
        raise ValueError(f"partition split must be one of {', '.join(SPLITS)}; got {split!r}")
    return Partition(version=version, level=level, split=split)


def parse_shard(text: str) -> tuple[int, int]:
    """Parses ``X,N`` (keep the X-th of N shards, 1-based) as the official script does.

    Raises:
        ValueError: If it is not two integers with ``1 <= X <= N``.
    """
    pieces = text.split(",")
    if len(pieces) != 2:
        raise ValueError(f"shard must be X,N with 1 <= X <= N, e.g. 1,100; got {text!r}")
    try:
        index, count = int(pieces[0]), int(pieces[1])
    except ValueError:
        raise ValueError(f"shard must be two integers X,N; got {text!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"shard X,N needs 1 <= X <= N; got {text!r}")
    return index, count


def plan_url(partition: Partition, *, base_url: str | None = None) -> str:
    """URL of the partition's download plan (official host unless ``base_url``)."""
    root = base_url.rstrip("/") if base_url else PLAN_HOST
    return f"{root}/{partition.version}/download_plans/{partition.level}_{partition.split}.json"


def file_url(partition: Partition, name: str, *, mirror: str = "us", base_url: str | None = None) -> str:
    """URL of one data file: the mirror host, or ``base_url`` when given."""
    if base_url:
        root = base_url.rstrip("/")
    else:
        if mirror not in MIRRORS:
            raise ValueError(f"mirror must be one of {', '.join(MIRRORS)}; got {mirror!r}")
        root = FILE_HOST_TEMPLATE.format(mirror=mirror)
    return f"{root}/{partition}/{urllib.parse.quote(name)}"


def in_shard(name: str, *, shard_index: int, num_shards: int) -> bool:
    """Whether ``name`` belongs to shard ``shard_index`` (1-based) of ``num_shards``.

    Hashes the file *name*, not its content, exactly like the official script, so that
    shards chosen here and with ``download.py`` are the same files.
    """
    return int(hashlib.md5(name.encode("utf-8")).hexdigest(), 16) % num_shards == shard_index - 1


def select_files(files: Mapping[str, str], *, shard_index: int = 1, num_shards: int = 1) -> dict[str, str]:
    """Keeps the plan entries (name -> md5) of one shard, in sorted name order.

    Sorted so that runs, dry runs and logs list files in a stable order.
    """
    return {
        name: files[name]
        for name in sorted(files)
        if in_shard(name, shard_index=shard_index, num_shards=num_shards)
    }


def file_index(two_chars: str) -> int:
    """Index of a two-character id among all pairs over `ALPHABET` (``aa`` -> 0).

    Raises:
        ValueError: If ``two_chars`` is not two characters of `ALPHABET`.
    """
    if len(two_chars) != 2 or any(c not in ALPHABET for c in two_chars):
        raise ValueError(f"not a two-character file id over a-zA-Z0-9: {two_chars!r}")
    return ALPHABET.index(two_chars[0]) * len(ALPHABET) + ALPHABET.index(two_chars[1])


def final_name(name: str) -> str:
    """Name a plan file is saved under: ``trainAB.tfrecord`` -> ``train%04d.tfrecord``.

    Same rule as the official script, so directories filled by either are
    interchangeable; names of another shape are kept unchanged.
    """
    match = _NAME_RE.match(name)
    if not match:
        return name
    return f"{match['prefix']}{file_index(match['id']):04d}.tfrecord"


def parse_plan(data: bytes) -> dict[str, str]:
    """Reads a download plan ``{"files": {name: md5hex}}``.

    Names are checked to be plain file names because they become paths under the
    output directory; a plan is remote input and must not write elsewhere.

    Raises:
        PermanentError: If the plan is not of that shape.
    """
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PermanentError("bad_plan", f"download plan is not JSON: {error}") from None
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, dict):
        raise PermanentError("bad_plan", 'download plan has no "files" object')
    for name, md5 in files.items():
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise PermanentError("bad_plan", f"download plan has an unsafe file name: {name!r}")
        if not isinstance(md5, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", md5):
            raise PermanentError("bad_plan", f"download plan has no md5 for {name!r}")
    return {name: md5.lower() for name, md5 in files.items()}


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    The project's one policy (:mod:`pipeline.retry`): exponential (``base * 2**(attempt-1)``,
    capped) with full jitter, so parallel workers that failed together (a mirror hiccup)
    spread their retries over the whole window.
    """
    return retry.full_jitter(attempt, base=base, cap=cap, rng=rng)


def md5_file(path: str | os.PathLike[str]) -> str:
    """Hex md5 of a file's content, read in chunks (files are hundreds of MB)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def format_bytes(count: float) -> str:
    """Human-readable binary size, e.g. ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` for progress and summary lines."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# -------------------------------------------------------------------- data types


@dataclasses.dataclass(frozen=True)
class PlannedFile:
    """One selected file: plan name, name on disk, expected md5 and source URL."""

    name: str
    final_name: str
    md5: str
    url: str


@dataclasses.dataclass
class DownloadSummary:
    """Outcome of `download`; ``ok`` is what the exit code reflects.

    Attributes:
        downloaded: Final names fetched in this run.
        skipped: Final names already present with the right md5.
        failed: Final name -> reason, for files that are not present afterwards.
        bytes_downloaded: Bytes received, including attempts that were discarded.
        seconds: Wall time of the run.
    """

    downloaded: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    bytes_downloaded: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def total(self) -> int:
        return len(self.downloaded) + len(self.skipped) + len(self.failed)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def format(self) -> str:
        """Multi-line human summary, failures listed with their reasons."""
        rate = self.bytes_downloaded / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"downloaded: {len(self.downloaded)}, skipped (already present): {len(self.skipped)}, "
            f"failed: {len(self.failed)}, bytes: {self.bytes_downloaded} ({format_bytes(self.bytes_downloaded)}), "
            f"seconds: {self.seconds:.1f} ({format_bytes(rate)}/s)"
        ]
        for name in sorted(self.failed):
            lines.append(f"  FAILED {name}: {self.failed[name]}")
        if self.interrupted:
            lines.append("  interrupted: rerun the same command to resume")
        return "\n".join(lines)


# -------------------------------------------------------------------- progress


class Progress:
    """Thread-safe progress line on a stream.

    On a terminal it is rewritten in place (``\\r``) at most every ``tty_interval``
    seconds; elsewhere (logs, CI) a full line is printed every ``interval`` seconds so
    logs stay readable. The ETA uses files that needed a download only, because
    skipped files take no time and would make it wildly optimistic.
    """

    def __init__(self, *, total: int, stream: TextIO | None, interval: float = 5.0, tty_interval: float = 0.2):
        self._lock = threading.Lock()
        self._stream = stream
        try:
            self._tty = bool(stream is not None and stream.isatty())
        except (AttributeError, ValueError):
            self._tty = False
        self._interval = tty_interval if self._tty else interval
        self._total = total
        self._start = time.monotonic()
        self._last_render = float("-inf")
        self._bytes = 0
        self._counts = {"downloaded": 0, "skipped": 0, "failed": 0}
        self._width = 0

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self._bytes += count
            self._maybe_render()

    def file_done(self, outcome: str) -> None:
        """Counts one finished file; ``outcome`` is downloaded, skipped or failed."""
        with self._lock:
            self._counts[outcome] += 1
            self._maybe_render()

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes

    def line(self) -> str:
        """The current progress text (without ``\\r`` or newline)."""
        elapsed = max(time.monotonic() - self._start, 1e-9)
        downloaded, skipped, failed = (self._counts[k] for k in ("downloaded", "skipped", "failed"))
        done = downloaded + skipped + failed
        work = self._total - skipped
        finished_work = downloaded + failed
        if done >= self._total:
            eta = format_duration(0)
        elif finished_work:
            eta = format_duration(elapsed / finished_work * (work - finished_work))
        else:
            eta = "?"
        text = (
            f"[yt8m] {done}/{self._total} files, {format_bytes(self._bytes)}, "
            f"{format_bytes(self._bytes / elapsed)}/s, ETA {eta}"
        )
        if failed:
            text += f", {failed} failed"
        return text

    def _maybe_render(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._stream is None or (not force and now - self._last_render < self._interval):
            return
        self._last_render = now
        text = self.line()
        if self._tty:
            padding = " " * max(0, self._width - len(text))
            self._width = len(text)
            self._stream.write(f"\r{text}{padding}")
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def finish(self) -> None:
        """Prints the final state and ends the in-place line."""
        with self._lock:
            self._maybe_render(force=True)
            if self._tty and self._stream is not None:
                self._stream.write("\n")
                self._stream.flush()


# -------------------------------------------------------------------- transfers


def _classify_http_error(error: urllib.error.HTTPError, url: str) -> Exception:
    code = error.code
    if code in _PERMANENT_HTTP or (400 <= code < 500 and code not in (408, 425, 429)):
        return PermanentError(f"http_{code}", f"HTTP {code} for {url}")
    retry_after = None
    header = error.headers.get("Retry-After") if error.headers else None
    if header and header.strip().isdigit():
        retry_after = float(header.strip())
    return TransientError(f"http_{code}", f"HTTP {code} for {url}", retry_after=retry_after)


def _open(opener: urllib.request.OpenerDirector, url: str, *, timeout: float) -> http.client.HTTPResponse:
    """Opens ``url``, turning every failure into a Transient/PermanentError."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        raise _classify_http_error(error, url) from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, (TimeoutError, socket.timeout)):
            raise TransientError("timeout", f"timed out connecting to {url}") from None
        # DNS hiccups and refused connections are usually brief on big mirrors.
        raise TransientError("connection_error", f"{url}: {error.reason}") from None
    except (TimeoutError, socket.timeout):
        raise TransientError("timeout", f"timed out waiting for {url}") from None
    except (ConnectionError, http.client.HTTPException, OSError) as error:
        raise TransientError("connection_error", f"{url}: {error}") from None


def _read_body(response: http.client.HTTPResponse, url: str, sink, *, stop: threading.Event) -> int:
    """Streams the body into ``sink(chunk)``; detects truncation against Content-Length.

    ``HTTPResponse.read(n)`` returns short data instead of raising when the peer
    closes early, so the length is checked here explicitly.
    """
    expected = response.headers.get("Content-Length")
    received = 0
    while True:
        if stop.is_set():
            raise Interrupted()
        try:
            chunk = response.read(_CHUNK_BYTES)
        except (TimeoutError, socket.timeout):
            raise TransientError("timeout", f"timed out reading {url} after {received} bytes") from None
        except http.client.IncompleteRead:
            raise TransientError("truncated", f"{url}: connection closed mid-body after {received} bytes") from None
        except (ConnectionError, http.client.HTTPException, OSError) as error:
            raise TransientError("connection_error", f"{url} after {received} bytes: {error}") from None
        if not chunk:
            break
        received += len(chunk)
        # Outside the try: a local write error (disk full) is not a network error to retry.
        sink(chunk)
    if expected is not None and expected.isdigit() and received != int(expected):
        raise TransientError("truncated", f"{url}: got {received} of {expected} bytes")
    return received


def _with_retries(action, *, max_attempts: int, backoff_base: float, backoff_max: float,
                  stop: threading.Event, rng: random.Random):
    """Runs ``action(attempt)``, retrying TransientError with backoff (:func:`pipeline.retry.call`).

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


def fetch_plan(url: str, *, timeout: float = 60.0, max_attempts: int = 5, backoff_base: float = 1.0,
               backoff_max: float = 60.0, opener: urllib.request.OpenerDirector | None = None,
               stop: threading.Event | None = None) -> dict[str, str]:
    """Downloads and parses a plan (name -> md5), retrying transient errors.

    Raises:
        TransientError: Still failing after ``max_attempts``.
        PermanentError: HTTP 404/403 or a plan of the wrong shape.
    """
    opener = opener or urllib.request.build_opener()
    stop = stop or threading.Event()

    def attempt(_: int) -> dict[str, str]:
        buffer = bytearray()
        with _open(opener, url, timeout=timeout) as response:
            _read_body(response, url, buffer.extend, stop=stop)
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
    return _planned(part, select_files(files, shard_index=shard_index, num_shards=num_shards),
                    mirror=mirror, base_url=base_url)


def _planned(part: Partition, selected: Mapping[str, str], *, mirror: str, base_url: str | None) -> list[PlannedFile]:
    planned: list[PlannedFile] = []
    owners: dict[str, str] = {}
    for name, md5 in selected.items():
        target = final_name(name)
        if target in owners:
            # Two downloads racing for one path would corrupt each other's result.
            raise ValueError(f"plan files {owners[target]!r} and {name!r} both map to {target!r}")
        owners[target] = name
        planned.append(PlannedFile(name=name, final_name=target, md5=md5,
                                   url=file_url(part, name, mirror=mirror, base_url=base_url)))
    return planned


class _Downloader:
    """Fetches one PlannedFile at a time into ``output_dir``; shared by the workers."""

    def __init__(self, *, output_dir: pathlib.Path, opener: urllib.request.OpenerDirector, timeout: float,
                 max_attempts: int, backoff_base: float, backoff_max: float, progress: Progress,
                 stop: threading.Event):
        self.output_dir = output_dir
        self.opener = opener
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
        target = self.output_dir / item.final_name
        if target.is_file() and md5_file(target) == item.md5:
            return True
        original = self.output_dir / item.name
        if item.name != item.final_name and original.is_file() and md5_file(original) == item.md5:
            os.replace(original, target)
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

    def _attempt(self, item: PlannedFile) -> None:
        target = self.output_dir / item.final_name
        partial = self.output_dir / (item.final_name + PART_SUFFIX)
        digest = hashlib.md5()
        # Renamed to the final name only when the block completes: readers see no file or the complete one;
        # an md5 mismatch (or any error) removes the .part, and a rerun overwrites a stale one.
        with fileio.atomic_write(str(target), temp_path=str(partial)) as handle, \
                _open(self.opener, item.url, timeout=self.timeout) as response:
            def sink(chunk: bytes) -> None:
                handle.write(chunk)
                digest.update(chunk)
                self.progress.add_bytes(len(chunk))

            _read_body(response, item.url, sink, stop=self.stop)
            handle.flush()
            os.fsync(handle.fileno())
            actual = digest.hexdigest()
            if actual != item.md5:
                raise TransientError("md5_mismatch", f"{item.name}: md5 {actual}, plan says {item.md5}")


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
        output_dir: Created if missing.
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
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress(total=len(planned), stream=progress_stream, interval=progress_interval)
    worker = _Downloader(output_dir=out, opener=urllib.request.build_opener(), timeout=timeout,
                         max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max,
                         progress=progress, stop=stop)
    summary = DownloadSummary()
    results_lock = threading.Lock()

    def run_one(item: PlannedFile) -> None:
        if stop.is_set():
            return
        try:
            outcome = worker.fetch(item)
        except Interrupted:
            return
        except (TransientError, PermanentError) as error:
            attempts = getattr(error, "attempts", 1)
            detail = f"{error.reason} after {attempts} attempt{'s' if attempts != 1 else ''}: {error.message}"
            outcome = "failed"
            with results_lock:
                summary.failed[item.final_name] = detail
        except OSError as error:  # local disk trouble: report it, keep the other files going
            outcome = "failed"
            with results_lock:
                summary.failed[item.final_name] = f"local_io_error: {error}"
        else:
            with results_lock:
                (summary.downloaded if outcome == "downloaded" else summary.skipped).append(item.final_name)
        progress.file_done(outcome)

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="yt8m")
    try:
        futures = [executor.submit(run_one, item) for item in planned]
        for future in concurrent.futures.as_completed(futures):
            future.result()
    except BaseException:
        # Ctrl-C lands here in the main thread: tell workers to drop their transfers.
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    progress.finish()
    summary.interrupted = stop.is_set()
    summary.downloaded.sort()
    summary.skipped.sort()
    summary.bytes_downloaded = progress.bytes
    summary.seconds = time.monotonic() - started
    return summary


# -------------------------------------------------------------------------- CLI


def _shard_arg(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _partition_arg(text: str) -> Partition:
    try:
        return parse_partition(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    """A socket timeout: 0 would make every read fail at once (non-blocking), so it is refused here."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The CLI; separate so docs and tests can inspect the flags."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.download_yt8m",
        description="Download a YouTube-8M partition (resumable, parallel, md5-checked).",
    )
    parser.add_argument("--partition", required=True, type=_partition_arg,
                        help="VERSION/LEVEL/SPLIT, e.g. 2/frame/train")
    parser.add_argument("--shard", default=(1, 1), type=_shard_arg,
                        help="X,N: download the X-th of N shards (md5 of the file name), default 1,1")
    parser.add_argument("--mirror", default="us", choices=MIRRORS, help="download mirror, default us")
    parser.add_argument("--output_dir", default=".", help="where files go (created), default current dir")
    parser.add_argument("--base_url", default=None,
                        help="serve plan and files from here (URL/{version}/download_plans/..., "
                             "URL/{partition}/{name}) instead of the official hosts")
    parser.add_argument("--parallelism", default=4, type=_positive_int, help="concurrent downloads, default 4")
    parser.add_argument("--max_attempts", default=5, type=_positive_int,
                        help="attempts per file on transient errors, default 5")
    parser.add_argument("--timeout", default=60.0, type=_positive_float, help="socket timeout in s, default 60")
    parser.add_argument("--backoff_base", default=1.0, type=_non_negative_float,
                        help="first retry delay scale in s (doubles each attempt, jittered), default 1")
    parser.add_argument("--backoff_max", default=60.0, type=_non_negative_float,
                        help="cap on one retry delay in s, default 60")
    parser.add_argument("--progress_interval", default=5.0, type=_non_negative_float,
                        help="seconds between progress lines when stderr is not a terminal, default 5")
    parser.add_argument("--dry_run", action="store_true",
                        help="print the selected files and their final names, download nothing")
    return parser


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
