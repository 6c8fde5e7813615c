"""The dataset directory as a whole: listing without globs, the build lock, shard checks, kept vocabulary.

Everything here runs in the launching process before any work starts, so a problem of the
run as a whole (a directory in use, a corrupt shard, a CSV whose labels would renumber the
records already written) stops it with one clear message instead of damaging the dataset.

Paths are never used as glob patterns: Beam's `FileSystems.match` and `tf.io.gfile.glob` treat
`[...]`, `*` and `?` as wildcards, so an `--output_dir` containing them would match nothing
(or something else). Local directories are listed with `os.listdir`; remote ones are matched
with their literal part escaped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import socket
import uuid

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.dataset import fileio, tfrecord
from pipeline.dataset.fileio import delete, is_local, write_atomically
from pipeline.read import annotations

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
# The build lock: one build per directory at a time.


@dataclasses.dataclass
class BuildLock:
    """`DIR/.build.lock`, holding the owner's host, pid, start time and a random token (JSON).

    Taken before anything in the directory is touched and removed when the run ends, whatever
    the outcome. Exactly one of several builds starting together gets it:

    - local disks: the holder keeps an exclusive `flock` on the file for the whole run, which
      the kernel drops when the process dies (kill -9 too); whoever gets the flock on the file
      that is still at the lock's path owns it, so taking over a stale lock cannot race;
    - gs://: the lock object is created with the generation precondition `ifGenerationMatch=0`
      (create only if absent), a stale one is replaced with `ifGenerationMatch=<its generation>`
      and released the same way, so of two writers only one succeeds.

    A lock whose owner is a dead process on this host (a build killed with -9) is stale: it is
    reported and taken over, and so is an empty or unreadable lock (a build that could not
    write it, e.g. on a full disk). A lock of another host cannot be checked; it is taken over
    only with `break_lock`, after the user made sure no build runs there.
    """

    path: str
    owner: dict
    _handle: int | None = None  # local: the descriptor holding the flock
    _generation: int | None = None  # gs://: the generation of the lock object this build wrote

    @classmethod
    def acquire(cls, output_dir: str, *, break_lock: bool = False) -> BuildLock:
        """Takes the lock of `output_dir` (a stale one too, see the class); release it when the run ends.

        Raises:
            OutputError: The directory is not writable, or another build holds the lock.
        """
        path = join(output_dir, LOCK_NAME)
        owner = {"host": socket.gethostname(), "pid": os.getpid(),
                 "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 "token": uuid.uuid4().hex}
        data = (json.dumps(owner) + "\n").encode("utf-8")
        try:
            if is_local(path):
                return cls._acquire_local(output_dir, path, owner, data, break_lock)
            if FileSystems.get_scheme(path) == "gs":
                return cls._acquire_gcs(output_dir, path, owner, data, break_lock)
            return cls._acquire_other(output_dir, path, owner, data, break_lock)
        except OutputError:
            raise
        except Exception as e:  # pylint: disable=broad-except  (read-only filesystem, no permission, no bucket)
            raise OutputError(f"--output_dir {output_dir} is not writable: cannot create the build lock {path} "
                              f"({type(e).__name__}: {_one_line(e)})") from e

    @classmethod
    def _acquire_local(cls, output_dir: str, path: str, owner: dict, data: bytes, break_lock: bool) -> BuildLock:
        import fcntl  # pylint: disable=import-outside-toplevel  (POSIX; the pipeline runs on Linux and macOS)

        for _ in range(5):
            try:
                fd, created = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                try:
                    fd, created = os.open(path, os.O_RDWR), False
                except FileNotFoundError:
                    continue  # released between the two opens
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    _refuse_in_use(output_dir, path, _parse_lock(_read_fd(fd)), owner)
                # The flock is ours, but a releasing holder unlinks the file before unlocking it:
                # only the file still at `path` is the lock.
                try:
                    current = os.stat(path)
                except FileNotFoundError:
                    current = None
                mine = os.fstat(fd)
                if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
                    os.close(fd)
                    continue
                if not created:
                    _check_takeover(output_dir, path, _parse_lock(_read_fd(fd)), owner, break_lock)
                try:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, data, 0)
                    os.fsync(fd)
                except OSError as e:
                    # An empty lock must not be left behind to block the directory (a full disk).
                    os.unlink(path)
                    raise OutputError(f"--output_dir {output_dir}: cannot write the build lock {path} "
                                      f"({e.strerror or e}); free some space or choose another directory") from e
                return cls(path, owner, _handle=fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
        raise OutputError(f"could not take the build lock {path}: it keeps changing hands")

    @classmethod
    def _acquire_gcs(cls, output_dir: str, path: str, owner: dict, data: bytes, break_lock: bool) -> BuildLock:
        from google.api_core import exceptions as gexc  # pylint: disable=import-outside-toplevel

        bucket, name = _gcs_bucket_and_name(path)
        for _ in range(5):
            blob = bucket.blob(name)
            try:
                blob.upload_from_string(data, content_type="application/json", if_generation_match=0)
                return cls(path, owner, _generation=blob.generation)
            except gexc.PreconditionFailed:
                pass  # a lock is there: whose?
            existing = bucket.get_blob(name)
            if existing is None:
                continue  # released in between
            # Kept before the download, which refreshes the blob's properties from the response headers.
            generation = existing.generation
            if not generation:
                raise OutputError(f"the build lock {path} has no generation number; cannot take it over safely")
            try:
                text = existing.download_as_bytes(if_generation_match=generation)
            except (gexc.NotFound, gexc.PreconditionFailed):
                continue  # replaced or released in between
            _check_takeover(output_dir, path, _parse_lock(text), owner, break_lock)
            try:
                blob.upload_from_string(data, content_type="application/json", if_generation_match=generation)
                return cls(path, owner, _generation=blob.generation)
            except gexc.PreconditionFailed:
                continue  # another build took it over first
        raise OutputError(f"could not take the build lock {path}: it keeps changing hands")

    @classmethod
    def _acquire_other(cls, output_dir: str, path: str, owner: dict, data: bytes, break_lock: bool) -> BuildLock:
        # Other object stores: no precondition through Beam; check, then write (a narrow race, documented).
        for _ in range(3):
            if FileSystems.exists(path):
                _check_takeover(output_dir, path, _parse_lock(_read_remote(path)), owner, break_lock)
                delete([path])
            with FileSystems.create(path) as f:
                f.write(data)
            return cls(path, owner)
        raise OutputError(f"could not take the build lock {path}: it keeps changing hands")

    def release(self) -> None:
        """Removes the lock if it is still this lock (one broken and taken over stays)."""
        if self._handle is not None:
            fd, self._handle = self._handle, None
            try:
                mine, current = os.fstat(fd), os.stat(self.path)
                if (mine.st_ino, mine.st_dev) == (current.st_ino, current.st_dev):
                    os.unlink(self.path)  # while the flock is held: nobody can be taking it over now
            except OSError:
                pass
            finally:
                os.close(fd)
            return
        try:
            self._release_remote()
        except Exception as e:  # pylint: disable=broad-except  (the store is gone: the run's own error matters)
            logging.warning("could not remove the build lock %s (%s); the next build into this directory takes it "
                            "over as stale (same host), or pass --break_lock once this build is surely gone",
                            self.path, _one_line(e))

    def _release_remote(self) -> None:
        if self._generation is not None:
            from google.api_core import exceptions as gexc  # pylint: disable=import-outside-toplevel

            bucket, name = _gcs_bucket_and_name(self.path)
            generation, self._generation = self._generation, None
            with contextlib.suppress(gexc.NotFound, gexc.PreconditionFailed):
                bucket.blob(name).delete(if_generation_match=generation)
            return
        if is_local(self.path) or not FileSystems.exists(self.path):
            return
        if _parse_lock(_read_remote(self.path)) == self.owner:
            with contextlib.suppress(Exception):
                delete([self.path])


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _gcs_bucket_and_name(path: str):
    """(google-cloud-storage Bucket, object name) of a gs:// path, through the client Beam's GCS filesystem uses."""
    from apache_beam.io.gcp import gcsio  # pylint: disable=import-outside-toplevel

    bucket_name, name = gcsio.parse_gcs_path(path)
    filesystem = FileSystems.get_filesystem(path)
    client = filesystem._gcsIO().client  # pylint: disable=protected-access  (same client and credentials as the build)
    return client.bucket(bucket_name), name


