"""Finding, fetching and checking the official model files of `--models yt8m` (SPEC §5).

A run needs four artifacts: the Inception-v3 graph, the YouTube-8M RGB PCA, the VGGish
checkpoint and the VGGish PCA. Each comes from the first of these that has it:

1. its per-file flag (``--rgb_graph``, ``--rgb_pca_dir``, ``--audio_checkpoint``,
   ``--audio_pca``), which may also name the released archive;
2. ``--model_dir`` (local or gs://), holding the extracted files, the released archives
   (``inception-2015-12-05.tgz``, ``yt8m_pca.tgz``), or the archives unpacked into a folder of
   their own name. When ``--model_dir`` is given it is authoritative: nothing is downloaded;
3. the local cache (``--model_cache``), filled by an earlier download;
4. a download from the official locations (or ``--model_base_url``), unless ``--no_download``.

Archives are extracted into the cache, so a gs:// ``--model_dir`` works and is read once per
machine. Everything that enters the cache is written under a temporary name, checked for the
official layout, and only then renamed into place, under a per-artifact file lock: concurrent
worker processes wait for one download instead of racing, and a crash leaves no partial file
that a later run would trust. Files taken from ``--model_dir`` or a flag are checked too; a
small stamp in the cache remembers a passed check (keyed by path, size and modification time),
so worker processes that resolve again at model load time do not repeat it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import http.client
import json
import logging
import os
import posixpath
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import IO

from pipeline.errors import ModelArtifactError

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

_HOW_TO_PROVIDE = (
    "Provide the official files with --model_dir DIR (local or gs://) holding inception-2015-12-05.tgz "
    "(or classify_image_graph_def.pb), yt8m_pca.tgz (or mean.npy, eigenvecs.npy, eigenvals.npy), "
    "vggish_model.ckpt and vggish_pca_params.npz; or name single files with --rgb_graph, --rgb_pca_dir, "
    "--audio_checkpoint, --audio_pca; or, without --model_dir, let the run download them into --model_cache "
    "(network needed; --model_base_url URL fetches URL/<file name> from a mirror instead, --no_download forbids "
    "downloading). For an offline smoke run without the official files use --models synthetic.")


@dataclasses.dataclass(frozen=True)
class Resolved:
    """Where each artifact's path came from, for stats.json and log lines."""

    paths: Mapping[str, str]
    sources: Mapping[str, str]


# --------------------------------------------------------------------------------------------
# Small file-system helpers (local paths and gs:// through tf.io.gfile).


def _gfile():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.io.gfile


def _is_url_path(path: str) -> bool:
    return "://" in path


def _join(base: str, name: str) -> str:
    return posixpath.join(base, name) if _is_url_path(base) else os.path.join(base, name)


def _exists(path: str) -> bool:
    try:
        return _gfile().exists(path)
    except Exception:  # pylint: disable=broad-except  # an unreachable bucket reads as absent
        return False


def _is_file(path: str) -> bool:
    return _exists(path) and not _gfile().isdir(path)


def _is_archive_path(path: str) -> bool:
    return path.lower().endswith(_ARCHIVE_SUFFIXES)


def _checkpoint_present(prefix: str) -> bool:
    """A V1 single-file checkpoint is the file itself; a V2 one is a prefix with an .index file."""
    return _is_file(prefix) or _exists(prefix + ".index")


def _present(artifact: Artifact, path: str) -> bool:
    """Whether ``path`` holds the extracted artifact (a file, a checkpoint, or the PCA directory)."""
    if artifact.key == "audio_checkpoint":
        return _checkpoint_present(path)
    if artifact.is_directory:
        return all(_is_file(_join(path, name)) for name in artifact.files)
    return _is_file(path)


def _target(artifact: Artifact, directory: str) -> str:
    """The artifact's path inside a directory of extracted files."""
    return directory if artifact.is_directory else _join(directory, artifact.files[0])


def _stat_paths(artifact: Artifact, path: str) -> list[str]:
    if artifact.key == "audio_checkpoint":
        return [path + ".index"] if _exists(path + ".index") else [path]
    if artifact.is_directory:
        return [_join(path, name) for name in artifact.files]
    return [path]


def _identity(paths: list[str]) -> str:
    """A hash of paths, sizes and modification times: changes whenever any file is replaced."""
    gfile = _gfile()
    parts = []
    for path in paths:
        stat = gfile.stat(path)
        parts.append([path, int(stat.length), int(stat.mtime_nsec)])
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
    from pipeline import postprocess  # pylint: disable=import-outside-toplevel
    from pipeline.models import inception, vggish  # pylint: disable=import-outside-toplevel

    if artifact.key == "rgb_graph":
        inception.verify_graph_def(inception.load_graph_def(path), source=path)
    elif artifact.key == "rgb_pca_dir":
        postprocess.RgbPca.from_dir(path)
    elif artifact.key == "audio_checkpoint":
        vggish.verify_checkpoint(path)
    else:
        postprocess.AudioPca.from_npz(path)


