"""The build settings that change a record's bytes, recorded in the dataset and checked on resume.

A resumed build (--skip_existing) adds records to the ones already there. If it ran with another
--frames_per_second, --audio mode, video-level layout, frame height or other models, the dataset
would silently mix two kinds of record. So a build writes `settings.json` into its output before
any record exists (and stats.json repeats it), and a resume compares its own settings with it
first: any difference stops the run with one line naming the differing settings. A dataset
written before settings were recorded still resumes, with a warning that nothing could be checked.

Models are identified by content, not by path (the same files may sit in a cache on one machine
and in --model_dir on another): each file's size and a SHA-256 of its first and last MiB, which
any re-export, other release or other PCA changes. Synthetic models are identified by their seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import TYPE_CHECKING

from pipeline.dataset import fileio

if TYPE_CHECKING:
    from pipeline.cli.options import BuildOptions
    from pipeline.features import registry

SETTINGS_NAME = "settings.json"
_EDGE = 1 << 20


def file_fingerprint(path: str) -> str:
    """`size:sha256(first MiB + last MiB)` of a local or gs:// file: two reads, whatever its size.

    Beam's FileSystems, not tf.io.gfile: a launcher whose models run elsewhere never imports TensorFlow.
    """
    from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=import-outside-toplevel
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    if fileio.is_local(path):
        size = os.path.getsize(path)
    else:
        size = FileSystems.match([fileio.escape_glob(path)])[0].metadata_list[0].size_in_bytes
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        digest.update(f.read(_EDGE))
        if size > _EDGE:
            f.seek(max(_EDGE, size - _EDGE))
            digest.update(f.read(_EDGE))
    return f"{size}:{digest.hexdigest()[:32]}"


def artifact_fingerprint(path: str, names: tuple[str, ...] = ()) -> str:
    """The fingerprint of a model artifact: a file, a directory of `names`, or a V2 checkpoint prefix."""
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    if names:  # a directory of these files (the RGB PCA)
        return "dir:" + hashlib.sha256("".join(
            f"{n}={file_fingerprint(fileio.join(path, n))};" for n in names).encode()).hexdigest()[:32]
    if not FileSystems.exists(path) and FileSystems.exists(path + ".index"):
        data = sorted(m.path for m in FileSystems.match([fileio.escape_glob(path) + ".data-*"])[0].metadata_list)
        return "ckpt:" + hashlib.sha256("".join(
            file_fingerprint(p) + ";" for p in [path + ".index", *data]).encode()).hexdigest()[:32]
    return file_fingerprint(path)


def model_identity(files: registry.ModelFiles | None, config: registry.ModelConfig) -> dict:
    """What identifies the models a build runs: the seed of synthetic ones, else the files' fingerprints."""
    if files is None:
        return {}
    if files.synthetic:
        return {"synthetic_seed": int(config.seed), "audio": bool(config.with_audio)}
    from pipeline.features.postprocess import RGB_PCA_FILES  # pylint: disable=import-outside-toplevel

    identity = {"rgb_graph": artifact_fingerprint(files.rgb_graph),
                "rgb_pca": artifact_fingerprint(files.rgb_pca_dir, RGB_PCA_FILES)}
    if config.with_audio:
        identity.update(audio_checkpoint=artifact_fingerprint(files.audio_checkpoint),
                        audio_pca=artifact_fingerprint(files.audio_pca))
    return identity


def build_settings(options: BuildOptions, files: registry.ModelFiles | None) -> dict:
    """The settings of this build that change a record's bytes (JSON-ready).

    `extra_features` is recorded only when given, so datasets from before the flag resume unchanged.
    """
    current = {
        "frames_per_second": float(options.frames_per_second),
        "audio": options.audio,
        "video_level": bool(options.skip_frame_level_features),
        "fetch_max_height": int(options.fetch_max_height),
        "models": model_identity(files, options.model_config()),
    }
    extra = [model.name for model in options.feature_models() if model.name not in ("rgb", "audio")]
    if extra:
        current["extra_features"] = extra
    return current


def differences(recorded: dict, current: dict) -> list[str]:
    """`name: recorded -> now` for each setting that differs (models: per file), empty when they agree."""
    out = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key), current.get(key)
        if key == "models" and isinstance(old, dict) and isinstance(new, dict):
            for part in sorted(set(old) | set(new)):
                if old.get(part) != new.get(part):
                    out.append(f"models.{part}: {old.get(part)} -> now {new.get(part)}")
        elif old != new:
            out.append(f"{key}: {old} -> now {new}")
    return out


def read(output_dir: str) -> dict | None:
    """The settings recorded in `output_dir`, or None when it has none (a dataset from before they were)."""
    from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=import-outside-toplevel
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    path = fileio.join(output_dir, SETTINGS_NAME)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        data = json.loads(f.read().decode("utf-8"))
    return data.get("settings", data) if isinstance(data, dict) else {}


def check_resume(output_dir: str, current: dict, *, has_records: bool) -> str | None:
    """None when resuming `output_dir` with `current` is safe; else the one-line reason to refuse."""
    recorded = read(output_dir)
    if recorded is None:
        if has_records:
            logging.warning("--skip_existing: %s records no build settings (written before they were recorded); "
                            "cannot check that its records were made with the same --frames_per_second, --audio, "
                            "--skip_frame_level_features and models as this run", output_dir)
        return None
    diff = differences(recorded, current)
    if not diff:
        return None
    return (f"--skip_existing: {output_dir} was built with other settings ({'; '.join(diff)}); its records and this "
            "run's would differ. Rerun with the recorded settings, build into a new --output_dir, or rebuild "
            "with --overwrite")


def write(output_dir: str, current: dict) -> None:
    """Writes settings.json (atomically), before any record of the build exists."""
    fileio.write_atomically(fileio.join(output_dir, SETTINGS_NAME),
                            (json.dumps({"settings": current}, indent=2, sort_keys=True) + "\n").encode("utf-8"))
