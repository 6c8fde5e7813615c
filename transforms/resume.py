"""SkipExisting: drops clips whose id already has a record in the output, for reruns that resume."""

from __future__ import annotations

import apache_beam as beam

from transforms.read import NAMESPACE


def record_id(serialized: bytes) -> str:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    example = tf.train.SequenceExample.FromString(serialized)
    return example.context.feature["id"].bytes_list.value[0].decode("utf-8")


def _todo_or_skipped(element):
    clip_id, grouped = element
    clips = list(grouped["clip"])
    if not clips:
        return
    if list(grouped["done"]):
        beam.metrics.Metrics.counter(NAMESPACE, "clips_skipped_existing").inc(len(clips))
        yield beam.pvalue.TaggedOutput("skipped", clip_id)
        return
    yield from clips


class SkipExisting(beam.PTransform):
    """Returns (clips still to build, a one-element PCollection with the number skipped).

    Args:
      pattern: glob of the record files already written, or None when there are none.
    """

    def __init__(self, pattern: str | None):
        super().__init__()
        self._pattern = pattern

    def expand(self, clips):
        p = clips.pipeline
        if self._pattern:
            done = (p | "ReadExisting" >> beam.io.ReadFromTFRecord(self._pattern)
                    | "ExistingIds" >> beam.Map(lambda r: (record_id(r), None)))
        else:
            done = p | "NoExisting" >> beam.Create([])
        split = (
            {"clip": clips | "KeyClips" >> beam.Map(lambda c: (c.clip_id, c)), "done": done}
            | "JoinExisting" >> beam.CoGroupByKey()
            | "TodoOrSkipped" >> beam.FlatMap(_todo_or_skipped).with_outputs("skipped", main="todo"))
        skipped = split.skipped | "CountSkipped" >> beam.combiners.Count.Globally()
        return split.todo, skipped
