"""Paths and atomic file writes for local disk and object stores (gs://), in one place.

Every file the package writes for others to read (record and failure shards, stats.json,
vocabulary.csv, kept clips, PCA files, the report page) goes through `atomic_write`: the bytes
go to a temporary sibling `NAME.tmp-<uuid>` and are renamed to NAME only once complete, so a
crashed or killed run never leaves a half-written file that looks finished
(tensorflow/transform writes its outputs the same way). A build refuses to start while such
leftovers sit in its output (`pipeline.build`), which is why the temporary name has one fixed
shape.

Writes go through Beam's `FileSystems`, so every scheme a pipeline can read (local, gs://, and
whatever Beam registers) can be written too. Beam and TensorFlow are imported lazily: this module
is cheap to import from the numpy-only modules (`postprocess`) and the CLIs.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

TEMP_MARKER = ".tmp-"
"""What every temporary name holds (`NAME.tmp-<hex>`); `pipeline.build` looks for it in an output."""


def is_local(path: str) -> bool:
    """False for `scheme://...` paths (gs://, s3://, ...), True for local paths."""
    return "://" not in path


def join(directory: str, *names: str) -> str:
    """Joins a local or URL-style (gs://) directory and names: `/` for URLs, `os.path` rules locally."""
    return os.path.join(directory, *names) if is_local(directory) else posixpath.join(directory, *names)


def escape_glob(path: str) -> str:
    """`path` as a glob pattern that matches only itself (`[`, `*`, `?` become one-character classes).

    Output directories and dataset folders come from users and may hold these characters; a
    pattern built on them must still mean that one directory.
    """
    return "".join(f"[{ch}]" if ch in "[]*?" else ch for ch in path)


EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
"""Set (to `http://127.0.0.1:PORT`), gs:// paths go to a GCS emulator (google-cloud-storage reads it)."""


EMULATOR_RETRY_S = 10.0
"""How long a request to the emulator is retried (GCS itself: 120 s, google-cloud-storage's default)."""


def use_emulator_if_set() -> bool:
    """With STORAGE_EMULATOR_HOST set, connects Beam's GCS client anonymously at once.

    Beam looks for Google credentials with four retries (about 30 s) before it connects
    anonymously, which is what google-cloud-storage does for an emulator anyway. Requests are
    retried for `EMULATOR_RETRY_S` instead of 120 s: an emulator on loopback answers at once or
    is gone, and a stopped one should end a trial build in seconds, not minutes per request. A
    Dataflow worker or a launcher without the variable is not touched. Returns whether it applied.
    """
    if not os.environ.get(EMULATOR_ENV):
        return False
    _shorten_storage_retries(EMULATOR_RETRY_S)
    try:
        from apache_beam.internal.gcp import auth  # pylint: disable=import-outside-toplevel
    except ImportError:
        return False
    credentials = getattr(auth, "_Credentials", None)
    if credentials is None or not hasattr(credentials, "_credentials_init"):
        return False  # another Beam: it finds no credentials the slow way, with the same result
    with credentials._credentials_lock:  # pylint: disable=protected-access
        credentials._credentials, credentials._credentials_init = None, True  # pylint: disable=protected-access
    return True


def _shorten_storage_retries(seconds: float) -> None:
    """Caps the retry window of the GCS clients' shared default retry policies (used for every request)."""
    policies = []
    try:
        from google.cloud.storage import retry as storage_retry  # pylint: disable=import-outside-toplevel

        policies.append(storage_retry.DEFAULT_RETRY)
        from apache_beam.io.gcp import gcsio_retry  # pylint: disable=import-outside-toplevel

        policies.append(gcsio_retry.DEFAULT_RETRY_WITH_THROTTLING_COUNTER)
    except ImportError:
        pass
    for policy in policies:  # the objects bound as default arguments too: changed in place, not replaced
        if hasattr(policy, "_timeout"):
            policy._timeout = policy._deadline = seconds  # pylint: disable=protected-access


def _fs():
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    return FileSystems


@contextlib.contextmanager
def _escaped_patterns() -> Iterator[None]:
    """Beam compiles an escaped `[` (`[[]`) into a regex that Python flags as a possible nested set; it is not."""
    import warnings  # pylint: disable=import-outside-toplevel

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Possible nested set", FutureWarning)
        yield


def exists(path: str) -> bool:
    """Whether the file (or, locally, the directory) `path` exists; the path is taken literally."""
    if is_local(path):
        return os.path.exists(path)
    return _fs().exists(path)


def isdir(path: str) -> bool:
    """A local directory, or a gs:// prefix holding at least one object (object stores have no folders)."""
    if is_local(path):
        return os.path.isdir(path)
    with _escaped_patterns():
        match = _fs().match([escape_glob(path.rstrip("/")) + "/**"], limits=[1])[0]
    return bool(match.metadata_list)


def glob(pattern: str) -> list[str]:
    """Files matching a glob pattern (Beam's syntax: `*` within a name, `**` across folders), sorted."""
    if is_local(pattern):
        import glob as globbing  # pylint: disable=import-outside-toplevel

        return sorted(p for p in globbing.glob(os.path.expanduser(pattern)) if os.path.isfile(p))
    return sorted(m.path for m in _fs().match([pattern])[0].metadata_list)


def list_files(directory: str, pattern: str = "*") -> list[str]:
    """Files directly in `directory` whose name matches `pattern` (a glob on the name only), sorted.

    The directory part is taken literally, whatever characters it holds (`run[1]` is not `run1`).
    """
    import fnmatch  # pylint: disable=import-outside-toplevel

    if is_local(directory):
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(os.path.join(directory, n) for n in names
                      if fnmatch.fnmatchcase(n, pattern) and os.path.isfile(os.path.join(directory, n)))
    prefix = directory.rstrip("/") + "/"
    with _escaped_patterns():
        match = _fs().match([escape_glob(prefix) + "*"])[0]
    names = [m.path[len(prefix):] for m in match.metadata_list if m.path.startswith(prefix)]
    return sorted(prefix + n for n in names if "/" not in n and fnmatch.fnmatchcase(n, pattern))


def stat(path: str) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of the file at `path` (taken literally)."""
    if is_local(path):
        info = os.stat(path)
        return info.st_size, info.st_mtime_ns
    with _escaped_patterns():
        match = _fs().match([escape_glob(path)])[0]
    if not match.metadata_list:
        raise FileNotFoundError(path)
    metadata = match.metadata_list[0]
    return int(metadata.size_in_bytes), int(metadata.last_updated_in_seconds * 1e9)


def open_read(path: str) -> BinaryIO:
    """A binary read channel on `path` (local or gs://), bytes as stored (no decompression by name)."""
    from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=import-outside-toplevel

    return _fs().open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    """The whole file at `path`."""
    with open_read(path) as handle:
        return handle.read()


def read_text(path: str) -> str:
    """The whole file at `path` as UTF-8 text."""
    return read_bytes(path).decode("utf-8")


def extension(path: str) -> str:
    """The file name extension of `path` (a local path, gs:// path or URL; a query string is not part of it),
    at most 16 characters: safe to put on a local temp file's name."""
    return os.path.splitext(path.split("?", 1)[0].split("#", 1)[0])[1][:16]


def copy_to_local(path: str, local: str) -> None:
    """Copies `path` (local or gs://) to the local file `local`, in 1 MiB pieces."""
    with open_read(path) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def delete_tree(directory: str) -> None:
    """Removes `directory` and everything under it (a gs:// prefix: every object under `directory/`)."""
    if is_local(directory):
        shutil.rmtree(directory, ignore_errors=True)
    else:
        # A path ending in `/` is deleted as a prefix, listed literally (no glob).
        _fs().delete([directory.rstrip("/") + "/"])


def temp_name(path: str) -> str:
    """A fresh temporary sibling of `path` (`path.tmp-<uuid hex>`): unique, so concurrent writers never collide."""
    return f"{path}{TEMP_MARKER}{uuid.uuid4().hex}"


@contextlib.contextmanager
def atomic_write(path: str, *, temp_path: str | None = None) -> Iterator[BinaryIO]:
    """Opens a binary write channel whose bytes appear at `path` only when the block completes.

    The data goes to `temp_path` (default: a fresh `temp_name(path)`); a clean exit closes it
    and renames it to `path` (replacing any file there), an exception deletes it and
    propagates. A check that raises inside the block (a wrong md5, say) therefore leaves
    nothing under either name. Local parent folders are created as needed.

    Args:
        path: the final name, local or gs://.
        temp_path: a fixed temporary name, for writers whose reruns must overwrite their own
            leftovers (`download_yt8m`'s `NAME.part`); unique names suit everyone else.

    Raises:
        Whatever the block raises, and Beam's IOError/BeamIOError when the store refuses the
        create or rename.
    """
    from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=import-outside-toplevel
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    tmp = temp_path or temp_name(path)
    try:
        # UNCOMPRESSED: the bytes are written as given whatever the name ends with (.gz, .bz2 ...).
        with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            yield handle
        FileSystems.rename([tmp], [path])
    except BaseException:
        _discard(tmp)
        raise


def write_atomically(path: str, data: bytes | str) -> None:
    """Writes a whole file (str as UTF-8) with `atomic_write`: readers see the old file or the new one."""
    with atomic_write(path) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextlib.contextmanager
def publish_local_directory(directory: str, *, already_there: Callable[[], bool]) -> Iterator[str]:
    """A private sibling folder that becomes `directory` in one rename when the block completes.

    For a set of files that must appear together or not at all (generated model artifacts):
    fill the yielded folder; on a clean exit its files are made world-readable and the folder
    is renamed to `directory`. Of concurrent writers the first rename wins; a later one's
    rename fails because `directory` is no longer empty, and its copy is discarded when
    `already_there()` then finds an equivalent set there (else the error propagates). On an
    exception nothing is published. Local paths only (an object store has no directory rename).

    Args:
        directory: The folder to publish; absent or empty.
        already_there: Whether `directory` now holds what this writer would have published.
    """
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(directory)}{TEMP_MARKER}")
    try:
        yield staging
        for name in os.listdir(staging):
            os.chmod(os.path.join(staging, name), 0o644)
        os.chmod(staging, 0o755)
        try:
            os.replace(staging, directory)
        except OSError:
            if not already_there():
                raise
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def staging_dir(directory: str) -> Iterator[str]:
    """A private folder inside `directory` for files that are published together, later.

    For outputs a library writes by name (a TensorFlow checkpoint) or that must all be checked
    before any is visible (an archive's members): write them into the staging folder, then
    `publish_files`. The folder (`directory/.staging.tmp-<hex>`, so `pipeline.build`'s leftover
    check knows its shape) is removed on exit with whatever was not published.
    """
    staging = temp_name(join(directory, ".staging"))
    if is_local(staging):
        os.makedirs(staging)
    try:
        yield staging
    finally:
        try:
            delete_tree(staging)
        except Exception:  # noqa: BLE001 - cleanup must not mask the error being raised; the next run removes it
            pass


def publish_files(staging: str, directory: str, names: Iterable[str]) -> None:
    """Renames `staging/NAME` to `directory/NAME` for each name, one at a time and in order.

    Each rename replaces what was there, as `atomic_write`'s does; the order is the caller's
    commit order: with the marker file last, a reader that finds the marker finds the set.
    """
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    for name in names:
        FileSystems.rename([join(staging, name)], [join(directory, name)])


def rename(source: str, destination: str) -> None:
    """Moves one file to a new name on the same store, replacing what is there (gs://: copy, then delete)."""
    if is_local(source):
        os.replace(source, destination)
        return
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    FileSystems.rename([source], [destination])


def delete(paths: list[str]) -> None:
    """Deletes files by their literal paths; missing ones are fine.

    Beam's deletes treat each path as a glob (GCS: `FileSystems.delete` matches it first), so
    `gs://b/run[1]/x` would delete `gs://b/run1/x`: remote paths are escaped to match only
    themselves, local ones removed with `os.remove`.
    """
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    local = [p for p in paths if is_local(p)]
    remote = [p for p in paths if not is_local(p)]
    for path in local:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    if remote:
        with _escaped_patterns():
            FileSystems.delete([escape_glob(p) for p in remote])


def _discard(tmp: str) -> None:
    """Best-effort removal of a temporary file after a failed write; the original error matters more."""
    try:
        delete([tmp])
    except Exception:  # noqa: BLE001 - cleanup must not mask the error being raised (a remote tmp may not exist)
        pass


use_emulator_if_set()  # every process that touches gs:// imports this module first (workers too)
