"""SkipExisting: drops clips whose id already has a record in the output, for reruns that resume."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam

from pipeline import errors
from pipeline.dataset import example_proto
from pipeline.elements import Failure
from transforms.support import isolation, metrics


def record_id(serialized: bytes) -> str:
    """The clip id (context feature `id`) of a serialized SequenceExample record."""
    example = example_proto.SequenceExample.FromString(serialized)
    return example.context.feature["id"].bytes_list.value[0].decode("utf-8")


def _ids_of_shard(path: str):
    """The ids of one existing shard, read by path (never as a glob: the path may hold `[`, `*`, `?`).

    From the shard's id index when it provably belongs to the shard (`pipeline.dataset.shardindex.check`:
    a framing walk, no payload read); otherwise (a dataset written before indexes, a missing,
    truncated, edited or stale index) from the records themselves.
    """
    import logging  # pylint: disable=import-outside-toplevel

    from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=import-outside-toplevel
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    from pipeline.dataset import shardindex, tfrecord  # pylint: disable=import-outside-toplevel

    problem = shardindex.check(path)
    if problem is None:
        metrics.counter("shards_resumed_from_index").inc()
        for clip_id in shardindex.read_ids(path):
            yield clip_id, None
        return
    if problem != "no index":
        logging.warning("Ignoring the id index of %s (%s); reading its records instead", path, problem)
    metrics.counter("shards_resumed_from_records").inc()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        for record in tfrecord.read_records(f):
            yield record_id(record), None


def _failures_of_shard(path: str) -> Iterator[tuple[str, dict]]:
    """(id, failure) of each line of an earlier failure report shard that a rerun may carry over.

    Read-stage lines are left out: the CSV is read again, so they come back by themselves. A line that
    is not JSON (the file was edited) is skipped: its row is then simply tried again.
    """
    import json  # pylint: disable=import-outside-toplevel

    from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=import-outside-toplevel
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        text = f.read().decode("utf-8", "replace")
    for line in text.splitlines():
        try:
            failure = json.loads(line)
        except ValueError:
            metrics.counter("earlier_failure_lines_unreadable").inc()
            continue
        if isinstance(failure, dict) and failure.get("id") and failure.get("stage") != "read" \
                and isinstance(failure.get("reason"), str):
            yield str(failure["id"]), failure


def _describe_joined(element: tuple[str, Mapping[str, Iterable[Any]]]) -> tuple[str, dict, int | None]:
    clip_id, grouped = element
    clips = list(grouped["clip"])
    return (clip_id, clips[0].fields, clips[0].row) if clips else (clip_id, {}, None)


@isolation.isolate("resume", _describe_joined)
def _todo_skipped_or_carried(element: tuple[str, Mapping[str, Iterable[Any]]]) -> Iterator[Any]:
    """A row with a record is skipped; one whose earlier failure was permanent keeps that line; the rest is todo.

    With --retry_permanent the earlier failures are not joined at all (`SkipExisting.expand`).
    """
    clip_id, grouped = element
    clips = list(grouped["clip"])
    if not clips:
        return
    if list(grouped["done"]):
        metrics.counter("clips_skipped_existing").inc(len(clips))
        for clip in clips:
            yield beam.pvalue.TaggedOutput("skipped", clip)
        return
    earlier = next(iter(grouped.get("failed", ())), None)
    if earlier is not None and not errors.is_transient(earlier["reason"]):
        # A verdict on the row (gone, private, ...): its line stays in the report, without a new request.
        metrics.counter("failures_carried_over").inc(len(clips))
        for clip in clips:
            line = Failure.of(clip_id=clip.clip_id, fields=clip.fields, row=clip.row,
                              stage=str(earlier.get("stage") or "fetch"), reason=earlier["reason"],
                              message=str(earlier.get("message") or ""))
            yield beam.pvalue.TaggedOutput("carried", line.carried())
        return
    if earlier is not None:
        metrics.counter("earlier_failures_retried").inc(len(clips))
    yield from clips


class SkipExisting(beam.PTransform):
    """Returns a dict: `todo` (clips still to build), `skipped` (ClipRequests that have a record),
    `skipped_count` (one int), `carried` (failure lines kept from the earlier report) and `failures`.

    Args:
      paths: the record files already written (checked by the launcher; may be empty).
      failure_paths: the earlier failure report's shards; rows whose failure there is permanent
        (`pipeline.errors.is_transient` False) keep that line instead of being tried again.
      retry_permanent: try every row without a record again, whatever its earlier failure.
    """

    def __init__(self, paths: list[str] | None, failure_paths: list[str] | None = None, *,
                 retry_permanent: bool = False):
        super().__init__()
        self._paths = sorted(paths or [])
        self._failure_paths = sorted(failure_paths or [])
        self._retry_permanent = retry_permanent

    def expand(self, clips: beam.PCollection) -> dict[str, beam.PCollection]:
        """ClipRequests -> the dict described in the class."""
        p = clips.pipeline
        if self._paths:
            done = (p | "ExistingShards" >> beam.Create(self._paths)
                    | "SpreadShards" >> beam.Reshuffle()
                    | "ExistingIds" >> beam.FlatMap(_ids_of_shard))
        else:
            done = p | "NoExisting" >> beam.Create([])
        joined = {"clip": clips | "KeyClips" >> beam.Map(lambda c: (c.clip_id, c)), "done": done}
        if self._failure_paths and not self._retry_permanent:
            joined["failed"] = (p | "EarlierFailureShards" >> beam.Create(self._failure_paths)
                                | "EarlierFailures" >> beam.FlatMap(_failures_of_shard))
        split = (
            joined
            | "JoinExisting" >> beam.CoGroupByKey()
            | "TodoOrSkipped" >> beam.FlatMap(_todo_skipped_or_carried).with_outputs(
                "skipped", "carried", isolation.FAILURES, main="todo"))
        skipped_count = split.skipped | "CountSkipped" >> beam.combiners.Count.Globally()
        return {"todo": split.todo, "skipped": split.skipped, "skipped_count": skipped_count,
                "carried": split.carried, "failures": split[isolation.FAILURES]}
