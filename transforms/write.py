"""WriteDataset: sharded records and failure report, vocabulary.csv and, last, stats.json.

Every file is written under a temporary name and renamed when complete (`pipeline.dataset.fileio`). stats.json is
written after everything else, so its presence marks a finished build; a crashed run
leaves no file that looks complete. Each record shard gets its id index `index/NAME.ids`
(`pipeline.dataset.shardindex`; beside records/, so records/ holds shards only), renamed into place
just before the shard, for resumed builds.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline.dataset import shardindex, tfrecord
from pipeline.dataset.fileio import atomic_write, write_atomically
from pipeline.dataset.vocabulary import Vocabulary
from pipeline.elements import BuiltRecord, Failure, KeptClip
from transforms.support import metrics
from transforms.support.progress import PROGRESS

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


def failure_line(failure: Failure) -> bytes:
    """One JSON line of the failure report. Text that cannot be UTF-8 (lone surrogates) is \\u-escaped."""
    line = failure.to_json()
    text = json.dumps(line, sort_keys=True, ensure_ascii=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(line, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")


def rows_accounted_for(*, rows: int, records: int, skipped: int, failures: int, kept: int = 0) -> bool:
    """Every input row became exactly one of: a record, a skipped existing record, a failure line
    (or, in a fetch-only build, a kept clip: `kept` counts new and already-kept ones)."""
    return rows == records + skipped + failures + kept


def _kept_totals(kept: KeptClip) -> tuple:
    """(clips, already kept, bytes, seconds, fetched) of one kept clip of a fetch-only build."""
    return 1, int(kept.reused), kept.fetch.bytes, kept.fetch.seconds, int(not kept.reused)


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
        PROGRESS.phase("writing the dataset")
        path = shard_path(self._output_dir, split, shard, num_shards, self._run_tag)
        count = 0
        figures = _empty_figures()
        with atomic_write(path) as f:
            if split == FAILURES_SPLIT:
                for _, payload in items:
                    f.write(payload)
                    count += 1
            else:
                # The id index is renamed into place before the shard (the inner block closes first):
                # a shard never exists without its index (pipeline.dataset.shardindex).
                with atomic_write(shardindex.index_path(path)) as index_file:
                    index = shardindex.Writer(index_file)
                    size = 0
                    for clip_id, item in items:
                        # (record, its figures) from WriteDataset; a bare record counts without figures
                        payload, record_figures = item if isinstance(item, tuple) else (item, None)
                        if record_figures is not None:
                            _add_figures(figures, record_figures)
                        framed = tfrecord.frame(payload)
                        f.write(framed)
                        index.add(clip_id, framed)
                        size += len(framed)
                        count += 1
                    index.close(size)
        out = {"split": split, "shard": shard, "num_shards": num_shards, "path": path, "count": count}
        if split != FAILURES_SPLIT:
            out["figures"] = figures
        yield out


def _empty_figures() -> dict:
    return {"steps": 0, "seconds": 0.0, "silent_audio": 0, "sources": {}}


def _add_figures(figures: dict, record: tuple) -> None:
    """Adds one record's (steps, seconds, silent, source) to a shard's figures."""
    steps, seconds, silent, source = record
    figures["steps"] += steps
    figures["seconds"] += seconds
    figures["silent_audio"] += int(silent)
    figures["sources"][source] = figures["sources"].get(source, 0) + 1


def _record_figures(record: BuiltRecord) -> tuple:
    return record.steps, record.seconds, bool(record.silent_audio), record.source


def _split_of_shard_name(name: str) -> str:
    """The split of a record shard's file name (`{split}[-{run tag}]-SSSSS-of-NNNNN.tfrecord`)."""
    match = re.match(r"^(.*?)(?:-r\d{8}T\d{6}(?:x\d+)?)?-\d{5}-of-\d{5}\.tfrecord$", name)
    return match.group(1) if match else name


