"""Synthetic Inception-v3 artifacts for ``--models synthetic``: a seeded random graph and PCA.

``write_synthetic_rgb_artifacts`` writes a full-size Inception-v3 with seeded random weights in
the exact layout of the official 2015-12-05 graph (input handling, node names, legacy batch-norm
op, old producer version) and a PCA calibrated on it in the layout of yt8m_pca.tgz, so a run
exercises the real loading and inference code offline, at the real cost, with meaningless
features. ``GraphBuilder`` and ``build_graph_def`` build other networks in the same layout
(the tests' tiny stand-in graph).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from pipeline.dataset import fileio
from pipeline.errors import ModelArtifactError
from pipeline.features import tf_setup
from pipeline.features.inception import (
    CAST_NODE,
    CONTENTS_NODE,
    DECODE_NODE,
    EXPAND_DIMS_NODE,
    FEATURE_SIZE,
    GRAPH_FILE_NAME,
    INPUT_SIZE,
    LEGACY_BATCH_NORM_OP,
    MUL_NODE,
    POOL_NODE,
    POOL_RESHAPE_NODE,
    RESIZE_ALIGN_CORNERS,
    RESIZE_HALF_PIXEL_CENTERS,
    RESIZE_NODE,
    SUB_NODE,
    InceptionV3Features,
    resize_frame,
)

PCA_MEAN_FILE_NAME = "mean.npy"
PCA_EIGENVECS_FILE_NAME = "eigenvecs.npy"
PCA_EIGENVALS_FILE_NAME = "eigenvals.npy"
SYNTHETIC_MARKER_FILE_NAME = "synthetic.json"

# GraphDef version 9 removed BatchNormWithGlobalNormalization; graphs written by this module
# keep an older producer version, like the 2015 file, so they load through the same code.
_LEGACY_PRODUCER_VERSION = 3
_BATCH_NORM_EPSILON = 0.001


class GraphBuilder:
    """Adds seeded-random conv blocks (Conv2D -> legacy batch norm -> Relu) to the default graph.

    The batch norm is a placeholder Identity that ``finish`` turns into a
    BatchNormWithGlobalNormalization NodeDef (Python refuses to create that op directly).
    """

    def __init__(self, seed: int, *, random_batch_norm: bool):
        """Starts a builder whose weights come from ``numpy.random.default_rng(seed)``.

        Args:
            seed: Seed of every weight, in the order the blocks are added.
            random_batch_norm: Random batch-norm parameters instead of identity-like ones.
        """
        self._rng = np.random.default_rng(seed)
        self._random_batch_norm = random_batch_norm
        self._legacy_batch_norms: dict[str, tuple[list[str], bool]] = {}

    def _batch_norm_params(self, filters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """mean, variance, beta, gamma: identity-like, or random to exercise every term of the op."""
        if not self._random_batch_norm:
            return (np.zeros(filters, np.float32), np.ones(filters, np.float32), np.zeros(filters, np.float32),
                    np.ones(filters, np.float32))
        rng = self._rng
        return (rng.normal(0.0, 0.5, filters).astype(np.float32), rng.uniform(0.5, 2.0, filters).astype(np.float32),
                rng.normal(0.0, 0.2, filters).astype(np.float32), rng.uniform(0.5, 1.5, filters).astype(np.float32))

    def conv(self, x: tf.Tensor, filters: int, kernel: tuple[int, int], *, name: str, strides: int = 1,
             padding: str = "SAME") -> tf.Tensor:
        """Adds Conv2D (He-normal weights) -> legacy batch norm -> Relu under ``name``, as the 2015 graph names them.

        Args:
            x: NHWC float input.
            filters: Output channels.
            kernel: (height, width) of the kernel.
            name: Name scope of the block.
            strides: Stride in both spatial dimensions.
            padding: "SAME" or "VALID".

        Returns:
            The Relu output.
        """
        channels = int(x.shape[-1])
        fan_in = kernel[0] * kernel[1] * channels
        weights = self._rng.standard_normal((*kernel, channels, filters), dtype=np.float32)
        weights *= np.float32(math.sqrt(2.0 / fan_in))  # He-normal.
        with tf.compat.v1.name_scope(name) as scope:
            conv = tf.nn.conv2d(x, tf.constant(weights, name="conv2d_params"), strides=strides, padding=padding,
                                name="Conv2D")
            mean, variance, beta, gamma = self._batch_norm_params(filters)
            with tf.compat.v1.name_scope("batchnorm") as bn_scope:
                params = [tf.constant(value, name=param_name).op.name for value, param_name in
                          ((mean, "moving_mean"), (variance, "moving_variance"), (beta, "beta"), (gamma, "gamma"))]
                normalized = tf.identity(conv, name=bn_scope)
            # With random parameters, alternate so both forms of the op are exercised.
            scale_after = self._random_batch_norm and len(self._legacy_batch_norms) % 2 == 1
            self._legacy_batch_norms[normalized.op.name] = ([conv.op.name, *params], scale_after)
            return tf.nn.relu(normalized, name=scope)

    def finish(self, graph: tf.Graph) -> tf.compat.v1.GraphDef:
        """The GraphDef with legacy batch norms and an old producer version, like the 2015 file."""
        graph_def = graph.as_graph_def()
        for node in graph_def.node:
            if node.name not in self._legacy_batch_norms:
                continue
            inputs, scale_after = self._legacy_batch_norms[node.name]
            dtype = node.attr["T"].type
            node.op = LEGACY_BATCH_NORM_OP
            node.ClearField("attr")
            del node.input[:]
            node.input.extend(inputs)
            node.attr["T"].type = dtype
            node.attr["variance_epsilon"].f = _BATCH_NORM_EPSILON
            node.attr["scale_after_normalization"].b = scale_after
        graph_def.versions.producer = _LEGACY_PRODUCER_VERSION
        graph_def.versions.min_consumer = 0
        return graph_def


def _official_input_handling() -> tf.Tensor:
    """DecodeJpeg/contents -> DecodeJpeg -> Cast -> ExpandDims -> ResizeBilinear -> Sub -> Mul."""
    contents = tf.compat.v1.placeholder(tf.string, shape=[], name=CONTENTS_NODE)
    decoded = tf.io.decode_jpeg(contents, channels=3, name=DECODE_NODE)
    images = tf.expand_dims(tf.cast(decoded, tf.float32, name=CAST_NODE), 0, name=EXPAND_DIMS_NODE)
    size = tf.constant([INPUT_SIZE, INPUT_SIZE], tf.int32, name=f"{RESIZE_NODE}/size")
    resized = tf.raw_ops.ResizeBilinear(images=images, size=size,
                                        align_corners=RESIZE_ALIGN_CORNERS,
                                        half_pixel_centers=RESIZE_HALF_PIXEL_CENTERS, name=RESIZE_NODE)
    centered = tf.subtract(resized, np.float32(128.0), name=SUB_NODE)
    return tf.multiply(centered, np.float32(1.0 / 128.0), name=MUL_NODE)


def _official_output_handling(features: tf.Tensor) -> None:
    """pool_3 (AvgPool over the final grid) and pool_3/_reshape with a fixed [1, 2048] shape."""
    height, width = int(features.shape[1]), int(features.shape[2])
    pooled = tf.nn.avg_pool2d(features, ksize=[height, width], strides=1, padding="VALID", name=POOL_NODE)
    shape = tf.constant([1, FEATURE_SIZE], tf.int32, name=f"{POOL_RESHAPE_NODE}/shape")
    tf.reshape(pooled, shape, name=POOL_RESHAPE_NODE)


def _strip_resize_defaults(graph_def: tf.compat.v1.GraphDef) -> None:
    # The 2015 graph predates half_pixel_centers; leave it out so loading handles the absent attribute.
    for node in graph_def.node:
        if node.name == RESIZE_NODE and not node.attr["half_pixel_centers"].b:
            del node.attr["half_pixel_centers"]


def build_graph_def(network: Callable[[GraphBuilder, tf.Tensor], tf.Tensor], *, seed: int,
                    random_batch_norm: bool) -> tf.compat.v1.GraphDef:
    """A GraphDef in the official 2015 layout around ``network``, with seeded random weights.

    The official input handling (DecodeJpeg -> ... -> Mul) feeds ``network``; its output gets
    ``pool_3`` and ``pool_3/_reshape``; batch norms become the legacy op and the producer version
    is old, so the result loads through exactly the code the official file needs.

    Args:
        network: Builds the trunk from [N, 299, 299, 3] to [N, H, W, 2048] with the builder's blocks.
        seed: Seed of the weights.
        random_batch_norm: Random batch-norm parameters (exercise every term of the op) instead
            of identity-like ones.

    Returns:
        The GraphDef, deterministic for a seed.
    """
    builder = GraphBuilder(seed, random_batch_norm=random_batch_norm)
    graph = tf.Graph()
    with graph.as_default():
        _official_output_handling(network(builder, _official_input_handling()))
    graph_def = builder.finish(graph)
    _strip_resize_defaults(graph_def)
    return graph_def


def _inception_a(b: GraphBuilder, x: tf.Tensor, pool_filters: int, name: str) -> tf.Tensor:
    with tf.compat.v1.name_scope(name):
        branch1x1 = b.conv(x, 64, (1, 1), name="conv")
        branch5x5 = b.conv(b.conv(x, 48, (1, 1), name="tower/conv"), 64, (5, 5), name="tower/conv_1")
        branch3x3 = b.conv(x, 64, (1, 1), name="tower_1/conv")
        branch3x3 = b.conv(branch3x3, 96, (3, 3), name="tower_1/conv_1")
        branch3x3 = b.conv(branch3x3, 96, (3, 3), name="tower_1/conv_2")
        pool = tf.nn.avg_pool2d(x, 3, 1, "SAME", name="tower_2/pool")
        branch_pool = b.conv(pool, pool_filters, (1, 1), name="tower_2/conv")
        return tf.concat([branch1x1, branch5x5, branch3x3, branch_pool], 3, name="join")


def _reduction_a(b: GraphBuilder, x: tf.Tensor, name: str) -> tf.Tensor:
    with tf.compat.v1.name_scope(name):
        branch3x3 = b.conv(x, 384, (3, 3), strides=2, padding="VALID", name="conv")
        branch3x3dbl = b.conv(x, 64, (1, 1), name="tower/conv")
        branch3x3dbl = b.conv(branch3x3dbl, 96, (3, 3), name="tower/conv_1")
        branch3x3dbl = b.conv(branch3x3dbl, 96, (3, 3), strides=2, padding="VALID", name="tower/conv_2")
        pool = tf.nn.max_pool2d(x, 3, 2, "VALID", name="pool")
        return tf.concat([branch3x3, branch3x3dbl, pool], 3, name="join")


def _inception_b(b: GraphBuilder, x: tf.Tensor, channels: int, name: str) -> tf.Tensor:
    with tf.compat.v1.name_scope(name):
        branch1x1 = b.conv(x, 192, (1, 1), name="conv")
        branch7x7 = b.conv(x, channels, (1, 1), name="tower/conv")
        branch7x7 = b.conv(branch7x7, channels, (1, 7), name="tower/conv_1")
        branch7x7 = b.conv(branch7x7, 192, (7, 1), name="tower/conv_2")
        branch7x7dbl = b.conv(x, channels, (1, 1), name="tower_1/conv")
        branch7x7dbl = b.conv(branch7x7dbl, channels, (7, 1), name="tower_1/conv_1")
        branch7x7dbl = b.conv(branch7x7dbl, channels, (1, 7), name="tower_1/conv_2")
        branch7x7dbl = b.conv(branch7x7dbl, channels, (7, 1), name="tower_1/conv_3")
        branch7x7dbl = b.conv(branch7x7dbl, 192, (1, 7), name="tower_1/conv_4")
        pool = tf.nn.avg_pool2d(x, 3, 1, "SAME", name="tower_2/pool")
        branch_pool = b.conv(pool, 192, (1, 1), name="tower_2/conv")
        return tf.concat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 3, name="join")


def _reduction_b(b: GraphBuilder, x: tf.Tensor, name: str) -> tf.Tensor:
    with tf.compat.v1.name_scope(name):
        branch3x3 = b.conv(x, 192, (1, 1), name="tower/conv")
        branch3x3 = b.conv(branch3x3, 320, (3, 3), strides=2, padding="VALID", name="tower/conv_1")
        branch7x7x3 = b.conv(x, 192, (1, 1), name="tower_1/conv")
        branch7x7x3 = b.conv(branch7x7x3, 192, (1, 7), name="tower_1/conv_1")
        branch7x7x3 = b.conv(branch7x7x3, 192, (7, 1), name="tower_1/conv_2")
        branch7x7x3 = b.conv(branch7x7x3, 192, (3, 3), strides=2, padding="VALID", name="tower_1/conv_3")
        pool = tf.nn.max_pool2d(x, 3, 2, "VALID", name="pool")
        return tf.concat([branch3x3, branch7x7x3, pool], 3, name="join")


def _inception_c(b: GraphBuilder, x: tf.Tensor, name: str) -> tf.Tensor:
    with tf.compat.v1.name_scope(name):
        branch1x1 = b.conv(x, 320, (1, 1), name="conv")
        branch3x3 = b.conv(x, 384, (1, 1), name="tower/conv")
        branch3x3 = tf.concat([b.conv(branch3x3, 384, (1, 3), name="tower/mixed/conv"),
                               b.conv(branch3x3, 384, (3, 1), name="tower/mixed/conv_1")], 3, name="tower/mixed")
        branch3x3dbl = b.conv(x, 448, (1, 1), name="tower_1/conv")
        branch3x3dbl = b.conv(branch3x3dbl, 384, (3, 3), name="tower_1/conv_1")
        branch3x3dbl = tf.concat([b.conv(branch3x3dbl, 384, (1, 3), name="tower_1/mixed/conv"),
                                  b.conv(branch3x3dbl, 384, (3, 1), name="tower_1/mixed/conv_1")], 3,
                                 name="tower_1/mixed")
        pool = tf.nn.avg_pool2d(x, 3, 1, "SAME", name="tower_2/pool")
        branch_pool = b.conv(pool, 192, (1, 1), name="tower_2/conv")
        return tf.concat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 3, name="join")


def _inception_v3_network(b: GraphBuilder, x: tf.Tensor) -> tf.Tensor:
    """The Inception-v3 trunk (as in tf.keras.applications.InceptionV3): [N, 299, 299, 3] -> [N, 8, 8, 2048]."""
    x = b.conv(x, 32, (3, 3), strides=2, padding="VALID", name="conv")  # 149x149x32
    x = b.conv(x, 32, (3, 3), padding="VALID", name="conv_1")  # 147x147x32
    x = b.conv(x, 64, (3, 3), name="conv_2")  # 147x147x64
    x = tf.nn.max_pool2d(x, 3, 2, "VALID", name="pool")  # 73x73x64
    x = b.conv(x, 80, (1, 1), padding="VALID", name="conv_3")  # 73x73x80
    x = b.conv(x, 192, (3, 3), padding="VALID", name="conv_4")  # 71x71x192
    x = tf.nn.max_pool2d(x, 3, 2, "VALID", name="pool_1")  # 35x35x192
    x = _inception_a(b, x, 32, "mixed")  # 35x35x256
    x = _inception_a(b, x, 64, "mixed_1")  # 35x35x288
    x = _inception_a(b, x, 64, "mixed_2")  # 35x35x288
    x = _reduction_a(b, x, "mixed_3")  # 17x17x768
    for index, channels in enumerate((128, 160, 160, 192)):
        x = _inception_b(b, x, channels, f"mixed_{4 + index}")  # 17x17x768
    x = _reduction_b(b, x, "mixed_8")  # 8x8x1280
    x = _inception_c(b, x, "mixed_9")  # 8x8x2048
    return _inception_c(b, x, "mixed_10")  # 8x8x2048


def synthetic_graph_def(*, seed: int) -> tf.compat.v1.GraphDef:
    """The full Inception-v3 with seeded random weights in the official 2015 graph layout.

    Convolutions are He-normal from ``numpy.random.default_rng(seed)`` (deterministic across
    processes and platforms); batch norms are identity-like (gamma 1, beta 0, mean 0, variance 1).
    """
    return build_graph_def(_inception_v3_network, seed=seed, random_batch_norm=False)


def write_graph_def(path: str, graph_def: tf.compat.v1.GraphDef) -> None:
    """Writes ``graph_def`` as a deterministic binary GraphDef, atomically (local or gs://).

    Args:
        path: Where to write.
        graph_def: The graph, e.g. from ``build_graph_def``.
    """
    fileio.write_atomically(path, graph_def.SerializeToString(deterministic=True))


def write_synthetic_graph(path: str, *, seed: int) -> None:
    """Writes ``synthetic_graph_def(seed=seed)`` as a binary GraphDef, atomically.

    Used by ``--models synthetic``: same architecture, input handling, node names and cost
    (about 5.7 GFLOPs per frame) as the official graph, so runs and benchmarks exercise the real
    code paths offline; its features are meaningless.

    Args:
        path: Where to write (local or gs://).
        seed: Seed of the random weights; the same seed gives the same features.
    """
    write_graph_def(path, synthetic_graph_def(seed=seed))


# --------------------------------------------------------------------------------------------
# Synthetic RGB artifacts (graph + PCA) for --models synthetic.


_CALIBRATION_SIZES = ((240, 320), (360, 640), (288, 352), (480, 480), (180, 320), (720, 1280))


def _smooth_upsample(low: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a small [h, w, 3] grid: smooth blobs, like defocused natural images."""
    ys = np.linspace(0.0, low.shape[0] - 1.0, height)
    xs = np.linspace(0.0, low.shape[1] - 1.0, width)
    y0 = np.minimum(ys.astype(int), low.shape[0] - 2)
    x0 = np.minimum(xs.astype(int), low.shape[1] - 2)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = low[y0][:, x0] * (1.0 - wx) + low[y0][:, x0 + 1] * wx
    bottom = low[y0 + 1][:, x0] * (1.0 - wx) + low[y0 + 1][:, x0 + 1] * wx
    return top * (1.0 - wy) + bottom * wy


def _calibration_frames(seed: int) -> list[np.ndarray]:
    """16 seeded frames of different kinds and sizes for calibrating the synthetic PCA.

    Noise, flat colours, sinusoidal gradients, blocky and smooth random patterns span features
    from flat to busy images, so the whitened features of other frames land near unit spread too.
    """
    rng = np.random.default_rng([seed, 1])

    def size() -> tuple[int, int]:
        return _CALIBRATION_SIZES[int(rng.integers(len(_CALIBRATION_SIZES)))]

    frames = [rng.integers(0, 256, (*size(), 3), dtype=np.uint8) for _ in range(3)]
    frames += [np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (*size(), 3)).copy() for _ in range(3)]
    for _ in range(4):
        height, width = size()
        ys, xs = np.meshgrid(np.linspace(0.0, 1.0, height), np.linspace(0.0, 1.0, width), indexing="ij")
        phase, frequency = rng.uniform(0.0, 2.0 * np.pi, 3), rng.uniform(0.5, 3.0, 3)
        channels = [0.5 + 0.5 * np.sin(2.0 * np.pi * frequency[c] * (xs * np.cos(phase[c]) + ys * np.sin(phase[c]))
                                       + phase[c]) for c in range(3)]
        frames.append(np.clip(np.stack(channels, axis=-1) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    for _ in range(3):
        height, width = size()
        block = int(rng.integers(4, 40))
        low = rng.integers(0, 256, (height // block + 1, width // block + 1, 3), dtype=np.uint8)
        frames.append(np.kron(low, np.ones((block, block, 1), np.uint8))[:height, :width].copy())
    for _ in range(3):
        height, width = size()
        low = rng.uniform(0.0, 255.0, (int(rng.integers(2, 8)), int(rng.integers(2, 8)), 3))
        frames.append(np.clip(_smooth_upsample(low, height, width) + 0.5, 0, 255).astype(np.uint8))
    return frames


def _synthetic_pca(features: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random orthonormal eigenvectors; mean and eigenvalues that whiten ``features`` to unit spread.

    Components are ordered by decreasing variance on the calibration features, as a real PCA
    would be, and each eigenvalue is that variance less the SPEC's 1e-4, so that
    ``(f - mean) @ V[:1024].T / sqrt(eigenvals[:1024] + 1e-4)`` has standard deviation 1 per
    component on those features.
    """
    rng = np.random.default_rng([seed, 2])
    q, r = np.linalg.qr(rng.standard_normal((FEATURE_SIZE, FEATURE_SIZE)))
    eigenvecs = (q * np.sign(np.diag(r))).T  # Rows are orthonormal directions.
    mean = features.mean(axis=0, dtype=np.float64)
    variance = (((features - mean) @ eigenvecs.T) ** 2).mean(axis=0)
    order = np.argsort(-variance, kind="stable")
    eigenvecs, variance = eigenvecs[order], variance[order]
    floor = max(1e-12, 1e-6 * float(variance[0]))
    eigenvals = np.maximum(variance - 1e-4, floor)
    return (mean.astype(np.float32).reshape(FEATURE_SIZE, 1), eigenvecs.astype(np.float32),
            eigenvals.astype(np.float32).reshape(FEATURE_SIZE, 1))


def _existing_synthetic_seed(directory: str) -> int | None:
    try:
        with open(os.path.join(directory, SYNTHETIC_MARKER_FILE_NAME), encoding="utf-8") as handle:
            return int(json.load(handle)["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_existing(directory: str, seed: int) -> bool:
    """True if directory already holds the artifacts of this seed; raises if it holds others."""
    if not os.path.exists(directory) or (os.path.isdir(directory) and not os.listdir(directory)):
        return False
    expected = (GRAPH_FILE_NAME, PCA_MEAN_FILE_NAME, PCA_EIGENVECS_FILE_NAME, PCA_EIGENVALS_FILE_NAME)
    existing_seed = _existing_synthetic_seed(directory)
    if existing_seed == seed and all(os.path.isfile(os.path.join(directory, name)) for name in expected):
        return True
    raise ModelArtifactError(
        f"Cannot write synthetic Inception-v3 artifacts (seed {seed}) to {directory}: it already holds "
        + (("an incomplete copy of them" if existing_seed == seed else f"synthetic artifacts of seed {existing_seed}")
           if existing_seed is not None else "other files")
        + ". Pass an empty or new directory (e.g. one per seed), or remove it.")


def write_synthetic_rgb_artifacts(directory: str, *, seed: int) -> None:
    """Writes seeded synthetic RGB artifacts in the official layout into ``directory``.

    Writes ``classify_image_graph_def.pb`` (``write_synthetic_graph``) and the PCA files of
    yt8m_pca.tgz: ``mean.npy`` [2048, 1], ``eigenvecs.npy`` [2048, 2048] (random orthonormal)
    and ``eigenvals.npy`` [2048, 1], calibrated on a few seeded frames so whitened features have
    roughly unit spread (which keeps them inside the quantization range). A ``synthetic.json``
    marker records the seed.

    Everything is written to a temporary sibling directory and renamed into place, so readers
    see all files or none, and concurrent workers generating the same seed do not corrupt each
    other: the first rename wins and the others discard their copy. A directory that already
    holds this seed's artifacts is left as is.

    Args:
        directory: Local directory to create; absent, empty, or holding this seed's artifacts.
        seed: Seed of the weights and PCA; the same seed gives the same features.

    Raises:
        ModelArtifactError: If ``directory`` holds other files or another seed's artifacts.
    """
    if "://" in directory:
        raise ModelArtifactError(f"Synthetic Inception-v3 artifacts are generated on the worker's local disk; got "
                                 f"{directory}. Pass a local model cache directory.")
    directory = os.path.abspath(directory)
    if _check_existing(directory, seed):
        return
    tf_setup.configure()  # before this process's first op, if it is the first
    # Readers see all files or none; of concurrent writers of this seed the first one's set stays.
    with fileio.publish_local_directory(directory, already_there=lambda: _check_existing(directory, seed)) as staging:
        graph_path = os.path.join(staging, GRAPH_FILE_NAME)
        write_synthetic_graph(graph_path, seed=seed)
        model = InceptionV3Features.from_graph_def_file(graph_path)
        features = model(np.stack([resize_frame(frame) for frame in _calibration_frames(seed)]))
        if not np.all(np.isfinite(features)):
            raise ModelArtifactError(f"synthetic Inception-v3 (seed {seed}) produced non-finite features; "
                                     "try another --synthetic_seed")
        mean, eigenvecs, eigenvals = _synthetic_pca(features.astype(np.float64), seed=seed)
        np.save(os.path.join(staging, PCA_MEAN_FILE_NAME), mean)
        np.save(os.path.join(staging, PCA_EIGENVECS_FILE_NAME), eigenvecs)
        np.save(os.path.join(staging, PCA_EIGENVALS_FILE_NAME), eigenvals)
        with open(os.path.join(staging, SYNTHETIC_MARKER_FILE_NAME), "w", encoding="utf-8") as handle:
            json.dump({"seed": seed, "model": "inception-v3 with random weights", "synthetic": True}, handle)
