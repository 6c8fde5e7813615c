"""VGGish audio embedding model, loaded from the released TF1 checkpoint without Keras or slim.

The released ``vggish_model.ckpt`` is a name-based TF1 checkpoint. Rather than depending on
the TF1 slim model code, we read its 18 variables by name and rebuild the forward pass from
``tf.nn`` ops inside a ``tf.function`` with the weights captured as constants. Layout checks
happen up front (``verify_checkpoint``) so a wrong file fails at pipeline start with a message
naming the flag, not hours later inside a worker.

The embedding returned is pre-activation (no ReLU after ``fc2``), as in the released model;
the PCA and quantization live in ``pipeline.features.postprocess``.

For tests and synthetic runs without the real artifacts, ``random_weights``,
``write_checkpoint`` and ``write_synthetic_audio_artifacts`` produce files with the exact
official layout, so they load through the same code path as the real ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from pipeline.dataset import fileio
from pipeline.errors import ModelArtifactError
from pipeline.features import audio, postprocess, tf_setup

AUDIO_CHECKPOINT_FLAG = "--audio_checkpoint"
CHECKPOINT_FILE_NAME = "vggish_model.ckpt"
"""Checkpoint prefix name of the released model (files ``.index`` and ``.data-*``)."""
PCA_PARAMS_FILE_NAME = "vggish_pca_params.npz"

EXAMPLE_FRAMES = audio.EXAMPLE_WINDOW_FRAMES
EXAMPLE_BANDS = audio.NUM_MEL_BANDS
EMBEDDING_SIZE = 128

# (scope, kind, output channels); "pool" entries have no variables.
_LAYERS: tuple[tuple[str, str, int], ...] = (
    ("vggish/conv1", "conv", 64),
    ("pool1", "pool", 0),
    ("vggish/conv2", "conv", 128),
    ("pool2", "pool", 0),
    ("vggish/conv3/conv3_1", "conv", 256),
    ("vggish/conv3/conv3_2", "conv", 256),
    ("pool3", "pool", 0),
    ("vggish/conv4/conv4_1", "conv", 512),
    ("vggish/conv4/conv4_2", "conv", 512),
    ("pool4", "pool", 0),
    ("vggish/fc1/fc1_1", "fc_relu", 4096),
    ("vggish/fc1/fc1_2", "fc_relu", 4096),
    ("vggish/fc2", "fc_linear", EMBEDDING_SIZE),
)

_FLATTENED_SIZE = 6 * 4 * 512  # [6, 4, 512] after four 2x2 pools of [96, 64].


def _variable_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    width, flattened = 1, False
    for scope, kind, out in _LAYERS:
        if kind == "pool":
            continue
        if kind == "conv":
            shapes[f"{scope}/weights"] = (3, 3, width, out)
        else:
            if not flattened:  # The first fc layer sees the flattened [6, 4, 512] feature map.
                width, flattened = _FLATTENED_SIZE, True
            shapes[f"{scope}/weights"] = (width, out)
        shapes[f"{scope}/biases"] = (out,)
        width = out
    return shapes


VGGISH_VARIABLES: dict[str, tuple[int, ...]] = _variable_shapes()
"""Every variable of the released checkpoint and its shape (conv HWIO, fc [in, out])."""

_CHECKPOINT_HINT = (
    f"Expected a TF1 checkpoint prefix such as .../{CHECKPOINT_FILE_NAME} (files {CHECKPOINT_FILE_NAME}.index "
    f"and {CHECKPOINT_FILE_NAME}.data-00000-of-00001) holding the {len(VGGISH_VARIABLES)} vggish/* variables "
    f"of the released VGGish model; pass it with {AUDIO_CHECKPOINT_FLAG}."
)


def _tf():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf


def _layout_problems(shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str] | None = None) -> list[str]:
    """Lists every missing variable and every shape/dtype mismatch (empty when the layout is official)."""
    problems = []
    for name, expected in VGGISH_VARIABLES.items():
        if name not in shapes:
            problems.append(f"missing variable {name} (expected shape {list(expected)})")
            continue
        found = tuple(int(dim) for dim in shapes[name])
        if found != expected:
            problems.append(f"variable {name} has shape {list(found)}, expected {list(expected)}")
        elif dtypes is not None and dtypes.get(name) != "float32":
            problems.append(f"variable {name} has dtype {dtypes.get(name)}, expected float32")
    return problems


def _open_checkpoint(path: str) -> Any:
    """Opens a checkpoint reader, translating TF's errors into an actionable ModelArtifactError."""
    tf = _tf()
    try:
        return tf.train.load_checkpoint(path)
    except tf.errors.NotFoundError as err:
        raise ModelArtifactError(
            f"VGGish checkpoint not found at {path} ({err.message}). {_CHECKPOINT_HINT}"
        ) from err
    except (tf.errors.OpError, ValueError) as err:
        message = err.message if isinstance(err, tf.errors.OpError) else str(err)
        raise ModelArtifactError(
            f"{path} is not a readable TensorFlow checkpoint ({message}). {_CHECKPOINT_HINT}") from err


