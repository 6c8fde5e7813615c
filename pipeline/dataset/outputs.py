"""The dataset directory as a whole: listing without globs, shard checks, kept vocabulary (the lock: `lock`).

Everything here runs in the launching process before any work starts, so a problem of the
run as a whole (a directory in use, a corrupt shard, a CSV whose labels would renumber the
records already written) stops it with one clear message instead of damaging the dataset.

Paths are never used as glob patterns: Beam's `FileSystems.match` and `tf.io.gfile.glob` treat
`[...]`, `*` and `?` as wildcards, so an `--output_dir` containing them would match nothing
(or something else). Local directories are listed with `os.listdir`; remote ones are matched
with their literal part escaped.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.dataset import fileio, tfrecord
from pipeline.dataset.fileio import delete, is_local, write_atomically
from pipeline.dataset.vocabulary import Vocabulary

LOCK_NAME = ".build.lock"
VOCABULARY_NAME = "vocabulary.csv"


class OutputError(Exception):
    """The output directory cannot be used as asked; the message says why and what to do."""


def join(directory: str, *parts: str) -> str:
    """`directory`/`parts` joined the way its filesystem (local or gs://) joins them."""
    return FileSystems.join(directory, *parts)


def list_files(directory: str, pattern: str = "*") -> list[str]:
    """Files directly in `directory` whose name matches `pattern` (a glob on the name only), sorted.

    The directory part is taken literally, whatever characters it holds.
    """
    return fileio.list_files(directory, pattern)


def check_output_dir(output_dir: str, *, create: bool = True) -> None:
    """Creates `output_dir` (and records/) or says in one line why it cannot be used.

    With `create=False` (the launcher's first look, before the run may still stop on its model
    files) nothing is created: a failed start leaves no empty dataset directory behind.
    """
    try:
        if is_local(output_dir):
            if os.path.exists(output_dir) and not os.path.isdir(output_dir):
                raise OutputError(f"--output_dir {output_dir} is a file, not a directory")
            if not create:
                if os.path.isdir(output_dir) and not os.access(output_dir, os.W_OK | os.X_OK):
                    raise OutputError(f"--output_dir {output_dir} is not writable")
                return
            os.makedirs(os.path.join(output_dir, "records"), exist_ok=True)
            if not os.access(output_dir, os.W_OK | os.X_OK) or \
                    not os.access(os.path.join(output_dir, "records"), os.W_OK | os.X_OK):
                raise OutputError(f"--output_dir {output_dir} is not writable")
        elif create:
            records = join(output_dir, "records")
            if not FileSystems.exists(records):
                FileSystems.mkdirs(records)
    except OutputError:
        raise
    except Exception as e:  # pylint: disable=broad-except
        raise OutputError(f"--output_dir {output_dir} cannot be used: {type(e).__name__}: {e}") from e


# ----------------------------------------------------------------------------------------------
# Existing shards and the kept vocabulary.


def check_tfrecord_file(path: str) -> int:
    """Walks a TFRecord file's framing (lengths and their CRCs) without reading the payloads.

    Returns the number of records; raises OutputError naming the file when it is truncated or
    its framing is damaged. Cheap: one 12-byte read and one seek per record.
    """
    count = 0
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            while True:
                header = f.read(tfrecord.HEADER_SIZE)
                if not header:
                    return count
                if len(header) < tfrecord.HEADER_SIZE:
                    raise OutputError(f"existing shard {path} is corrupt: truncated after {count} records")
                length = tfrecord.read_header(header)
                if length is None:
                    raise OutputError(f"existing shard {path} is corrupt: bad length checksum at record {count}")
                f.seek(length, os.SEEK_CUR)
                trailer = f.read(tfrecord.FOOTER_SIZE)
                if len(trailer) < tfrecord.FOOTER_SIZE:
                    raise OutputError(f"existing shard {path} is corrupt: record {count} is truncated")
                count += 1
    except OutputError:
        raise
    except Exception as e:  # pylint: disable=broad-except
        raise OutputError(f"existing shard {path} cannot be read: {type(e).__name__}: {e}") from e


def check_existing_shards(paths: list[str]) -> int:
    """Checks every shard's framing; returns the total number of records. Raises OutputError."""
    total = 0
    for path in paths:
        total += check_tfrecord_file(path)
    return total


def read_vocabulary(output_dir: str) -> Vocabulary | None:
    """The vocabulary.csv of an earlier build, or None when there is none."""
    path = join(output_dir, VOCABULARY_NAME)
    if not FileSystems.exists(path):
        return None
    import csv  # pylint: disable=import-outside-toplevel
    import io  # pylint: disable=import-outside-toplevel

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        text = f.read().decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip() for c in rows[0]] != ["Index", "Name"]:
        raise OutputError(f"{path} is not an Index,Name vocabulary; cannot keep the label indices of the "
                          "records already written")
    try:
        pairs = sorted((int(r[0]), r[1]) for r in rows[1:] if r)
    except (ValueError, IndexError) as e:
        raise OutputError(f"{path} has a malformed row ({e}); cannot keep the label indices of the records "
                          "already written") from e
    names = [n for _, n in pairs]
    vocab = Vocabulary.from_labels(names)
    if [vocab.index(n) for n in names] != [i for i, _ in pairs]:
        raise OutputError(f"{path} does not number its labels as this pipeline does (sorted names, or integer "
                          "labels as themselves); cannot keep the label indices of the records already written")
    return vocab


