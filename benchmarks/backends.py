"""Inference runtimes side by side: TensorFlow vs OpenVINO vs ONNX Runtime, FP32, same threads.

    pip install openvino==2026.4.1 onnxruntime==1.32.0 tf2onnx==1.17.0   # only for this benchmark
    python benchmarks/backends.py [--rounds 3] [--threads N] [--backends tensorflow openvino onnxruntime]
                                  [--work_dir DIR] [--json OUT]

Uses `--models synthetic` (the real Inception-v3 and VGGish architectures and compute, random
weights; generated once into --work_dir/models). Each other backend converts the same networks
the pipeline runs: the Inception-v3 GraphDef cut at ``ResizeBilinear:0`` (frames resized by
``inception.resize_frame``) up to ``pool_3:0``, and VGGish's traced function frozen to a GraphDef.
Reduced precision is turned off explicitly (OpenVINO's CPU plugin defaults to bf16 on CPUs with
AVX512_BF16, which this machine has); ``bf16_default`` rows show what that default would do.

What it prints, all from one process so that ratios share the machine's load:
  exactness   on ffmpeg-generated inputs of three kinds (moving test pattern, still colour, noise;
              sine, silence, noise for audio): max relative difference of pool_3 and of the VGGish
              embedding vs TensorFlow, and the share of quantized rgb/audio bytes equal and within +-1
  throughput  Inception-v3 images/s at batch 1 and 32, VGGish examples/s at batch 64, per round; the
              backends run interleaved (the order rotates each round) and each ratio vs TensorFlow is
              taken within a round, then the median and the range over rounds are printed
  memory      peak RSS of a child process per backend that loads both models and runs one batch of
              each (the TensorFlow import is in every child: the pipeline needs it anyway)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

BACKENDS = ("tensorflow", "openvino", "onnxruntime")
_PACKAGES = {"openvino": ("openvino",), "onnxruntime": ("onnxruntime", "tf2onnx")}
RGB_BATCH, AUDIO_BATCH = 32, 64  # the pipeline's defaults (--rgb_batch_size / --audio_batch_size)
KINDS = ("moving", "still", "noisy")


def _log(message: str) -> None:
    print(f"[backends {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def missing_packages(name: str) -> list[str]:
    """The packages a backend needs that are not installed (empty for TensorFlow)."""
    return [package for package in _PACKAGES.get(name, ()) if importlib.util.find_spec(package) is None]


# --------------------------------------------------------------------------------------------
# The networks as frozen GraphDefs, the form both converters read.


def inception_network(graph_path: str):
    """(GraphDef, input, output): the official-layout graph cut at ResizeBilinear:0, up to pool_3:0.

    The pipeline feeds frames already resized by ``inception.resize_frame`` at ``ResizeBilinear:0``;
    here that node becomes a float [N, 299, 299, 3] placeholder of the same name, so the graph's
    own Sub/Mul normalization and network stay in the converted model, and the string input and
    JPEG decoder (which neither converter needs) are pruned. Legacy batch norm is rewritten as the
    TensorFlow loader does.
    """
    from pipeline.features import inception, tf_setup  # pylint: disable=import-outside-toplevel

    tf_setup.configure()
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    graph_def = inception.load_graph_def(graph_path)
    inception.verify_graph_def(graph_def, source=graph_path)
    cut = tf.compat.v1.GraphDef()
    cut.versions.CopyFrom(graph_def.versions)
    cut.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.name != inception.RESIZE_NODE:
            cut.node.add().CopyFrom(node)
            continue
        placeholder = cut.node.add(name=inception.RESIZE_NODE, op="Placeholder")
        placeholder.attr["dtype"].type = tf.float32.as_datatype_enum
        placeholder.attr["shape"].shape.CopyFrom(
            tf.TensorShape([None, inception.INPUT_SIZE, inception.INPUT_SIZE, 3]).as_proto())
    network = inception._network_graph_def(  # pylint: disable=protected-access
        cut, inception.POOL_NODE, source=graph_path)
    return network, f"{inception.RESIZE_NODE}:0", f"{inception.POOL_NODE}:0"


def vggish_network(model):
    """(GraphDef, input, output): a loaded ``vggish.VGGish``'s traced function with its weights frozen in."""
    from tensorflow.python.framework import (  # pylint: disable=import-outside-toplevel
        convert_to_constants,
    )

    concrete = model._embed.get_concrete_function()  # pylint: disable=protected-access
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    return frozen.graph.as_graph_def(), frozen.inputs[0].name, frozen.outputs[0].name


# --------------------------------------------------------------------------------------------
# Backends: .rgb(resized [N, 299, 299, 3]) -> [N, 2048] pool_3, .audio(examples [N, 96, 64]) -> [N, 128].