def dataset_figures(shards: list[dict]) -> dict:
    """The whole dataset's figures from its record shards' (kept and new): records, steps, seconds, ...

    `shards`: {name, split?, records, steps?, seconds?, silent_audio?, sources?}; a kept shard whose
    figures are unknown (its build did not finish, or predates per-shard figures) counts its records
    only, and is named under `shards_without_figures`.
    """
    out = {"records": 0, "steps": 0, "seconds": 0.0, "silent_audio": 0, "sources": {}, "per_split": {},
           "without_figures": []}
    for shard in shards:
        split = shard.get("split") or _split_of_shard_name(shard["name"])
        out["records"] += shard["records"]
        out["per_split"][split] = out["per_split"].get(split, 0) + shard["records"]
        if "steps" not in shard:
            if shard["records"]:
                out["without_figures"].append(shard["name"])
            continue
        out["steps"] += shard["steps"]
        out["seconds"] += shard["seconds"]
        out["silent_audio"] += shard["silent_audio"]
        for source, n in (shard.get("sources") or {}).items():
            out["sources"][source] = out["sources"].get(source, 0) + n
    return out


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


def _totals(record: BuiltRecord) -> tuple:
    fetch = record.fetch
    return (1, record.steps, record.seconds, int(record.silent_audio), fetch.bytes if fetch else 0,
            fetch.seconds if fetch else 0.0, int(fetch is not None and fetch.from_youtube))


def _sum_tuples(values: Iterable[tuple]) -> tuple:
    total = [0] * len(_TOTALS)
    for value in values:
        for i, v in enumerate(value):
            total[i] += v
    return tuple(total)


