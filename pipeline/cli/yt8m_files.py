"""What a YouTube-8M partition is made of: its download plan, shard selection and file names.

The half of `pipeline.cli.download_yt8m` without network: parsing ``2/frame/train`` and
``X,N``, the plan and file URLs, the official script's name-hash shards and
``trainAB.tfrecord`` -> ``train%04d.tfrecord`` renaming, the plan's checks, the error and
summary types the downloader reports with, its progress display, and `build_parser` (the
command line's flags, checked as they are parsed).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import string
import time
import urllib.parse
from collections.abc import Mapping
from typing import TextIO

from pipeline.cli.progress_line import StatusLine, format_bytes
from pipeline.cli.progress_line import format_clock as format_duration
from pipeline.dataset import fileio

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

_CHUNK_BYTES = 1 << 20
_NAME_RE = re.compile(r"^(?P<prefix>.*)(?P<id>[a-zA-Z0-9]{2})\.tfrecord$", re.DOTALL)


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


def md5_file(path: str | os.PathLike[str]) -> str:
    """Hex md5 of a file's content (local or gs://), read in chunks (files are hundreds of MB)."""
    digest = hashlib.md5()
    with fileio.open_read(os.fspath(path)) as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        """Files handled in all: downloaded, skipped (already there) and failed."""
        return len(self.downloaded) + len(self.skipped) + len(self.failed)

    @property
    def ok(self) -> bool:
        """True when nothing failed and the run was not interrupted."""
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


class Progress:
    """Thread-safe progress of a download (drawn by `pipeline.cli.progress_line.StatusLine`).

    On a terminal it is a rich bar (files done of the plan, elapsed time, bytes, rate, ETA)
    whose values change at most every ``tty_interval`` seconds; elsewhere (logs, CI) a full
    ``[yt8m] ...`` line is printed every ``interval`` seconds so logs stay readable, and the
    final state once. The ETA uses files that needed a download only, because skipped files
    take no time and would make it wildly optimistic.
    """

    def __init__(self, *, total: int, stream: TextIO | None, interval: float = 5.0, tty_interval: float = 0.2):
        self._total = total
        self._start = time.monotonic()
        self._bytes = 0
        self._counts = {"downloaded": 0, "skipped": 0, "failed": 0}
        self._display = StatusLine(stream, self.line, interval=interval, tty_interval=tty_interval, label="[yt8m]",
                                   bar_text=self._bar_text, counts=lambda: (sum(self._counts.values()), self._total))

    def add_bytes(self, count: int) -> None:
        """Counts ``count`` more bytes received (of any file)."""

        def change() -> None:
            self._bytes += count

        self._display.update(change)

    def file_done(self, outcome: str) -> None:
        """Counts one finished file; ``outcome`` is downloaded, skipped or failed."""

        def change() -> None:
            self._counts[outcome] += 1

        self._display.update(change)

    @property
    def bytes(self) -> int:
        """Bytes received so far, all files together."""
        with self._display.lock:
            return self._bytes

    def line(self) -> str:
        """The current plain progress line (without newline)."""
        done = sum(self._counts.values())
        return f"[yt8m] {done}/{self._total} files, {self._bar_text()}"

    def _bar_text(self) -> str:
        """Bytes, rate, ETA and failures: what the bar shows beside files done/total."""
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
        text = f"{format_bytes(self._bytes)}, {format_bytes(self._bytes / elapsed)}/s, ETA {eta}"
        if failed:
            text += f", {failed} failed"
        return text

    def finish(self) -> None:
        """Draws the final state (once) and stops the bar."""
        self._display.finish()


def planned_files(part: Partition, selected: Mapping[str, str], *, mirror: str,
                  base_url: str | None) -> list[PlannedFile]:
    """The selected plan entries as PlannedFiles with their final names and URLs.

    Raises:
        ValueError: If two files map to one final name.
    """
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
    parser.add_argument("--output_dir", default=".",
                        help="where files go: a local directory (created) or a gs:// prefix; default current dir")
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
