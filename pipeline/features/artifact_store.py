"""The official model artifacts and the local cache that holds them (`pipeline.features.artifacts`).

The catalogue (file names, archives, official URLs, the flag of each), the layout checks of a
file and the stamp that remembers a passed check, and the cache's mechanics: archive
extraction, downloads (`pipeline.net.downloads`), and publishing a checked set of files under a
per-artifact lock. `pipeline.features.artifacts` decides where each artifact comes from and
re-exports the public names here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import posixpath
import shutil
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from pipeline.dataset import fileio
from pipeline.errors import ModelArtifactError
from pipeline.net import downloads

RGB_GRAPH = "classify_image_graph_def.pb"
RGB_PCA_FILES = ("mean.npy", "eigenvecs.npy", "eigenvals.npy")
AUDIO_CHECKPOINT = "vggish_model.ckpt"
AUDIO_PCA = "vggish_pca_params.npz"
INCEPTION_ARCHIVE = "inception-2015-12-05.tgz"
PCA_ARCHIVE = "yt8m_pca.tgz"

DEFAULT_DOWNLOAD_TIMEOUT_S = 10.0
"""Socket timeout of a model download: an offline or firewalled machine fails in seconds."""

_CHUNK = 1 << 20
_ARCHIVE_SUFFIXES = (".tgz", ".tar.gz")


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One official artifact and where it is published.

    Attributes:
        key: The ModelFiles field it fills (``rgb_graph``, ``rgb_pca_dir``, ...).
        files: Official file names; more than one for the RGB PCA, whose path is a directory.
        archive: Name of the released archive holding ``files``, or None for a plain file.
        url: Official download URL of the archive or file.
        flag: The per-file flag that overrides ``--model_dir`` for this artifact.
    """

    key: str
    files: tuple[str, ...]
    archive: str | None
    url: str
    flag: str

    @property
    def download_name(self) -> str:
        """Name of the published object: the archive, else the file itself."""
        return self.archive or self.files[0]

    @property
    def is_directory(self) -> bool:
        """Whether the resolved path is a directory (the RGB PCA) rather than one file."""
        return len(self.files) > 1

    def describe(self) -> str:
        """The artifact's files, and the archive they come from, for error messages."""
        names = ", ".join(self.files)
        return f"{names} (from {self.archive})" if self.archive else names


ARTIFACTS: tuple[Artifact, ...] = (
    Artifact("rgb_graph", (RGB_GRAPH,), INCEPTION_ARCHIVE,
             "https://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz", "--rgb_graph"),
    Artifact("rgb_pca_dir", RGB_PCA_FILES, PCA_ARCHIVE, "http://data.yt8m.org/yt8m_pca.tgz", "--rgb_pca_dir"),
    Artifact("audio_checkpoint", (AUDIO_CHECKPOINT,), None,
             "https://storage.googleapis.com/audioset/vggish_model.ckpt", "--audio_checkpoint"),
    Artifact("audio_pca", (AUDIO_PCA,), None,
             "https://storage.googleapis.com/audioset/vggish_pca_params.npz", "--audio_pca"),
)

HOW_TO_PROVIDE = (
    "Provide the official files with --model_dir DIR (local or gs://) holding inception-2015-12-05.tgz "
    "(or classify_image_graph_def.pb), yt8m_pca.tgz (or mean.npy, eigenvecs.npy, eigenvals.npy), "
    "vggish_model.ckpt and vggish_pca_params.npz; or name single files with --rgb_graph, --rgb_pca_dir, "
    "--audio_checkpoint, --audio_pca; or, without --model_dir, let the run download them into --model_cache "
    "(network needed; --model_base_url URL fetches URL/<file name> from a mirror instead, --no_download forbids "
    "downloading). For an offline smoke run without the official files use --models synthetic.")


# --------------------------------------------------------------------------------------------
# Small file-system helpers (local paths and gs:// through Beam's FileSystems, as every other path).


def _exists(path: str) -> bool:
    try:
        return fileio.exists(path)
    except Exception:  # pylint: disable=broad-except  # an unreachable bucket reads as absent
        return False


def is_file(path: str) -> bool:
    """Whether ``path`` (local or gs://) is an existing file; an unreachable bucket reads as absent."""
    if fileio.is_local(path):
        return os.path.isfile(path)
    return _exists(path)


def is_archive_path(path: str) -> bool:
    """Whether ``path`` names a released archive (``.tgz``/``.tar.gz``) rather than an extracted file."""
    return path.lower().endswith(_ARCHIVE_SUFFIXES)


def _checkpoint_present(prefix: str) -> bool:
    """A V1 single-file checkpoint is the file itself; a V2 one is a prefix with an .index file."""
    return is_file(prefix) or _exists(prefix + ".index")


def present(artifact: Artifact, path: str) -> bool:
    """Whether ``path`` holds the extracted artifact (a file, a checkpoint, or the PCA directory)."""
    if artifact.key == "audio_checkpoint":
        return _checkpoint_present(path)
    if artifact.is_directory:
        return all(is_file(fileio.join(path, name)) for name in artifact.files)
    return is_file(path)


