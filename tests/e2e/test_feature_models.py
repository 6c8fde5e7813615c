"""A feature model added through the registry: one module-level entry, then records that carry it.

The toy model reads the decoder's frames and returns each frame's mean red, green and blue,
scaled to the quantizer's [-2, 2]. Registered here (as a plugin would), picked with
--extra_features, it must land in every record as the feature list `toy_color` and the context
`mean_toy_color`, step for step, while rgb and audio stay byte-identical to a build without it.
"""

import csv
import glob
import os

import numpy as np
import pytest
import references

from pipeline.cli import build
from pipeline.dataset import example_proto, records, tfrecord
from pipeline.decode import media
from pipeline.features import models, quantization


def _mean_color(frame: np.ndarray) -> np.ndarray:
    return np.asarray(frame, np.float32).reshape(-1, 3).mean(0) / 255.0 * 4.0 - 2.0


def _load_toy(files):
    del files  # the toy has no weights

    def run(frames):
        return np.stack([_mean_color(frame) for frame in frames]).astype(np.float32)

    return run


TOY = models.FeatureModel("toy_color", models.FRAMES, 3, _load_toy, quantization.quantize_rgb,
                          "mean colour per frame (test)", batch_size=4)


@pytest.fixture(scope="module")
def toy_registered():
    models.register(TOY)
    yield TOY
    models.unregister(TOY.name)


def _build(tmp, csv_path, model_cache, *extra):
    out = tmp / ("out" + "-".join(("",) + extra).replace(",", "_"))
    argv = ["--input_csv", str(csv_path), "--output_dir", str(out), "--models", "synthetic",
            "--model_cache", model_cache, *extra]
    assert build.main(argv) == 0
    found = {}
    for path in sorted(glob.glob(os.path.join(out, "records", "*.tfrecord"))):
        with open(path, "rb") as f:
            for data in tfrecord.read_records(f):
                found[records.check_record(data).clip_id] = data
    return found, argv


@pytest.fixture(scope="module")
def builds(tmp_path_factory, videos, model_cache, toy_registered):
    tmp = tmp_path_factory.mktemp("feature_models")
    csv_path = tmp / "videos.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "labels"])
        w.writerow([videos["v4_5_silent"], "bars"])
        w.writerow([videos["v3_30fps"], "bars"])
    plain, _ = _build(tmp, csv_path, model_cache)
    with_toy, argv = _build(tmp, csv_path, model_cache, "--extra_features", "toy_color")
    return plain, with_toy, videos, argv


def test_a_registered_model_adds_its_feature_list_step_for_step(builds):
    plain, with_toy, videos, _ = builds
    assert sorted(with_toy) == sorted(plain) == sorted([videos["v4_5_silent"], videos["v3_30fps"]])
    for clip_id, data in with_toy.items():
        example = example_proto.SequenceExample.FromString(data)
        steps = [f.bytes_list.value[0] for f in example.feature_lists.feature_list["toy_color"].feature]
        frames = [step.frame for step in media.ClipDecoder(clip_id, has_audio=False).steps()]
        expected = quantization.quantize_rgb(np.stack([_mean_color(frame) for frame in frames]))
        assert len(steps) == len(frames) == records.check_record(data).rgb.shape[0]
        assert np.array_equal(np.frombuffer(b"".join(steps), np.uint8).reshape(-1, 3), expected)
        mean = np.asarray(example.context.feature["mean_toy_color"].float_list.value, np.float32)
        assert mean.shape == (3,)
        np.testing.assert_allclose(mean, np.stack([_mean_color(f) for f in frames]).mean(0), atol=1e-5)


def test_the_layout_is_untouched_by_an_extra_model(builds):
    plain, with_toy, _, _ = builds
    for clip_id, data in with_toy.items():
        example = example_proto.SequenceExample.FromString(data)
        before = example_proto.SequenceExample.FromString(plain[clip_id])
        for name in ("rgb", "audio"):
            assert example.feature_lists.feature_list[name] == before.feature_lists.feature_list[name]
        assert example.context.feature["mean_rgb"] == before.context.feature["mean_rgb"]
    assert len(references.yt8m_reader_parse(list(with_toy.values()))) == 2


def test_a_resume_without_the_extra_model_is_refused(builds, capsys):
    """Its records would lack the feature list the earlier ones have: settings.json records the extra models."""
    argv = builds[3]
    without = argv[:argv.index("--extra_features")] + ["--skip_existing"]
    assert build.main(without) == 2
    assert "extra_features: ['toy_color'] -> now None" in capsys.readouterr().err
    assert build.main(argv + ["--skip_existing"]) == 0


def test_unknown_or_unusable_extra_models_are_refused_before_any_work(tmp_path, capsys, toy_registered):
    csv_path = tmp_path / "videos.csv"
    csv_path.write_text("video,labels\nx.mp4,a\n")
    base = ["--input_csv", str(csv_path), "--output_dir", str(tmp_path / "out"), "--models", "synthetic"]
    assert build.main(base + ["--extra_features", "clip"]) == 2
    assert "no feature model named 'clip'; registered: rgb, audio, toy_color" in capsys.readouterr().err
    assert build.main(base + ["--extra_features", "audio"]) == 2
    assert "audio is always written" in capsys.readouterr().err
    log_mel_toy = models.register(models.FeatureModel("toy_loud", models.LOG_MEL, 1, _load_toy,
                                                      quantization.quantize_audio))
    try:
        assert build.main(base + ["--audio", "zeros", "--extra_features", "toy_loud"]) == 2
        assert "--audio zeros does not compute" in capsys.readouterr().err
    finally:
        models.unregister(log_mel_toy.name)
    assert not (tmp_path / "out").exists()


def test_a_registry_entry_is_checked_when_made():
    with pytest.raises(ValueError, match="reads 'pixels'"):
        models.FeatureModel("bad", "pixels", 3, _load_toy, quantization.quantize_rgb)
    with pytest.raises(ValueError, match="not mean_"):
        models.FeatureModel("mean_x", models.FRAMES, 3, _load_toy, quantization.quantize_rgb)
    with pytest.raises(ValueError, match="already registered"):
        models.register(models.FeatureModel("rgb", models.FRAMES, 3, _load_toy, quantization.quantize_rgb))
