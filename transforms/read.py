"""ReadAnnotations: an annotation CSV -> unique ClipRequests, failure lines, the vocabulary, row count."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline import annotations
from pipeline.errors import failure_record
from transforms import isolation, metrics


class _ParseCsvFile(beam.DoFn):
    """Streams one CSV file; the vocabulary comes out once, after the last row."""

    FAILURES = "failures"
    VOCABULARY = "vocabulary"
    ROWS = "rows"

    def __init__(self, keep_labels: tuple[str, ...] = ()):
        self._keep_labels = tuple(keep_labels)
        self._rows = metrics.counter("rows_read")
        self._bad = metrics.counter("rows_malformed")

    def process(self, path: str):
        labels: set[str] = set(self._keep_labels)
        count = 0
        with FileSystems.open(path) as raw:
            text = annotations.open_text(raw)
            for _, parsed in annotations.read_rows(text):
                count += 1
                self._rows.inc()
                if isinstance(parsed, annotations.RowError):
                    self._bad.inc()
                    yield beam.pvalue.TaggedOutput(self.FAILURES, failure_record(
                        clip_id=parsed.clip_id, fields=parsed.fields, row=parsed.row, stage="read",
                        reason=parsed.reason, message=parsed.message))
                    continue
                labels.update(parsed.labels)
                yield parsed
        yield beam.pvalue.TaggedOutput(self.VOCABULARY, annotations.Vocabulary.from_labels(labels))
        yield beam.pvalue.TaggedOutput(self.ROWS, count)


def _describe_group(element):
    clip_id, requests = element
    first = min(requests, key=lambda r: r.row)
    return clip_id, first.fields, first.row


@isolation.isolate("read", _describe_group)
def _first_wins(element):
    """Keeps the earliest row of each id; later rows with the same id become `duplicate_id` failures."""
    clip_id, requests = element
    ordered = sorted(requests, key=lambda r: r.row)
    yield ordered[0]
    for dup in ordered[1:]:
        yield beam.pvalue.TaggedOutput("failures", failure_record(
            clip_id=clip_id, fields=dup.fields, row=dup.row, stage="read", reason="duplicate_id",
            message=f"id {clip_id!r} already used by row {ordered[0].row}"))


class ReadAnnotations(beam.PTransform):
    """Reads `csv_path` (local or gs://); `keep_labels` (a resumed dataset's names) join the vocabulary.

    Returns a dict of PCollections: `clips` (unique ClipRequests, reshuffled so the expensive
    stages spread over workers), `failures` (failure dicts), `vocabulary` (one Vocabulary),
    `rows_read` (one int).
    """

    def __init__(self, csv_path: str, *, keep_labels: tuple[str, ...] = ()):
        super().__init__()
        self._csv_path = csv_path
        self._keep_labels = tuple(keep_labels)

    def expand(self, pbegin):
        parsed = (
            pbegin
            | "CsvPath" >> beam.Create([self._csv_path])
            | "ParseCsv" >> beam.ParDo(_ParseCsvFile(self._keep_labels)).with_outputs(
                _ParseCsvFile.FAILURES, _ParseCsvFile.VOCABULARY, _ParseCsvFile.ROWS, main="clips"))
        unique = (
            parsed.clips
            | "KeyById" >> beam.Map(lambda r: (r.clip_id, r))
            | "GroupById" >> beam.GroupByKey()
            | "FirstRowWins" >> beam.FlatMap(_first_wins).with_outputs("failures", main="clips"))
        failures = (parsed[_ParseCsvFile.FAILURES], unique.failures) | "ReadFailures" >> beam.Flatten()
        clips = unique.clips | "SpreadClips" >> beam.Reshuffle()
        return {"clips": clips, "failures": failures, "vocabulary": parsed[_ParseCsvFile.VOCABULARY],
                "rows_read": parsed[_ParseCsvFile.ROWS]}
