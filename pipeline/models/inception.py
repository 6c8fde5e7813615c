"""Inception-v3 RGB frame features in the layout of the 2015-12-05 frozen graph.

The YouTube-8M starter code feeds one decoded frame per ``session.run`` to the graph's own
``DecodeJpeg:0`` input and reads the 2048-d ``pool_3/_reshape:0``. That is exact but slow.
This module splits the graph's input handling in two so that the same numbers come out of a
batched call:

* ``resize_frame`` runs the graph's Cast -> ExpandDims -> ResizeBilinear on one frame with the
  same op and attributes, once per frame, in the decoder (bit-identical to ``ResizeBilinear:0``).
* ``InceptionV3Features`` imports the graph once with ``ResizeBilinear:0`` replaced by a batch
  input, so the graph's own Sub/Mul scaling and network run on [N, 299, 299, 3] and
  ``pool_3:0`` ([N, 1, 1, 2048]) gives the features.

The 2015 graph predates GraphDef version 9 and normalizes with ``BatchNormWithGlobalNormalization``.
TF 2.21 still registers that op but refuses it in any graph whose producer version is 9 or more,
and a ``tf.function``/``wrap_function`` graph always has the current producer version. The loader
therefore rewrites each such node into the equivalent elementwise ops before importing.

Artifact writers build graphs with exactly the official input handling and node names: a tiny
stand-in for tests, and a full-size Inception-v3 with seeded random weights for
``--models synthetic`` (same compute as the real model, meaningless features).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from google.protobuf import message as protobuf_message

from pipeline.errors import ModelArtifactError

INPUT_SIZE = 299
FEATURE_SIZE = 2048

GRAPH_FILE_NAME = "classify_image_graph_def.pb"
PCA_MEAN_FILE_NAME = "mean.npy"
PCA_EIGENVECS_FILE_NAME = "eigenvecs.npy"
PCA_EIGENVALS_FILE_NAME = "eigenvals.npy"
SYNTHETIC_MARKER_FILE_NAME = "synthetic.json"

CONTENTS_NODE = "DecodeJpeg/contents"
DECODE_NODE = "DecodeJpeg"
CAST_NODE = "Cast"
EXPAND_DIMS_NODE = "ExpandDims"
RESIZE_NODE = "ResizeBilinear"
SUB_NODE = "Sub"
MUL_NODE = "Mul"
POOL_NODE = "pool_3"
POOL_RESHAPE_NODE = "pool_3/_reshape"
REQUIRED_NODES = (CONTENTS_NODE, DECODE_NODE, CAST_NODE, EXPAND_DIMS_NODE, RESIZE_NODE, SUB_NODE, MUL_NODE,
                  POOL_NODE, POOL_RESHAPE_NODE)

# ResizeBilinear attributes that resize_frame uses; the loader rejects a graph that differs.
RESIZE_ALIGN_CORNERS = False
RESIZE_HALF_PIXEL_CENTERS = False

_FLAG = "--rgb_graph"
_WHAT = (f"the frozen Inception-v3 GraphDef {GRAPH_FILE_NAME} from inception-2015-12-05.tgz "
         f"(pass it with {_FLAG}, a local path or gs:// URL)")
_LEGACY_BATCH_NORM_OP = "BatchNormWithGlobalNormalization"
# GraphDef version 9 removed BatchNormWithGlobalNormalization; graphs written by this module
# keep an older producer version, like the 2015 file, so they load through the same code.
_LEGACY_PRODUCER_VERSION = 3
_BATCH_NORM_EPSILON = 0.001
# Batch size used by verify_graph_def to prove the network is batch-agnostic up to pool_3.
_PROBE_BATCH = 2


# --------------------------------------------------------------------------------------------
# TensorFlow thread pools (set once per process, before the first op runs).

INTRA_OP_THREADS_ENV = "YT8M_TF_INTRA_OP_THREADS"
INTER_OP_THREADS_ENV = "YT8M_TF_INTER_OP_THREADS"
# Frames per graph call inside one batched call (features do not depend on it). Default: the
# whole batch (--rgb_batch_size). Measured on 2 CPU cores, sub-batches of 4 were no faster
# (0.8x-1.3x, within noise; benchmarks/run.py reports it), so it stays a knob, e.g. to bound
# activation memory on a small GPU.
INCEPTION_CHUNK_ENV = "YT8M_INCEPTION_CHUNK"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else None
    except ValueError:
        logging.warning("ignoring %s=%r: not an integer", name, value)
        return None


def _beam_workers_sharing_machine() -> int:
    """Worker processes of a DirectRunner multi_processing run (read from a Beam SDK worker's environment).

    Beam starts each SDK worker with its pipeline options as JSON in PIPELINE_OPTIONS; every
    worker of a local run shares this machine's cores. 1 outside such a worker.
    """
    raw = os.environ.get("PIPELINE_OPTIONS")
    if not raw:
        return 1
    try:
        options = json.loads(raw)
    except ValueError:
        return 1
    options = options.get("options", options) if isinstance(options, dict) else {}
    found = {key.split(":")[-2] if key.startswith("beam:option:") else key: value for key, value in options.items()}
    if found.get("direct_running_mode") != "multi_processing":
        return 1
    try:
        return max(1, int(found.get("direct_num_workers") or 1))
    except (TypeError, ValueError):
        return 1


def thread_settings() -> tuple[int, int]:
    """(intra_op, inter_op) threads for this process; 0 keeps TensorFlow's default (all cores).

    YT8M_TF_INTRA_OP_THREADS / YT8M_TF_INTER_OP_THREADS win. Otherwise, in a worker of a local
    multi-process run of N workers, each worker gets cpu_count // N intra-op threads (so N
    workers do not oversubscribe the cores) and as many inter-op threads.
    """
    intra, inter = _env_int(INTRA_OP_THREADS_ENV), _env_int(INTER_OP_THREADS_ENV)
    workers = _beam_workers_sharing_machine()
    share = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    return (share if intra is None else intra), (share if inter is None else inter)


def configure_threads() -> tuple[int, int]:
    """Applies thread_settings() unless TensorFlow has already started; returns what was asked for."""
    intra, inter = thread_settings()
    try:
        # Several worker processes may share one GPU: take memory as needed, not all of it up front.
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        if intra > 0 and tf.config.threading.get_intra_op_parallelism_threads() != intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter > 0 and tf.config.threading.get_inter_op_parallelism_threads() != inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except (RuntimeError, ValueError):  # TensorFlow's context is already initialized: keep its settings.
        logging.info("TensorFlow already initialized; thread pools and GPU memory settings left as they are")
    return intra, inter


def inference_chunk() -> int:
    """Frames per Inception-v3 graph call: YT8M_INCEPTION_CHUNK when set, else the whole batch."""
    value = _env_int(INCEPTION_CHUNK_ENV)
    return value if value is not None and value > 0 else 1 << 30


# Importing this module is the first TensorFlow use of a worker (the decoder's resize_frame and
# the RGB model both come from here), so the pools are sized before any op runs.
configure_threads()


# --------------------------------------------------------------------------------------------
# Per-frame input handling (runs in the decoder).


@tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)], autograph=False)
def _resize_graph_input(frame: tf.Tensor) -> tf.Tensor:
    images = tf.expand_dims(tf.cast(frame, tf.float32), 0)
    resized = tf.raw_ops.ResizeBilinear(
        images=images,
        size=tf.constant([INPUT_SIZE, INPUT_SIZE], tf.int32),
        align_corners=RESIZE_ALIGN_CORNERS,
        half_pixel_centers=RESIZE_HALF_PIXEL_CENTERS,
    )
    return resized[0]


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"expected one RGB frame as uint8 [H, W, 3] with H, W >= 1; got {frame.dtype} "
                         f"{list(frame.shape)}")
    return frame


def resize_frame(frame: np.ndarray) -> np.ndarray:
    """Resizes one RGB frame exactly as the Inception graph resizes what ``DecodeJpeg:0`` yields.

    The graph casts the uint8 frame to float, adds a batch axis and runs ``ResizeBilinear`` to
    299x299. Doing the same op with the same attributes here, once per frame, lets inference
    take whole batches at ``ResizeBilinear:0`` and still match the one-frame reference bit for
    bit up to that tensor.

    Args:
        frame: uint8 [H, W, 3] RGB frame.

    Returns:
        float32 [299, 299, 3], bit-identical to the graph's ``ResizeBilinear:0`` for this frame.

    Raises:
        ValueError: If ``frame`` is not a non-empty uint8 [H, W, 3] array.
    """
    return _resize_graph_input(tf.constant(_check_frame(frame))).numpy()


# --------------------------------------------------------------------------------------------
# Loading and verification.


def load_graph_def(path: str) -> tf.compat.v1.GraphDef:
    """Reads a binary frozen GraphDef from a local path or gs:// URL.

    Args:
        path: Path of ``classify_image_graph_def.pb`` (or a graph in the same layout).

    Returns:
        The parsed GraphDef, unchanged.

    Raises:
        ModelArtifactError: If the file is missing, unreadable or not a binary GraphDef.
    """
    try:
        if not tf.io.gfile.exists(path):
            raise ModelArtifactError(f"Inception-v3 graph {path} does not exist; expected {_WHAT}.")
        if tf.io.gfile.isdir(path):
            raise ModelArtifactError(f"Inception-v3 graph {path} is a directory; expected the file inside it: {_WHAT}.")
        with tf.io.gfile.GFile(path, "rb") as handle:
            data = handle.read()
    except tf.errors.OpError as error:
        raise ModelArtifactError(
            f"Cannot read Inception-v3 graph {path} ({error.message}); expected {_WHAT}.") from error
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except (protobuf_message.DecodeError, RuntimeError, ValueError) as error:
        raise ModelArtifactError(
            f"Inception-v3 graph {path} is not a binary GraphDef ({error}); expected {_WHAT}.") from error
    if not graph_def.node:
        raise ModelArtifactError(f"Inception-v3 graph {path} contains no nodes; expected {_WHAT}.")
    return graph_def


def _input_node_name(input_name: str) -> str:
    """Node name of a NodeDef input entry ('name', 'name:1' or '^name')."""
    return input_name.lstrip("^").split(":")[0]


def _const_value(nodes: dict[str, tf.compat.v1.NodeDef], input_name: str) -> np.ndarray | None:
    node = nodes.get(_input_node_name(input_name))
    if node is None or node.op != "Const" or "value" not in node.attr:
        return None
    try:
        return tf.make_ndarray(node.attr["value"].tensor)
    except (TypeError, ValueError):
        return None


def _attr_bool(node: tf.compat.v1.NodeDef, name: str, default: bool) -> bool:
    # Graphs from 2015 predate some attributes; an absent one means the op's default.
    return node.attr[name].b if name in node.attr else default


def _check_input_handling(nodes: dict[str, tf.compat.v1.NodeDef]) -> list[str]:
    """Problems with the Cast -> ExpandDims -> ResizeBilinear chain that resize_frame reproduces."""
    problems = []
    cast, expand, resize = nodes[CAST_NODE], nodes[EXPAND_DIMS_NODE], nodes[RESIZE_NODE]
    if len(cast.input) < 1 or len(expand.input) < 2 or len(resize.input) < 2:
        return [f"nodes {CAST_NODE}, {EXPAND_DIMS_NODE}, {RESIZE_NODE} lack inputs (found {list(cast.input)}, "
                f"{list(expand.input)}, {list(resize.input)})"]
    if cast.op != "Cast" or not cast.input or _input_node_name(cast.input[0]) != DECODE_NODE:
        problems.append(f"node {CAST_NODE} must be a Cast of {DECODE_NODE} (found op {cast.op} of "
                        f"{list(cast.input)})")
    elif "DstT" not in cast.attr or cast.attr["DstT"].type != tf.float32.as_datatype_enum:
        problems.append(f"node {CAST_NODE} must cast to float32 (found attributes {sorted(cast.attr)})")
    axis = _const_value(nodes, expand.input[1])
    if (expand.op != "ExpandDims" or _input_node_name(expand.input[0]) != CAST_NODE or axis is None
            or axis.size != 1 or int(axis.reshape(-1)[0]) != 0):
        problems.append(f"node {EXPAND_DIMS_NODE} must be ExpandDims({CAST_NODE}, 0) (found op {expand.op} of "
                        f"{list(expand.input)})")
    if resize.op != "ResizeBilinear":
        problems.append(f"node {RESIZE_NODE} must be a ResizeBilinear op (found {resize.op})")
        return problems
    if _input_node_name(resize.input[0]) != EXPAND_DIMS_NODE:
        problems.append(f"node {RESIZE_NODE} must resize {EXPAND_DIMS_NODE} (found inputs {list(resize.input)})")
    size = _const_value(nodes, resize.input[1])
    if size is None or size.reshape(-1).tolist() != [INPUT_SIZE, INPUT_SIZE]:
        problems.append(f"node {RESIZE_NODE} must resize to a constant [{INPUT_SIZE}, {INPUT_SIZE}] "
                        f"(found {None if size is None else size.tolist()})")
    for attr, expected in (("align_corners", RESIZE_ALIGN_CORNERS), ("half_pixel_centers", RESIZE_HALF_PIXEL_CENTERS)):
        found = _attr_bool(resize, attr, False)
        if found != expected:
            problems.append(f"node {RESIZE_NODE} has {attr}={found}, but resize_frame (the batched path) resizes "
                            f"with {attr}={expected}; features would silently differ from the graph's own resize")
    return problems


def _check_output_shapes(graph_def: tf.compat.v1.GraphDef, nodes: dict[str, tf.compat.v1.NodeDef], *,
                         source: str) -> list[str]:
    """Problems with pool_3 (batch-agnostic [N, 1, 1, 2048]) and pool_3/_reshape ([1, 2048])."""
    problems = []
    reshape = nodes[POOL_RESHAPE_NODE]
    shape = _const_value(nodes, reshape.input[1]) if len(reshape.input) > 1 else None
    if (reshape.op != "Reshape" or shape is None or _input_node_name(reshape.input[0]) != POOL_NODE
            or shape.reshape(-1).tolist() not in ([1, FEATURE_SIZE], [-1, FEATURE_SIZE])):
        problems.append(f"node {POOL_RESHAPE_NODE} must reshape {POOL_NODE} to a constant [1, {FEATURE_SIZE}] "
                        f"(found op {reshape.op} of {list(reshape.input)}, shape "
                        f"{None if shape is None else shape.tolist()})")
    try:
        network = _network_graph_def(graph_def, POOL_NODE, source=source)
        with tf.Graph().as_default():
            batch = tf.compat.v1.placeholder(tf.float32, [_PROBE_BATCH, INPUT_SIZE, INPUT_SIZE, 3])
            (pool,) = tf.compat.v1.import_graph_def(
                network, input_map={f"{RESIZE_NODE}:0": batch}, return_elements=[f"{POOL_NODE}:0"], name="probe")
            found = pool.shape.as_list() if pool.shape.rank is not None else None
    except (ValueError, TypeError, tf.errors.OpError, ModelArtifactError) as error:
        message = getattr(error, "message", None) or str(error)
        problems.append(f"the graph does not import with a [{_PROBE_BATCH}, {INPUT_SIZE}, {INPUT_SIZE}, 3] float "
                        f"input at {RESIZE_NODE}:0 ({message.splitlines()[0] if message else type(error).__name__})")
        return problems
    expected = [_PROBE_BATCH, 1, 1, FEATURE_SIZE]
    if found != expected:
        problems.append(f"with a [{_PROBE_BATCH}, {INPUT_SIZE}, {INPUT_SIZE}, 3] input at {RESIZE_NODE}:0, "
                        f"{POOL_NODE}:0 has shape {found}, expected {expected} (the batched path needs a "
                        f"batch-agnostic network from {RESIZE_NODE} to {POOL_NODE})")
    return problems


def verify_graph_def(graph_def: tf.compat.v1.GraphDef, *, source: str) -> None:
    """Checks that a GraphDef has the official Inception-v3 layout the batched path relies on.

    The batched path bypasses the graph's own Cast/ExpandDims/ResizeBilinear (resize_frame does
    them per frame) and feeds a batch at ``ResizeBilinear:0``; that is only exact if the graph's
    input handling is what resize_frame does and the network is batch-agnostic up to pool_3.

    Args:
        graph_def: The GraphDef, as read by ``load_graph_def``.
        source: Where it came from, for the error message.

    Raises:
        ModelArtifactError: Listing every problem found and what to pass instead.
    """
    nodes = {node.name: node for node in graph_def.node}
    missing = [name for name in REQUIRED_NODES if name not in nodes]
    problems = []
    if missing:
        problems.append(f"missing node(s) {', '.join(missing)}")
    undefined = sorted({f"{node.name} <- {_input_node_name(name)}" for node in graph_def.node for name in node.input
                        if _input_node_name(name) not in nodes})
    if undefined:
        more = " ..." if len(undefined) > 5 else ""
        problems.append(f"inputs that name no node: {', '.join(undefined[:5])}{more}")
    if not {CAST_NODE, EXPAND_DIMS_NODE, RESIZE_NODE} & set(missing):
        problems.extend(_check_input_handling(nodes))
    if not problems:
        problems.extend(_check_output_shapes(graph_def, nodes, source=source))
    if problems:
        raise ModelArtifactError(
            f"Inception-v3 graph {source} does not have the official layout: " + "; ".join(problems)
            + f". Expected {_WHAT}, with nodes {', '.join(REQUIRED_NODES)}.")


# --------------------------------------------------------------------------------------------
# Legacy BatchNormWithGlobalNormalization.


def _const_node(name: str, value: np.ndarray, *, device: str = "") -> tf.compat.v1.NodeDef:
    node = tf.compat.v1.NodeDef(name=name, op="Const", device=device)
    node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    return node


def _op_node(name: str, op: str, inputs: Sequence[str], *, dtype: int, device: str = "") -> tf.compat.v1.NodeDef:
    node = tf.compat.v1.NodeDef(name=name, op=op, input=list(inputs), device=device)
    node.attr["T"].type = dtype
    return node


def _replace_legacy_batch_norm(graph_def: tf.compat.v1.GraphDef, *, source: str) -> tf.compat.v1.GraphDef:
    """Rewrites BatchNormWithGlobalNormalization nodes into ops that TF 2.21 functions accept.

    The op is still registered but removed from GraphDef version 9 on, and a function graph
    (wrap_function, tf.function) always has the current version, so importing the 2015 graph
    there fails with "Op BatchNormWithGlobalNormalization is not available in GraphDef version
    ...". Its kernel computes ``(t - m) * (rsqrt(v + eps) [* gamma]) + beta`` elementwise in
    float; the replacement is the same expression in the same order from ops with the same
    kernels (Sub, Mul, AddV2, Rsqrt), so it reproduces the op up to float rounding. The last node
    keeps the original name, so every consumer is untouched.

    Returns:
        The input itself if it has no such node, else a rewritten copy.

    Raises:
        ModelArtifactError: If such a node is not a float batch norm with five inputs.
    """
    if not any(node.op == _LEGACY_BATCH_NORM_OP for node in graph_def.node):
        return graph_def
    names = {node.name for node in graph_def.node}
    rewritten = tf.compat.v1.GraphDef()
    rewritten.versions.CopyFrom(graph_def.versions)
    rewritten.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.op != _LEGACY_BATCH_NORM_OP:
            rewritten.node.add().CopyFrom(node)
            continue
        dtype = tf.as_dtype(node.attr["T"].type) if "T" in node.attr else None
        data_inputs = [name for name in node.input if not name.startswith("^")]
        controls = [name for name in node.input if name.startswith("^")]
        if dtype not in (tf.float32, tf.float64, tf.float16) or len(data_inputs) != 5:
            raise ModelArtifactError(
                f"Inception-v3 graph {source}: node {node.name} ({_LEGACY_BATCH_NORM_OP}) has type "
                f"{dtype.name if dtype else None} and {len(data_inputs)} inputs; only float batch norms with 5 "
                f"inputs can be loaded. Expected {_WHAT}.")
        t, mean, variance, beta, gamma = data_inputs
        prefix = f"{node.name}/_legacy_batch_norm"
        if any(name == prefix or name.startswith(prefix + "/") for name in names):
            raise ModelArtifactError(f"Inception-v3 graph {source}: node names under {prefix} are reserved for "
                                     f"loading {_LEGACY_BATCH_NORM_OP}; expected {_WHAT}.")
        epsilon = node.attr["variance_epsilon"].f if "variance_epsilon" in node.attr else 0.0
        enum, device = dtype.as_datatype_enum, node.device
        added = [
            _const_node(f"{prefix}/epsilon", np.array(epsilon, dtype=dtype.as_numpy_dtype), device=device),
            _op_node(f"{prefix}/add_epsilon", "AddV2", [variance, f"{prefix}/epsilon"], dtype=enum, device=device),
            _op_node(f"{prefix}/rsqrt", "Rsqrt", [f"{prefix}/add_epsilon"], dtype=enum, device=device),
        ]
        scale = f"{prefix}/rsqrt"
        if _attr_bool(node, "scale_after_normalization", False):
            added.append(_op_node(f"{prefix}/scale", "Mul", [scale, gamma], dtype=enum, device=device))
            scale = f"{prefix}/scale"
        added += [
            _op_node(f"{prefix}/centered", "Sub", [t, mean] + controls, dtype=enum, device=device),
            _op_node(f"{prefix}/scaled", "Mul", [f"{prefix}/centered", scale], dtype=enum, device=device),
            _op_node(node.name, "AddV2", [f"{prefix}/scaled", beta], dtype=enum, device=device),
        ]
        rewritten.node.extend(added)
    return rewritten


def _network_graph_def(graph_def: tf.compat.v1.GraphDef, output_node: str, *, source: str) -> tf.compat.v1.GraphDef:
    """The loadable part of graph_def that output_node depends on (legacy batch norm rewritten)."""
    nodes = {node.name: node for node in graph_def.node}
    needed, pending = set(), [output_node]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        if name not in nodes:
            raise ModelArtifactError(f"Inception-v3 graph {source}: node {name} is used but not defined; "
                                     f"expected {_WHAT}.")
        needed.add(name)
        pending.extend(_input_node_name(input_name) for input_name in nodes[name].input)
    subgraph = tf.compat.v1.GraphDef()
    subgraph.versions.CopyFrom(graph_def.versions)
    subgraph.library.CopyFrom(graph_def.library)
    subgraph.node.extend(node for node in graph_def.node if node.name in needed)
    return _replace_legacy_batch_norm(subgraph, source=source)


# --------------------------------------------------------------------------------------------
# Inference.


def _imported_function(graph_def: tf.compat.v1.GraphDef, *, input_name: str, spec: tf.TensorSpec,
                       output_name: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """Imports graph_def once into a concrete function whose argument replaces the tensor input_name.

    Tracing happens here, at load, so calls only execute. Nodes upstream of input_name (the
    string placeholder and JPEG decoder) stay unconnected and are pruned from the function.
    """

    def _run(inputs: tf.Tensor) -> tf.Tensor:
        (output,) = tf.compat.v1.import_graph_def(graph_def, input_map={input_name: inputs},
                                                  return_elements=[output_name], name="inception")
        return output

    return tf.function(_run, input_signature=[spec], autograph=False).get_concrete_function()


class InceptionV3Features:
    """Inception-v3 pool_3 features from a frozen 2015-style GraphDef, batched or one frame at a time.

    The graph is verified and imported once at construction; calls only run it. Instances are
    safe to call from several threads.
    """

    def __init__(self, graph_def: tf.compat.v1.GraphDef, *, source: str = "<GraphDef>"):
        """Verifies graph_def and builds the batched path.

        Args:
            graph_def: A frozen GraphDef in the official layout (see ``verify_graph_def``).
            source: Where it came from, for error messages.

        Raises:
            ModelArtifactError: If the graph does not have the official layout.
        """
        verify_graph_def(graph_def, source=source)
        self._source = source
        self._graph_def = graph_def
        self._batched = _imported_function(
            _network_graph_def(graph_def, POOL_NODE, source=source),
            input_name=f"{RESIZE_NODE}:0",
            spec=tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32),
            output_name=f"{POOL_NODE}:0",
        )
        self._reference = None
        self._reference_lock = threading.Lock()
        self._chunk: int | None = None

    @classmethod
    def from_graph_def_file(cls, path: str) -> InceptionV3Features:
        """Loads and verifies ``classify_image_graph_def.pb`` (local path or gs:// URL).

        Raises:
            ModelArtifactError: If the file is missing, unreadable or not in the official layout.
        """
        return cls(load_graph_def(path), source=path)

    def __call__(self, resized: np.ndarray) -> np.ndarray:
        """Features of a batch of frames already resized by ``resize_frame``.

        Args:
            resized: float32 [N, 299, 299, 3], N >= 0; fed at ``ResizeBilinear:0`` so the graph's
                own Sub/Mul scaling and network apply.

        Returns:
            float32 [N, 2048], the graph's ``pool_3:0`` per frame.

        Raises:
            ValueError: If ``resized`` does not have shape [N, 299, 299, 3].
        """
        resized = np.asarray(resized, dtype=np.float32)
        if resized.ndim != 4 or resized.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"expected frames resized by resize_frame, [N, {INPUT_SIZE}, {INPUT_SIZE}, 3]; "
                             f"got {list(resized.shape)}")
        count = resized.shape[0]
        if count == 0:
            return np.zeros((0, FEATURE_SIZE), np.float32)
        if self._chunk is None:
            self._chunk = inference_chunk()
        if count <= self._chunk:
            return self._batched(tf.constant(resized)).numpy().reshape(count, FEATURE_SIZE)
        out = np.empty((count, FEATURE_SIZE), np.float32)
        for start in range(0, count, self._chunk):
            stop = min(count, start + self._chunk)
            out[start:stop] = self._batched(tf.constant(resized[start:stop])).numpy().reshape(stop - start,
                                                                                              FEATURE_SIZE)
        return out

    def reference(self, frame: np.ndarray) -> np.ndarray:
        """Features of one frame the way the YouTube-8M starter code computes them.

        The decoded frame goes to ``DecodeJpeg:0`` and the graph does everything else; the result
        is ``pool_3/_reshape:0``. Slow (one frame per call); used to check the batched path. The
        reference function is imported on first use.

        Args:
            frame: uint8 [H, W, 3] RGB frame.

        Returns:
            float32 [2048].
        """
        frame = _check_frame(frame)
        with self._reference_lock:
            if self._reference is None:
                self._reference = _imported_function(
                    _network_graph_def(self._graph_def, POOL_RESHAPE_NODE, source=self._source),
                    input_name=f"{DECODE_NODE}:0",
                    spec=tf.TensorSpec([None, None, 3], tf.uint8),
                    output_name=f"{POOL_RESHAPE_NODE}:0",
                )
        return self._reference(tf.constant(frame)).numpy().reshape(FEATURE_SIZE)


# --------------------------------------------------------------------------------------------
# Writing graphs in the official layout.


class _GraphBuilder:
    """Adds seeded-random conv blocks (Conv2D -> legacy batch norm -> Relu) to the default graph.

    The batch norm is a placeholder Identity that ``finish`` turns into a
    BatchNormWithGlobalNormalization NodeDef (Python refuses to create that op directly).
    """

    def __init__(self, seed: int, *, random_batch_norm: bool):
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
            node.op = _LEGACY_BATCH_NORM_OP
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


def _write_bytes_atomically(path: str, data: bytes) -> None:
    if "://" in path:  # Object stores publish an object only once it is fully written.
        with tf.io.gfile.GFile(path, "wb") as handle:
            handle.write(data)
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temp_path, 0o644)
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise


def _standin_network(builder: _GraphBuilder, x: tf.Tensor) -> tf.Tensor:
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


def _build_graph_def(network: Callable[[_GraphBuilder, tf.Tensor], tf.Tensor], *, seed: int,
                     random_batch_norm: bool) -> tf.compat.v1.GraphDef:
    builder = _GraphBuilder(seed, random_batch_norm=random_batch_norm)
    graph = tf.Graph()
    with graph.as_default():
        _official_output_handling(network(builder, _official_input_handling()))
    graph_def = builder.finish(graph)
    _strip_resize_defaults(graph_def)
    return graph_def


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
    graph_def = _build_graph_def(_standin_network, seed=seed, random_batch_norm=True)
    _write_bytes_atomically(path, graph_def.SerializeToString(deterministic=True))


def _inception_a(b: _GraphBuilder, x: tf.Tensor, pool_filters: int, name: str) -> tf.Tensor:
    with tf.compat.v1.name_scope(name):
        branch1x1 = b.conv(x, 64, (1, 1), name="conv")
        branch5x5 = b.conv(b.conv(x, 48, (1, 1), name="tower/conv"), 64, (5, 5), name="tower/conv_1")
        branch3x3 = b.conv(x, 64, (1, 1), name="tower_1/conv")
        branch3x3 = b.conv(branch3x3, 96, (3, 3), name="tower_1/conv_1")
        branch3x3 = b.conv(branch3x3, 96, (3, 3), name="tower_1/conv_2")
        pool = tf.nn.avg_pool2d(x, 3, 1, "SAME", name="tower_2/pool")
        branch_pool = b.conv(pool, pool_filters, (1, 1), name="tower_2/conv")
        return tf.concat([branch1x1, branch5x5, branch3x3, branch_pool], 3, name="join")


def _reduction_a(b: _GraphBuilder, x: tf.Tensor, name: str) -> tf.Tensor:
    with tf.compat.v1.name_scope(name):
        branch3x3 = b.conv(x, 384, (3, 3), strides=2, padding="VALID", name="conv")
        branch3x3dbl = b.conv(x, 64, (1, 1), name="tower/conv")
        branch3x3dbl = b.conv(branch3x3dbl, 96, (3, 3), name="tower/conv_1")
        branch3x3dbl = b.conv(branch3x3dbl, 96, (3, 3), strides=2, padding="VALID", name="tower/conv_2")
        pool = tf.nn.max_pool2d(x, 3, 2, "VALID", name="pool")
        return tf.concat([branch3x3, branch3x3dbl, pool], 3, name="join")


def _inception_b(b: _GraphBuilder, x: tf.Tensor, channels: int, name: str) -> tf.Tensor:
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


def _reduction_b(b: _GraphBuilder, x: tf.Tensor, name: str) -> tf.Tensor:
    with tf.compat.v1.name_scope(name):
        branch3x3 = b.conv(x, 192, (1, 1), name="tower/conv")
        branch3x3 = b.conv(branch3x3, 320, (3, 3), strides=2, padding="VALID", name="tower/conv_1")
        branch7x7x3 = b.conv(x, 192, (1, 1), name="tower_1/conv")
        branch7x7x3 = b.conv(branch7x7x3, 192, (1, 7), name="tower_1/conv_1")
        branch7x7x3 = b.conv(branch7x7x3, 192, (7, 1), name="tower_1/conv_2")
        branch7x7x3 = b.conv(branch7x7x3, 192, (3, 3), strides=2, padding="VALID", name="tower_1/conv_3")
        pool = tf.nn.max_pool2d(x, 3, 2, "VALID", name="pool")
        return tf.concat([branch3x3, branch7x7x3, pool], 3, name="join")


def _inception_c(b: _GraphBuilder, x: tf.Tensor, name: str) -> tf.Tensor:
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


def _inception_v3_network(b: _GraphBuilder, x: tf.Tensor) -> tf.Tensor:
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
    return _build_graph_def(_inception_v3_network, seed=seed, random_batch_norm=False)


def write_synthetic_graph(path: str, *, seed: int) -> None:
    """Writes ``synthetic_graph_def(seed=seed)`` as a binary GraphDef, atomically.

    Used by ``--models synthetic``: same architecture, input handling, node names and cost
    (about 5.7 GFLOPs per frame) as the official graph, so runs and benchmarks exercise the real
    code paths offline; its features are meaningless.

    Args:
        path: Where to write (local or gs://).
        seed: Seed of the random weights; the same seed gives the same features.
    """
    _write_bytes_atomically(path, synthetic_graph_def(seed=seed).SerializeToString(deterministic=True))


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
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(directory)}.tmp-")
    try:
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
        for name in os.listdir(staging):
            os.chmod(os.path.join(staging, name), 0o644)
        os.chmod(staging, 0o755)
        try:
            os.replace(staging, directory)
        except OSError:
            # Another writer renamed its copy first (the destination is no longer empty).
            if not _check_existing(directory, seed):
                raise
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
