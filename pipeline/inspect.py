"""Checks and summarizes frame-level records: ours, or official YouTube-8M shards.

  python -m pipeline.inspect out/                      # a dataset directory (reads out/records/*)
  python -m pipeline.inspect 'out/records/*.tfrecord'  # a glob (local or gs://)
  python -m pipeline.inspect train0000.tfrecord --json

Every record is checked against SPEC §1 (id, sorted labels, rgb 1024 / audio 128 bytes per
step, equal step counts in 1..300, unique ids); the exit status is 1 and the offending record
ids are printed when any check fails, 2 when nothing could be read.
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import json
import sys

import numpy as np

from pipeline import records

_HIST_EDGES = (1, 2, 5, 10, 30, 60, 120, 240, 300)


def expand_paths(spec: str) -> list[str]:
    """A file, a glob or a dataset directory -> sorted list of record files (local or gs://)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if tf.io.gfile.isdir(spec):
        inner = spec.rstrip("/") + "/records"
        base = inner if tf.io.gfile.isdir(inner) else spec.rstrip("/")
        return sorted(tf.io.gfile.glob(base + "/*.tfrecord"))
    if any(ch in spec for ch in "*?["):
        return sorted(tf.io.gfile.glob(spec))
    return [spec] if tf.io.gfile.exists(spec) else []


def _read_vocabulary(paths: list[str]) -> dict[int, str]:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if not paths:
        return {}
    parent = paths[0].rsplit("/", 1)[0]
    for candidate in (parent + "/vocabulary.csv", parent.rsplit("/", 1)[0] + "/vocabulary.csv"):
        if tf.io.gfile.exists(candidate):
            with tf.io.gfile.GFile(candidate) as f:
                rows = csv.DictReader(io.StringIO(f.read()))
                return {int(r["Index"]): r["Name"] for r in rows if r.get("Index", "").strip().isdigit()}
    return {}


class _Moments:
    """Running per-dimension mean and variance of dequantized features (Welford-free: sums in float64)."""

    def __init__(self, width: int):
        self.n = 0
        self.sum = np.zeros(width)
        self.sumsq = np.zeros(width)

    def add(self, quantized: np.ndarray) -> None:
        x = quantized.astype(np.float64) * (4.0 / 255.0) + (4.0 / 512.0) - 2.0
        self.n += x.shape[0]
        self.sum += x.sum(0)
        self.sumsq += (x * x).sum(0)

    def summary(self) -> dict:
        if self.n == 0:
            return {"steps": 0}
        mean = self.sum / self.n
        std = np.sqrt(np.maximum(self.sumsq / self.n - mean * mean, 0))
        return {"steps": self.n, "mean_of_means": float(mean.mean()), "mean_std": float(std.mean()),
                "min_dim_mean": float(mean.min()), "max_dim_mean": float(mean.max()),
                "per_dim_mean": mean.round(4).tolist(), "per_dim_std": std.round(4).tolist()}


def inspect_records(paths: list[str], *, max_errors: int = 20) -> dict:
    """Reads every record of `paths`; returns a summary dict with `violations`."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    summary = {"files": len(paths), "records": 0, "steps": 0, "violations": []}
    steps_hist = collections.Counter()
    label_counts = collections.Counter()
    seen = {}
    rgb, audio = _Moments(records.RGB_BYTES), _Moments(records.AUDIO_BYTES)
    for path in paths:
        try:
            for i, data in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
                where = f"{path}#{i}"
                try:
                    rec = records.check_record(data)
                except records.RecordError as e:
                    summary["violations"].append({"id": e.clip_id, "where": where, "problem": e.problem})
                    continue
                if rec.clip_id in seen:
                    summary["violations"].append({"id": rec.clip_id, "where": where,
                                                  "problem": f"duplicate id (also in {seen[rec.clip_id]})"})
                seen[rec.clip_id] = where
                summary["records"] += 1
                steps = rec.rgb.shape[0]
                summary["steps"] += steps
                bucket = next(edge for edge in _HIST_EDGES if steps <= edge)
                steps_hist[bucket] += 1
                label_counts.update(rec.labels)
                rgb.add(rec.rgb)
                audio.add(rec.audio)
        except tf.errors.DataLossError as e:
            summary["violations"].append({"id": "?", "where": path, "problem": f"corrupt TFRecord file: {e.message}"})
    vocabulary = _read_vocabulary(paths)
    summary["steps_histogram"] = {f"<={edge}": steps_hist[edge] for edge in _HIST_EDGES if steps_hist[edge]}
    summary["labels"] = {vocabulary.get(label, str(label)): count for label, count in label_counts.most_common()}
    summary["distinct_labels"] = len(label_counts)
    summary["rgb"] = rgb.summary()
    summary["audio"] = audio.summary()
    summary["violations_total"] = len(summary["violations"])
    summary["violations"] = summary["violations"][:max_errors]
    return summary


def _print_text(summary: dict, out) -> None:
    print(f"files: {summary['files']}  records: {summary['records']}  steps: {summary['steps']}", file=out)
    print("steps per record: " + ", ".join(f"{k}: {v}" for k, v in summary["steps_histogram"].items()), file=out)
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
        print("OK: every record matches the YouTube-8M frame-level layout", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.inspect", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="record files, globs or dataset directories (local or gs://)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (per-dimension stats too)")
    args = parser.parse_args(argv)
    paths = sorted({p for spec in args.paths for p in expand_paths(spec)})
    if not paths:
        print(f"error: no record files found at {' '.join(args.paths)}", file=sys.stderr)
        return 2
    summary = inspect_records(paths)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_text(summary, sys.stdout)
    return 1 if summary["violations_total"] else 0


if __name__ == "__main__":
    sys.exit(main())
