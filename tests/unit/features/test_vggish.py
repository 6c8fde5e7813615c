"""Tests for the VGGish model, its checkpoint layout and synthetic artifacts (pipeline/features/vggish.py)."""

import hashlib
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

from pipeline.errors import ModelArtifactError
from pipeline.features import audio, postprocess, quantization, vggish

# Written out from the SPEC rather than derived from the module.
SPEC_VARIABLES = {
    "vggish/conv1": (3, 3, 1, 64),
    "vggish/conv2": (3, 3, 64, 128),
    "vggish/conv3/conv3_1": (3, 3, 128, 256),
    "vggish/conv3/conv3_2": (3, 3, 256, 256),
    "vggish/conv4/conv4_1": (3, 3, 256, 512),
    "vggish/conv4/conv4_2": (3, 3, 512, 512),
    "vggish/fc1/fc1_1": (12288, 4096),
    "vggish/fc1/fc1_2": (4096, 4096),
    "vggish/fc2": (4096, 128),
}

# The TF model runs in float32; the reference runs in float64. Relative tolerance 1e-4, with an
# absolute floor of 1e-4 times the output scale for elements that happen to be near zero.
RTOL = 1e-4


@pytest.fixture(scope="module")
def weights():
    return vggish.random_weights(0)


@pytest.fixture(scope="module")
def checkpoint(weights, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("ckpt") / "vggish_model.ckpt")
    vggish.write_checkpoint(prefix, weights)
    return prefix


@pytest.fixture(scope="module")
def model(checkpoint):
    return vggish.VGGish.from_checkpoint(checkpoint, batch_size=2)  # Small batches exercise chunking.


def _inputs(seed: int, count: int) -> np.ndarray:
    """Silence plus seeded random log-mel patches in the realistic range."""
    rng = np.random.default_rng(seed)
    sounds = np.maximum(rng.normal(-1.5, 1.5, (count - 1, 96, 64)), np.log(0.01))
    return np.concatenate([np.full((1, 96, 64), np.log(0.01)), sounds]).astype(np.float32)


def _reference_forward(weights, examples):
    """Per-layer float64 numpy VGGish: 3x3 SAME conv as nine shifted matmuls, 2x2 max pool."""

    def conv_relu(x, scope):
        kernel, bias = weights[f"{scope}/weights"].astype(np.float64), weights[f"{scope}/biases"]
        batch, height, width, channels = x.shape
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = np.zeros((batch * height * width, kernel.shape[3]))
        for dy in range(3):
            for dx in range(3):
                shifted = np.ascontiguousarray(padded[:, dy : dy + height, dx : dx + width, :])
                out += shifted.reshape(-1, channels) @ kernel[dy, dx]
        return np.maximum(out + bias, 0.0).reshape(batch, height, width, -1)

    def pool(x):
        return np.maximum.reduce([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]])

    x = examples.astype(np.float64).reshape(-1, 96, 64, 1)
    x = pool(conv_relu(x, "vggish/conv1"))
    x = pool(conv_relu(x, "vggish/conv2"))
    x = pool(conv_relu(conv_relu(x, "vggish/conv3/conv3_1"), "vggish/conv3/conv3_2"))
    x = pool(conv_relu(conv_relu(x, "vggish/conv4/conv4_1"), "vggish/conv4/conv4_2"))
    assert x.shape[1:] == (6, 4, 512)
    x = x.reshape(x.shape[0], 12288)
    for scope in ("vggish/fc1/fc1_1", "vggish/fc1/fc1_2"):
        x = np.maximum(x @ weights[f"{scope}/weights"].astype(np.float64) + weights[f"{scope}/biases"], 0.0)
    return x @ weights["vggish/fc2/weights"].astype(np.float64) + weights["vggish/fc2/biases"]


def _save(prefix, tensors):
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=list(tensors),
        shape_and_slices=[""] * len(tensors),
        tensors=[tf.constant(value) for value in tensors.values()],
    )


def test_variable_table_matches_spec():
    expected = {}
    for scope, shape in SPEC_VARIABLES.items():
        expected[f"{scope}/weights"] = shape
        expected[f"{scope}/biases"] = (shape[-1],)
    assert vggish.VGGISH_VARIABLES == expected
    assert len(vggish.VGGISH_VARIABLES) == 18


