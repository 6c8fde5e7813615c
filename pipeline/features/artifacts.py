"""Finding, fetching and checking the official model files of `--models yt8m` (docs/spec.md §5).

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
import dataclasses
from collections.abc import Collection, Mapping

from pipeline.dataset import fileio
from pipeline.errors import ModelArtifactError
from pipeline.features.artifact_store import (  # the catalogue and the cache
    ARTIFACTS,
    DEFAULT_DOWNLOAD_TIMEOUT_S,
    HOW_TO_PROVIDE,
    Artifact,
    artifact_url,
    copy_to_cache,
    download_dir,
    download_to_cache,
    extract_to_cache,
    is_archive_path,
    is_file,
    present,
    target,
    verify_once,
)
from pipeline.net import downloads

__all__ = ["Resolved", "resolve_official"]


@dataclasses.dataclass(frozen=True)
class Resolved:
    """Where each artifact's path came from, for stats.json and log lines."""

    paths: Mapping[str, str]
    sources: Mapping[str, str]


# --------------------------------------------------------------------------------------------
# Resolution.


def _from_user_path(artifact: Artifact, path: str, *, cache_dir: str) -> tuple[str, str] | None:
    """A per-file flag's path: the extracted artifact or the released archive. Returns (path, source)."""
    if is_archive_path(path) and is_file(path):
        return extract_to_cache(artifact, path, cache_dir=cache_dir), path
    if not present(artifact, path):
        return None
    return (path, path) if fileio.is_local(path) else (copy_to_cache(artifact, path, cache_dir=cache_dir), path)


def _from_model_dir(artifact: Artifact, model_dir: str, *, cache_dir: str) -> tuple[str, str] | None:
    """Extracted files at the top, or in a folder named after the archive, or the archive. Returns (path, source)."""
    candidates = [target(artifact, model_dir)]
    if artifact.archive:
        candidates.append(target(artifact, fileio.join(model_dir, artifact.archive[: -len(".tgz")])))
    for candidate in candidates:
        if present(artifact, candidate):
            if not fileio.is_local(candidate):  # TensorFlow reads a local copy, made through FileSystems
                return copy_to_cache(artifact, candidate, cache_dir=cache_dir), candidate
            return candidate, candidate
    archive = fileio.join(model_dir, artifact.archive) if artifact.archive else None
    if archive and is_file(archive):
        return extract_to_cache(artifact, archive, cache_dir=cache_dir), archive
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
    if not fileio.is_local(cache_dir):
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
            if override or model_dir:
                if override:
                    found = _from_user_path(artifact, override, cache_dir=cache_dir)
                    missing = f"{override} does not exist or is incomplete (given with {artifact.flag})"
                else:
                    found = _from_model_dir(artifact, model_dir, cache_dir=cache_dir)
                    where = f"{target(artifact, model_dir)}" + (
                        f" or {fileio.join(model_dir, artifact.archive)}" if artifact.archive else "")
                    missing = (f"neither {where} exists (--model_dir is given, so nothing is downloaded; "
                               f"or pass {artifact.flag})")
                if found is None:
                    problems.append(f"{artifact.describe()}: {missing}")
                    continue
                paths[artifact.key], sources[artifact.key] = found
                if found[0] == found[1]:  # the user's own file: checked below (the cache's were on the way in)
                    unchecked.append(artifact)
            elif present(artifact, target(artifact, fetch_dir)):
                paths[artifact.key] = target(artifact, fetch_dir)
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
            verify_once(artifact, paths[artifact.key], cache_dir=cache_dir)
        except ModelArtifactError as error:
            problems.append(str(error))
    if problems:
        raise ModelArtifactError(
            "--models yt8m needs the official Inception-v3, YouTube-8M PCA and VGGish files (docs/spec.md §5); "
            + "; ".join(problems) + ". " + HOW_TO_PROVIDE)
    return Resolved(paths=paths, sources=sources)


def _download_all(artifacts: list[Artifact], paths: dict[str, str], sources: dict[str, str], *, directory: str,
                  base_url: str | None, timeout_s: float) -> list[str]:
    """Downloads in parallel, so an unreachable network costs one timeout, not one per file."""
    problems = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(artifacts)) as pool:
        futures = {
            pool.submit(download_to_cache, artifact, directory=directory, url=artifact_url(artifact, base_url),
                        timeout_s=timeout_s): artifact for artifact in artifacts}
        for future, artifact in futures.items():
            url = artifact_url(artifact, base_url)
            try:
                paths[artifact.key] = future.result()
                sources[artifact.key] = url
            except (downloads.TransferError, OSError) as error:
                why = (error.summary(timeout_s=timeout_s) if isinstance(error, downloads.TransferError)
                       else f"{type(error).__name__}: {error}")
                problems.append(f"{artifact.describe()}: not in the cache {directory}, and downloading {url} "
                                f"failed ({why}; pass --model_dir or {artifact.flag})")
            except ModelArtifactError as error:
                problems.append(str(error))
    return problems
