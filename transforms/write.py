"""WriteDataset: sharded records and failure report, vocabulary.csv and, last, stats.json.

Every file is written under a temporary name and renamed when complete (`pipeline.fileio`). stats.json is
written after everything else, so its presence marks a finished build; a crashed run
leaves no file that looks complete. Each record shard gets its id index `index/NAME.ids`
(`pipeline.shardindex`; beside records/, so records/ holds shards only), renamed into place
just before the shard, for resumed builds.
"""

from __future__ import annotations

import datetime
import json
import math
import zlib
from collections.abc import Iterable, Iterator, Mapping

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline import annotations, shardindex, tfrecord
from pipeline.fileio import atomic_write, write_atomically
from transforms import metrics

FAILURES_SPLIT = "\x00failures"  # internal key; cannot clash with a CSV split name


def records_path(output_dir: str, split: str, shard: int, num_shards: int, run_tag: str = "") -> str:
    """`records/{split}[-{run_tag}]-SSSSS-of-NNNNN.tfrecord`; resumed runs add a tag so they never overwrite."""
    tag = f"-{run_tag}" if run_tag else ""
    return FileSystems.join(output_dir, "records", f"{split}{tag}-{shard:05d}-of-{num_shards:05d}.tfrecord")


def failures_path(output_dir: str, shard: int, num_shards: int) -> str:
    """`failures-SSSSS-of-NNNNN.jsonl` in `output_dir`: one shard of the failure report."""
    return FileSystems.join(output_dir, f"failures-{shard:05d}-of-{num_shards:05d}.jsonl")


def shard_path(output_dir: str, split: str, shard: int, num_shards: int, run_tag: str = "") -> str:
    """The file of one shard: a failure report shard for the internal FAILURES_SPLIT, else a record shard."""
    if split == FAILURES_SPLIT:
        return failures_path(output_dir, shard, num_shards)
    return records_path(output_dir, split, shard, num_shards, run_tag)