def test_written_checkpoint_reads_like_the_official_one(checkpoint, weights):
    vggish.verify_checkpoint(checkpoint)
    reader = tf.train.load_checkpoint(checkpoint)
    assert set(reader.get_variable_to_shape_map()) == set(vggish.VGGISH_VARIABLES)
    np.testing.assert_array_equal(reader.get_tensor("vggish/fc2/weights"), weights["vggish/fc2/weights"])
    assert tf.io.gfile.exists(checkpoint + ".index")
    assert tf.io.gfile.glob(checkpoint + ".data-*")


def test_model_matches_independent_per_layer_computation(model, weights):
    examples = _inputs(20, 3)
    embeddings = model(examples)
    reference = _reference_forward(weights, examples)
    assert embeddings.shape == (3, 128) and embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, reference, rtol=RTOL, atol=RTOL * np.abs(reference).max())
    # The float64 numpy forward used to calibrate synthetic PCA agrees too.
    np.testing.assert_allclose(vggish._numpy_embeddings(weights, examples[:1]), reference[:1], rtol=1e-9, atol=1e-9)


def test_embedding_is_pre_activation_and_empty_batch_works(model):
    embeddings = model(_inputs(21, 4))
    assert (embeddings < 0).any(), "no ReLU after fc2: random weights must give negative outputs"
    # An empty batch is answered by the wrapper without TensorFlow (whether TensorFlow's own kernels
    # accept one depends on the CPU and oneDNN).
    empty = model(np.zeros((0, 96, 64), np.float32))
    assert empty.shape == (0, 128) and empty.dtype == np.float32
    with pytest.raises(ValueError, match=r"\[N, 96, 64\]"):
        model(np.zeros((2, 64, 96), np.float32))


def test_checkpoint_missing_a_variable_is_rejected(weights, tmp_path):
    prefix = str(tmp_path / "vggish_model.ckpt")
    _save(prefix, {name: value for name, value in weights.items() if name != "vggish/fc2/biases"})
    for load in (vggish.verify_checkpoint, vggish.VGGish.from_checkpoint):
        with pytest.raises(ModelArtifactError) as info:
            load(prefix)
        message = str(info.value)
        assert "missing variable vggish/fc2/biases" in message
        assert prefix in message and "--audio_checkpoint" in message


def test_checkpoint_with_wrong_shapes_lists_every_mismatch(tmp_path):
    prefix = str(tmp_path / "vggish_model.ckpt")
    tensors = {name: np.zeros([1] * len(shape), np.float32) for name, shape in vggish.VGGISH_VARIABLES.items()}
    tensors["vggish/fc2/weights"] = np.zeros((4096, 64), np.float32)
    _save(prefix, tensors)
    with pytest.raises(ModelArtifactError) as info:
        vggish.verify_checkpoint(prefix)
    message = str(info.value)
    assert "vggish/fc2/weights has shape [4096, 64], expected [4096, 128]" in message
    assert "vggish/conv1/weights has shape [1, 1, 1, 1], expected [3, 3, 1, 64]" in message
    assert message.count("expected [") == 18
    assert prefix in message and "--audio_checkpoint" in message


def test_non_checkpoints_get_a_clear_message(tmp_path):
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("hello")
    for path in (str(tmp_path / "absent.ckpt"), str(tmp_path), str(not_a_checkpoint)):
        with pytest.raises(ModelArtifactError) as info:
            vggish.verify_checkpoint(path)
        assert path in str(info.value) and "--audio_checkpoint" in str(info.value)
    with pytest.raises(ModelArtifactError, match="vggish/conv1/weights"):
        vggish.write_checkpoint(str(tmp_path / "empty.ckpt"), {})


def _digest(weights):
    hasher = hashlib.sha256()
    for name in sorted(weights):
        hasher.update(name.encode())
        hasher.update(np.ascontiguousarray(weights[name]).tobytes())
    return hasher.hexdigest()


def test_random_weights_are_deterministic_across_processes_and_he_normal(weights):
    assert all(weights[name].dtype == np.float32 and weights[name].shape == shape
               for name, shape in vggish.VGGISH_VARIABLES.items())
    std = weights["vggish/conv4/conv4_2/weights"].std()
    assert abs(std / np.sqrt(2.0 / (9 * 512)) - 1) < 0.02
    assert abs(weights["vggish/fc1/fc1_1/weights"].std() / np.sqrt(2.0 / 12288) - 1) < 0.02
    assert 0 < np.abs(weights["vggish/fc2/biases"]).max() < 0.1
    code = (
        "import hashlib, numpy as np\n"
        "from pipeline.features import vggish\n"
        "w = vggish.random_weights(0)\n"
        "h = hashlib.sha256()\n"
        "for name in sorted(w):\n"
        "    h.update(name.encode()); h.update(np.ascontiguousarray(w[name]).tobytes())\n"
        "print(h.hexdigest())\n"
    )
    other_process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other_process.stdout.strip() == _digest(weights)


