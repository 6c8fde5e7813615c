"""The build lock: one build per output directory at a time, on local disks and on gs://."""

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

from pipeline.dataset.fileio import delete, is_local
from pipeline.dataset.outputs import LOCK_NAME, OutputError, join
from pipeline.errors import one_line

__all__ = ["BuildLock"]


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
                              f"({type(e).__name__}: {one_line(e)})") from e

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
                            self.path, one_line(e))

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