class _Finalize(beam.DoFn):
    """Runs once, after all shards exist: fills empty shard slots, vocabulary.csv, then stats.json."""

    def __init__(self, *, output_dir: str, run_info: dict, run_tag: str, replaces: tuple[str, ...] = (),
                 kept_shards: tuple[dict, ...] = ()):
        self._output_dir = output_dir
        self._run_info = run_info
        self._run_tag = run_tag
        self._replaces = tuple(replaces)
        self._kept_shards = tuple(kept_shards)

    def process(self, _: None, shards: list[dict], vocabulary: Vocabulary, rows_read: list[int],
                record_totals: tuple, failure_reasons: Mapping[str, int], failure_stages: Mapping[str, int],
                existing: list[int], kept: tuple | None = None, carried: list[int] = (),
                availability: list | None = None) -> Iterator[dict]:
        written = {(s["split"], s["shard"], s["num_shards"]) for s in shards}
        layouts = {(s["split"], s["num_shards"]) for s in shards}
        if not any(split == FAILURES_SPLIT for split, _ in layouts):
            layouts.add((FAILURES_SPLIT, 1))
        self._write_empty_slots(layouts, written)
        write_atomically(FileSystems.join(self._output_dir, "vocabulary.csv"), vocabulary.to_csv().encode("utf-8"))
        new_shards = self._shard_entries(shards, layouts)
        new_names = {s["name"] for s in new_shards}
        all_shards = [s for s in self._kept_shards if s["name"] not in new_names] + new_shards
        dataset = dataset_figures(all_shards)
        run = dataset_figures(new_shards)
        totals = dict(zip(_TOTALS, record_totals, strict=True))
        records, steps, seconds, silent = (totals[k] for k in ("records", "steps", "seconds", "silent"))
        failures = sum(failure_reasons.values())
        rows = sum(rows_read)
        skipped = sum(existing)
        carried_over = sum(carried)
        kept_clips, already_kept, kept_bytes, kept_seconds, kept_fetched = kept or (0, 0, 0, 0.0, 0)
        fetch = {"clips_fetched": totals["fetched"], "bytes_downloaded": totals["fetch_bytes"],
                 "seconds": round(totals["fetch_seconds"], 3)}
        stats = {
            "rows_read": rows,
            "records_written": records,
            "records_skipped_existing": skipped,
            "failures": failures,
            "failures_carried_over": carried_over,
            "failures_by_reason": dict(sorted(failure_reasons.items())),
            "failures_by_stage": dict(sorted(failure_stages.items())),
            "all_rows_accounted_for": rows_accounted_for(rows=rows, records=records, skipped=skipped,
                                                         failures=failures, kept=kept_clips),
            # From here on: the whole dataset, the records kept by a resume included.
            "records_in_dataset": dataset["records"],
            "seconds_of_video": round(dataset["seconds"], 3),
            "steps_written": dataset["steps"],
            "clips_with_silent_audio": dataset["silent_audio"],
            "records_per_split": dict(sorted(dataset["per_split"].items())),
            "record_shards": sorted(FileSystems.join(self._output_dir, "records", s["name"]) for s in all_shards),
            "clips_by_source": dict(sorted(dataset["sources"].items())),
            "availability": _availability_table(availability or []),
            "vocabulary_size": len(vocabulary.names),
            "fetch": fetch,
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **self._run_info,
        }
        if dataset["without_figures"]:
            stats["shards_without_figures"] = dataset["without_figures"]
        # This run alone (equal to the dataset's figures unless a resume kept earlier records).
        stats["this_run"] = {
            "records_written": records, "records_skipped_existing": skipped, "failures_new": failures - carried_over,
            "failures_carried_over": carried_over, "steps_written": steps, "seconds_of_video": round(seconds, 3),
            "clips_with_silent_audio": silent, "records_per_split": dict(sorted(run["per_split"].items())),
            "record_shards": sorted(FileSystems.join(self._output_dir, "records", s["name"]) for s in new_shards),
            "clips_by_source": dict(sorted(run["sources"].items())), "fetch": fetch,
            "started_at": self._run_info.get("started_at"), "finished_at": stats["finished_at"]}
        stats["shards"] = {s["name"]: {k: (round(v, 3) if k == "seconds" else v) for k, v in s.items() if k != "name"}
                           for s in all_shards}
        if kept is not None:  # a fetch-only build (--features none): kept clips, no records
            stats.update({"features": "none", "clips_kept": kept_clips - already_kept,
                          "clips_already_kept": already_kept,
                          "fetch": {"clips_fetched": kept_fetched, "bytes_downloaded": kept_bytes,
                                    "seconds": round(kept_seconds, 3)}})
        if not stats["all_rows_accounted_for"]:
            metrics.counter("rows_unaccounted").inc(abs(rows - records - skipped - failures - kept_clips))
        self._delete_replaced(shards, layouts)
        write_atomically(FileSystems.join(self._output_dir, "stats.json"),
                         (json.dumps(stats, indent=2, sort_keys=False) + "\n").encode("utf-8"))
        yield stats


    def _write_empty_slots(self, layouts: set[tuple[str, int]], written: set[tuple[str, int, int]]) -> None:
        """An empty file (and index) for each -of-N slot crc32 left empty, so every shard set is complete."""
        for split, num_shards in sorted(layouts):
            for shard in range(num_shards):
                if (split, shard, num_shards) not in written:
                    path = shard_path(self._output_dir, split, shard, num_shards, self._run_tag)
                    if split != FAILURES_SPLIT:
                        write_atomically(shardindex.index_path(path), shardindex.empty_index())
                    write_atomically(path, b"")

    def _shard_entries(self, shards: list[dict], layouts: set[tuple[str, int]]) -> list[dict]:
        """This run's record shards as stats entries (name, split, records, figures), empty slots included."""
        entries = [{"name": s["path"].rsplit("/", 1)[-1], "split": s["split"], "records": s["count"],
                    **s.get("figures", {})}
                   for s in shards if s["split"] != FAILURES_SPLIT]
        names = {s["name"] for s in entries}
        for split, num_shards in sorted(layouts):
            for shard in range(num_shards):  # the empty slots _write_empty_slots filled
                name = shard_path(self._output_dir, split, shard, num_shards, self._run_tag).rsplit("/", 1)[-1]
                if split != FAILURES_SPLIT and name not in names:
                    entries.append({"name": name, "split": split, "records": 0, **_empty_figures()})
        return entries

    def _delete_replaced(self, shards: list[dict], layouts: set[tuple[str, int]]) -> None:
        """Earlier failure shards this run did not rewrite (another -of-N): only now, with the new set complete."""
        new_paths = {s["path"] for s in shards} | {
            shard_path(self._output_dir, split, shard, n, self._run_tag)
            for split, n in layouts for shard in range(n)}
        stale = [path for path in self._replaces if path not in new_paths]
        if stale:
            from pipeline.dataset import outputs  # pylint: disable=import-outside-toplevel

            outputs.delete(stale)


def _availability_table(rows: list) -> dict:
    """{split: {label: {"rows", "records", "missing"}}} from ((split, label), (rows, records)) pairs."""
    table: dict = {}
    for (split, label), (n, have) in sorted(rows):
        table.setdefault(split, {})[label] = {"rows": n, "records": have, "missing": n - have}
    return table


def _sum_pairs(values: Iterable[tuple[int, int]]) -> tuple[int, int]:
    rows = records = 0
    for a, b in values:
        rows += a
        records += b
    return rows, records


