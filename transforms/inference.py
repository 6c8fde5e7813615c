"""Feature extraction with RunInference: batches formed across clips, one model per worker process."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from pipeline.models import registry


class _FeatureModelHandler(ModelHandler[np.ndarray, np.ndarray, Any]):
    """Shared logic: stack a batch, run the featurizer (model + PCA), hand back one row per element."""

    featurizer_cls: type = None
    name = ""

    def __init__(self, config: registry.ModelConfig, *, batch_size: int):
        super().__init__()
        self._config = config
        self._batch_size = batch_size

    def load_model(self):
        files = registry.resolve(self._config)
        logging.info("Loading %s model from %s", self.name, files.describe()[self.name])
        return self.featurizer_cls(files)

    def run_inference(self, batch: Sequence[np.ndarray], model, inference_args=None) -> Iterable[np.ndarray]:
        features = model(np.stack(batch))
        return list(np.asarray(features, np.float32))

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def get_metrics_namespace(self) -> str:
        return f"video_features_{self.name}"


class RgbModelHandler(_FeatureModelHandler):
    featurizer_cls = registry.RgbFeaturizer
    name = "rgb"


class AudioModelHandler(_FeatureModelHandler):
    featurizer_cls = registry.AudioFeaturizer
    name = "audio"


def _rekey(element):
    (clip_id, step), features = element
    return clip_id, (step, features)


class ExtractFeatures(beam.PTransform):
    """((clip_id, k), model input) -> (clip_id, (k, float features after PCA))."""

    def __init__(self, handler: _FeatureModelHandler):
        super().__init__()
        self._handler = handler

    def expand(self, inputs):
        return (
            inputs
            | "RunInference" >> RunInference(KeyedModelHandler(self._handler))
            | "KeyByClip" >> beam.Map(_rekey))