def resumed_vocabulary(old: Vocabulary, csv_labels: set[str], output_dir: str) -> Vocabulary:
    """The vocabulary of a resumed build: the old names plus the CSV's, provided no old index changes.

    Raises OutputError (the run refuses) when the CSV brings labels that would renumber the
    records already written: a name sorting before an old one, or a name among integer labels.
    """
    new = Vocabulary.from_labels(set(old.names) | set(csv_labels))
    moved = [n for n in old.names if new.index(n) != old.index(n)]
    if old.integer and not new.integer:
        moved = list(old.names)
    if moved:
        added = sorted(set(csv_labels) - set(old.names))
        raise OutputError(
            f"--skip_existing: the CSV's labels differ from {join(output_dir, VOCABULARY_NAME)} in a way that would "
            f"change the label indices of records already written (new labels {added[:10]}"
            f"{' ...' if len(added) > 10 else ''} renumber {moved[:5]}{' ...' if len(moved) > 5 else ''}). "
            "Build into a new --output_dir, or rebuild everything with --overwrite")
    return new


def unique_run_tag(existing: list[str]) -> str:
    """`r{UTC time}`, made unique among the shard names already present (two resumes in one second)."""
    base = "r" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    names = [p.rsplit("/", 1)[-1] for p in existing]
    tag, n = base, 0
    while any(f"-{tag}-" in name for name in names):
        n += 1
        tag = f"{base}x{n}"
    return tag


# ---------------------------------------------------------------------------------------------
# What a run does with its --output_dir (the launcher decides before any work).

# index/ holds the shards' id indexes (pipeline.dataset.shardindex); older datasets kept them in records/.
_OUTPUT_PATTERNS = ("records/*", "index/*", "failures-*", "vocabulary.csv", "stats.json", "settings.json")


def _match(output_dir: str, pattern: str) -> list[str]:
    """Files of `output_dir` matching `pattern` (`name` or `SUB/name`); output_dir is taken literally."""
    sub, _, name = pattern.rpartition("/")
    return list_files(FileSystems.join(output_dir, sub) if sub else output_dir, name)


def _existing_outputs(output_dir: str) -> list[str]:
    return [path for pattern in _OUTPUT_PATTERNS for path in _match(output_dir, pattern)]


def existing_records(output_dir: str) -> list[str]:
    """The record shards (`records/*.tfrecord`) an earlier build left in `output_dir`, sorted."""
    return _match(output_dir, "records/*.tfrecord")


def existing_failure_shards(output_dir: str) -> list[str]:
    """The failure report shards (`failures-*.jsonl`) an earlier build left in `output_dir`, sorted."""
    return _match(output_dir, "failures-*.jsonl")


def _earlier_shard_figures(output_dir: str) -> dict:
    """stats.json's per-shard figures of the earlier build (name -> figures), {} when it has none."""
    path = join(output_dir, "stats.json")
    try:
        if not FileSystems.exists(path):
            return {}
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            shards = json.loads(f.read().decode("utf-8")).get("shards")
    except Exception as e:  # pylint: disable=broad-except  (an edited or damaged stats.json: figures unknown)
        logging.warning("--skip_existing: cannot read the per-shard figures of %s (%s: %s); the dataset totals "
                        "will leave out the shards already there", path, type(e).__name__, e)
        return {}
    return shards if isinstance(shards, dict) else {}


def kept_shard_figures(output_dir: str, counts: dict[str, int]) -> tuple[dict, ...]:
    """One dict per record shard kept by a resume: name, records (from the framing walk) and, when the
    earlier stats.json lists the shard with that many records, its steps, seconds, silent clips, sources."""
    earlier = _earlier_shard_figures(output_dir)
    out = []
    for path, count in sorted(counts.items()):
        name = path.rsplit("/", 1)[-1]
        known = earlier.get(name)
        if isinstance(known, dict) and known.get("records") == count:
            out.append({**known, "name": name, "records": count})
        else:
            out.append({"name": name, "records": count})
    return tuple(out)


def _delete_stats_first(paths: list[str]) -> None:
    # stats.json goes first: from then on the directory no longer looks like a finished build.
    paths = sorted(set(paths), key=lambda path: not path.endswith("stats.json"))
    if paths:
        delete(paths)