class TensorFlowBackend:
    """The pipeline's own models (the reference)."""

    name = "tensorflow"
    has_audio = True

    def __init__(self, files, threads: int, **_):
        from pipeline.features import inception, vggish  # pylint: disable=import-outside-toplevel

        del threads  # set through the environment before TensorFlow's first op (main)
        self.inception = inception.InceptionV3Features.from_graph_def_file(files.rgb_graph)
        self.vggish = vggish.VGGish.from_checkpoint(files.audio_checkpoint, batch_size=AUDIO_BATCH)

    def rgb(self, resized):
        return self.inception(resized)

    def audio(self, examples):
        return self.vggish(examples)


class OpenVinoBackend:
    """OpenVINO's CPU plugin on the converted GraphDefs, FP32, one latency stream with all threads."""

    name = "openvino"
    has_audio = True

    def __init__(self, files, threads: int, *, reference: TensorFlowBackend, precision: str = "f32"):
        import openvino as ov  # pylint: disable=import-outside-toplevel

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        rgb_graph, _, _ = inception_network(files.rgb_graph)
        audio_graph, _, _ = vggish_network(reference.vggish)
        self._rgb = core.compile_model(ov.convert_model(rgb_graph), "CPU", config)
        self._audio = core.compile_model(ov.convert_model(audio_graph), "CPU", config)
        found = str(self._rgb.get_property("INFERENCE_PRECISION_HINT"))  # e.g. "<Type: 'float32'>"
        self.precision = found.split("'")[1] if "'" in found else found

    def rgb(self, resized):
        return self._rgb(resized)[0].reshape(len(resized), -1)

    def audio(self, examples):
        return self._audio(examples)[0]


class OnnxRuntimeBackend:
    """ONNX Runtime's CPU provider on a tf2onnx conversion of the Inception-v3 GraphDef, FP32.

    Inception-v3 only: tf2onnx 1.17 converting the frozen VGGish (288 MB of fc weights) grew to
    13.9 GB RSS and was killed by the kernel on this 24-GB machine, so VGGish is not measured here.
    """

    name = "onnxruntime"
    has_audio = False

    def __init__(self, files, threads: int, *, reference: TensorFlowBackend):
        import onnxruntime as ort  # pylint: disable=import-outside-toplevel
        import tf2onnx  # pylint: disable=import-outside-toplevel

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._sessions = []
        del reference
        for graph_def, input_name, output_name in (inception_network(files.rgb_graph),):
            proto, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=[input_name],
                                                      output_names=[output_name], opset=17)
            session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
            self._sessions.append((session, session.get_inputs()[0].name))

    def _run(self, index, batch):
        session, input_name = self._sessions[index]
        return session.run(None, {input_name: batch})[0]

    def rgb(self, resized):
        return self._run(0, resized).reshape(len(resized), -1)

    def audio(self, examples):
        raise NotImplementedError("VGGish is not converted for ONNX Runtime (see the class docstring)")


def load(name: str, files, threads: int, reference: TensorFlowBackend | None):
    if name == "tensorflow":
        return reference or TensorFlowBackend(files, threads)
    if name == "openvino":
        return OpenVinoBackend(files, threads, reference=reference)
    if name == "openvino_bf16_default":
        return OpenVinoBackend(files, threads, reference=reference, precision="")
    if name == "onnxruntime":
        return OnnxRuntimeBackend(files, threads, reference=reference)
    raise ValueError(name)


# --------------------------------------------------------------------------------------------
# Inputs of several kinds, made by ffmpeg.


def _ffmpeg_raw(source: str, args: list[str]) -> bytes:
    from pipeline.decode.probe import ffmpeg_exe  # pylint: disable=import-outside-toplevel

    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", source, *args, "-"]
    return subprocess.run(cmd, check=True, capture_output=True).stdout


def generated_frames(kind: str, count: int):
    """uint8 [count, 240, 320, 3] RGB frames: testsrc2 (moving), one colour (still) or random noise."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    source = {"moving": f"testsrc2=size=320x240:rate=2:duration={count}",
              "still": f"color=c=0x3a6ea5:size=320x240:rate=2:duration={count}",
              "noisy": f"testsrc2=size=320x240:rate=2:duration={count},noise=alls=100:allf=t+u"}[kind]
    raw = _ffmpeg_raw(source, ["-frames:v", str(count), "-f", "rawvideo", "-pix_fmt", "rgb24"])
    return np.frombuffer(raw, np.uint8).reshape(count, 240, 320, 3)


def generated_examples(kind: str, count: int):
    """float32 [count, 96, 64] log-mel examples of a 16 kHz sine, silence or white noise."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    from pipeline.features import audio  # pylint: disable=import-outside-toplevel

    seconds = count + 1
    source = {"moving": f"sine=frequency=440:sample_rate=16000:duration={seconds}",
              "still": f"anullsrc=r=16000:cl=mono:d={seconds}",
              "noisy": f"anoisesrc=r=16000:a=0.5:d={seconds}"}[kind]
    raw = _ffmpeg_raw(source, ["-ac", "1", "-ar", "16000", "-f", "f32le"])
    waveform = np.frombuffer(raw, np.float32)
    return audio.examples_at(waveform, [16000 * k for k in range(count)])


