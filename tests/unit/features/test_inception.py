"""Inception-v3 loading, the batched path against the one-frame reference, and synthetic artifacts."""

import os

import numpy as np
import pytest
import standins
import tensorflow as tf

from pipeline.errors import ModelArtifactError
from pipeline.features import inception, synthetic_inception

SIZES = ((240, 320), (360, 640), (50, 70), (299, 299), (481, 271))


def _frames(seed: int) -> list[np.ndarray]:
    """Frames of different sizes: noise plus a smooth ramp, so features differ between them."""
    rng = np.random.default_rng(seed)
    frames = []
    for index, (height, width) in enumerate(SIZES):
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * np.float32(index / len(SIZES))
        noise = rng.integers(0, 256, (height, width, 3)).astype(np.float32) * np.float32(0.5)
        frames.append(np.clip(ramp + noise, 0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def standin_path(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("standin") / inception.GRAPH_FILE_NAME)
    standins.write_standin_graph(path, seed=0)
    return path


@pytest.fixture(scope="module")
def standin(standin_path) -> inception.InceptionV3Features:
    return inception.InceptionV3Features.from_graph_def_file(standin_path)


def test_standin_has_the_official_names_and_legacy_ops(standin_path):
    graph_def = inception.load_graph_def(standin_path)
    nodes = {node.name: node for node in graph_def.node}
    assert set(inception.REQUIRED_NODES) <= set(nodes)
    assert nodes["DecodeJpeg"].op == "DecodeJpeg" and nodes["DecodeJpeg"].input[0] == "DecodeJpeg/contents"
    assert [nodes[name].op for name in ("Cast", "ExpandDims", "ResizeBilinear", "Sub", "Mul")] == [
        "Cast", "ExpandDims", "ResizeBilinear", "Sub", "Mul"]
    # What makes the 2015 file hard to load in TF 2.21: the removed op and an old producer version.
    assert graph_def.versions.producer < 9
    assert any(node.op == "BatchNormWithGlobalNormalization" for node in graph_def.node)
    assert any(node.op == "Concat" for node in graph_def.node)


def test_batched_path_matches_reference_per_frame(standin):
    frames = _frames(1)
    batch = standin(np.stack([inception.resize_frame(frame) for frame in frames]))
    reference = np.stack([standin.reference(frame) for frame in frames])
    assert batch.shape == (len(frames), inception.FEATURE_SIZE) and batch.dtype == np.float32
    assert reference.shape == batch.shape
    np.testing.assert_allclose(batch, reference, rtol=1e-5, atol=1e-7 * np.abs(reference).max())
    assert np.ptp(batch, axis=0).max() > 1e-3  # The frames really give different features.


def test_resize_frame_and_rewrite_match_the_unmodified_graph(standin_path, standin):
    """A v1 Session still runs the old graph with the real BatchNormWithGlobalNormalization kernel."""
    frame = _frames(2)[1]
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(inception.load_graph_def(standin_path), name="")
    with tf.compat.v1.Session(graph=graph) as session:
        resized, features = session.run(["ResizeBilinear:0", "pool_3/_reshape:0"], {"DecodeJpeg:0": frame})
    ours = inception.resize_frame(frame)
    assert ours.shape == (299, 299, 3) and ours.dtype == np.float32
    assert np.array_equal(ours, resized[0])  # Bit-identical.
    np.testing.assert_allclose(standin.reference(frame), features[0], rtol=1e-6, atol=1e-7 * np.abs(features).max())


def test_empty_batch_and_bad_inputs(standin):
    empty = standin(np.zeros((0, 299, 299, 3), np.float32))
    assert empty.shape == (0, inception.FEATURE_SIZE) and empty.dtype == np.float32
    with pytest.raises(ValueError, match="299"):
        standin(np.zeros((2, 224, 224, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        inception.resize_frame(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        inception.resize_frame(np.zeros((10, 10, 4), np.uint8))


def test_verify_rejects_graph_without_pool_3(standin_path):
    graph_def = inception.load_graph_def(standin_path)
    kept = [node for node in graph_def.node if node.name != "pool_3"]
    del graph_def.node[:]
    graph_def.node.extend(kept)
    with pytest.raises(ModelArtifactError) as error:
        inception.verify_graph_def(graph_def, source="gs://bucket/broken.pb")
    message = str(error.value)
    assert "missing node(s) pool_3" in message
    assert "gs://bucket/broken.pb" in message and "--rgb_graph" in message


@pytest.mark.parametrize("attr", ["align_corners", "half_pixel_centers"])
def test_verify_rejects_other_resize_attributes(standin_path, tmp_path, attr):
    graph_def = inception.load_graph_def(standin_path)
    (resize,) = [node for node in graph_def.node if node.name == "ResizeBilinear"]
    resize.attr[attr].b = True
    path = str(tmp_path / "other_resize.pb")
    with open(path, "wb") as handle:
        handle.write(graph_def.SerializeToString())
    with pytest.raises(ModelArtifactError) as error:
        inception.InceptionV3Features.from_graph_def_file(path)
    message = str(error.value)
    assert f"ResizeBilinear has {attr}=True" in message
    assert path in message and "--rgb_graph" in message


def test_missing_or_garbage_file_names_path_and_flag(tmp_path):
    missing = str(tmp_path / "models" / inception.GRAPH_FILE_NAME)
    with pytest.raises(ModelArtifactError) as error:
        inception.InceptionV3Features.from_graph_def_file(missing)
    assert missing in str(error.value) and "--rgb_graph" in str(error.value)
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"not a graph")
    with pytest.raises(ModelArtifactError) as error:
        inception.load_graph_def(str(garbage))
    assert str(garbage) in str(error.value) and "--rgb_graph" in str(error.value)


def test_standin_is_deterministic_per_seed(tmp_path):
    paths = [str(tmp_path / name) for name in ("a.pb", "b.pb", "c.pb")]
    for path, seed in zip(paths, (3, 3, 4), strict=True):
        standins.write_standin_graph(path, seed=seed)
    data = [open(path, "rb").read() for path in paths]
    assert data[0] == data[1] and data[0] != data[2]


def test_synthetic_artifacts_are_reused_and_survive_a_concurrent_writer(tmp_path, monkeypatch):
    """Uses the stand-in graph so the directory logic is fast; the real graph is tested below."""
    monkeypatch.setattr(synthetic_inception, "write_synthetic_graph", standins.write_standin_graph)
    directory = str(tmp_path / "rgb")
    original_frames = synthetic_inception._calibration_frames  # pylint: disable=protected-access
    raced = []

    def frames_after_another_writer_finished(seed):
        if not raced:  # Another worker publishes the same artifacts while this one computes.
            raced.append(True)
            synthetic_inception.write_synthetic_rgb_artifacts(directory, seed=seed)
        return original_frames(seed)

    monkeypatch.setattr(synthetic_inception, "_calibration_frames", frames_after_another_writer_finished)
    synthetic_inception.write_synthetic_rgb_artifacts(directory, seed=11)
    assert raced
    assert sorted(os.listdir(directory)) == sorted(
        [inception.GRAPH_FILE_NAME, "mean.npy", "eigenvecs.npy", "eigenvals.npy", "synthetic.json"])
    assert os.listdir(tmp_path) == ["rgb"]  # No staging directory left behind.
    synthetic_inception.write_synthetic_rgb_artifacts(directory, seed=11)  # Already there: a no-op.
    with pytest.raises(ModelArtifactError, match="seed 11"):
        synthetic_inception.write_synthetic_rgb_artifacts(directory, seed=12)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory) -> str:
    directory = str(tmp_path_factory.mktemp("synthetic") / "rgb")
    synthetic_inception.write_synthetic_rgb_artifacts(directory, seed=5)
    return directory


def test_synthetic_inception_features_and_pca(synthetic_dir):
    graph_path = os.path.join(synthetic_dir, inception.GRAPH_FILE_NAME)
    graph_def = inception.load_graph_def(graph_path)
    assert sum(node.op == "Conv2D" for node in graph_def.node) == 94  # Full Inception-v3.
    assert sum(node.op == "BatchNormWithGlobalNormalization" for node in graph_def.node) == 94
    model = inception.InceptionV3Features.from_graph_def_file(graph_path)
    frames = _frames(3)[:3]
    features = model(np.stack([inception.resize_frame(frame) for frame in frames]))
    assert features.shape == (3, inception.FEATURE_SIZE) and features.dtype == np.float32
    assert np.all(np.isfinite(features))
    assert np.ptp(features, axis=0).max() > 1e-3 and np.ptp(features, axis=1).min() > 1e-3

    mean = np.load(os.path.join(synthetic_dir, "mean.npy"))
    eigenvecs = np.load(os.path.join(synthetic_dir, "eigenvecs.npy"))
    eigenvals = np.load(os.path.join(synthetic_dir, "eigenvals.npy"))
    assert (mean.shape, eigenvecs.shape, eigenvals.shape) == ((2048, 1), (2048, 2048), (2048, 1))
    np.testing.assert_allclose(eigenvecs @ eigenvecs.T, np.eye(2048), atol=1e-4)
    whitened = (features - mean[:, 0]) @ eigenvecs.T[:, :1024] / np.sqrt(eigenvals[:1024, 0] + 1e-4)
    assert 0.2 < whitened.std() < 5.0


def test_synthetic_graph_is_deterministic_for_a_seed(synthetic_dir):
    with open(os.path.join(synthetic_dir, inception.GRAPH_FILE_NAME), "rb") as handle:
        written = handle.read()
    assert synthetic_inception.synthetic_graph_def(seed=5).SerializeToString(deterministic=True) == written
