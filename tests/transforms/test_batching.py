"""RunInference batching: full batches of frames from many clips, bounded in bytes for huge frames."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.features import models as feature_models
from pipeline.features import registry
from transforms import inference


def _handler(batch_size: int, model: feature_models.FeatureModel = feature_models.RGB,
             **kwargs) -> inference.FeatureModelHandler:
    return inference.FeatureModelHandler(model, registry.ModelConfig(mode="synthetic"), batch_size=batch_size,
                                         **kwargs)


def test_frames_up_to_full_hd_take_one_slot_and_a_40_megapixel_frame_takes_many():
    frame_1080p = np.zeros((1080, 1920, 3), np.uint8)
    huge = np.zeros((5000, 8000, 3), np.uint8)  # the default --max_frame_pixels allows 40 MP
    assert inference.batch_weight((("clip", 0), frame_1080p)) == 1
    assert inference.batch_weight((("clip", 0), huge)) == 15  # 120 MB in 8 MiB units, rounded up
    assert inference.batch_weight(np.zeros((96, 64), np.float32)) == 1


def test_batches_are_full_within_a_bundle_and_bounded_in_bytes():
    """The handler's batching arguments make BatchElements emit full batches from the first one on."""
    kwargs = _handler(4).batch_elements_kwargs()
    small = [((f"c{i // 3}", i % 3), np.zeros((36, 64, 3), np.uint8)) for i in range(10)]
    huge = [(("big", 0), np.zeros((2048, 4096, 3), np.uint8))]  # 24 MiB: 3 slots, more than the batch has left

    with TestPipeline() as p:
        sizes = (p | beam.Create([small + huge], reshuffle=False) | beam.FlatMap(lambda elements: elements)
                 | beam.BatchElements(**kwargs) | beam.Map(len))
        assert_that(sizes, equal_to([4, 4, 2, 1]))


def test_batch_bytes_are_counted_without_pickling_the_frames(monkeypatch):
    """RunInference asks every batch its size for its metrics; Beam's default pickles 22 MB per batch for it."""
    import pickle

    from apache_beam.ml.inference.base import KeyedModelHandler

    frames = [np.zeros((360, 640, 3), np.uint8) for _ in range(3)]
    dumped = []
    real_dumps = pickle.dumps
    monkeypatch.setattr(pickle, "dumps", lambda obj, *a, **kw: dumped.append(obj) or real_dumps(obj, *a, **kw))
    keyed = KeyedModelHandler(_handler(32))
    size = keyed.get_num_bytes([(("c", k), frame) for k, frame in enumerate(frames)])
    assert not [obj for obj in dumped if any(isinstance(x, np.ndarray) for x in obj)]  # only the keys were pickled
    assert size - len(real_dumps(tuple(("c", k) for k in range(3)))) == 3 * 360 * 640 * 3


class _Models:
    """A stand-in for registry.Featurizers that records which model got what."""

    def __init__(self):
        self.calls = []

    def featurize(self, name, batch):
        self.calls.append((name, type(batch).__name__, len(batch)))
        return np.ones((len(batch), {"rgb": 1024, "audio": 128}[name]), np.float64)


def test_each_step_calls_its_own_model_of_the_shared_object():
    """Both steps get the one object hosting the run's models; each asks it for its own model."""
    models = _Models()
    frames = [np.zeros((36, 64, 3), np.uint8), np.zeros((72, 128, 3), np.uint8)]  # sizes differ across clips
    rgb = list(_handler(8).run_inference(frames, models))
    audio = list(_handler(8, feature_models.AUDIO).run_inference([np.zeros((96, 64), np.float32)] * 3, models))
    assert models.calls == [("rgb", "list", 2), ("audio", "ndarray", 3)]
    assert [f.shape for f in rgb] == [(1024,)] * 2 and [f.shape for f in audio] == [(128,)] * 3
    assert {f.dtype for f in rgb + audio} == {np.dtype(np.float32)}


def test_the_hosted_object_refuses_a_model_it_was_not_asked_to_load(model_cache):
    files = registry.resolve(registry.ModelConfig(mode="synthetic", model_cache=model_cache, with_audio=False))
    models = registry.Featurizers(files, ("rgb",))
    assert models.loaded() == ["rgb"]
    assert models.featurize("rgb", [np.zeros((36, 64, 3), np.uint8)]).shape == (1, 1024)
    with pytest.raises(RuntimeError, match="audio model was not loaded"):
        models.featurize("audio", np.zeros((1, 96, 64), np.float32))
    with pytest.raises(ValueError, match="flow"):
        registry.Featurizers(files, ("rgb", "flow"))


def test_each_loaded_copy_gets_the_next_device(monkeypatch):
    """The k-th model object a process loads (Beam hosts all --model_copies there) is placed on GPU k % GPUs."""
    made = []

    class Recorder:
        def __init__(self, files, names, *, device=None):
            made.append((tuple(m.name for m in names), device))

    monkeypatch.setattr(registry, "Featurizers", Recorder)
    monkeypatch.setattr(registry, "resolve", lambda config: registry.ModelFiles("g", "p", "c", "a", True))
    monkeypatch.setattr(inference.tf_setup, "configure", lambda sharing: (2, 2))
    monkeypatch.setattr(inference.tf_setup, "copy_device", lambda index: inference.tf_setup.device_for(index, 2))
    monkeypatch.setattr(inference, "_LOADED", iter(range(3)))
    sharing = inference.tf_setup.ModelSharing(copies=3, processes=None)
    handler = _handler(8, sharing=sharing)
    for _ in range(3):
        handler.load_model()
    assert made == [(("rgb", "audio"), "/GPU:0"), (("rgb", "audio"), "/GPU:1"), (("rgb", "audio"), "/GPU:0")]