ARTIFACT_FILES = ["vggish_model.ckpt.data-00000-of-00001", "vggish_model.ckpt.index", "vggish_pca_params.npz"]


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synthetic")
    vggish.write_synthetic_audio_artifacts(str(directory), seed=0)
    return directory


def test_synthetic_artifacts_equal_an_independent_generation_from_the_seed(synthetic_dir, weights, model):
    assert sorted(p.name for p in synthetic_dir.iterdir()) == ARTIFACT_FILES, "no temporary leftovers"
    checkpoint = str(synthetic_dir / "vggish_model.ckpt")
    vggish.verify_checkpoint(checkpoint)
    reader = tf.train.load_checkpoint(checkpoint)
    for name in vggish.VGGISH_VARIABLES:  # `weights` is random_weights(0), generated separately.
        np.testing.assert_array_equal(reader.get_tensor(name), weights[name], err_msg=name)
    eigen_vectors, means = vggish.synthetic_pca_params(weights, seed=0)
    with np.load(synthetic_dir / "vggish_pca_params.npz") as npz:
        np.testing.assert_array_equal(npz["pca_eigen_vectors"], eigen_vectors)
        np.testing.assert_array_equal(npz["pca_means"], means)

    synthetic_model = vggish.VGGish.from_checkpoint(checkpoint, batch_size=2)
    examples = _inputs(23, 3)
    np.testing.assert_array_equal(synthetic_model(examples), model(examples))

    # pca_means is the mean embedding of the seeded calibration set, which starts with silence.
    calibration = vggish.calibration_examples(0)
    assert np.all(calibration[0] == np.float32(np.log(0.01)))
    embeddings = synthetic_model(calibration)
    np.testing.assert_allclose(means, embeddings.mean(axis=0), rtol=1e-4, atol=1e-4 * np.abs(embeddings).max())
    # The basis is orthonormal up to a common scale that gives the calibration set unit spread.
    projected = postprocess.AudioPca.from_arrays(eigen_vectors=eigen_vectors, means=means).apply(embeddings)
    assert 0.9 < np.sqrt(np.mean(projected.astype(np.float64) ** 2)) < 1.1
    unit = eigen_vectors / np.linalg.norm(eigen_vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(unit @ unit.T, np.eye(128), atol=1e-5)


def test_synthetic_outputs_on_calibration_like_inputs_are_spread(synthetic_dir, model):
    # `model` holds the same weights as the synthetic checkpoint (checked above).
    pca = postprocess.AudioPca.from_npz(str(synthetic_dir / "vggish_pca_params.npz"))
    examples = np.concatenate([vggish.calibration_examples(seed=99, count=7), audio.examples_at(np.zeros(0), [0])])
    quantized = quantization.quantize_audio(pca.apply(model(examples)))
    assert len(np.unique(quantized)) > 20
    assert np.mean((quantized == 0) | (quantized == 255)) < 0.3, "bytes should not mostly saturate"
    assert len(np.unique(quantized[-1])) > 20, "silence should not map to a constant byte"


def test_concurrent_writers_of_one_seed_do_not_corrupt_each_other(synthetic_dir, weights, tmp_path, monkeypatch):
    # Reuse the already generated arrays so the test measures the write/rename protocol, not RNG speed.
    with np.load(synthetic_dir / "vggish_pca_params.npz") as npz:
        pca = (npz["pca_eigen_vectors"], npz["pca_means"])
    monkeypatch.setattr(vggish, "random_weights", lambda seed: weights)
    monkeypatch.setattr(vggish, "synthetic_pca_params", lambda _weights, seed: pca)
    directory = tmp_path / "shared"
    errors = []

    def write():
        try:
            vggish.write_synthetic_audio_artifacts(str(directory), seed=0)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=write) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(p.name for p in directory.iterdir()) == ARTIFACT_FILES, "no temporary leftovers"
    for name in ARTIFACT_FILES:
        assert (directory / name).read_bytes() == (synthetic_dir / name).read_bytes(), name
