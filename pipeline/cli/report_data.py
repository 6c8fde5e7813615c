"""A dataset read back for `pipeline.cli.report`: stats.json, failure lines and a sample of records.

`load_dataset` reads one dataset (a directory of ours, or record files such as YouTube-8M's
shards) through `pipeline.cli.inspect`'s reader and checks, and keeps what the report's sections
draw: label and step counts, per-dimension feature sums, failures and the records' violations.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random

from pipeline.cli import inspect
from pipeline.dataset import fileio, records

MAX_FAILURE_EXAMPLES = 20


@dataclasses.dataclass
class Failures:
    """Failure counts of a dataset and where they came from (the jsonl shards or stats.json)."""

    source: str
    by_reason: collections.Counter
    by_stage: collections.Counter
    total: int
    examples: list[dict]
    unparseable_lines: int = 0


@dataclasses.dataclass
class Dataset:
    """What the report knows about one dataset: figures from its files and from the records read."""

    spec: str
    name: str
    directory: str | None
    paths: list[str]
    files_read: int = 0
    records_read: int = 0
    sampled: bool = False
    max_records: int | None = None
    items_read: int = 0
    violations: list[dict] = dataclasses.field(default_factory=list)
    violations_total: int = 0
    steps: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    labels: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    unlabeled: int = 0
    vocabulary: dict[int, str] = dataclasses.field(default_factory=dict)
    rgb: inspect.Moments = dataclasses.field(default_factory=lambda: inspect.Moments(records.RGB_BYTES))
    audio: inspect.Moments = dataclasses.field(default_factory=lambda: inspect.Moments(records.AUDIO_BYTES))
    stats: dict | None = None
    failures: Failures | None = None
    ours: bool = False

    @property
    def synthetic(self) -> bool:
        """True when stats.json says the features came from randomly initialized models."""
        if not self.stats:
            return False
        models = self.stats.get("models")
        return bool(self.stats.get("synthetic")) or (isinstance(models, dict) and bool(models.get("synthetic")))


def _read_text(path: str) -> str:
    return fileio.read_text(path)


def _read_failures(directory: str, stats: dict | None) -> Failures | None:
    """Counts the failure shards line by line; falls back to stats.json's counts when there are none."""
    try:
        shards = fileio.list_files(directory.rstrip("/"), "failures-*.jsonl")
    except Exception:  # noqa: BLE001 - an unreadable folder reads as "no failure shards"
        shards = []
    if shards:
        by_reason, by_stage, examples, bad = collections.Counter(), collections.Counter(), [], 0
        for shard in shards:
            for line in _read_text(shard).splitlines():
                if not line.strip():
                    continue
                try:
                    failure = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                by_reason[str(failure.get("reason", "?"))] += 1
                by_stage[str(failure.get("stage", "?"))] += 1
                if len(examples) < MAX_FAILURE_EXAMPLES:
                    examples.append(failure)
        return Failures(source=f"{len(shards)} failures-*.jsonl file(s)", by_reason=by_reason, by_stage=by_stage,
                        total=sum(by_reason.values()), examples=examples, unparseable_lines=bad)
    if stats and ("failures_by_reason" in stats or "failures" in stats):
        by_reason = collections.Counter(stats.get("failures_by_reason") or {})
        return Failures(source="stats.json", by_reason=by_reason,
                        by_stage=collections.Counter(stats.get("failures_by_stage") or {}),
                        total=int(stats.get("failures", sum(by_reason.values()))), examples=[])
    return None


def load_dataset(spec: str, *, max_records: int | None, name: str | None = None) -> Dataset:
    """Reads a dataset directory, glob or file (local or gs://): its side files and up to max_records records.

    Side files (stats.json, failures-*.jsonl, vocabulary.csv) are looked up in the dataset
    directory, so the official YouTube-8M layout (shards only) simply has fewer sections.
    """
    paths = inspect.expand_paths(spec)
    directory = inspect.dataset_dir(spec, paths)
    data = Dataset(spec=spec, name=name or spec, directory=directory, paths=paths, max_records=max_records)
    if directory is not None:
        stats_path = directory.rstrip("/") + "/stats.json"
        if inspect.path_exists(stats_path):
            data.stats = json.loads(_read_text(stats_path))
        data.failures = _read_failures(directory, data.stats)
        data.ours = data.stats is not None or inspect.path_isdir(directory.rstrip("/") + "/records")
    data.vocabulary = inspect.read_vocabulary(paths, directory)
    order = list(paths)
    random.Random(0).shuffle(order)  # a sample then spans splits and shards; a full read is order-free
    limit = None if not max_records else max_records + 1  # one more tells whether anything was left unread
    seen_ids: dict[str, str] = {}
    files = set()
    items = 0
    for item in inspect.iter_records(order, max_records=limit):
        if max_records and items >= max_records:
            data.sampled = True
            break
        items += 1
        files.add(item.where.rsplit("#", 1)[0])
        rec = item.record
        if rec is None:
            _add_violation(data, item.clip_id, item.where, item.problem)
            continue
        if rec.clip_id in seen_ids:
            _add_violation(data, rec.clip_id, item.where, f"duplicate id (also in {seen_ids[rec.clip_id]})")
        seen_ids[rec.clip_id] = item.where
        data.records_read += 1
        data.steps[rec.rgb.shape[0]] += 1
        data.labels.update(rec.labels)
        data.unlabeled += not rec.labels
        data.rgb.add(rec.rgb)
        data.audio.add(rec.audio)
    data.files_read = len(files)
    data.items_read = items
    return data


def _add_violation(data: Dataset, clip_id: str, where: str, problem: str) -> None:
    data.violations_total += 1
    if len(data.violations) < MAX_FAILURE_EXAMPLES:
        data.violations.append({"id": clip_id, "where": where, "problem": problem})
