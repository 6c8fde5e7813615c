"""Feature extraction with RunInference: batches formed across clips, one model copy per worker machine.

By default each model is loaded ONCE per worker machine and shared by all its SDK worker
processes (RunInference's ``share_model_across_processes``: the first process to need it hosts
it, the others call it through a local proxy). Every model step uses one model tag and loads one
``registry.Featurizers`` holding every model of the run, so the first process that needs either
model hosts both: an 8-vCPU Dataflow VM, which runs 8 SDK processes, holds one Inception-v3 and
one VGGish in one process with 8 TensorFlow threads, instead of 8 copies fighting over the cores
(or two hosting processes each sized to all of them). ``--model_copies N`` keeps N copies per
machine (Beam 2.77 hosts them all in the process that loads them first); ``--model_copies
per_process`` loads one copy in every process (Beam's default, no proxy), as does a run with one
process per machine, where each step loads just its own model. See
``pipeline.features.tf_setup.ModelSharing``.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from pipeline.features import models, registry, shared_access, tf_setup
from transforms.support.progress import PROGRESS

# Model objects this process has loaded: the k-th (copy k of --model_copies, all hosted here by
# Beam) runs on GPU k % GPUs, so a worker's GPUs each get a copy.
_LOADED = itertools.count()

# A frame up to this size counts as one element of a batch; a bigger one (a stranger's 40 MP video)
# counts as several, so a batch of native frames stays within batch_size x 8 MiB of memory.
BATCH_UNIT_BYTES = 8 << 20


def batch_weight(element: tuple[Any, np.ndarray] | np.ndarray) -> int:
    """How many batch slots a (key, array) element takes: one per started BATCH_UNIT_BYTES."""
    value = element[1] if isinstance(element, tuple) else element
    return max(1, -(-int(getattr(value, "nbytes", 0)) // BATCH_UNIT_BYTES))


class FeatureModelHandler(ModelHandler[np.ndarray, np.ndarray, Any]):
    """One feature model's step: load once per machine (or process), run it (model + PCA) on a batch.

    ``model`` is the registry entry this step runs (`pipeline.features.models`); ``run_models``
    every model of the run, all of which a shared host loads (see `loaded_models`). The loaded
    object is a ``registry.Featurizers``.
    """

    def __init__(self, model: models.FeatureModel, config: registry.ModelConfig, *, batch_size: int,
                 sharing: tf_setup.ModelSharing | None = None,
                 run_models: Sequence[models.FeatureModel] | None = None):
        super().__init__()
        self._model = model
        self._run_models = tuple(run_models) if run_models else models.for_run(with_audio=config.with_audio)
        self._config = config
        self._batch_size = batch_size
        self._sharing = sharing or tf_setup.ModelSharing()  # default: one copy per machine

    @property
    def name(self) -> str:
        """The model this step runs: its registry name."""
        return self._model.name

    @property
    def sharing(self) -> tf_setup.ModelSharing:
        """The copies per machine and TensorFlow thread settings this handler loads its model with."""
        return self._sharing

    def share_model_across_processes(self) -> bool:
        """Whether one copy serves every SDK process of a machine (--model_copies N) or each loads its own."""
        return self._sharing.shared

    def set_environment_vars(self) -> None:
        """RunInference's first step on a worker: with sharing, this run's key and private folder for it."""
        super().set_environment_vars()
        if self._sharing.shared:
            shared_access.install(self._sharing.authkey)

    def model_copies(self) -> int:
        """Copies of the models per machine (--model_copies)."""
        return max(1, self._sharing.copies)

    @property
    def model_tag(self) -> str:
        """RunInference's model identifier: the same for every model step of a pipeline."""
        return self._sharing.tag

    def loaded_models(self) -> tuple[str, ...]:
        """The models ``load_model`` loads: shared, every model of the run (one host for all); else its own.

        Without sharing each step's DoFn loads its own object, so loading all of them there would
        hold several copies of each model in one process.
        """
        return tuple(model.name for model in self._models_to_load())

    def _models_to_load(self) -> tuple[models.FeatureModel, ...]:
        return self._run_models if self._sharing.shared else (self._model,)

    def load_model(self) -> registry.Featurizers:
        """Loads this step's model (shared: every model of the run) in this process, once per copy."""
        # Before this process's first TensorFlow op: the threads of a copy on this machine. Only a
        # process that hosts a model imports TensorFlow, here (quietly, in tf_setup).
        intra, inter = tf_setup.configure(self._sharing)
        files = registry.resolve(self._config)
        loaded = self._models_to_load()
        device = tf_setup.copy_device(next(_LOADED))
        PROGRESS.phase("loading models")
        described = files.describe()
        logging.info("Loading the %s model%s in process %d%s (TensorFlow: %d intra-op, %d inter-op threads): %s",
                     " and ".join(m.name for m in loaded), "s" if len(loaded) > 1 else "", os.getpid(),
                     f" on {device}" if device else "", intra, inter,
                     "; ".join(_in_words(described.get(m.name) or {"model": m.description or m.name})
                               for m in loaded))
        featurizers = registry.Featurizers(files, loaded, device=device)
        PROGRESS.phase("models loaded, decoding the first clips")
        return featurizers

    def run_inference(self, batch: Sequence[np.ndarray], model: registry.Featurizers,
                      inference_args: dict[str, Any] | None = None) -> Iterable[np.ndarray]:
        """A batch of model inputs -> one float32 feature vector each, in order."""
        features = np.asarray(model.featurize(self.name, self._model.model_input(batch)), np.float32)
        if features.shape != (len(batch), self._model.width):
            raise ValueError(f"feature model {self.name} returned shape {features.shape} for a batch of "
                             f"{len(batch)}; expected ({len(batch)}, {self._model.width})")
        return list(features)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        """BatchElements' arguments: batches of exactly ``batch_size`` slots (a huge frame takes several)."""
        # Full batches: Beam's adaptive sizing starts at 1 and grows by timing, which left most
        # calls with one or two frames (benchmarks/run.py --only dataset --profile). A batch never
        # outlives its bundle, so fixed sizes add no wait; huge frames count as several.
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size,
                "element_size_fn": batch_weight}

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        """The batch's array bytes, for RunInference's byte metrics (Beam's default pickles the batch to count)."""
        return sum(int(getattr(example, "nbytes", 0)) for example in batch)

    def get_metrics_namespace(self) -> str:
        """``video_features_<model>``: one namespace of RunInference metrics per model step."""
        return f"video_features_{self.name}"


