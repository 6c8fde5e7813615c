"""`--models yt8m` end to end on stand-ins of the official files, against a step-by-step reference.

The official artifacts cannot be fetched here (docs/spec.md §5), so the tests generate stand-ins with
the official names, shapes and layout: the tiny Inception-v3 stand-in graph, a seeded PCA, a
full-size VGGish checkpoint with random weights and a VGGish PCA. The pipeline (pipeline.cli.build.main
on the DirectRunner) must write the same bytes as the reference path run by hand: frames
decoded independently, Inception-v3 one frame at a time through the graph's own DecodeJpeg
input, RgbPca, quantize_rgb; audio through examples_per_second, VGGish, AudioPca,
quantize_audio. The same build must come out of the released archives in --model_dir and of a
download from a loopback server (--model_base_url), and with nothing available offline the
run must stop before it writes anything.
"""

from __future__ import annotations

import csv
import functools
import glob
import hashlib
import http.server
import json
import os
import socket
import tarfile
import threading

import extractor_reference
import numpy as np
import pytest
import references
import tensorflow as tf
from standins import write_standin_graph

from pipeline.cli import build
from pipeline.dataset import records
from pipeline.decode import media
from pipeline.features import artifact_store, inception, postprocess, quantization, registry, vggish
from pipeline.features.artifact_store import AUDIO_CHECKPOINT, AUDIO_PCA, PCA_ARCHIVE, RGB_PCA_FILES
from pipeline.testing import testvideo

SECONDS = 4


def _unit_rows(size: int, seed: int) -> np.ndarray:
    """Seeded random unit directions (a QR to make them orthonormal would only cost time)."""
    rows = np.random.default_rng(seed).standard_normal((size, size))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _decode(video: str) -> tuple[list[np.ndarray], np.ndarray]:
    """The clip's RGB step frames and 16 kHz waveform, decoded independently of the pipeline."""
    decoder = media.ClipDecoder(video, has_audio=True)
    steps = list(decoder.steps())
    num_steps = decoder.summary.num_steps
    frames = {step.step: step.frame for step in steps if step.step < num_steps}
    assert sorted(frames) == list(range(num_steps))
    return [frames[k] for k in range(num_steps)], decoder.summary.waveform


