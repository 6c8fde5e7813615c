"""Which feature models a run uses, where their files come from, and loading them.

`--models yt8m` (default) uses the official artifacts of docs/spec.md §5, found through the per-file
flags, `--model_dir` (extracted or as the released archives), or the model cache, which a
download from the official locations fills (``pipeline.features.artifacts``).
`--models synthetic` writes seeded random artifacts in the official
layout (the real Inception-v3 and VGGish architectures, random orthonormal PCA) into the
model cache and loads them through the same code: same compute, meaningless features.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Sequence

import numpy as np

from pipeline.features import models as feature_models

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
    """The model cache when --model_cache is not given: $XDG_CACHE_HOME (or ~/.cache)/yt8m-features/models."""
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
    model_base_url: str | None = None
    allow_download: bool = True
    download_timeout: float = 10.0
    with_audio: bool = True  # False with --audio zeros: no VGGish file is looked for, generated or loaded

    @property
    def synthetic(self) -> bool:
        """True for --models synthetic: seeded random weights whose features mean nothing."""
        return self.mode == "synthetic"

    @property
    def cache_dir(self) -> str:
        """Where downloaded and synthetic artifacts live: --model_cache, else `default_model_cache()`."""
        return self.model_cache or default_model_cache()


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """Paths the featurizers load; ``sources`` says where each official one came from (for stats.json)."""

    rgb_graph: str
    rgb_pca_dir: str
    audio_checkpoint: str
    audio_pca: str
    synthetic: bool
    sources: tuple[tuple[str, str], ...] = ()

    def describe(self) -> dict:
        """The models and their files as stats.json's `models` entry (JSON-ready)."""
        described = {
            "rgb": {"model": "inception-v3 (2015-12-05 graph layout)", "graph": self.rgb_graph,
                    "pca": self.rgb_pca_dir},
            "audio": {"model": "vggish", "checkpoint": self.audio_checkpoint, "pca": self.audio_pca},
            "synthetic": self.synthetic,
        }
        if self.sources:
            described["sources"] = dict(self.sources)
        return described


def synthetic_dir(config: ModelConfig) -> str:
    """The cache folder of the synthetic artifacts of `config.seed`, so that each seed is written once."""
    return os.path.join(config.cache_dir, f"synthetic-seed{config.seed}")


def ensure_synthetic(config: ModelConfig) -> ModelFiles:
    """Writes the seeded random artifacts once per cache; later calls (and workers) reuse them."""
    # pylint: disable=import-outside-toplevel  (the writers import TensorFlow; only needed to write)
    from pipeline.features import tf_setup

    base = synthetic_dir(config)
    rgb_dir, audio_dir = os.path.join(base, "rgb"), os.path.join(base, "audio")
    os.makedirs(base, exist_ok=True)
    write_rgb = not os.path.exists(os.path.join(rgb_dir, RGB_GRAPH))
    write_audio = config.with_audio and not os.path.exists(os.path.join(audio_dir, AUDIO_PCA))
    if write_rgb or write_audio:
        tf_setup.configure()  # TensorFlow imported quietly, its settings applied before the first op
    if write_rgb:
        logging.warning("Generating synthetic Inception-v3 artifacts (seed %d) in %s", config.seed, rgb_dir)
        from pipeline.features import synthetic_inception

        synthetic_inception.write_synthetic_rgb_artifacts(rgb_dir, seed=config.seed)
    if write_audio:
        logging.warning("Generating synthetic VGGish artifacts (seed %d) in %s", config.seed, audio_dir)
        from pipeline.features import vggish

        vggish.write_synthetic_audio_artifacts(audio_dir, seed=config.seed)
    return ModelFiles(rgb_graph=os.path.join(rgb_dir, RGB_GRAPH), rgb_pca_dir=rgb_dir,
                      audio_checkpoint=os.path.join(audio_dir, AUDIO_CHECKPOINT) if config.with_audio else "",
                      audio_pca=os.path.join(audio_dir, AUDIO_PCA) if config.with_audio else "", synthetic=True)