def _read_fd(fd: int) -> bytes:
    chunks = []
    offset = 0
    while True:
        chunk = os.pread(fd, 65536, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _read_remote(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def _parse_lock(data: bytes) -> dict | None:
    """The lock's owner, or None for an empty or unreadable lock (partly written, not JSON)."""
    try:
        held = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    return held if isinstance(held, dict) else None


def _describe(held: dict | None) -> str:
    if held is None:
        return "an unreadable owner"
    return f"pid {held.get('pid')} on host {held.get('host')!r}, started {held.get('started_at')}"


def _refuse_in_use(output_dir: str, path: str, held: dict | None, owner: dict) -> None:
    where = "this host" if held is None or held.get("host") == owner["host"] else "another host"
    raise OutputError(
        f"--output_dir {output_dir} is in use by another build ({_describe(held)}; lock file {path}). Wait for it "
        f"to finish; if no build runs there any more (the owner is on {where}), pass --break_lock "
        "or delete the lock file")


def _check_takeover(output_dir: str, path: str, held: dict | None, owner: dict, break_lock: bool) -> None:
    """Returns when the lock `held` may be taken over (saying so), else raises OutputError (in use)."""
    if held is None:
        logging.warning("Taking over the build lock %s: it is empty or unreadable (a build stopped before "
                        "writing it, e.g. on a full disk)", path)
    elif held.get("host") == owner["host"] and not _alive(held.get("pid")):
        logging.warning("Taking over the stale build lock %s: its owner (%s) is no longer running", path,
                        _describe(held))
    elif break_lock:
        logging.warning("Breaking the build lock %s held by %s (--break_lock)", path, _describe(held))
    else:
        _refuse_in_use(output_dir, path, held, owner)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def read_vocabulary(output_dir: str) -> annotations.Vocabulary | None:
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
    vocab = annotations.Vocabulary.from_labels(names)
    if [vocab.index(n) for n in names] != [i for i, _ in pairs]:
        raise OutputError(f"{path} does not number its labels as this pipeline does (sorted names, or integer "
                          "labels as themselves); cannot keep the label indices of the records already written")
    return vocab


def resumed_vocabulary(old: annotations.Vocabulary, csv_labels: set[str], output_dir: str) -> annotations.Vocabulary:
    """The vocabulary of a resumed build: the old names plus the CSV's, provided no old index changes.

    Raises OutputError (the run refuses) when the CSV brings labels that would renumber the
    records already written: a name sorting before an old one, or a name among integer labels.
    """
    new = annotations.Vocabulary.from_labels(set(old.names) | set(csv_labels))
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
    vocabulary = annotations.Vocabulary.from_labels(set(labels) | set(keep_labels))
    write_atomically(FileSystems.join(output_dir, VOCABULARY_NAME), vocabulary.to_csv().encode("utf-8"))