def verify_checkpoint(path: str) -> None:
    """Checks that a checkpoint has every VGGish variable with the official shape and dtype.

    Only the index is read, so this is cheap enough to run at pipeline construction time and
    catches a wrong or truncated artifact before any worker starts.

    Args:
        path: Checkpoint prefix (e.g. ``.../vggish_model.ckpt``), local or gs://.

    Raises:
        ModelArtifactError: If the path is not a checkpoint, or listing every missing variable
            and shape mismatch together with the path and ``--audio_checkpoint``.
    """
    path = os.fspath(path)
    reader = _open_checkpoint(path)
    dtypes = {name: dtype.name for name, dtype in reader.get_variable_to_dtype_map().items()}
    problems = _layout_problems(reader.get_variable_to_shape_map(), dtypes)
    if problems:
        raise ModelArtifactError(
            f"VGGish checkpoint {path} does not have the official layout: {'; '.join(problems)}. {_CHECKPOINT_HINT}"
        )


def _checked_weights(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validates a weights dict against VGGISH_VARIABLES and returns float32 copies in order."""
    problems = _layout_problems({name: np.shape(value) for name, value in weights.items()})
    if problems:
        raise ModelArtifactError(f"VGGish weights do not have the official layout: {'; '.join(problems)}.")
    return {name: np.asarray(weights[name], dtype=np.float32) for name in VGGISH_VARIABLES}


def _forward(examples: Any, constants: Mapping[str, Any]) -> Any:
    """The VGGish graph from tf.nn ops: [N, 96, 64] log-mel -> [N, 128] pre-activation embedding."""
    tf = _tf()
    x = tf.reshape(examples, [-1, EXAMPLE_FRAMES, EXAMPLE_BANDS, 1])
    for scope, kind, _ in _LAYERS:
        if kind == "pool":
            x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="SAME")
            continue
        weights, biases = constants[f"{scope}/weights"], constants[f"{scope}/biases"]
        if kind == "conv":
            x = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, weights, strides=1, padding="SAME"), biases))
            continue
        if len(x.shape) == 4:
            x = tf.reshape(x, [-1, _FLATTENED_SIZE])  # Row-major NHWC flatten, as slim.flatten.
        x = tf.nn.bias_add(tf.linalg.matmul(x, weights), biases)
        if kind == "fc_relu":
            x = tf.nn.relu(x)
    return x


class VGGish:
    """A ready-to-run VGGish embedder (TensorFlow eager + one traced ``tf.function``).

    Build it with ``from_checkpoint`` (real or synthetic artifact).
    Instances are meant to be created once per worker and reused; calls are thread-compatible
    but not re-entrant-optimised.
    """

    def __init__(self, weights: Mapping[str, np.ndarray], *, batch_size: int = 64):
        """Prefer ``from_checkpoint``; this assumes already validated weights.

        Args:
            weights: Validated float32 arrays keyed by VGGISH_VARIABLES names.
            batch_size: Examples per graph call; bounds peak memory (the conv1 activation is
                1.5 MB per example).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        tf_setup.configure()  # before this process's first op, if it is the first
        tf = _tf()
        self._batch_size = batch_size
        constants = {name: tf.constant(value) for name, value in weights.items()}

        @tf.function(
            input_signature=[tf.TensorSpec([None, EXAMPLE_FRAMES, EXAMPLE_BANDS], tf.float32)],
            reduce_retracing=True,
        )
        def embed(examples: tf.Tensor) -> tf.Tensor:
            return _forward(examples, constants)

        self._embed = embed

    @classmethod
    def from_checkpoint(cls, path: str, *, batch_size: int = 64) -> VGGish:
        """Loads the released (or a synthetic) ``vggish_model.ckpt`` by variable name.

        Args:
            path: Checkpoint prefix, local or gs://.
            batch_size: Examples per graph call.

        Raises:
            ModelArtifactError: If the checkpoint is missing or lacks the official layout.
        """
        path = os.fspath(path)
        verify_checkpoint(path)
        reader = _open_checkpoint(path)
        weights = {name: reader.get_tensor(name).astype(np.float32, copy=False) for name in VGGISH_VARIABLES}
        return cls(weights, batch_size=batch_size)

    def __call__(self, examples: np.ndarray) -> np.ndarray:
        """Embeds log-mel examples.

        Args:
            examples: [N, 96, 64] log-mel patches (``audio.examples_at``); N may be 0.

        Returns:
            float32 [N, 128] pre-activation embeddings.

        Raises:
            ValueError: If the input shape is not [N, 96, 64].
        """
        batch = np.asarray(examples, dtype=np.float32)
        if batch.ndim != 3 or batch.shape[1:] != (EXAMPLE_FRAMES, EXAMPLE_BANDS):
            raise ValueError(
                f"VGGish expects log-mel examples of shape [N, {EXAMPLE_FRAMES}, {EXAMPLE_BANDS}], got {batch.shape}."
            )
        if batch.shape[0] == 0:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        outputs = [
            self._embed(batch[start : start + self._batch_size]).numpy()
            for start in range(0, batch.shape[0], self._batch_size)
        ]
        return np.concatenate(outputs, axis=0).astype(np.float32, copy=False)


def write_checkpoint(path_prefix: str, weights: Mapping[str, np.ndarray]) -> None:
    """Writes a TF1-style name-based V2 checkpoint with exactly the VGGish variable names.

    The result reads like the released ``vggish_model.ckpt``:
    ``tf.train.load_checkpoint(path_prefix).get_tensor("vggish/fc2/weights")`` works, and so
    does ``VGGish.from_checkpoint``.

    Args:
        path_prefix: Checkpoint prefix; ``.index`` and ``.data-00000-of-00001`` are created
            next to it (parent directories are created as needed).
        weights: Arrays keyed by every name in VGGISH_VARIABLES with the official shapes.

    Raises:
        ModelArtifactError: If ``weights`` does not have the official layout.
    """
    tf = _tf()
    checked = _checked_weights(weights)
    names = list(checked)
    tf.raw_ops.SaveV2(
        prefix=os.fspath(path_prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(checked[name]) for name in names],
    )


def random_weights(seed: int) -> dict[str, np.ndarray]:
    """Deterministic random VGGish weights: He-normal kernels and small normal biases.

    Uses only numpy's PCG64 generator (no TensorFlow randomness), so the same seed yields
    bit-identical weights in every process, which keeps synthetic runs reproducible.

    Args:
        seed: Non-negative integer seed.

    Returns:
        float32 arrays keyed by every name in VGGISH_VARIABLES.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in VGGISH_VARIABLES.items():
        if name.endswith("/weights"):
            fan_in = int(np.prod(shape[:-1]))
            std = np.float32(np.sqrt(2.0 / fan_in))
        else:
            std = np.float32(0.01)
        values = rng.standard_normal(shape, dtype=np.float32)
        values *= std
        weights[name] = values
    return weights


def _dense64(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``x @ kernel`` in float64 without materialising a float64 copy of a large kernel."""
    out = np.zeros((x.shape[0], kernel.shape[1]), dtype=np.float64)
    for start in range(0, kernel.shape[0], 1024):
        out += x[:, start : start + 1024] @ kernel[start : start + 1024].astype(np.float64)
    return out


def _numpy_embeddings(weights: Mapping[str, np.ndarray], examples: np.ndarray) -> np.ndarray:
    """Float64 numpy VGGish forward pass (im2col convolutions).

    Used to calibrate synthetic PCA parameters: unlike TensorFlow's multithreaded CPU kernels
    its result does not depend on the thread count, and float64 keeps any residual
    platform-dependent rounding far below the float32 precision the parameters are stored at.
    """
    x = np.asarray(examples, dtype=np.float64)[..., np.newaxis]
    for scope, kind, _ in _LAYERS:
        if kind == "pool":
            n, h, w, c = x.shape
            x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
            continue
        kernel, bias = weights[f"{scope}/weights"], weights[f"{scope}/biases"].astype(np.float64)
        if kind == "conv":
            n, h, w, c = x.shape
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            patches = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))  # n,h,w,c,3,3
            columns = patches.transpose(0, 1, 2, 4, 5, 3).reshape(n * h * w, 9 * c)
            x = np.maximum(_dense64(columns, kernel.reshape(9 * c, -1)) + bias, 0.0).reshape(n, h, w, -1)
            continue
        if x.ndim == 4:
            x = x.reshape(x.shape[0], -1)
        x = _dense64(x, kernel) + bias
        if kind == "fc_relu":
            x = np.maximum(x, 0.0)
    return x


