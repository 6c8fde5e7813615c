"""Which feature models a run uses, where their files come from, and loading them.

`--models yt8m` (default) uses the official artifacts of SPEC §5, found through `--model_dir`
or the per-file flags. `--models synthetic` writes seeded random artifacts in the official
layout (the real Inception-v3 and VGGish architectures, random orthonormal PCA) into the
model cache and loads them through the same code: same compute, meaningless features.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import posixpath

MODES = ("yt8m", "synthetic")
RGB_GRAPH = "classify_image_graph_def.pb"
RGB_PCA_FILES = ("mean.npy", "eigenvecs.npy", "eigenvals.npy")
AUDIO_CHECKPOINT = "vggish_model.ckpt"
AUDIO_PCA = "vggish_pca_params.npz"

SYNTHETIC_WARNING = (
    "SYNTHETIC MODELS: features come from Inception-v3 and VGGish with seeded RANDOM weights and a "
    "random PCA. They have the right shapes and cost but mean nothing; do not train on them. "
    "stats.json records synthetic: true.")


def default_model_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "yt8m-features", "models")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Model choice from the command line; picklable, shipped to every worker."""

    mode: str = "yt8m"
    seed: int = 0
    model_dir: str | None = None
    model_cache: str | None = None
    rgb_graph: str | None = None
    rgb_pca_dir: str | None = None
    audio_checkpoint: str | None = None
    audio_pca: str | None = None

    @property
    def synthetic(self) -> bool:
        return self.mode == "synthetic"

    @property
    def cache_dir(self) -> str:
        return self.model_cache or default_model_cache()


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    rgb_graph: str
    rgb_pca_dir: str
    audio_checkpoint: str
    audio_pca: str
    synthetic: bool

    def describe(self) -> dict:
        return {
            "rgb": {"model": "inception-v3 (2015-12-05 graph layout)", "graph": self.rgb_graph,
                    "pca": self.rgb_pca_dir},
            "audio": {"model": "vggish", "checkpoint": self.audio_checkpoint, "pca": self.audio_pca},
            "synthetic": self.synthetic,
        }


def _join(base: str, name: str) -> str:
    return posixpath.join(base, name) if "://" in base else os.path.join(base, name)


def _exists(path: str) -> bool:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.io.gfile.exists(path)


def synthetic_dir(config: ModelConfig) -> str:
    return os.path.join(config.cache_dir, f"synthetic-seed{config.seed}")


def ensure_synthetic(config: ModelConfig) -> ModelFiles:
    """Writes the seeded random artifacts once per cache; later calls (and workers) reuse them."""
    from pipeline.models import inception, vggish  # pylint: disable=import-outside-toplevel

    base = synthetic_dir(config)
    rgb_dir, audio_dir = os.path.join(base, "rgb"), os.path.join(base, "audio")
    os.makedirs(base, exist_ok=True)
    if not os.path.exists(os.path.join(rgb_dir, RGB_GRAPH)):
        logging.warning("Generating synthetic Inception-v3 artifacts (seed %d) in %s", config.seed, rgb_dir)
        inception.write_synthetic_rgb_artifacts(rgb_dir, seed=config.seed)
    if not os.path.exists(os.path.join(audio_dir, AUDIO_PCA)):
        logging.warning("Generating synthetic VGGish artifacts (seed %d) in %s", config.seed, audio_dir)
        vggish.write_synthetic_audio_artifacts(audio_dir, seed=config.seed)
    return ModelFiles(rgb_graph=os.path.join(rgb_dir, RGB_GRAPH), rgb_pca_dir=rgb_dir,
                      audio_checkpoint=os.path.join(audio_dir, AUDIO_CHECKPOINT),
                      audio_pca=os.path.join(audio_dir, AUDIO_PCA), synthetic=True)


def resolve(config: ModelConfig) -> ModelFiles:
    """Finds every file a run needs, or raises ModelArtifactError naming what is missing and the flags."""
    from pipeline.errors import ModelArtifactError  # pylint: disable=import-outside-toplevel

    if config.mode not in MODES:
        raise ModelArtifactError(f"--models {config.mode!r}: choose one of {', '.join(MODES)}")
    if config.synthetic:
        return ensure_synthetic(config)
    base = config.model_dir
    wanted = {
        "rgb_graph": (config.rgb_graph or (base and _join(base, RGB_GRAPH)), "--rgb_graph", RGB_GRAPH),
        "rgb_pca_dir": (config.rgb_pca_dir or base, "--rgb_pca_dir", "mean.npy, eigenvecs.npy, eigenvals.npy"),
        "audio_checkpoint": (config.audio_checkpoint or (base and _join(base, AUDIO_CHECKPOINT)),
                             "--audio_checkpoint", AUDIO_CHECKPOINT),
        "audio_pca": (config.audio_pca or (base and _join(base, AUDIO_PCA)), "--audio_pca", AUDIO_PCA),
    }
    missing = []
    for key, (path, flag, names) in wanted.items():
        if not path:
            missing.append(f"{names} (pass {flag} or --model_dir)")
            continue
        probes = [path + ".index"] if key == "audio_checkpoint" else (
            [_join(path, n) for n in RGB_PCA_FILES] if key == "rgb_pca_dir" else [path])
        absent = [p for p in probes if not _exists(p)]
        if absent:
            missing.append(f"{', '.join(absent)} (pass {flag} or --model_dir)")
    if missing:
        raise ModelArtifactError(
            "--models yt8m needs the official YouTube-8M and VGGish files (SPEC §5); missing: "
            + "; ".join(missing)
            + ". Put classify_image_graph_def.pb (from inception-2015-12-05.tgz), mean.npy, eigenvecs.npy, "
              "eigenvals.npy (from yt8m_pca.tgz), vggish_model.ckpt and vggish_pca_params.npz in one directory "
              "and pass --model_dir DIR (local or gs://), or run with --models synthetic for an offline smoke run.")
    return ModelFiles(rgb_graph=wanted["rgb_graph"][0], rgb_pca_dir=wanted["rgb_pca_dir"][0],
                      audio_checkpoint=wanted["audio_checkpoint"][0], audio_pca=wanted["audio_pca"][0],
                      synthetic=False)


class RgbFeaturizer:
    """Resized frames [N, 299, 299, 3] -> PCA-whitened float features [N, 1024]."""

    def __init__(self, files: ModelFiles):
        from pipeline import postprocess  # pylint: disable=import-outside-toplevel
        from pipeline.models import inception  # pylint: disable=import-outside-toplevel

        self.model = inception.InceptionV3Features.from_graph_def_file(files.rgb_graph)
        self.pca = postprocess.RgbPca.from_dir(files.rgb_pca_dir)

    def __call__(self, frames):
        return self.pca.apply(self.model(frames))


class AudioFeaturizer:
    """Log-mel examples [N, 96, 64] -> PCA float features [N, 128] (before clipping and quantization)."""

    def __init__(self, files: ModelFiles):
        from pipeline import postprocess  # pylint: disable=import-outside-toplevel
        from pipeline.models import vggish  # pylint: disable=import-outside-toplevel

        self.model = vggish.VGGish.from_checkpoint(files.audio_checkpoint)
        self.pca = postprocess.AudioPca.from_npz(files.audio_pca)

    def __call__(self, examples):
        return self.pca.apply(self.model(examples))