class _KeyedHandler(KeyedModelHandler):
    """Beam's KeyedModelHandler, passing RunInference's setup hook on to the handler it wraps (Beam's does not)."""

    def set_environment_vars(self) -> None:
        super().set_environment_vars()
        self._unkeyed.set_environment_vars()


# The hints are for readers: Beam keeps inferring the output type from the code (a KV, whose
# coder the join downstream uses) instead of taking the hint, which it reads as Any.
@beam.typehints.no_annotations
def _rekey(element: tuple[tuple[str, int], np.ndarray]) -> tuple[str, tuple[int, np.ndarray]]:
    (clip_id, step), features = element
    return clip_id, (step, features)


class ExtractFeatures(beam.PTransform):
    """((clip_id, k), model input) -> (clip_id, (k, float features after PCA))."""

    def __init__(self, handler: FeatureModelHandler):
        super().__init__()
        self._handler = handler

    @property
    def handler(self) -> FeatureModelHandler:
        """The model handler this transform runs, so that a built pipeline can be checked for its sharing settings."""
        return self._handler

    def expand(self, inputs: beam.PCollection) -> beam.PCollection:
        """((clip_id, k), model input) -> (clip_id, (k, float32 features)), batched across clips."""
        return (
            inputs
            | "RunInference" >> RunInference(_KeyedHandler(self._handler),
                                             model_identifier=self._handler.model_tag)
            | "KeyByClip" >> beam.Map(_rekey))


def _in_words(described: dict) -> str:
    """One model's entry of stats.json's `models` in words: ``vggish: checkpoint PATH, pca PATH``."""
    files = ", ".join(f"{key} {value}" for key, value in described.items() if key != "model" and value)
    return f"{described.get('model', 'model')}" + (f" ({files})" if files else "")
