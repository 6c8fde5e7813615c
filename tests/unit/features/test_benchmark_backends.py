"""The runtime benchmark compares the network the pipeline runs, not a look-alike.

benchmarks/backends.py converts the Inception-v3 graph cut at ResizeBilinear:0 (with the graph's own
Sub/Mul normalization inside) for the other runtimes; its exactness figures are only worth something if
that cut computes what InceptionV3Features computes. OpenVINO is not a dependency of the pipeline (it
was measured no faster, docs/runtime.md), so its check runs only where it is installed. No timing here.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import standins

from benchmarks import backends
from pipeline.features import inception, quantization


@pytest.fixture(scope="module")
def standin_path(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("standin") / inception.GRAPH_FILE_NAME)
    standins.write_standin_graph(path, seed=3)
    return path


@pytest.fixture(scope="module")
def resized() -> np.ndarray:
    # The benchmark's three kinds of input, two frames each, made by ffmpeg.
    frames = np.concatenate([backends.generated_frames(kind, 2) for kind in backends.KINDS])
    assert len({frame.tobytes() for frame in frames}) > 2  # the kinds differ
    return np.stack([inception.resize_frame(frame) for frame in frames])


def _quantized(pool: np.ndarray) -> np.ndarray:
    # A fixed projection stands in for the PCA: what matters is that bytes come from pool_3.
    projection = np.random.default_rng(0).standard_normal((inception.FEATURE_SIZE, 64)).astype(np.float32)
    features = pool @ projection
    return quantization.quantize_rgb(features / np.abs(features).max() * 2.0).astype(np.int16)


def test_cut_graph_computes_the_pipelines_pool_3(standin_path, resized):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    graph_def, input_name, output_name = backends.inception_network(standin_path)
    assert {node.op for node in graph_def.node}.isdisjoint({"DecodeJpeg", "ResizeBilinear", "Cast",
                                                            inception.LEGACY_BATCH_NORM_OP})
    assert {inception.SUB_NODE, inception.MUL_NODE} <= {node.name for node in graph_def.node}
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            cut = session.run(output_name, {input_name: resized}).reshape(len(resized), -1)
    expected = inception.InceptionV3Features.from_graph_def_file(standin_path)(resized)
    np.testing.assert_allclose(cut, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
def test_openvino_fp32_conversion_gives_the_same_bytes(standin_path, resized):
    import openvino as ov  # pylint: disable=import-outside-toplevel

    graph_def, _, _ = backends.inception_network(standin_path)
    compiled = ov.Core().compile_model(ov.convert_model(graph_def), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    found = compiled(resized)[0].reshape(len(resized), -1)
    expected = inception.InceptionV3Features.from_graph_def_file(standin_path)(resized)
    assert np.max(np.abs(found - expected)) <= 1e-4 * np.abs(expected).max()
    found_bytes, expected_bytes = _quantized(found), _quantized(expected)
    assert np.mean(found_bytes == expected_bytes) >= 0.99
    assert np.all(np.abs(found_bytes - expected_bytes) <= 1)