def _verify_once(artifact: Artifact, path: str, *, cache_dir: str) -> None:
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
            os.makedirs(os.path.dirname(stamp), exist_ok=True)
            temp = f"{stamp}.tmp-{uuid.uuid4().hex}"
            with open(temp, "w", encoding="utf-8") as handle:
                handle.write(path)
            os.replace(temp, stamp)
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
            f"{', '.join(names)}. {_HOW_TO_PROVIDE}") from error
    missing = [name for name in names if name not in found]
    if missing:
        listed = ", ".join(seen[:10]) + (" ..." if len(seen) > 10 else "")
        raise ModelArtifactError(
            f"archive {source} lacks {', '.join(missing)} (members: {listed or 'none'}). {_HOW_TO_PROVIDE}")


class _DownloadError(Exception):
    """A download failed; the message says why in a few words."""


def download(url: str, destination: str, *, timeout_s: float) -> None:
    """Downloads ``url`` to ``destination`` through a temporary name, checking Content-Length.

    Args:
        url: http(s) URL.
        destination: Local file path; only a complete download is renamed to it.
        timeout_s: Socket timeout for connecting and for each read.

    Raises:
        _DownloadError: On an HTTP error, a network error, a timeout or a truncated body.
    """
    temp = f"{destination}.part-{uuid.uuid4().hex}"
    request = urllib.request.Request(url, headers={"User-Agent": "video-features-pipeline"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response, open(temp, "wb") as out:
            expected = response.headers.get("Content-Length")
            size = 0
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                size += len(chunk)
            if expected is not None and expected.isdigit() and size != int(expected):
                raise _DownloadError(f"truncated: received {size} of {expected} bytes")
        os.replace(temp, destination)
    except urllib.error.HTTPError as error:
        raise _DownloadError(f"HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        raise _DownloadError(f"network error: {error.reason}") from error
    except (socket.timeout, TimeoutError) as error:
        raise _DownloadError(f"no answer within {timeout_s:g} s") from error
    except (http.client.HTTPException, OSError) as error:
        raise _DownloadError(f"{type(error).__name__}: {error}") from error
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def _publish(artifact: Artifact, directory: str, *, source: str, produce: Callable[[str], None]) -> str:
    """Fills ``directory`` with the artifact's files, checked, unless another process already did.

    ``produce(staging)`` writes the files into a private staging folder; they are checked there
    and renamed into ``directory`` one by one (the last file last), all under the artifact's
    lock, so a reader that finds every file finds the complete, checked set.
    """
    os.makedirs(directory, exist_ok=True)
    final = _target(artifact, directory)
    with _locked(directory, artifact.key):
        if _present(artifact, final):
            return final
        staging = tempfile.mkdtemp(dir=directory, prefix=f".{artifact.key}.tmp-")
        try:
            produce(staging)
            try:
                _check(artifact, _target(artifact, staging))
            except ModelArtifactError as error:
                raise ModelArtifactError(f"{artifact.describe()} from {source} failed the layout check: {error}") \
                    from error
            for name in artifact.files:
                os.replace(os.path.join(staging, name), os.path.join(directory, name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _extract_to_cache(artifact: Artifact, archive: str, *, cache_dir: str) -> str:
    """Extracts an archive from ``--model_dir`` or a flag (local or gs://) into the cache, once per archive version."""
    directory = os.path.join(cache_dir, "extracted", _identity([archive]))

    def produce(staging: str) -> None:
        with _gfile().GFile(archive, "rb") as handle:
            extract_members(handle, artifact.files, staging, source=archive)

    return _publish(artifact, directory, source=archive, produce=produce)


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


def _download_to_cache(artifact: Artifact, *, directory: str, url: str, timeout_s: float) -> str:
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


# --------------------------------------------------------------------------------------------
# Resolution.


def _from_user_path(artifact: Artifact, path: str, *, cache_dir: str) -> tuple[str, str] | None:
    """A per-file flag's path: the extracted artifact or the released archive. Returns (path, source)."""
    if _is_archive_path(path) and _is_file(path):
        return _extract_to_cache(artifact, path, cache_dir=cache_dir), path
    return (path, path) if _present(artifact, path) else None


def _from_model_dir(artifact: Artifact, model_dir: str, *, cache_dir: str) -> tuple[str, str] | None:
    """Extracted files at the top, or in a folder named after the archive, or the archive. Returns (path, source)."""
    candidates = [_target(artifact, model_dir)]
    if artifact.archive:
        candidates.append(_target(artifact, _join(model_dir, artifact.archive[: -len(".tgz")])))
    for candidate in candidates:
        if _present(artifact, candidate):
            return candidate, candidate
    archive = _join(model_dir, artifact.archive) if artifact.archive else None
    if archive and _is_file(archive):
        return _extract_to_cache(artifact, archive, cache_dir=cache_dir), archive
    return None


def resolve_official(*, model_dir: str | None, overrides: Mapping[str, str | None], cache_dir: str,
                     base_url: str | None = None, allow_download: bool = True,
                     timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S, keys: Collection[str] | None = None) -> Resolved:
    """Finds (and if needed fetches) every official artifact and checks its layout.

    Called when the pipeline is built, so that a missing or wrong file stops the run before any
    work, and again by each worker process when it loads the models, where it finds what the
    first call left in ``--model_dir`` or the cache and downloads nothing.

    Args:
        model_dir: ``--model_dir``, or None.
        overrides: Per-file flag values keyed like ``Artifact.key``; None where not given.
        cache_dir: Local cache for downloads, extracted archives and check stamps.
        base_url: ``--model_base_url``: fetch ``base_url/<name>`` instead of the official URLs.
        allow_download: False for ``--no_download``.
        timeout_s: Socket timeout of each download.
        keys: Only these artifacts (``Artifact.key``); None for all. ``--audio zeros`` needs no VGGish file.

    Returns:
        The path of each artifact (the PCA as a directory, the checkpoint as a prefix or V1 file)
        and where it came from.

    Raises:
        ModelArtifactError: Naming every missing or malformed file and the flags that provide it.
    """
    if _is_url_path(cache_dir):
        raise ModelArtifactError(f"--model_cache {cache_dir} must be a local directory; put shared copies of the "
                                 f"model files in --model_dir instead (gs:// works there).")
    paths: dict[str, str] = {}
    sources: dict[str, str] = {}
    unchecked: list[Artifact] = []  # User files; whatever enters the cache is checked on the way in.
    problems: list[str] = []
    to_download: list[Artifact] = []
    fetch_dir = download_dir(cache_dir, base_url)
    for artifact in ARTIFACTS:
        if keys is not None and artifact.key not in keys:
            continue
        try:
            override = overrides.get(artifact.key)
            if override:
                found = _from_user_path(artifact, override, cache_dir=cache_dir)
                if found is None:
                    problems.append(f"{artifact.describe()}: {override} does not exist or is incomplete "
                                    f"(given with {artifact.flag})")
                    continue
                paths[artifact.key], sources[artifact.key] = found
                if found[0] == found[1]:
                    unchecked.append(artifact)
            elif model_dir:
                found = _from_model_dir(artifact, model_dir, cache_dir=cache_dir)
                if found is None:
                    where = f"{_target(artifact, model_dir)}" + (
                        f" or {_join(model_dir, artifact.archive)}" if artifact.archive else "")
                    problems.append(f"{artifact.describe()}: neither {where} exists (--model_dir is given, so "
                                    f"nothing is downloaded; or pass {artifact.flag})")
                    continue
                paths[artifact.key], sources[artifact.key] = found
                if found[0] == found[1]:
                    unchecked.append(artifact)
            elif _present(artifact, _target(artifact, fetch_dir)):
                paths[artifact.key] = _target(artifact, fetch_dir)
                sources[artifact.key] = artifact_url(artifact, base_url)
            elif allow_download:
                to_download.append(artifact)
            else:
                problems.append(f"{artifact.describe()}: not in the cache {fetch_dir} and --no_download forbids "
                                f"fetching {artifact_url(artifact, base_url)} (pass --model_dir or {artifact.flag})")
        except ModelArtifactError as error:
            problems.append(str(error))
    if to_download:
        problems.extend(_download_all(to_download, paths, sources, directory=fetch_dir, base_url=base_url,
                                      timeout_s=timeout_s))
    for artifact in unchecked:
        try:
            _verify_once(artifact, paths[artifact.key], cache_dir=cache_dir)
        except ModelArtifactError as error:
            problems.append(str(error))
    if problems:
        raise ModelArtifactError(
            "--models yt8m needs the official Inception-v3, YouTube-8M PCA and VGGish files (SPEC §5); "
            + "; ".join(problems) + ". " + _HOW_TO_PROVIDE)
    return Resolved(paths=paths, sources=sources)


def _download_all(artifacts: list[Artifact], paths: dict[str, str], sources: dict[str, str], *, directory: str,
                  base_url: str | None, timeout_s: float) -> list[str]:
    """Downloads in parallel, so an unreachable network costs one timeout, not one per file."""
    problems = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(artifacts)) as pool:
        futures = {
            pool.submit(_download_to_cache, artifact, directory=directory, url=artifact_url(artifact, base_url),
                        timeout_s=timeout_s): artifact for artifact in artifacts}
        for future, artifact in futures.items():
            url = artifact_url(artifact, base_url)
            try:
                paths[artifact.key] = future.result()
                sources[artifact.key] = url
            except (_DownloadError, OSError) as error:
                problems.append(f"{artifact.describe()}: not in the cache {directory}, and downloading {url} "
                                f"failed ({error}; pass --model_dir or {artifact.flag})")
            except ModelArtifactError as error:
                problems.append(str(error))
    return problems