def _write_tgz(path: str, members: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for arcname, source in members.items():
            tar.add(source, arcname=arcname)


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """Stand-in artifacts in three layouts, and the reference bytes of one 4 s clip."""
    root = tmp_path_factory.mktemp("models_e2e")
    video = testvideo.generate_test_video(str(root / "clip.mp4"), seconds=SECONDS, audio=True)
    # The extractor's own frames: OpenCV's VideoCapture and its frame_iterator (docs/spec.md §2), RGB.
    frames = [np.ascontiguousarray(frame) for _, _, frame in extractor_reference.frame_iterator(video)]
    pipeline_frames, waveform = _decode(video)
    assert len(frames) == len(pipeline_frames) == SECONDS

    # 1. --model_dir with the extracted files and a V2 checkpoint.
    extracted = root / "extracted"
    extracted.mkdir()
    graph_path = str(extracted / artifact_store.RGB_GRAPH)
    write_standin_graph(graph_path, seed=3)
    model = inception.InceptionV3Features.from_graph_def_file(graph_path)
    reference = np.stack([model.reference(frame) for frame in frames])
    rows = _unit_rows(2048, seed=4)  # A seeded PCA whose whitened features spread over the bytes.
    variance = (((reference - reference.mean(axis=0)) @ rows.T) ** 2).mean(axis=0)
    order = np.argsort(-variance, kind="stable")
    eigenvals = np.maximum(variance[order] * 4.0, 1e-6)  # Spread of about +-0.5: no clipping.
    references.write_rgb_pca_dir(str(extracted), mean=reference.mean(axis=0).astype(np.float32),
                                  eigenvecs=rows[order].astype(np.float32), eigenvals=eigenvals.astype(np.float32))
    weights = vggish.random_weights(seed=5)
    vggish.write_checkpoint(str(extracted / AUDIO_CHECKPOINT), weights)
    embedder = vggish.VGGish.from_checkpoint(str(extracted / AUDIO_CHECKPOINT))
    calibration = embedder(vggish.calibration_examples(5))
    eigen_vectors = _unit_rows(128, seed=6)
    spread = np.sqrt(np.mean(((calibration - calibration.mean(axis=0)) @ eigen_vectors.T) ** 2))
    postprocess.write_audio_pca_npz(str(extracted / AUDIO_PCA),
                                    eigen_vectors=(eigen_vectors / spread).astype(np.float32),
                                    means=calibration.mean(axis=0).astype(np.float32))

    # 2. --model_dir with the released archives (the PCA members in a subfolder) and the same checkpoint.
    archives = root / "archives"
    archives.mkdir()
    _write_tgz(str(archives / artifact_store.INCEPTION_ARCHIVE), {artifact_store.RGB_GRAPH: graph_path})
    _write_tgz(str(archives / PCA_ARCHIVE),
               {f"yt8m_pca/{name}": str(extracted / name) for name in RGB_PCA_FILES})
    for name in os.listdir(extracted):
        if name.startswith(AUDIO_CHECKPOINT) or name == AUDIO_PCA:
            os.link(extracted / name, archives / name)

    # 3. What the official URLs serve: archives with the members at the top, a single-file V1 checkpoint.
    served = root / "served"
    served.mkdir()
    _write_tgz(str(served / artifact_store.INCEPTION_ARCHIVE), {artifact_store.RGB_GRAPH: graph_path})
    _write_tgz(str(served / PCA_ARCHIVE), {name: str(extracted / name) for name in RGB_PCA_FILES})
    names = list(vggish.VGGISH_VARIABLES)
    tf.raw_ops.Save(filename=str(served / AUDIO_CHECKPOINT), tensor_names=names,
                    data=[tf.constant(weights[name]) for name in names])
    os.link(extracted / AUDIO_PCA, served / AUDIO_PCA)

    # The reference path, one step at a time.
    # RGB as the extractor computes it: DecodeJpeg:0 -> pool_3/_reshape:0, its PCA, its quantize.
    extractor_rgb = np.stack([
        np.frombuffer(extractor_reference.quantize(
            extractor_reference.apply_pca(feature, str(extracted)).astype(np.float32)), np.uint8)
        for feature in reference])
    audio_pca = postprocess.AudioPca.from_npz(str(extracted / AUDIO_PCA))
    examples = references.examples_per_second(waveform, len(frames))
    audio_model = vggish.VGGish.from_checkpoint(str(extracted / AUDIO_CHECKPOINT))
    expected = {
        "rgb": extractor_rgb,
        "audio": quantization.quantize_audio(audio_pca.apply(audio_model(examples))),
    }
    return {"root": root, "video": video, "extracted": str(extracted), "archives": str(archives),
            "served": str(served), "expected": expected, "weights": weights}


def _build(standins, name: str, *extra: str) -> dict:
    """Runs pipeline.cli.build.main on the clip; returns the record's rgb and audio bytes and stats."""
    root = standins["root"]
    csv_path = root / f"{name}.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "labels"])
        writer.writerow([standins["video"], "tone"])
    out = root / f"out_{name}"
    assert build.main(["--input_csv", str(csv_path), "--output_dir", str(out), "--models", "yt8m",
                       "--model_cache", str(root / f"cache_{name}"), *extra]) == 0
    paths = sorted(glob.glob(os.path.join(out, "records", "*.tfrecord")))
    (record,) = [records.check_record(data) for data in tf.data.TFRecordDataset(paths).as_numpy_iterator()]
    stats = json.load(open(os.path.join(out, "stats.json")))
    return {"rgb": record.rgb, "audio": record.audio, "stats": stats, "record": record, "out": str(out)}


def _assert_matches_reference(built: dict, expected: dict) -> None:
    assert built["rgb"].shape == expected["rgb"].shape == (SECONDS, 1024)
    assert built["audio"].shape == expected["audio"].shape == (SECONDS, 128)
    # Audio: the same float ops on the same examples, so the bytes are identical.
    np.testing.assert_array_equal(built["audio"], expected["audio"])
    # RGB: the reference is the extractor's path (OpenCV frames, DecodeJpeg:0 one frame at a time,
    # its PCA and quantize); the pipeline decodes with ffmpeg and runs batches at ResizeBilinear:0.
    # Same frames and ops, but a batched convolution may sum in another order (and the two YUV->RGB
    # conversions may round a pixel differently), so a feature within float rounding of a
    # quantization boundary can round the other way: >= 99% of bytes equal, all within 1.
    difference = np.abs(built["rgb"].astype(np.int16) - expected["rgb"].astype(np.int16))
    assert difference.max() <= 1
    assert np.count_nonzero(difference) <= 0.01 * difference.size
    # The stand-ins make meaningful, unsaturated bytes (so equality is not trivially 0 or 255 everywhere).
    assert len(np.unique(built["rgb"])) > 50 and len(np.unique(built["audio"])) > 20


@pytest.fixture(scope="module")
def from_model_dir(standins):
    return _build(standins, "extracted", "--model_dir", standins["extracted"])


def test_model_dir_build_equals_the_reference_path(standins, from_model_dir):
    _assert_matches_reference(from_model_dir, standins["expected"])
    stats = from_model_dir["stats"]
    assert stats["synthetic"] is False
    assert stats["models"]["rgb"]["graph"] == os.path.join(standins["extracted"], artifact_store.RGB_GRAPH)


def test_released_archives_in_model_dir_give_the_same_records(standins, from_model_dir):
    built = _build(standins, "archives", "--model_dir", standins["archives"])
    np.testing.assert_array_equal(built["rgb"], from_model_dir["rgb"])
    np.testing.assert_array_equal(built["audio"], from_model_dir["audio"])
    sources = built["stats"]["models"]["sources"]
    assert sources["rgb_pca_dir"] == os.path.join(standins["archives"], PCA_ARCHIVE)


class _Requests(http.server.SimpleHTTPRequestHandler):
    log: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).log.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


