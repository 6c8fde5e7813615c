"""ReadAnnotations: an annotation CSV -> unique ClipRequests, failure lines, the vocabulary, row count."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam

from pipeline import elements
from pipeline.dataset.vocabulary import Vocabulary
from pipeline.elements import Failure
from pipeline.read import annotations, csvsplit
from transforms.support import isolation, metrics


class _ReadSplit(beam.DoFn):
    """Parses one split of the CSV (`pipeline.read.csvsplit`); its labels and row count come out after its last row."""

    FAILURES = "failures"
    LABELS = "labels"
    ROWS = "rows"

    def __init__(self):
        self._rows = metrics.counter("rows_read")
        self._bad = metrics.counter("rows_malformed")

    def process(self, split: csvsplit.CsvSplit):
        labels: set[str] = set()
        count = 0
        for _, parsed in csvsplit.read_split(split):
            count += 1
            self._rows.inc()
            if isinstance(parsed, annotations.RowError):
                self._bad.inc()
                yield beam.pvalue.TaggedOutput(self.FAILURES, Failure.of(
                    clip_id=parsed.clip_id, fields=parsed.fields, row=parsed.row, stage="read",
                    reason=parsed.reason, message=parsed.message))
                continue
            labels.update(parsed.labels)
            yield parsed
        yield beam.pvalue.TaggedOutput(self.LABELS, frozenset(labels))
        yield beam.pvalue.TaggedOutput(self.ROWS, count)


class _UnionLabels(beam.CombineFn):
    """The labels of all splits, plus the kept labels of a resumed dataset, as one Vocabulary."""

    def __init__(self, keep_labels: tuple[str, ...]):
        super().__init__()
        self._keep_labels = tuple(keep_labels)

    def create_accumulator(self):
        return set(self._keep_labels)

    def add_input(self, mutable_accumulator: set[str], element: frozenset[str]) -> set[str]:
        mutable_accumulator.update(element)
        return mutable_accumulator

    def merge_accumulators(self, accumulators: Iterable[set[str]]) -> set[str]:
        merged = set(self._keep_labels)
        for accumulator in accumulators:
            merged.update(accumulator)
        return merged

    def extract_output(self, accumulator: set[str]) -> Vocabulary:
        return Vocabulary.from_labels(accumulator)


def _describe_group(element: tuple[str, Iterable[elements.ClipRequest]]) -> tuple[str, dict, int]:
    clip_id, requests = element
    first = min(requests, key=lambda r: r.row)
    return clip_id, first.fields, first.row


@isolation.isolate("read", _describe_group)
def _first_wins(element: tuple[str, Iterable[elements.ClipRequest]],
                ) -> Iterator[elements.ClipRequest | beam.pvalue.TaggedOutput]:
    """Keeps the earliest row of each id; later rows with the same id become `duplicate_id` failures.

    Two passes over the group (Beam's grouped values can be iterated again) keep one request in
    memory, not the group: a hostile CSV may repeat one id on every one of its 10^7 rows.
    """
    clip_id, requests = element
    first = None
    for request in requests:
        if first is None or request.row < first.row:
            first = request
    yield first
    for dup in requests:
        if dup.row != first.row:  # rows are unique: one CSV row is one request (objects may be decoded anew)
            yield beam.pvalue.TaggedOutput("failures", Failure.of(
                clip_id=clip_id, fields=dup.fields, row=dup.row, stage="read", reason="duplicate_id",
                message=f"id {clip_id!r} already used by row {first.row}"))


class ReadAnnotations(beam.PTransform):
    """Reads `csv_path` (local or gs://) in parallel splits; `keep_labels` (an earlier build's) join the vocabulary.

    Args:
      csv_path: the annotation CSV.
      keep_labels: labels kept from an earlier build (--skip_existing).
      splits: the launcher's split points (`pipeline.read.csvsplit.scan`); None reads the file as one
        split (a pipeline built without the launcher's pass: dry runs, tests).

    Returns a dict of PCollections: `clips` (unique ClipRequests, reshuffled so the expensive
    stages spread over workers), `failures` (failure dicts), `vocabulary` (one Vocabulary),
    `rows_read` (one int).
    """

    def __init__(self, csv_path: str, *, keep_labels: tuple[str, ...] = (),
                 splits: list[csvsplit.CsvSplit] | None = None):
        super().__init__()
        self._csv_path = csv_path
        self._keep_labels = tuple(keep_labels)
        self._splits = list(splits) if splits else csvsplit.whole_file(csv_path)

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        """The pipeline's start -> `clips`, `failures`, `vocabulary` and `rows_read` (see the class)."""
        parsed = (
            pbegin
            | "CsvSplits" >> beam.Create(self._splits)
            | "SpreadSplits" >> beam.Reshuffle()
            | "ParseCsv" >> beam.ParDo(_ReadSplit()).with_outputs(
                _ReadSplit.FAILURES, _ReadSplit.LABELS, _ReadSplit.ROWS, main="clips"))
        unique = (
            parsed.clips
            | "KeyById" >> beam.Map(lambda r: (r.clip_id, r))
            | "GroupById" >> beam.GroupByKey()
            | "FirstRowWins" >> beam.FlatMap(_first_wins).with_outputs("failures", main="clips"))
        failures = (parsed[_ReadSplit.FAILURES], unique.failures) | "ReadFailures" >> beam.Flatten()
        clips = unique.clips | "SpreadClips" >> beam.Reshuffle()
        vocabulary = parsed[_ReadSplit.LABELS] | "Vocabulary" >> beam.CombineGlobally(_UnionLabels(self._keep_labels))
        rows_read = parsed[_ReadSplit.ROWS] | "RowsRead" >> beam.CombineGlobally(sum)
        return {"clips": clips, "failures": failures, "vocabulary": vocabulary, "rows_read": rows_read}