def _first_label(labels: tuple[str, ...]) -> str:
    return labels[0] if labels else ""


class WriteDataset(beam.PTransform):
    """Writes the dataset layout of docs/output-format.md. Returns a PCollection holding the stats dict."""

    def __init__(self, *, output_dir: str, records_per_shard: int, failures_per_shard: int, run_info: dict,
                 run_tag: str = "", replaces: tuple[str, ...] = (), kept_shards: tuple[dict, ...] = ()):
        super().__init__()
        self._replaces = tuple(replaces)
        self._kept_shards = tuple(kept_shards)
        self._run_tag = run_tag
        self._output_dir = output_dir
        self._records_per_shard = records_per_shard
        self._failures_per_shard = failures_per_shard
        self._run_info = run_info

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> beam.PCollection:
        """`records`, `failures`, `vocabulary`, `rows_read`, `skipped_existing` -> the stats dict.

        Optional: `kept` (fetch-only builds), `requests` and `skipped` (the ClipRequests read and those
        skipped as existing: the availability table per split and label).
        """
        records, failures = inputs["records"], inputs["failures"]
        record_items = records | "RecordItems" >> beam.Map(
            lambda r: (r.split, r.clip_id, (r.record, _record_figures(r))))
        failure_items = failures | "FailureItems" >> beam.Map(
            lambda f: (FAILURES_SPLIT, f.clip_id or str(f.row), failure_line(f)))
        record_shards = record_items | "WriteRecords" >> _WriteShards(
            self._output_dir, self._records_per_shard, self._run_tag)
        failure_shards = failure_items | "WriteFailures" >> _WriteShards(self._output_dir, self._failures_per_shard)
        shards = (record_shards, failure_shards) | "AllShards" >> beam.Flatten()
        totals = (
            records
            | "RecordTotals" >> beam.Map(_totals)
            | "SumTotals" >> beam.CombineGlobally(_sum_tuples))
        reasons = (failures | "ByReason" >> beam.Map(lambda f: (f.reason, 1))
                   | "SumReasons" >> beam.CombinePerKey(sum))
        stages = failures | "ByStage" >> beam.Map(lambda f: (f.stage, 1)) | "SumStages" >> beam.CombinePerKey(sum)
        carried = (failures | "CarriedOver" >> beam.Map(lambda f: int(f.carried_over))
                   | "SumCarried" >> beam.CombineGlobally(sum))
        extra = {"carried": beam.pvalue.AsList(carried)}
        if inputs.get("requests") is not None:
            parts = [inputs["requests"] | "RowsPerLabel" >> beam.Map(
                lambda c: ((c.split, _first_label(c.labels)), (1, 0))),
                records | "RecordsPerLabel" >> beam.Map(lambda r: ((r.split, r.label), (0, 1)))]
            if inputs.get("skipped") is not None:
                parts.append(inputs["skipped"] | "SkippedPerLabel" >> beam.Map(
                    lambda c: ((c.split, _first_label(c.labels)), (0, 1))))
            availability = (parts | "AvailabilityParts" >> beam.Flatten()
                            | "SumAvailability" >> beam.CombinePerKey(_sum_pairs))
            extra["availability"] = beam.pvalue.AsList(availability)
        if inputs.get("kept") is not None:  # fetch-only builds: one KeptClip per clip in --clips_dir
            kept_totals = inputs["kept"] | "KeptTotals" >> beam.Map(_kept_totals)
            extra["kept"] = beam.pvalue.AsSingleton(kept_totals | "SumKept" >> beam.CombineGlobally(_sum_columns))
        return (
            records.pipeline
            | "FinalizeTrigger" >> beam.Create([None])
            | "Finalize" >> beam.ParDo(
                _Finalize(output_dir=self._output_dir, run_info=self._run_info, run_tag=self._run_tag,
                          replaces=self._replaces, kept_shards=self._kept_shards),
                shards=beam.pvalue.AsList(shards),
                vocabulary=beam.pvalue.AsSingleton(inputs["vocabulary"]),
                rows_read=beam.pvalue.AsList(inputs["rows_read"]),
                record_totals=beam.pvalue.AsSingleton(totals),
                failure_reasons=beam.pvalue.AsDict(reasons),
                failure_stages=beam.pvalue.AsDict(stages),
                existing=beam.pvalue.AsList(inputs["skipped_existing"]), **extra))