def resolve(config: ModelConfig) -> ModelFiles:
    """Finds every file a run needs, fetching and checking the official ones as needed.

    Called by ``pipeline.build`` before the pipeline starts, so a missing or malformed file
    stops the run before any work, and again by each worker process when RunInference loads
    its shared model; the second call reuses what the first left in ``--model_dir`` or the
    cache and downloads nothing. See ``pipeline.features.artifacts`` for the search order.

    Raises:
        ModelArtifactError: Naming every missing or malformed file and the flags that provide it.
    """
    from pipeline.errors import ModelArtifactError  # pylint: disable=import-outside-toplevel
    from pipeline.features import artifacts  # pylint: disable=import-outside-toplevel

    # TensorFlow is imported only when a file must be checked or written (artifact_store._check,
    # the synthetic writers): a launcher whose workers run the models, with files already
    # checked, never loads it.
    if config.mode not in MODES:
        raise ModelArtifactError(f"--models {config.mode!r}: choose one of {', '.join(MODES)}")
    if config.synthetic:
        return ensure_synthetic(config)
    resolved = artifacts.resolve_official(
        model_dir=config.model_dir,
        overrides={"rgb_graph": config.rgb_graph, "rgb_pca_dir": config.rgb_pca_dir,
                   "audio_checkpoint": config.audio_checkpoint, "audio_pca": config.audio_pca},
        cache_dir=config.cache_dir, base_url=config.model_base_url, allow_download=config.allow_download,
        timeout_s=config.download_timeout,
        keys=None if config.with_audio else ("rgb_graph", "rgb_pca_dir"))
    return ModelFiles(rgb_graph=resolved.paths["rgb_graph"], rgb_pca_dir=resolved.paths["rgb_pca_dir"],
                      audio_checkpoint=resolved.paths.get("audio_checkpoint", ""),
                      audio_pca=resolved.paths.get("audio_pca", ""),
                      synthetic=False, sources=tuple(sorted(resolved.sources.items())))


class Featurizers:
    """The models one process hosts for a run, called by name: ``featurize("rgb", frames)``.

    RunInference shares a model across a machine's SDK processes by a tag: the first process to
    ask for the tag loads the object and hosts it. Every model step asks for the same tag and gets
    this one object holding all the run's models, so a machine's models always live in ONE process
    whose TensorFlow pools are sized to all the cores; with a tag per model, Inception-v3 and
    VGGish could land in two processes each sized to all the cores (benchmarks/model_copies.py).
    Only public methods cross Beam's proxy, hence a method rather than attributes.

    ``models`` are registry entries (`pipeline.features.models.FeatureModel`) or their names.
    With ``device`` (``/GPU:k``: copy k of ``--model_copies`` on a worker with several GPUs) the
    weights are made and every call runs under that device scope; None leaves placement to
    TensorFlow (its first GPU, or the CPU).
    """

    def __init__(self, files: ModelFiles, models: Sequence, *, device: str | None = None):
        try:
            entries = [feature_models.get(m) if isinstance(m, str) else m for m in models]
        except KeyError as e:
            raise ValueError(f"unknown models: {e.args[0]}") from None
        self.device = device
        with self._placed():
            self._loaded = {entry.name: entry.load(files) for entry in entries}

    def _placed(self) -> contextlib.AbstractContextManager:
        if self.device is None:
            return contextlib.nullcontext()
        from pipeline.cli import logs  # pylint: disable=import-outside-toplevel

        return logs.import_tensorflow().device(self.device)

    def featurize(self, name: str, batch: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """A batch of model `name`'s inputs -> float32 [N, width] features (rgb: see :class:`RgbFeaturizer`)."""
        model = self._loaded.get(name)
        if model is None:
            hint = " (--audio zeros?)" if name == "audio" else ""
            raise RuntimeError(f"the {name} model was not loaded in this process{hint}")
        with self._placed():
            return model(batch)

    def loaded(self) -> list[str]:
        """The names of the models this object holds."""
        return list(self._loaded)
