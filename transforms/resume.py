"""SkipExisting: drops clips whose id already has a record in the output, for reruns that resume."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam

from pipeline import example_proto
from transforms import isolation, metrics


def record_id(serialized: bytes) -> str:
    """The clip id (context feature `id`) of a serialized SequenceExample record."""
    example = example_proto.SequenceExample.FromString(serialized)
    return example.context.feature["id"].bytes_list.value[0].decode("utf-8")


def _ids_of_shard(path: str):
    """The ids of one existing shard, read by path (never as a glob: the path may hold `[`, `*`, `?`).

    From the shard's id index when it provably belongs to the shard (`pipeline.shardindex.check`:
    a framing walk, no payload read); otherwise (a dataset written before indexes, a missing,
    truncated, edited or stale index) from the records themselves.
    """
    import logging  # pylint: disable=import-outside-toplevel

    from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=import-outside-toplevel
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    from pipeline import shardindex, tfrecord  # pylint: disable=import-outside-toplevel

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


def _describe_joined(element: tuple[str, Mapping[str, Iterable[Any]]]) -> tuple[str, dict, int | None]:
    clip_id, grouped = element
    clips = list(grouped["clip"])
    return (clip_id, clips[0].fields, clips[0].row) if clips else (clip_id, {}, None)


@isolation.isolate("resume", _describe_joined)
def _todo_or_skipped(element: tuple[str, Mapping[str, Iterable[Any]]]) -> Iterator[Any]:
    clip_id, grouped = element
    clips = list(grouped["clip"])
    if not clips:
        return
    if list(grouped["done"]):
        metrics.counter("clips_skipped_existing").inc(len(clips))
        yield beam.pvalue.TaggedOutput("skipped", clip_id)
        return
    yield from clips


class SkipExisting(beam.PTransform):
    """Returns (clips still to build, a one-element PCollection with the number skipped, failures).

    Args:
      paths: the record files already written (checked by the launcher; may be empty).
    """

    def __init__(self, paths: list[str] | None):
        super().__init__()
        self._paths = sorted(paths or [])

    def expand(self, clips: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection, beam.PCollection]:
        """ClipRequests -> (those without a record yet, the count skipped, failure dicts)."""
        p = clips.pipeline
        if self._paths:
            done = (p | "ExistingShards" >> beam.Create(self._paths)
                    | "SpreadShards" >> beam.Reshuffle()
                    | "ExistingIds" >> beam.FlatMap(_ids_of_shard))
        else:
            done = p | "NoExisting" >> beam.Create([])
        split = (
            {"clip": clips | "KeyClips" >> beam.Map(lambda c: (c.clip_id, c)), "done": done}
            | "JoinExisting" >> beam.CoGroupByKey()
            | "TodoOrSkipped" >> beam.FlatMap(_todo_or_skipped).with_outputs(
                "skipped", isolation.FAILURES, main="todo"))
        skipped = split.skipped | "CountSkipped" >> beam.combiners.Count.Globally()
        return split.todo, skipped, split[isolation.FAILURES]