def target(artifact: Artifact, directory: str) -> str:
    """The artifact's path inside a directory of extracted files."""
    return directory if artifact.is_directory else fileio.join(directory, artifact.files[0])


def _stat_paths(artifact: Artifact, path: str) -> list[str]:
    if artifact.key == "audio_checkpoint":
        return [path + ".index"] if _exists(path + ".index") else [path]
    if artifact.is_directory:
        return [fileio.join(path, name) for name in artifact.files]
    return [path]


def _identity(paths: list[str]) -> str:
    """A hash of paths, sizes and modification times: changes whenever any file is replaced."""
    parts = []
    for path in paths:
        size, mtime_ns = fileio.stat(path)
        parts.append([path, size, mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:32]


@contextlib.contextmanager
def _locked(directory: str, name: str) -> Iterator[None]:
    """An exclusive lock across processes on this machine (fcntl), so one of them fetches and the rest wait.

    Without fcntl (Windows) there is no lock; temporary names and atomic renames still keep
    concurrent writers from corrupting the cache, they only duplicate the work.
    """
    try:
        import fcntl  # pylint: disable=import-outside-toplevel
    except ImportError:
        yield
        return
    lock_dir = os.path.join(directory, ".locks")
    os.makedirs(lock_dir, exist_ok=True)
    with open(os.path.join(lock_dir, name + ".lock"), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Verification.


def _check(artifact: Artifact, path: str) -> None:
    """Loads just enough of an artifact to prove the official layout; raises ModelArtifactError.

    The loaders' own checks are used (graph node names and a batched shape probe, PCA array
    shapes, checkpoint variable names and shapes, npz keys and shapes), so a file that passes
    here also loads in the workers.
    """
    from pipeline.features import (
        postprocess,  # pylint: disable=import-outside-toplevel
        tf_setup,  # pylint: disable=import-outside-toplevel
    )

    tf_setup.configure()  # the graph and checkpoint checks may run this process's first TensorFlow op
    from pipeline.features import inception, vggish  # pylint: disable=import-outside-toplevel

    if artifact.key == "rgb_graph":
        inception.verify_graph_def(inception.load_graph_def(path), source=path)
    elif artifact.key == "rgb_pca_dir":
        postprocess.RgbPca.from_dir(path)
    elif artifact.key == "audio_checkpoint":
        vggish.verify_checkpoint(path)
    else:
        postprocess.AudioPca.from_npz(path)


def verify_once(artifact: Artifact, path: str, *, cache_dir: str) -> None:
    """Checks an artifact unless a stamp in the cache says this exact file already passed.

    Resolution runs once when the pipeline is built and again in every worker process at model
    load; the stamp spares the workers the graph probe and the extra reads from gs://.
    """
    try:
        stamp = os.path.join(cache_dir, ".verified", f"{artifact.key}-{_identity(_stat_paths(artifact, path))}")
    except Exception:  # pylint: disable=broad-except  # stat unsupported: just check every time
        stamp = None
    if stamp and os.path.exists(stamp):
        return
    _check(artifact, path)
    if stamp:
        try:
            fileio.write_atomically(stamp, path)
        except OSError as error:  # A read-only cache only costs a repeated check.
            logging.info("Could not record the check of %s in %s: %s", path, cache_dir, error)


# --------------------------------------------------------------------------------------------
# Archives and downloads.


def extract_members(fileobj: IO[bytes], names: tuple[str, ...], destination: str, *, source: str) -> None:
    """Writes the members of a .tgz whose base names are in ``names`` into ``destination``.

    Members are matched by base name, so an archive that keeps them in a subfolder works as
    well as one with them at the top. Only regular files are written, each under its bare name,
    so member paths (``..``, absolute paths, links) never reach the file system. The archive is
    read as a stream, so it may come straight from gs:// or a download.

    Raises:
        ModelArtifactError: If it is not a gzip tar archive or lacks one of ``names``.
    """
    found: dict[str, str] = {}
    seen: list[str] = []
    try:
        with tarfile.open(fileobj=fileobj, mode="r|gz") as tar:
            for member in tar:
                seen.append(member.name)
                base = posixpath.basename(member.name)
                if not member.isfile() or base not in names or base in found:
                    continue
                reader = tar.extractfile(member)
                with open(os.path.join(destination, base), "wb") as out:
                    shutil.copyfileobj(reader, out, _CHUNK)
                found[base] = member.name
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise ModelArtifactError(
            f"{source} is not a readable .tgz archive ({error}); expected the released archive holding "
            f"{', '.join(names)}. {HOW_TO_PROVIDE}") from error
    missing = [name for name in names if name not in found]
    if missing:
        listed = ", ".join(seen[:10]) + (" ..." if len(seen) > 10 else "")
        raise ModelArtifactError(
            f"archive {source} lacks {', '.join(missing)} (members: {listed or 'none'}). {HOW_TO_PROVIDE}")


def download(url: str, destination: str, *, timeout_s: float) -> None:
    """Downloads ``url`` to ``destination`` (`pipeline.net.downloads`), published only when complete.

    Args:
        url: http(s) URL.
        destination: Local file path; written with `pipeline.dataset.fileio.atomic_write`, so only a
            complete download with the announced Content-Length appears under it.
        timeout_s: Socket timeout for connecting and for each read.

    Raises:
        pipeline.net.downloads.TransferError: On an HTTP error, a network error, a timeout or a
            truncated body (`TransferError.summary` says which in a few words).
        OSError: The local write failed.
    """
    with downloads.open_url(url, timeout=timeout_s, headers={"User-Agent": "video-features-pipeline"}) \
            as response, fileio.atomic_write(destination) as out:
        downloads.read_body(response, out.write, url=url, chunk_bytes=_CHUNK)


def _publish(artifact: Artifact, directory: str, *, source: str, produce: Callable[[str], None],
             names: Iterable[str] | None = None) -> str:
    """Fills ``directory`` with the artifact's files, checked, unless another process already did.

    ``produce(staging)`` writes the files into a private staging folder; they are checked there
    and renamed into ``directory`` one by one (the last file last), all under the artifact's
    lock, so a reader that finds every file finds the complete, checked set.
    """
    os.makedirs(directory, exist_ok=True)
    final = target(artifact, directory)
    with _locked(directory, artifact.key):
        if present(artifact, final):
            return final
        with fileio.staging_dir(directory) as staging:
            produce(staging)
            try:
                _check(artifact, target(artifact, staging))
            except ModelArtifactError as error:
                raise ModelArtifactError(f"{artifact.describe()} from {source} failed the layout check: {error}") \
                    from error
            fileio.publish_files(staging, directory, artifact.files if names is None else names)
    return final


def extract_to_cache(artifact: Artifact, archive: str, *, cache_dir: str) -> str:
    """Extracts an archive from ``--model_dir`` or a flag (local or gs://) into the cache, once per archive version."""
    directory = os.path.join(cache_dir, "extracted", _identity([archive]))

    def produce(staging: str) -> None:
        with fileio.open_read(archive) as handle:
            extract_members(handle, artifact.files, staging, source=archive)

    return _publish(artifact, directory, source=archive, produce=produce)


def _remote_files(artifact: Artifact, path: str) -> list[tuple[str, str]]:
    """(remote file, its name in the cache) of an artifact at ``path``; the name that marks it complete last."""
    if artifact.is_directory:
        return [(fileio.join(path, name), name) for name in artifact.files]
    if artifact.key == "audio_checkpoint" and not is_file(path):  # a V2 checkpoint: PREFIX.index, PREFIX.data-*
        folder, base = path.rstrip("/").rsplit("/", 1)
        found = [p for p in fileio.list_files(folder) if p.rsplit("/", 1)[-1].startswith(base + ".")]
        pairs = [(p, artifact.files[0] + p.rsplit("/", 1)[-1][len(base):]) for p in found]
        return sorted(pairs, key=lambda pair: pair[1].endswith(".index"))  # `present` looks for the .index
    return [(path, artifact.files[0])]


def copy_to_cache(artifact: Artifact, path: str, *, cache_dir: str) -> str:
    """A remote (gs://) artifact copied into the local cache, checked, once per version of its files.

    TensorFlow's loaders then read local files only: gs:// is reached through Beam's FileSystems
    alone, with the build's own credentials (and emulator, in tests).
    """
    files = _remote_files(artifact, path)
    directory = os.path.join(cache_dir, "copied", _identity([remote for remote, _ in files]))

    def produce(staging: str) -> None:
        for remote, name in files:
            fileio.copy_to_local(remote, os.path.join(staging, name))

    return _publish(artifact, directory, source=path, produce=produce, names=[name for _, name in files])


def download_dir(cache_dir: str, base_url: str | None) -> str:
    """Cache folder of downloaded files; a mirror gets its own, so files of two origins never mix."""
    if not base_url:
        return os.path.join(cache_dir, "yt8m")
    return os.path.join(cache_dir, "yt8m-" + hashlib.sha256(base_url.encode("utf-8")).hexdigest()[:12])


def artifact_url(artifact: Artifact, base_url: str | None) -> str:
    """The official URL, or ``base_url/<archive or file name>`` for a mirror."""
    if not base_url:
        return artifact.url
    return base_url.rstrip("/") + "/" + artifact.download_name


def download_to_cache(artifact: Artifact, *, directory: str, url: str, timeout_s: float) -> str:
    """Downloads an artifact (extracting an archive) into ``directory``, checked, once per directory."""

    def produce(staging: str) -> None:
        fetched = os.path.join(staging, "download-" + artifact.download_name)
        logging.info("Downloading %s to %s", url, directory)
        download(url, fetched, timeout_s=timeout_s)
        if artifact.archive:
            with open(fetched, "rb") as handle:
                extract_members(handle, artifact.files, staging, source=url)
            os.remove(fetched)
        else:
            os.replace(fetched, os.path.join(staging, artifact.files[0]))

    return _publish(artifact, directory, source=url, produce=produce)