# --------------------------------------------------------------------------------------------


def _relative(found, reference) -> float:
    import numpy as np  # pylint: disable=import-outside-toplevel

    return float(np.max(np.abs(found - reference)) / max(float(np.max(np.abs(reference))), 1e-12))


def exactness(backends: dict, files, frames_per_kind: int) -> dict:
    """Each backend vs TensorFlow on generated inputs: float differences and quantized-byte agreement."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    from pipeline.features import (  # pylint: disable=import-outside-toplevel
        inception,  # pylint: disable=import-outside-toplevel
        postprocess,
        quantization,
    )

    rgb_pca = postprocess.RgbPca.from_dir(files.rgb_pca_dir)
    audio_pca = postprocess.AudioPca.from_npz(files.audio_pca)
    reference = backends["tensorflow"]
    results = {}
    for kind in KINDS:
        resized = np.stack([inception.resize_frame(frame) for frame in generated_frames(kind, frames_per_kind)])
        examples = generated_examples(kind, frames_per_kind)
        ref_pool, ref_embedding = reference.rgb(resized), reference.audio(examples)
        ref_rgb = quantization.quantize_rgb(rgb_pca.apply(ref_pool)).astype(np.int16)
        ref_audio = quantization.quantize_audio(audio_pca.apply(ref_embedding)).astype(np.int16)
        for name, backend in backends.items():
            if backend is reference:
                continue
            pool = backend.rgb(resized)
            rgb = quantization.quantize_rgb(rgb_pca.apply(pool)).astype(np.int16)
            row = {"pool_3_max_rel": _relative(pool, ref_pool), "rgb_equal": float(np.mean(rgb == ref_rgb)),
                   "rgb_within_1": float(np.mean(np.abs(rgb - ref_rgb) <= 1))}
            if backend.has_audio:
                embedding = backend.audio(examples)
                audio_bytes = quantization.quantize_audio(audio_pca.apply(embedding)).astype(np.int16)
                row.update({"vggish_max_rel": _relative(embedding, ref_embedding),
                            "audio_equal": float(np.mean(audio_bytes == ref_audio)),
                            "audio_within_1": float(np.mean(np.abs(audio_bytes - ref_audio) <= 1))})
            results.setdefault(name, {})[kind] = row
    return results


def _rate(fn, batch, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(batch)
    return calls * len(batch) / (time.perf_counter() - start)


def throughput(backends: dict, rounds: int, batch1_calls: int) -> dict:
    """Per round and backend: images/s at batch 1 and 32, VGGish examples/s at batch 64 (interleaved)."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 255, (RGB_BATCH, 299, 299, 3)).astype(np.float32)
    examples = rng.normal(0.0, 1.0, (AUDIO_BATCH, 96, 64)).astype(np.float32)
    names = list(backends)
    for name in names:  # first calls (graph optimization, plugin compilation) are not timed
        backends[name].rgb(frames[:1])
        backends[name].rgb(frames)
        if backends[name].has_audio:
            backends[name].audio(examples)
    per_round = []
    for index in range(rounds):
        order = names[index % len(names):] + names[:index % len(names)]
        row = {}
        for name in order:
            backend = backends[name]
            row[name] = {"rgb_b1_ips": _rate(backend.rgb, frames[:1], batch1_calls),
                         "rgb_b32_ips": _rate(backend.rgb, frames, 1)}
            if backend.has_audio:
                row[name]["vggish_b64_eps"] = _rate(backend.audio, examples, 1)
        per_round.append(row)
        _log(f"round {index + 1}/{rounds}: " + "; ".join(
            f"{name} " + " ".join(f"{key}={value:.2f}" for key, value in row[name].items()) for name in names))
    summary = {}
    for name in names:
        summary[name] = {}
        for key in per_round[0][name]:
            values = [row[name][key] for row in per_round]
            ratios = [row[name][key] / row["tensorflow"][key] for row in per_round]
            summary[name][key] = {"median": statistics.median(values), "ratio_median": statistics.median(ratios),
                                  "ratio_min": min(ratios), "ratio_max": max(ratios)}
    return {"rounds": per_round, "summary": summary}


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def child(name: str, files, threads: int) -> dict:
    """Peak RSS of one process that imports TensorFlow, loads both models on `name` and runs a batch of each."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    from pipeline.features import tf_setup  # pylint: disable=import-outside-toplevel

    tf_setup.configure()
    imported = _maxrss_mib()
    reference = TensorFlowBackend(files, threads)
    backend = load(name, files, threads, reference)
    if backend is not reference:
        del reference.inception  # the converted backend runs without it
        if backend.has_audio:
            del reference.vggish
        import gc  # pylint: disable=import-outside-toplevel

        gc.collect()
    loaded = _maxrss_mib()
    rng = np.random.default_rng(0)
    backend.rgb(rng.uniform(0, 255, (RGB_BATCH, 299, 299, 3)).astype(np.float32))
    if backend.has_audio:
        backend.audio(rng.normal(0.0, 1.0, (AUDIO_BATCH, 96, 64)).astype(np.float32))
    return {"after_import_mib": imported, "after_load_mib": loaded, "peak_mib": _maxrss_mib()}


def _set_threads(threads: int) -> None:
    from pipeline.features import tf_setup  # pylint: disable=import-outside-toplevel

    os.environ[tf_setup.INTRA_OP_THREADS_ENV] = str(threads)
    os.environ[tf_setup.INTER_OP_THREADS_ENV] = str(threads)


def main(argv: list[str] | None = None) -> int:
    from pipeline.features import registry, tf_setup  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS + ("openvino_bf16_default",),
                        default=list(BACKENDS))
    parser.add_argument("--threads", type=int, default=tf_setup.machine_cores(),
                        help="threads of every backend (default: the machine's cores, as the pipeline)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch1_calls", type=int, default=8)
    parser.add_argument("--frames_per_kind", type=int, default=8)
    parser.add_argument("--work_dir", default=os.path.join(tempfile.gettempdir(), "yt8m-bench-backends"))
    parser.add_argument("--skip_memory", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _set_threads(args.threads)
    files = registry.resolve(registry.ModelConfig(mode="synthetic", model_cache=os.path.join(args.work_dir, "models")))
    if args.child:
        print("RESULT " + json.dumps(child(args.child, files, args.threads)), flush=True)
        return 0
    names = ["tensorflow"] + [name for name in args.backends if name != "tensorflow"]
    for name in names:
        missing = missing_packages(name.split("_")[0])
        if missing:
            parser.error(f"backend {name} needs {' '.join(missing)}: pip install {' '.join(missing)} "
                         f"(versions in this file's docstring)")
    # Children first, one at a time, while this process holds no model: the converters' peaks are large
    # (several GB for VGGish) and the machine's memory is shared.
    memory = {}
    if not args.skip_memory:
        for name in names:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name, "--threads",
                                  str(args.threads), "--work_dir", args.work_dir],
                                 check=True, capture_output=True, text=True).stdout
            memory[name] = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            _log(f"memory {name}: " + " ".join(f"{key}={value:.0f}" for key, value in memory[name].items()))
    tf_setup.configure()
    backends, load_s = {}, {}
    for name in names:
        began = time.perf_counter()
        backends[name] = load(name, files, args.threads, backends.get("tensorflow"))
        load_s[name] = time.perf_counter() - began
        _log(f"{name}: loaded (and converted) in {load_s[name]:.1f} s")
    precision = {name: getattr(backend, "precision", "float32") for name, backend in backends.items()}
    exact = exactness(backends, files, args.frames_per_kind)
    for name, kinds in exact.items():
        for kind, row in kinds.items():
            _log(f"exactness {name} {kind}: " + " ".join(f"{key}={value:.3g}" for key, value in row.items()))
    speed = throughput(backends, args.rounds, args.batch1_calls)
    result = {"threads": args.threads, "cores": os.cpu_count(), "load_s": load_s, "precision": precision,
              "exactness": exact, "throughput": speed, "memory_mib": memory, "loadavg": os.getloadavg()}
    print(f"\nthreads={args.threads} rounds={args.rounds} loadavg(1,5,15)={os.getloadavg()}")
    print(f"{'backend':<24}{'precision':<11}{'metric':<16}{'median':>9}{'x TF (median)':>15}{'x TF range':>16}")
    for name, metrics in speed["summary"].items():
        for key, value in metrics.items():
            print(f"{name:<24}{precision[name]:<11}{key:<16}{value['median']:>9.2f}{value['ratio_median']:>15.2f}"
                  f"{value['ratio_min']:>9.2f}-{value['ratio_max']:.2f}")
    for name, kinds in exact.items():
        worst = {key: (min if "equal" in key or "within" in key else max)(row[key] for row in kinds.values())
                 for key in next(iter(kinds.values()))}
        print(f"{name:<24}worst over {'/'.join(KINDS)}: " + " ".join(f"{k}={v:.3g}" for k, v in worst.items()))
    for name, row in memory.items():
        print(f"{name:<24}memory MiB: " + " ".join(f"{k}={v:.0f}" for k, v in row.items()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
