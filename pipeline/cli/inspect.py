"""Checks and summarizes frame-level records: ours, or official YouTube-8M shards.

  python -m pipeline.inspect out/                      # a dataset directory (reads out/records/*)
  python -m pipeline.inspect 'out/records/*.tfrecord'  # a glob (local or gs://)
  python -m pipeline.inspect train0000.tfrecord --json

Every record is checked against docs/spec.md §1 (id, sorted labels, rgb 1024 / audio 128 bytes per
step, equal step counts in 1..300, unique ids); the exit status is 1 and the offending record
ids are printed when any check fails, 2 when nothing could be read.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import io
import json
import os
import sys
from collections.abc import Iterator
from typing import TextIO

import numpy as np

from pipeline.dataset import fileio, records, tfrecord
from pipeline.errors import one_line
from pipeline.features import quantization

_HIST_EDGES = (1, 2, 5, 10, 30, 60, 120, 240, 300)


def path_exists(path: str) -> bool:
    """`fileio.exists`, but False instead of an error for paths the filesystem rejects (e.g. `gs://x.csv`)."""
    try:
        return fileio.exists(path)
    except Exception:  # noqa: BLE001 - assorted errors for unusable names; all mean "not there"
        return False


def path_isdir(path: str) -> bool:
    """`fileio.isdir`, but False instead of an error for paths the filesystem rejects."""
    try:
        return fileio.isdir(path)
    except Exception:  # noqa: BLE001 - same as path_exists
        return False


def parent_dir(path: str) -> str | None:
    """The directory holding `path`, or None above a bucket root / filesystem root.

    Plain string handling (not os.path) so gs:// paths keep their scheme; a bare local file
    name has the current directory as its parent.
    """
    path = path.rstrip("/")
    scheme, sep, rest = path.partition("://")
    if not sep:
        scheme, rest = "", path
    if "/" not in rest:
        return None if sep or not rest or rest == "." else "."
    head = rest.rsplit("/", 1)[0]
    if not head:
        return None if sep else "/"
    return f"{scheme}://{head}" if sep else head


def expand_paths(spec: str) -> list[str]:
    """A file, a glob or a dataset directory -> sorted list of record files (local or gs://).

    A directory is either ours (records under DIR/records/) or a directory of downloaded
    YouTube-8M shards (train0000.tfrecord ... directly in it).
    """
    if "://" not in spec:
        spec = os.path.expanduser(spec)
    if path_isdir(spec):
        inner = spec.rstrip("/") + "/records"
        base = inner if path_isdir(inner) else spec.rstrip("/")
        return fileio.list_files(base, "*.tfrecord")
    if any(ch in spec for ch in "*?[") and not path_exists(spec):  # a file named with `[` is itself
        return [p for p in fileio.glob(spec) if not _is_legacy_index(p)]
    return [spec] if path_exists(spec) else []


def _is_legacy_index(path: str) -> bool:
    """`records/NAME.ids` of a dataset written before the id index moved to index/: not a record file."""
    folder, _, name = path.rpartition("/")
    return name.endswith(".ids") and folder.rsplit("/", 1)[-1] == "records"


def dataset_dir(spec: str, paths: list[str] | None = None) -> str | None:
    """The dataset directory of a CLI argument: where stats.json, failures and vocabulary.csv live.

    For a directory it is the directory itself; for files or globs it is the directory of the
    first record file, or its parent when that is our `records/` folder.
    """
    if "://" not in spec:
        spec = os.path.expanduser(spec)
    if path_isdir(spec):
        return spec.rstrip("/") or "/"
    paths = expand_paths(spec) if paths is None else paths
    if not paths:
        return None
    parent = parent_dir(paths[0])
    if parent is not None and parent.rstrip("/").rsplit("/", 1)[-1] == "records":
        return parent_dir(parent) or parent
    return parent


def parse_vocabulary_csv(text: str) -> dict[int, str]:
    """Index -> Name from our `Index,Name` file or YouTube-8M's `Index,TrainVideoCount,...,Name,...`.

    Columns are found by header name, so either layout works; rows whose Index is not an integer
    are skipped rather than failing the whole read.
    """
    rows = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if rows.fieldnames:
        rows.fieldnames = [name.strip() for name in rows.fieldnames]
    vocabulary = {}
    for row in rows:
        index = (row.get("Index") or "").strip()
        if index.isdigit():
            vocabulary[int(index)] = (row.get("Name") or "").strip() or index
    return vocabulary


def read_vocabulary(paths: list[str], directory: str | None = None) -> dict[int, str]:
    """Label names for `paths`: vocabulary.csv in `directory`, beside the records or one level up."""
    if not paths and directory is None:
        return {}
    candidates = []
    if directory is not None:
        candidates.append(directory)
    if paths:
        parent = parent_dir(paths[0])
        candidates += [d for d in (parent, parent_dir(parent) if parent else None) if d is not None]
    for folder in dict.fromkeys(candidates):
        candidate = folder.rstrip("/") + "/vocabulary.csv"
        if path_exists(candidate):
            return parse_vocabulary_csv(fileio.read_text(candidate))
    return {}


class Moments:
    """Per-dimension mean and std of dequantized features over every step added.

    Sums the uint8 values and their squares as exact int64 and dequantizes the moments at the end
    (dequantization is affine), which is both faster and more accurate than summing floats.
    """

    def __init__(self, width: int):
        self.n = 0
        self.sum = np.zeros(width, np.int64)
        self.sumsq = np.zeros(width, np.int64)

    def add(self, quantized: np.ndarray) -> None:
        """Adds one record's uint8 [steps, width] feature rows to the sums."""
        q = quantized.astype(np.int32)  # squares fit in int32; sums are taken in int64
        self.n += q.shape[0]
        self.sum += q.sum(0, dtype=np.int64)
        self.sumsq += (q * q).sum(0, dtype=np.int64)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and population std (ddof=0) of the dequantized values."""
        mean_q = self.sum / max(self.n, 1)
        var_q = np.maximum(self.sumsq / max(self.n, 1) - mean_q * mean_q, 0.0)
        return quantization.dequantize(mean_q, np.float64), np.sqrt(var_q) * quantization.STEP

    def summary(self) -> dict:
        """JSON-ready moments: steps, overall and per-dimension mean and std (`{"steps": 0}` when empty)."""
        if self.n == 0:
            return {"steps": 0}
        mean, std = self.mean_std()
        return {"steps": self.n, "mean_of_means": float(mean.mean()), "mean_std": float(std.mean()),
                "min_dim_mean": float(mean.min()), "max_dim_mean": float(mean.max()),
                "per_dim_mean": mean.round(4).tolist(), "per_dim_std": std.round(4).tolist()}


@dataclasses.dataclass
class ReadResult:
    """One item read from a shard: a record that passed docs/spec.md §1, or a problem naming where it was."""

    where: str
    record: records.ParsedRecord | None = None
    clip_id: str = "?"
    problem: str = ""


def iter_records(paths: list[str], *, max_records: int | None = None) -> Iterator[ReadResult]:
    """Reads and checks the records of `paths` in order, stopping after `max_records` items.

    Shared by `inspect` (everything) and `report` (a sample): a corrupt file or a record that
    breaks the layout becomes a ReadResult with a problem instead of stopping the read.
    """
    count = 0
    for path in paths:
        if max_records is not None and count >= max_records:
            return
        try:
            with fileio.open_read(path) as handle:
                for i, data in enumerate(tfrecord.read_records(handle)):
                    if max_records is not None and count >= max_records:
                        return
                    count += 1
                    where = f"{path}#{i}"
                    try:
                        yield ReadResult(where, records.check_record(data))
                    except records.RecordError as e:
                        yield ReadResult(where, clip_id=e.clip_id, problem=e.problem)
        except ValueError as e:  # the framing: a truncated record or a checksum that does not match
            yield ReadResult(path, problem=f"corrupt TFRecord file: {e}")
        except Exception as e:  # noqa: BLE001 - unreadable (permissions, vanished): named, not a traceback
            yield ReadResult(path, problem=f"cannot read the file: {type(e).__name__}: {one_line(e)}")



def inspect_records(paths: list[str], *, max_errors: int = 20) -> dict:
    """Reads every record of `paths`; returns a summary dict with `violations`."""
    summary = {"files": len(paths), "records": 0, "steps": 0, "video_level_records": 0, "violations": []}
    steps_hist = collections.Counter()
    label_counts = collections.Counter()
    seen = {}
    rgb, audio = Moments(records.RGB_BYTES), Moments(records.AUDIO_BYTES)
    for item in iter_records(paths):
        rec, where = item.record, item.where
        if rec is None:
            summary["violations"].append({"id": item.clip_id, "where": where, "problem": item.problem})
            continue
        if rec.clip_id in seen:
            summary["violations"].append({"id": rec.clip_id, "where": where,
                                          "problem": f"duplicate id (also in {seen[rec.clip_id]})"})
        seen[rec.clip_id] = where
        summary["records"] += 1
        summary["video_level_records"] += int(rec.video_level)  # context only: mean_rgb/mean_audio, no steps
        steps = rec.rgb.shape[0]
        summary["steps"] += steps
        bucket = next(edge for edge in _HIST_EDGES if steps <= edge)
        steps_hist[bucket] += 1
        label_counts.update(rec.labels)
        rgb.add(rec.rgb)
        audio.add(rec.audio)
    vocabulary = read_vocabulary(paths)
    summary["steps_histogram"] = {f"<={edge}": steps_hist[edge] for edge in _HIST_EDGES if steps_hist[edge]}
    summary["labels"] = {vocabulary.get(label, str(label)): count for label, count in label_counts.most_common()}
    summary["distinct_labels"] = len(label_counts)
    summary["rgb"] = rgb.summary()
    summary["audio"] = audio.summary()
    summary["violations_total"] = len(summary["violations"])
    summary["violations"] = summary["violations"][:max_errors]
    return summary


def _print_text(summary: dict, out: TextIO) -> None:
    print(f"files: {summary['files']}  records: {summary['records']}  steps: {summary['steps']}", file=out)
    print("steps per record: " + ", ".join(f"{k}: {v}" for k, v in summary["steps_histogram"].items()), file=out)
    if summary.get("video_level_records"):
        print(f"video-level records: {summary['video_level_records']} (context only: mean_rgb, mean_audio)", file=out)
    top = list(summary["labels"].items())[:20]
    print(f"labels: {summary['distinct_labels']} distinct; most common: "
          + ", ".join(f"{name} ({count})" for name, count in top), file=out)
    for name in ("rgb", "audio"):
        s = summary[name]
        if s["steps"]:
            print(f"{name}: dequantized mean {s['mean_of_means']:+.4f}, mean per-dimension std {s['mean_std']:.4f}, "
                  f"per-dimension means in [{s['min_dim_mean']:+.3f}, {s['max_dim_mean']:+.3f}]", file=out)
    if summary["violations_total"]:
        print(f"FAILED: {summary['violations_total']} violation(s) of the YouTube-8M frame-level layout:", file=out)
        for v in summary["violations"]:
            print(f"  record {v['id']!r} at {v['where']}: {v['problem']}", file=out)
    else:
        level = "video-level" if summary.get("video_level_records") == summary["records"] else "frame-level"
        print(f"OK: every record matches the YouTube-8M {level} layout", file=out)


def _fetch_only_stats(spec: str) -> dict | None:
    """stats.json of a fetch-only build (`--features none`: clips kept, no records) at `spec`, else None."""
    directory = dataset_dir(spec, [])
    if directory is None or not path_exists(directory.rstrip("/") + "/stats.json"):
        return None
    try:
        stats = json.loads(fileio.read_text(directory.rstrip("/") + "/stats.json"))
    except Exception:  # noqa: BLE001 - unreadable or not JSON: not a fetch-only build we can describe
        return None
    return stats if isinstance(stats, dict) and stats.get("features") == "none" else None


def main(argv: list[str] | None = None) -> int:
    """The CLI: summarizes record files or dataset directories as text or --json.

    Returns:
        The exit status: 0, 1 when a record breaks the format, 2 when no record file is found.
    """
    parser = argparse.ArgumentParser(prog="python -m pipeline.inspect", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="record files, globs or dataset directories (local or gs://)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (per-dimension stats too)")
    args = parser.parse_args(argv)
    paths = sorted({p for spec in args.paths for p in expand_paths(spec)})
    if not paths:
        fetch_only = [spec for spec in args.paths if _fetch_only_stats(spec) is not None]
        if fetch_only and len(fetch_only) == len(args.paths):
            for spec in fetch_only:
                stats = _fetch_only_stats(spec)
                print(f"{spec}: a fetch-only build (--features none) has no records: {stats.get('clips_kept', 0)} "
                      f"clips kept and {stats.get('clips_already_kept', 0)} already kept in "
                      f"{stats.get('clips_dir') or '--clips_dir'}, {stats.get('failures', 0)} failure line(s) "
                      "(stats.json)"
                      + ("" if stats.get("clips_kept", 0) or stats.get("clips_already_kept", 0) else
                         f"; every row failed: the reasons are in {spec.rstrip('/')}/failures-*.jsonl"))
            return 0
        print(f"error: no record files found at {' '.join(args.paths)}", file=sys.stderr)
        for spec in args.paths:
            if path_isdir(spec) and path_exists(spec.rstrip("/") + "/stats.json"):
                print(_no_records_note(spec), file=sys.stderr)
        return 2
    summary = inspect_records(paths)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_text(summary, sys.stdout)
        if not summary["records"]:
            for spec in args.paths:
                print(_no_records_note(spec), file=sys.stdout)
    return 1 if summary["violations_total"] else 0


def _no_records_note(spec: str) -> str:
    """Where to look when a build wrote no record: its failure report, with stats.json's reasons."""
    directory = dataset_dir(spec, []) or spec
    directory = directory.rstrip("/")
    stats = {}
    try:
        stats = json.loads(fileio.read_text(directory + "/stats.json"))
    except Exception:  # noqa: BLE001 - no stats.json (an unfinished build): the pointer alone
        pass
    reasons = stats.get("failures_by_reason") if isinstance(stats, dict) else None
    why = (" (" + ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]))
           + ")") if reasons else ""
    return (f"{spec}: no records: the build's {stats.get('failures', 'failed')} rows failed{why}; every row's "
            f"reason is in {directory}/failures-*.jsonl (python -m pipeline.report {spec} plots them)")


def run_cli() -> int:
    """`main` for `python -m`: output cut short by a closed pipe (`| head`) ends quietly, not in a traceback."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that flush has nowhere to fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(run_cli())