def calibration_examples(seed: int, count: int = 8) -> np.ndarray:
    """Seeded log-mel inputs that resemble real audio, used to fit synthetic PCA parameters.

    The first example is digital silence (``log(0.01)`` everywhere) because silent clips are
    common and must not quantize to a saturated byte; the rest have a random loudness, a
    random spectral tilt and per-cell noise, floored at the silence level like real log-mels.

    Args:
        seed: Seed for numpy's generator.
        count: Number of examples (>= 2).

    Returns:
        float32 [count, 96, 64].
    """
    rng = np.random.default_rng([seed, 0x6D656C])
    silence = audio.SILENCE_LOG_MEL
    level = rng.uniform(-3.0, 1.5, size=(count - 1, 1, 1))
    tilt = rng.normal(0.0, 1.0, size=(count - 1, 1, audio.NUM_MEL_BANDS))
    noise = rng.normal(0.0, 0.7, size=(count - 1, audio.EXAMPLE_WINDOW_FRAMES, audio.NUM_MEL_BANDS))
    sounds = np.maximum(level + tilt + noise, silence)
    silent = np.full((1, audio.EXAMPLE_WINDOW_FRAMES, audio.NUM_MEL_BANDS), silence)
    return np.concatenate([silent, sounds], axis=0).astype(np.float32)