def test_download_from_a_mirror_then_reuse_the_cache(standins, from_model_dir):
    handler = type("Handler", (_Requests,), {"log": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=standins["served"]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        built = _build(standins, "download", "--model_base_url", base_url)
        # One request per published file: the workers' model loading found the cache and downloaded nothing.
        assert sorted(handler.log) == sorted(f"/{name}" for name in (
            artifact_store.INCEPTION_ARCHIVE, PCA_ARCHIVE, AUDIO_CHECKPOINT, AUDIO_PCA))
        np.testing.assert_array_equal(built["rgb"], from_model_dir["rgb"])
        np.testing.assert_array_equal(built["audio"], from_model_dir["audio"])
        assert built["stats"]["models"]["sources"]["audio_checkpoint"] == f"{base_url}/{AUDIO_CHECKPOINT}"
        # A second resolution (another process or run) reuses the cache: no network request.
        config = registry.ModelConfig(model_cache=str(standins["root"] / "cache_download"), model_base_url=base_url)
        files = registry.resolve(config)
        assert len(handler.log) == 4
        # The cached checkpoint is the served single-file (V1) one and loads by variable name.
        with open(files.audio_checkpoint, "rb") as cached, open(
                os.path.join(standins["served"], AUDIO_CHECKPOINT), "rb") as served:
            assert hashlib.sha256(cached.read()).digest() == hashlib.sha256(served.read()).digest()
    finally:
        server.shutdown()
        server.server_close()


def test_offline_without_artifacts_fails_before_any_work(standins, monkeypatch, capsys):
    """No --model_dir, an empty cache and no network: exit 2 in seconds, naming files and flags."""
    real_getaddrinfo = socket.getaddrinfo

    def offline(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    root = standins["root"]
    csv_path = root / "offline.csv"
    csv_path.write_text(f"video,labels\n{standins['video']},tone\n")
    out = root / "out_offline"
    code = build.main(["--input_csv", str(csv_path), "--output_dir", str(out), "--models", "yt8m",
                       "--model_cache", str(root / "cache_offline")])
    assert code == 2
    message = capsys.readouterr().err
    for expected in ("classify_image_graph_def.pb", "inception-2015-12-05.tgz", "mean.npy", "yt8m_pca.tgz",
                     "vggish_model.ckpt", "vggish_pca_params.npz", "https://storage.googleapis.com/audioset/",
                     "--model_dir", "--rgb_graph", "--audio_pca", "--no_download", "--model_base_url"):
        assert expected in message
    assert not out.exists()  # nothing was written: the run stopped before the pipeline was built
    assert not [name for name in os.listdir(root / "cache_offline" / "yt8m") if not name.startswith(".locks")]


def test_v1_and_v2_checkpoints_load_the_same_weights(standins):
    v1 = os.path.join(standins["served"], AUDIO_CHECKPOINT)
    v2 = os.path.join(standins["extracted"], AUDIO_CHECKPOINT)
    assert not os.path.exists(v1 + ".index") and os.path.exists(v2 + ".index")
    vggish.verify_checkpoint(v1)
    reader = tf.train.load_checkpoint(v1)
    for name in ("vggish/conv1/weights", "vggish/fc2/biases"):
        np.testing.assert_array_equal(reader.get_tensor(name), standins["weights"][name])


@pytest.fixture(scope="module")
def rgb_only_dir(standins):
    """A --model_dir with the Inception graph and PCA only: no VGGish file anywhere."""
    rgb_only = standins["root"] / "rgb_only"
    rgb_only.mkdir()
    for name in (artifact_store.RGB_GRAPH, *RGB_PCA_FILES):
        os.link(os.path.join(standins["extracted"], name), rgb_only / name)
    return str(rgb_only)


def test_audio_zeros_writes_the_extractors_zero_audio_without_vggish(standins, from_model_dir, rgb_only_dir):
    built = _build(standins, "zeros", "--model_dir", rgb_only_dir, "--audio", "zeros")
    np.testing.assert_array_equal(built["rgb"], from_model_dir["rgb"])
    # --insert_zero_audio_features: 128 zero bytes per step and mean_audio of 128 zeros.
    assert built["audio"].shape == (SECONDS, 128) and not built["audio"].any()
    np.testing.assert_array_equal(built["record"].mean_audio, np.zeros(128, np.float32))
    assert built["stats"]["models"]["audio"]["checkpoint"] == ""


def test_video_level_output_has_context_only_and_inspect_reads_it(standins, from_model_dir, rgb_only_dir, capsys):
    from pipeline.cli import inspect, report

    built = _build(standins, "video_level", "--model_dir", rgb_only_dir, "--audio", "zeros",
                   "--skip_frame_level_features")
    record = built["record"]
    assert record.video_level and record.rgb.shape == (0, 1024) and record.audio.shape == (0, 128)
    assert sorted(record.context_keys) == ["duration_us", "end_us", "id", "label_names", "labels", "mean_audio",
                                           "mean_rgb", "source", "start_us"]
    # mean_rgb is the mean of the float features, the same as the frame-level record's.
    np.testing.assert_allclose(record.mean_rgb, from_model_dir["record"].mean_rgb, atol=1e-5)
    assert not record.mean_audio.any()
    # The YouTube-8M video-level reader's parsing spec (a tf.train.Example) reads it.
    (path,) = glob.glob(os.path.join(built["out"], "records", "*.tfrecord"))
    (data,) = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    parsed = tf.io.parse_single_example(data, {
        "id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64),
        "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32), "mean_audio": tf.io.FixedLenFeature([128], tf.float32)})
    np.testing.assert_allclose(parsed["mean_rgb"].numpy(), record.mean_rgb)
    assert inspect.main([built["out"]]) == 0
    assert "video-level records: 1" in capsys.readouterr().out
    assert report.main([built["out"], "--out", os.path.join(built["out"], "report.html")]) == 0


def test_frames_per_second_flag_gives_the_extractors_steps(standins, from_model_dir, rgb_only_dir):
    built = _build(standins, "fps2", "--model_dir", rgb_only_dir, "--audio", "zeros", "--frames_per_second", "2")
    expected = list(extractor_reference.frame_iterator(standins["video"], every_ms=500.0))
    assert built["rgb"].shape == (len(expected), 1024) and len(expected) == 2 * SECONDS
    np.testing.assert_array_equal(built["rgb"][0], from_model_dir["rgb"][0])  # step 0 is frame 0 either way
