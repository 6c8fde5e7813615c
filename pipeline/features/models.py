"""The feature models a build can run, in one registry: what each reads, writes and loads.

A feature model turns one decoded stream of a clip into one feature vector per step (second).
Its entry says everything the pipeline needs to wire it, so adding one (CLIP, say) is one new
module that defines a `FeatureModel` and one line in `_ENTRIES` naming it; nothing else changes:

- ``reads``: which decoded stream it takes, ``frames`` (the decoder's uint8 RGB frame of each
  step at native resolution, as a list) or ``log_mel`` (VGGish's [96, 64] log-mel example of
  each step, stacked);
- ``width``: floats per step it returns, and so bytes per step once quantized;
- ``load``: called once in the process that hosts the models, with the run's `ModelFiles`;
  returns a callable from a batch of inputs to a float32 [N, width] array;
- ``quantize``: float features -> uint8 bytes, as the record stores them.

Each model of a run becomes a RunInference step (`transforms.inference`), its features the
frame-level feature list ``name`` of every record and, in the context, ``mean_name``
(`pipeline.dataset.records`). ``rgb`` and ``audio`` are the YouTube-8M layout's two and always
run (``--audio zeros`` writes the extractor's zero audio instead of running VGGish);
``--extra_features NAME,...`` adds registered ones beside them. An entry is picklable (a
module-level ``load``), so it travels to Dataflow workers with the step that runs it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.features import quantization

FRAMES = "frames"
LOG_MEL = "log_mel"
STREAMS = (FRAMES, LOG_MEL)
LAYOUT = ("rgb", "audio")
"""The YouTube-8M frame-level layout's models, in the order their steps are built."""


@dataclasses.dataclass(frozen=True)
class FeatureModel:
    """One registry entry; see the module docstring for what each field means."""

    name: str
    reads: str
    width: int
    load: Callable[[Any], Callable[[Any], np.ndarray]]  # registry.ModelFiles -> the model (registry imports us)
    quantize: Callable[[np.ndarray], np.ndarray]
    description: str = ""
    batch_size: int = 32

    def __post_init__(self):
        if not self.name.isidentifier() or self.name.startswith("mean_"):
            raise ValueError(f"feature model name {self.name!r}: letters, digits and _ only, not mean_*")
        if self.reads not in STREAMS:
            raise ValueError(f"feature model {self.name!r} reads {self.reads!r}; one of {', '.join(STREAMS)}")
        if self.width < 1:
            raise ValueError(f"feature model {self.name!r}: width must be at least 1")

    def model_input(self, batch: Sequence[np.ndarray]) -> Any:
        """What ``load``'s callable takes for a batch: frames as a list (their sizes differ), else stacked."""
        return list(batch) if self.reads == FRAMES else np.stack(batch)


class RgbFeaturizer:
    """RGB frames -> PCA-whitened float features [N, 1024].

    Takes the decoder's native-resolution uint8 [H, W, 3] frames (a list; sizes may differ)
    and resizes each one here, in the model's process, with the graph's own op
    (``inception.resize_frame``), so decode workers run no TensorFlow and frames travel as
    uint8. A float32 [N, 299, 299, 3] array of frames already resized that way is taken as is.
    """

    def __init__(self, files: Any):  # registry.ModelFiles
        from pipeline.features import (
            inception,  # pylint: disable=import-outside-toplevel
            postprocess,  # pylint: disable=import-outside-toplevel
        )

        self.model = inception.InceptionV3Features.from_graph_def_file(files.rgb_graph)
        self.pca = postprocess.RgbPca.from_dir(files.rgb_pca_dir)
        self._resize = inception.resize_frame
        self._input_size = inception.INPUT_SIZE

    def __call__(self, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] frames (or float32 [N, 299, 299, 3] already resized) -> float32 [N, 1024] features."""
        if isinstance(frames, np.ndarray) and frames.dtype == np.float32:
            resized = frames
        elif len(frames):
            resized = np.stack([self._resize(frame) for frame in frames])
        else:
            resized = np.zeros((0, self._input_size, self._input_size, 3), np.float32)
        return self.pca.apply(self.model(resized))


class AudioFeaturizer:
    """Log-mel examples [N, 96, 64] -> PCA float features [N, 128] (before clipping and quantization)."""

    def __init__(self, files: Any):  # registry.ModelFiles
        from pipeline.features import (
            postprocess,  # pylint: disable=import-outside-toplevel
            vggish,  # pylint: disable=import-outside-toplevel
        )

        self.model = vggish.VGGish.from_checkpoint(files.audio_checkpoint)
        self.pca = postprocess.AudioPca.from_npz(files.audio_pca)

    def __call__(self, examples: np.ndarray) -> np.ndarray:
        """Log-mel examples [N, 96, 64] -> float32 [N, 128] PCA features (not yet clipped or quantized)."""
        return self.pca.apply(self.model(examples))


RGB = FeatureModel("rgb", FRAMES, 1024, RgbFeaturizer, quantization.quantize_rgb,
                   "inception-v3 (2015-12-05 graph layout), PCA to 1024")
AUDIO = FeatureModel("audio", LOG_MEL, 128, AudioFeaturizer, quantization.quantize_audio,
                     "vggish, PCA to 128", batch_size=64)

# name -> the model itself, or "module:attribute" imported on first use (a model whose module
# pulls in a heavy library costs nothing to a run that does not ask for it).
_ENTRIES: dict[str, FeatureModel | str] = {"rgb": RGB, "audio": AUDIO}


def register(model: FeatureModel) -> FeatureModel:
    """Adds `model` to the registry (a plugin or a test); a name already taken by another model is refused."""
    existing = _ENTRIES.get(model.name)
    if existing is not None and existing is not model:
        raise ValueError(f"a feature model named {model.name!r} is already registered")
    _ENTRIES[model.name] = model
    return model


def unregister(name: str) -> None:
    """Removes an added model (the layout's two stay)."""
    if name in LAYOUT:
        raise ValueError(f"{name!r} is part of the YouTube-8M layout and cannot be removed")
    _ENTRIES.pop(name, None)


def names() -> tuple[str, ...]:
    """Every registered model's name, the layout's first."""
    return LAYOUT + tuple(sorted(set(_ENTRIES) - set(LAYOUT)))


def get(name: str) -> FeatureModel:
    """The registered model `name`. Raises KeyError naming the registered ones."""
    entry = _ENTRIES.get(name)
    if entry is None:
        raise KeyError(f"no feature model named {name!r}; registered: {', '.join(names())}")
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        entry = getattr(importlib.import_module(module), attribute)
        _ENTRIES[name] = entry
    return entry


def for_run(extra: Sequence[str] = (), *, with_audio: bool = True) -> tuple[FeatureModel, ...]:
    """The models a build runs: rgb, audio unless ``--audio zeros``, then `extra` in the order given."""
    chosen = ["rgb"] + (["audio"] if with_audio else [])
    for name in extra:
        if name in LAYOUT:
            raise ValueError(f"--extra_features {name}: {name} is always written (it is part of the layout)")
        if name not in chosen:
            chosen.append(name)
    chosen_models = tuple(get(name) for name in chosen)
    for model in chosen_models:
        if model.reads == LOG_MEL and not with_audio:
            raise ValueError(f"--extra_features {model.name} reads the audio's log-mel examples, which "
                             "--audio zeros does not compute")
    return chosen_models