def synthetic_pca_params(weights: Mapping[str, np.ndarray], *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fits stand-in postprocessor parameters to a (random) VGGish model.

    ``pca_means`` is the mean embedding of ``calibration_examples(seed)``; the eigenvectors are
    a seeded random orthonormal basis whose rows are scaled so the projected calibration
    embeddings have unit RMS spread. That keeps quantized audio bytes spread over [0, 255]
    instead of saturating, so synthetic datasets exercise the real code paths. All rows share
    one scale: with only a handful of calibration inputs, per-row spreads in 128 dimensions are
    too noisy, and dividing by a small one would saturate that component for any new input.

    Returns:
        ``(eigen_vectors [128, 128], means [128])`` as float32.
    """
    embeddings = _numpy_embeddings(weights, calibration_examples(seed))
    means = embeddings.mean(axis=0)
    rng = np.random.default_rng([seed, 0x706361])
    basis, upper = np.linalg.qr(rng.standard_normal((EMBEDDING_SIZE, EMBEDDING_SIZE)))
    rows = (basis * np.where(np.diag(upper) < 0, -1.0, 1.0)).T  # Unique sign convention.
    spread = np.sqrt(np.mean(((embeddings - means) @ rows.T) ** 2))
    eigen_vectors = rows / max(float(spread), 1e-12)
    return eigen_vectors.astype(np.float32), means.astype(np.float32)


def _artifact_files(directory: str) -> Iterator[str]:
    """File names in a finished temp dir, data shards first and the npz last (commit order)."""
    names = [path.rsplit("/", 1)[-1] for path in fileio.list_files(directory)]

    def order(name: str) -> int:
        if ".data-" in name:
            return 0
        if name.endswith(".index"):
            return 1
        return 2

    yield from sorted((name.rstrip("/") for name in names), key=lambda name: (order(name), name))


def write_synthetic_audio_artifacts(directory: str, *, seed: int) -> None:
    """Writes a synthetic ``vggish_model.ckpt`` and ``vggish_pca_params.npz`` into ``directory``.

    The files have the official layout, so they load through ``VGGish.from_checkpoint`` and
    ``AudioPca.from_npz`` like the real artifacts; everything derives from ``seed`` and is
    identical across processes. Files are produced in a private temporary directory and
    renamed into place (checkpoint data, then index, then the npz), so two processes writing
    the same seed concurrently cannot interleave partial files, and the presence of the npz
    means the set is complete.

    Args:
        directory: Destination directory, local or gs:// (created if needed).
        seed: Seed for weights, calibration inputs and the PCA basis.
    """
    tf_setup.configure()  # before this process's first op, if it is the first
    directory = os.fspath(directory)
    weights = random_weights(seed)
    eigen_vectors, means = synthetic_pca_params(weights, seed=seed)
    if fileio.is_local(directory):  # an object store has no folders to make
        os.makedirs(directory, exist_ok=True)
    with fileio.staging_dir(directory) as temp_dir:
        write_checkpoint(fileio.join(temp_dir, CHECKPOINT_FILE_NAME), weights)
        postprocess.write_audio_pca_npz(fileio.join(temp_dir, PCA_PARAMS_FILE_NAME), eigen_vectors=eigen_vectors,
                                        means=means)
        fileio.publish_files(temp_dir, directory, list(_artifact_files(temp_dir)))