def failure_line(failure: dict) -> bytes:
    """One JSON line of the failure report. Text that cannot be UTF-8 (lone surrogates) is \\u-escaped."""
    text = json.dumps(failure, sort_keys=True, ensure_ascii=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(failure, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")


def rows_accounted_for(*, rows: int, records: int, skipped: int, failures: int, kept: int = 0) -> bool:
    """Every input row became exactly one of: a record, a skipped existing record, a failure line
    (or, in a fetch-only build, a kept clip: `kept` counts new and already-kept ones)."""
    return rows == records + skipped + failures + kept


def _kept_totals(kept: dict) -> tuple:
    """(clips, already kept, bytes, seconds, fetched) of one kept clip of a fetch-only build."""
    fetch = kept.get("fetch") or {}
    return 1, int(kept["reused"]), fetch.get("bytes", 0), fetch.get("seconds", 0.0), int(not kept["reused"])


def _sum_columns(values: Iterable[tuple]) -> tuple:
    return tuple(sum(column) for column in zip(*values, strict=True)) or (0, 0, 0, 0.0, 0)


def _stable_shard(clip_id: str, num_shards: int) -> int:
    # surrogatepass: an id that is not valid UTF-8 text must not stop the write (its bytes are unchanged otherwise)
    return zlib.crc32(clip_id.encode("utf-8", "surrogatepass")) % num_shards


class _AssignShard(beam.DoFn):
    def __init__(self, per_shard: int):
        self._per_shard = per_shard

    # The hints are for readers: Beam keeps inferring the output type from the code (the
    # (split, shard, N) key and its tuple coder for GroupShard) instead of reading the hints as Any.
    @beam.typehints.no_annotations
    def process(self, item: tuple[str, str, bytes], counts: Mapping[str, int]) -> Iterator[tuple]:
        split, clip_id, payload = item
        num_shards = max(1, math.ceil(counts[split] / self._per_shard))
        yield (split, _stable_shard(clip_id, num_shards), num_shards), (clip_id, payload)


class _WriteShard(beam.DoFn):
    def __init__(self, output_dir: str, run_tag: str):
        self._output_dir = output_dir
        self._run_tag = run_tag

    def process(self, element: tuple[tuple[str, int, int], Iterable[tuple[str, bytes]]]) -> Iterator[dict]:
        (split, shard, num_shards), items = element
        path = shard_path(self._output_dir, split, shard, num_shards, self._run_tag)
        count = 0
        with atomic_write(path) as f:
            if split == FAILURES_SPLIT:
                for _, payload in items:
                    f.write(payload)
                    count += 1
            else:
                # The id index is renamed into place before the shard (the inner block closes first):
                # a shard never exists without its index (pipeline.shardindex).
                with atomic_write(shardindex.index_path(path)) as index_file:
                    index = shardindex.Writer(index_file)
                    size = 0
                    for clip_id, payload in items:
                        framed = tfrecord.frame(payload)
                        f.write(framed)
                        index.add(clip_id, framed)
                        size += len(framed)
                        count += 1
                    index.close(size)
        yield {"split": split, "shard": shard, "num_shards": num_shards, "path": path, "count": count}


class _WriteShards(beam.PTransform):
    """(split, id, payload) -> files named by split and shard; shard of an id = crc32(id) % N."""

    def __init__(self, output_dir: str, per_shard: int, run_tag: str = ""):
        super().__init__()
        self._output_dir = output_dir
        self._per_shard = per_shard
        self._run_tag = run_tag

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        counts = items | "CountPerSplit" >> beam.Map(lambda x: (x[0], 1)) | "SumPerSplit" >> beam.CombinePerKey(sum)
        return (
            items
            | "AssignShard" >> beam.ParDo(_AssignShard(self._per_shard), counts=beam.pvalue.AsDict(counts))
            | "GroupShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteShard(self._output_dir, self._run_tag)))


_TOTALS = ("records", "steps", "seconds", "silent", "fetch_bytes", "fetch_seconds", "fetched")


def _totals(record: dict) -> tuple:
    return (1, record["steps"], record["seconds"], int(record["silent_audio"]), record.get("fetch_bytes", 0),
            record.get("fetch_seconds", 0.0), record.get("fetched", 0))


def _sum_tuples(values: Iterable[tuple]) -> tuple:
    total = [0] * len(_TOTALS)
    for value in values:
        for i, v in enumerate(value):
            total[i] += v
    return tuple(total)


class _Finalize(beam.DoFn):
    """Runs once, after all shards exist: fills empty shard slots, vocabulary.csv, then stats.json."""

    def __init__(self, *, output_dir: str, run_info: dict, run_tag: str, replaces: tuple[str, ...] = ()):
        self._output_dir = output_dir
        self._run_info = run_info
        self._run_tag = run_tag
        self._replaces = tuple(replaces)

    def process(self, _: None, shards: list[dict], vocabulary: annotations.Vocabulary, rows_read: list[int],
                record_totals: tuple, failure_reasons: Mapping[str, int], failure_stages: Mapping[str, int],
                existing: list[int], kept: tuple | None = None) -> Iterator[dict]:
        written = {(s["split"], s["shard"], s["num_shards"]) for s in shards}
        layouts = {(s["split"], s["num_shards"]) for s in shards}
        if not any(split == FAILURES_SPLIT for split, _ in layouts):
            layouts.add((FAILURES_SPLIT, 1))
        for split, num_shards in sorted(layouts):
            for shard in range(num_shards):
                if (split, shard, num_shards) not in written:
                    # crc32 left this slot empty: an empty file keeps the -of-N set complete.
                    path = shard_path(self._output_dir, split, shard, num_shards, self._run_tag)
                    if split != FAILURES_SPLIT:
                        write_atomically(shardindex.index_path(path), shardindex.empty_index())
                    write_atomically(path, b"")
        write_atomically(FileSystems.join(self._output_dir, "vocabulary.csv"), vocabulary.to_csv().encode("utf-8"))
        totals = dict(zip(_TOTALS, record_totals, strict=True))
        records, steps, seconds, silent = (totals[k] for k in ("records", "steps", "seconds", "silent"))
        failures = sum(failure_reasons.values())
        rows = sum(rows_read)
        skipped = sum(existing)
        kept_clips, already_kept, kept_bytes, kept_seconds, kept_fetched = kept or (0, 0, 0, 0.0, 0)
        stats = {
            "rows_read": rows,
            "records_written": records,
            "records_skipped_existing": skipped,
            "failures": failures,
            "failures_by_reason": dict(sorted(failure_reasons.items())),
            "failures_by_stage": dict(sorted(failure_stages.items())),
            "all_rows_accounted_for": rows_accounted_for(rows=rows, records=records, skipped=skipped,
                                                         failures=failures, kept=kept_clips),
            "seconds_of_video": round(seconds, 3),
            "steps_written": steps,
            "clips_with_silent_audio": silent,
            "records_per_split": {split: sum(s["count"] for s in shards if s["split"] == split)
                                  for split, _ in sorted(layouts) if split != FAILURES_SPLIT},
            "record_shards": sorted(s["path"] for s in shards if s["split"] != FAILURES_SPLIT),
            "vocabulary_size": len(vocabulary.names),
            "fetch": {"clips_fetched": totals["fetched"], "bytes_downloaded": totals["fetch_bytes"],
                      "seconds": round(totals["fetch_seconds"], 3)},
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **self._run_info,
        }
        if kept is not None:  # a fetch-only build (--features none): kept clips, no records
            stats.update({"features": "none", "clips_kept": kept_clips - already_kept,
                          "clips_already_kept": already_kept,
                          "fetch": {"clips_fetched": kept_fetched, "bytes_downloaded": kept_bytes,
                                    "seconds": round(kept_seconds, 3)}})
        if not stats["all_rows_accounted_for"]:
            metrics.counter("rows_unaccounted").inc(abs(rows - records - skipped - failures - kept_clips))
        # Earlier failure shards this run did not rewrite (another -of-N): only now, with the new set complete.
        new_paths = {s["path"] for s in shards} | {
            shard_path(self._output_dir, split, shard, n, self._run_tag)
            for split, n in layouts for shard in range(n)}
        stale = [path for path in self._replaces if path not in new_paths]
        if stale:
            from pipeline import outputs  # pylint: disable=import-outside-toplevel

            outputs.delete(stale)
        write_atomically(FileSystems.join(self._output_dir, "stats.json"),
                         (json.dumps(stats, indent=2, sort_keys=False) + "\n").encode("utf-8"))
        yield stats


class WriteDataset(beam.PTransform):
    """Writes the dataset layout of docs/output-format.md. Returns a PCollection holding the stats dict."""

    def __init__(self, *, output_dir: str, records_per_shard: int, failures_per_shard: int, run_info: dict,
                 run_tag: str = "", replaces: tuple[str, ...] = ()):
        super().__init__()
        self._replaces = tuple(replaces)
        self._run_tag = run_tag
        self._output_dir = output_dir
        self._records_per_shard = records_per_shard
        self._failures_per_shard = failures_per_shard
        self._run_info = run_info

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> beam.PCollection:
        """`records`, `failures`, `vocabulary`, `rows_read`, `skipped_existing` (and `kept`) -> the stats dict."""
        records, failures = inputs["records"], inputs["failures"]
        record_items = records | "RecordItems" >> beam.Map(lambda r: (r["split"], r["id"], r["record"]))
        failure_items = failures | "FailureItems" >> beam.Map(
            lambda f: (FAILURES_SPLIT, f["id"] or str(f.get("row")), failure_line(f)))
        record_shards = record_items | "WriteRecords" >> _WriteShards(
            self._output_dir, self._records_per_shard, self._run_tag)
        failure_shards = failure_items | "WriteFailures" >> _WriteShards(self._output_dir, self._failures_per_shard)
        shards = (record_shards, failure_shards) | "AllShards" >> beam.Flatten()
        totals = (
            records
            | "RecordTotals" >> beam.Map(_totals)
            | "SumTotals" >> beam.CombineGlobally(_sum_tuples))
        reasons = (failures | "ByReason" >> beam.Map(lambda f: (f["reason"], 1))
                   | "SumReasons" >> beam.CombinePerKey(sum))
        stages = failures | "ByStage" >> beam.Map(lambda f: (f["stage"], 1)) | "SumStages" >> beam.CombinePerKey(sum)
        extra = {}
        if inputs.get("kept") is not None:  # fetch-only builds: one dict per clip in --clips_dir
            kept_totals = inputs["kept"] | "KeptTotals" >> beam.Map(_kept_totals)
            extra["kept"] = beam.pvalue.AsSingleton(kept_totals | "SumKept" >> beam.CombineGlobally(_sum_columns))
        return (
            records.pipeline
            | "FinalizeTrigger" >> beam.Create([None])
            | "Finalize" >> beam.ParDo(
                _Finalize(output_dir=self._output_dir, run_info=self._run_info, run_tag=self._run_tag,
                          replaces=self._replaces),
                shards=beam.pvalue.AsList(shards),
                vocabulary=beam.pvalue.AsSingleton(inputs["vocabulary"]),
                rows_read=beam.pvalue.AsList(inputs["rows_read"]),
                record_totals=beam.pvalue.AsSingleton(totals),
                failure_reasons=beam.pvalue.AsDict(reasons),
                failure_stages=beam.pvalue.AsDict(stages),
                existing=beam.pvalue.AsList(inputs["skipped_existing"]), **extra))