@dataclasses.dataclass
class OutputPlan:
    """What a run does with its --output_dir, decided before any work.

    Attributes:
      run_tag: names this run's record shards when earlier ones are kept.
      keep_labels: the earlier vocabulary's names (--skip_existing), kept at their indices.
      replaces: earlier failure shards, removed by the run's last step once its own are complete.
      kept_shards: the record shards kept (--skip_existing), with what is known of their figures.
    """

    run_tag: str = ""
    keep_labels: tuple[str, ...] = ()
    replaces: tuple[str, ...] = ()
    kept_shards: tuple[dict, ...] = ()  # figures of the record shards a resume keeps (`kept_shard_figures`)


def refuse_existing_dataset(output_dir: str, *, overwrite: bool, skip_existing: bool) -> list[str]:
    """Raises OutputError when `output_dir` holds a dataset and neither flag says what to do with it.

    The launcher calls it first, before any other work, and again under the build lock. Returns
    the dataset's files found (empty for a new directory).
    """
    try:
        existing = _existing_outputs(output_dir)
    except Exception as e:  # pylint: disable=broad-except  (a missing bucket, no access: one line)
        raise OutputError(f"--output_dir {output_dir} cannot be used: {type(e).__name__}: "
                          f"{' '.join(str(e).split())[:300]}") from e
    if existing and not (overwrite or skip_existing):
        raise OutputError(f"--output_dir {output_dir} already holds a dataset ({len(existing)} files, e.g. "
                         f"{existing[0]}); pass --skip_existing to resume it, --overwrite to replace it, "
                         "or choose another directory")
    return existing


def prepare_output_dir(output_dir: str, *, overwrite: bool, skip_existing: bool = False,
                       csv_labels: set[str] | None = None, settings: dict | None = None) -> OutputPlan:
    """Refuses to mix two builds in one directory unless told how; checks a resumed dataset first.

    --overwrite clears the old dataset first (stats.json first, so it never looks finished).
    --skip_existing keeps everything of the finished dataset until its replacement is complete:
    every existing shard is checked (a corrupt one stops the run, named, before anything is
    touched), the vocabulary is kept (a CSV whose labels would renumber existing records stops
    the run), new shards get a unique run tag so they never overwrite earlier ones, and the old
    failure report, vocabulary and stats are replaced only by the run's last step. With `settings`
    (`pipeline.dataset.settings.build_settings`), a dataset recorded with other settings stops the run.
    Leftover temporary files of a crashed run are removed. Raises OutputError.
    """
    existing = refuse_existing_dataset(output_dir, overwrite=overwrite, skip_existing=skip_existing)
    leftovers = _leftovers(output_dir)
    plan = OutputPlan()
    if skip_existing:
        records = existing_records(output_dir)
        counts = {path: check_tfrecord_file(path) for path in records}
        if settings is not None:
            from pipeline.dataset import settings as build_settings  # pylint: disable=import-outside-toplevel

            refusal = build_settings.check_resume(output_dir, settings, has_records=bool(records))
            if refusal:
                raise OutputError(refusal)
        old_vocabulary = read_vocabulary(output_dir)
        if old_vocabulary is None and records:
            raise OutputError(
                f"--skip_existing: {output_dir} holds records but no vocabulary.csv, so their label indices "
                "cannot be kept; rebuild with --overwrite or into a new --output_dir")
        if old_vocabulary is not None:
            resumed_vocabulary(old_vocabulary, csv_labels or set(), output_dir)
        plan = OutputPlan(run_tag=unique_run_tag(records) if records else "",
                          keep_labels=tuple(old_vocabulary.names) if old_vocabulary else (),
                          replaces=tuple(_match(output_dir, "failures-*")),
                          kept_shards=kept_shard_figures(output_dir, counts))
        if leftovers:
            delete(leftovers)
    elif overwrite:
        _delete_stats_first(existing + leftovers)
    elif leftovers:
        delete(leftovers)
    return plan


def _leftovers(output_dir: str) -> list[str]:
    return sorted(set(_match(output_dir, "records/*.tmp-*") + _match(output_dir, "index/*.tmp-*")
                      + _match(output_dir, "*.tmp-*")))


def remove_leftovers(output_dir: str) -> None:
    """Deletes the temporary files (`NAME.tmp-<hex>`) in `output_dir`: an interrupted run's, under its lock."""
    leftovers = _leftovers(output_dir)
    if leftovers:
        delete(leftovers)


def write_vocabulary(output_dir: str, labels: set[str], keep_labels: tuple[str, ...]) -> None:
    """Writes vocabulary.csv before any record exists, so a crashed run's records can be resumed safely."""
    vocabulary = Vocabulary.from_labels(set(labels) | set(keep_labels))
    write_atomically(FileSystems.join(output_dir, VOCABULARY_NAME), vocabulary.to_csv().encode("utf-8"))
