"""Inception-v3 RGB frame features from the 2015-12-05 frozen graph: loading, checking, running.

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

Graphs in this layout with random weights (``--models synthetic``) are written by
``pipeline.features.synthetic_inception``. Importing this module changes no TensorFlow setting:
thread pools and GPU memory are set by ``pipeline.features.tf_setup.configure``, which the model and
the decoder call before their first op.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from google.protobuf import message as protobuf_message

from pipeline.dataset import fileio
from pipeline.errors import ModelArtifactError
from pipeline.features import tf_setup

INPUT_SIZE = 299
FEATURE_SIZE = 2048

GRAPH_FILE_NAME = "classify_image_graph_def.pb"

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

LEGACY_BATCH_NORM_OP = "BatchNormWithGlobalNormalization"

_FLAG = "--rgb_graph"
_WHAT = (f"the frozen Inception-v3 GraphDef {GRAPH_FILE_NAME} from inception-2015-12-05.tgz "
         f"(pass it with {_FLAG}, a local path or gs:// URL)")
# Batch size used by verify_graph_def to prove the network is batch-agnostic up to pool_3.
_PROBE_BATCH = 2

# Frames per graph call inside one batched call (features do not depend on it). Default: the
# whole batch (--rgb_batch_size). Measured on 2 CPU cores, sub-batches of 4 were no faster
# (0.8x-1.3x, within noise; benchmarks/run.py reports it), so it stays a knob, e.g. to bound
# activation memory on a small GPU.
INCEPTION_CHUNK_ENV = "YT8M_INCEPTION_CHUNK"


def inference_chunk() -> int:
    """Frames per Inception-v3 graph call: YT8M_INCEPTION_CHUNK when set, else the whole batch."""
    value = tf_setup.env_int(INCEPTION_CHUNK_ENV)
    return value if value is not None and value > 0 else 1 << 30


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
        if not fileio.exists(path):
            raise ModelArtifactError(f"Inception-v3 graph {path} does not exist; expected {_WHAT}.")
        if fileio.isdir(path):
            raise ModelArtifactError(f"Inception-v3 graph {path} is a directory; expected the file inside it: {_WHAT}.")
        data = fileio.read_bytes(path)
    except ModelArtifactError:
        raise
    except Exception as error:  # pylint: disable=broad-except  (OSError, BeamIOError: they vary by file system)
        raise ModelArtifactError(
            f"Cannot read Inception-v3 graph {path} ({error}); expected {_WHAT}.") from error
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
    if not any(node.op == LEGACY_BATCH_NORM_OP for node in graph_def.node):
        return graph_def
    names = {node.name for node in graph_def.node}
    rewritten = tf.compat.v1.GraphDef()
    rewritten.versions.CopyFrom(graph_def.versions)
    rewritten.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.op != LEGACY_BATCH_NORM_OP:
            rewritten.node.add().CopyFrom(node)
            continue
        dtype = tf.as_dtype(node.attr["T"].type) if "T" in node.attr else None
        data_inputs = [name for name in node.input if not name.startswith("^")]
        controls = [name for name in node.input if name.startswith("^")]
        if dtype not in (tf.float32, tf.float64, tf.float16) or len(data_inputs) != 5:
            raise ModelArtifactError(
                f"Inception-v3 graph {source}: node {node.name} ({LEGACY_BATCH_NORM_OP}) has type "
                f"{dtype.name if dtype else None} and {len(data_inputs)} inputs; only float batch norms with 5 "
                f"inputs can be loaded. Expected {_WHAT}.")
        t, mean, variance, beta, gamma = data_inputs
        prefix = f"{node.name}/_legacy_batch_norm"
        if any(name == prefix or name.startswith(prefix + "/") for name in names):
            raise ModelArtifactError(f"Inception-v3 graph {source}: node names under {prefix} are reserved for "
                                     f"loading {LEGACY_BATCH_NORM_OP}; expected {_WHAT}.")
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
        tf_setup.configure()  # before this process's first op, if it is the first
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
