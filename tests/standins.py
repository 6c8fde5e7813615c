"""Small stand-ins of the official model files that tests build in milliseconds.

``write_standin_graph`` writes a tiny graph in the exact layout of the 2015 Inception-v3 file,
so tests exercise the loading code the official graph needs without its 90 MB.
"""

from __future__ import annotations

import tensorflow as tf

from pipeline.features.inception import FEATURE_SIZE
from pipeline.features.synthetic_inception import GraphBuilder, build_graph_def, write_graph_def


def _standin_network(builder: GraphBuilder, x: tf.Tensor) -> tf.Tensor:
    x = builder.conv(x, 8, (3, 3), strides=2, padding="VALID", name="conv")  # 149
    x = tf.nn.max_pool2d(x, 3, 2, "VALID", name="pool")  # 74
    x = builder.conv(x, 16, (3, 3), strides=2, padding="VALID", name="conv_1")  # 36
    x = tf.nn.max_pool2d(x, 3, 2, "VALID", name="pool_1")  # 17
    with tf.compat.v1.name_scope("mixed"):
        left = builder.conv(x, 16, (1, 1), name="conv")
        right = builder.conv(x, 16, (3, 3), name="tower/conv")
        # The 2015 graph joins branches with the original Concat op (axis first).
        x = tf.raw_ops.Concat(concat_dim=tf.constant(3, tf.int32), values=[left, right], name="join")
    x = tf.nn.max_pool2d(x, 3, 2, "VALID", name="pool_2")  # 8
    return builder.conv(x, FEATURE_SIZE, (1, 1), name="mixed_10/conv")  # 8x8x2048


def write_standin_graph(path: str, *, seed: int) -> None:
    """Writes a tiny graph with the official Inception-v3 input handling, names and legacy ops.

    It has the 2015 file's DecodeJpeg/Cast/ExpandDims/ResizeBilinear/Sub/Mul front, a few small
    conv blocks with BatchNormWithGlobalNormalization and a Concat, a 1x1 projection to 2048
    channels, ``pool_3`` ([1, 1, 1, 2048]) and ``pool_3/_reshape`` ([1, 2048]), and an old
    producer version. Tests use it to exercise exactly the loading code the official file needs,
    in milliseconds instead of seconds.

    Args:
        path: Where to write the binary GraphDef (local or gs://).
        seed: Seed of the random weights; the same seed gives the same file.
    """
    write_graph_def(path, build_graph_def(_standin_network, seed=seed, random_batch_norm=True))
