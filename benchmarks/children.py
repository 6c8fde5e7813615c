"""Measurements that run in their own process: `python -m benchmarks.children KIND JSON_ARGS`.

Each prints one line `RESULT {json}` last on stdout; benchmarks/run.py parses it. A separate
process per measurement keeps TensorFlow's thread pools, caches and peak memory independent.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from pipeline.decode import probe


def _emit(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def _maxrss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def model_bound(args: dict) -> dict:
    """Inception-v3 frames/s and VGGish examples/s at the pipeline's batch sizes (models already loaded)."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    from pipeline.features import models, registry  # pylint: disable=import-outside-toplevel

    config = registry.ModelConfig(mode="synthetic", model_cache=args["model_cache"])
    files = registry.resolve(config)
    began = time.perf_counter()
    rgb = models.RgbFeaturizer(files)
    audio = models.AudioFeaturizer(files)
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 255, (args["rgb_batch"], 299, 299, 3)).astype(np.float32)
    examples = rng.normal(0.0, 1.0, (args["audio_batch"], 96, 64)).astype(np.float32)
    warm = time.perf_counter()
    rgb(frames)
    audio(examples)
    first_call_s = time.perf_counter() - warm
    load_s = warm - began

    def timed(fn, batch, min_s, min_calls):
        calls, start = 0, time.perf_counter()
        while calls < min_calls or time.perf_counter() - start < min_s:
            fn(batch)
            calls += 1
        return calls * len(batch) / (time.perf_counter() - start)

    rgb_fps = timed(rgb, frames, args["min_seconds"], 2)
    audio_eps = timed(audio, examples, args["min_seconds"] / 3, 3)
    return {"rgb_fps": rgb_fps, "audio_eps": audio_eps,
            "video_seconds_per_s": 1.0 / (1.0 / rgb_fps + 1.0 / audio_eps),
            "load_s": load_s, "first_call_s": first_call_s}


def baseline(args: dict) -> dict:
    """Reference-style extraction: OpenCV decodes every frame, one frame per second, one frame per model call.

    The way the YouTube-8M starter code's extractor works: RGB only, the frozen graph fed at
    DecodeJpeg:0 (InceptionV3Features.reference), same synthetic model as the pipeline.
    """
    import cv2  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel

    from pipeline.features import inception, registry  # pylint: disable=import-outside-toplevel

    files = registry.resolve(registry.ModelConfig(mode="synthetic", model_cache=args["model_cache"]))
    model = inception.InceptionV3Features.from_graph_def_file(files.rgb_graph)
    model.reference(np.zeros((360, 640, 3), np.uint8))  # import + first-call optimization, not timed
    seconds = frames_decoded = calls = 0
    decode_s = model_s = 0.0
    began = time.perf_counter()
    for path in args["videos"]:
        cap = cv2.VideoCapture(path)
        next_second = 0
        t0 = time.perf_counter()
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames_decoded += 1
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if t + 1e-6 < next_second:
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            t1 = time.perf_counter()
            decode_s += t1 - t0
            model.reference(rgb)
            calls += 1
            t0 = time.perf_counter()
            model_s += t0 - t1
            next_second = int(t) + 1
        decode_s += time.perf_counter() - t0
        seconds += next_second
        cap.release()
    wall = time.perf_counter() - began
    return {"video_seconds": seconds, "wall_s": wall, "video_seconds_per_s": seconds / wall,
            "frames_decoded": frames_decoded, "model_calls": calls, "decode_s": decode_s, "model_s": model_s}


def build(args: dict) -> dict:
    """Runs pipeline.cli.build.main in this process; wall time and peak RSS of this process and its children."""
    from pipeline.cli import build as build_module  # pylint: disable=import-outside-toplevel

    profile = args.get("profile")
    began = time.perf_counter()
    if profile:
        import cProfile  # pylint: disable=import-outside-toplevel

        profiler = cProfile.Profile()
        rc = profiler.runcall(build_module.main, args["argv"])
        profiler.dump_stats(profile)
    else:
        rc = build_module.main(args["argv"])
    wall = time.perf_counter() - began
    with open(os.path.join(args["output_dir"], "stats.json"), encoding="utf-8") as f:
        stats = json.load(f)
    return {"rc": rc, "wall_s": wall, "seconds_of_video": stats["seconds_of_video"],
            "steps_written": stats["steps_written"], "records_written": stats["records_written"],
            "failures": stats["failures"],
            "maxrss_self_mib": _maxrss_mib(resource.RUSAGE_SELF),
            "maxrss_children_mib": _maxrss_mib(resource.RUSAGE_CHILDREN)}


def fetch(args: dict) -> dict:
    """A 10-s section through pipeline.fetch.clips.fetch_clip vs whole download + libx264 re-encode."""
    from pipeline.fetch import clips as fetch_module  # pylint: disable=import-outside-toplevel
    from pipeline.testing.loopback import LoopbackServer  # pylint: disable=import-outside-toplevel

    start, end = args["start"], args["end"]
    work = tempfile.mkdtemp(prefix="fetch-bench-")
    try:
        served = os.path.join(work, "served")
        os.makedirs(os.path.join(served, "videos"))
        shutil.copyfile(args["source"], os.path.join(served, "videos", "benchmark01.mp4"))  # a symlink would
        # point outside the served root, which the server refuses
        source_bytes = os.path.getsize(args["source"])
        with LoopbackServer(served) as server:
            config = fetch_module.FetchConfig(url_template=server.url + "/videos/{id}.mp4", max_height=720,
                                              max_attempts=1)
            began = time.perf_counter()
            result = fetch_module.fetch_clip(video_id="benchmark01", start=start, end=end,
                                             work_dir=os.path.join(work, "section"), config=config)
            section = {"bytes": server.bytes_sent(), "seconds": time.perf_counter() - began,
                       "method": result.figures.method, "requests": len(server.requests),
                       "file_bytes": os.path.getsize(result.path)}
            server.requests.clear()
            began = time.perf_counter()
            whole = os.path.join(work, "whole.mp4")
            with urllib.request.urlopen(server.url + "/videos/benchmark01.mp4", timeout=60) as r, \
                    open(whole, "wb") as out:
                shutil.copyfileobj(r, out, 1 << 20)
            downloaded = time.perf_counter()
            cut = os.path.join(work, "cut.mp4")
            subprocess.run([probe.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                            "-ss", str(start), "-t", str(end - start), "-i", whole,
                            "-c:v", "libx264", "-c:a", "aac", cut], check=True)
            full = {"bytes": server.bytes_sent(), "seconds": time.perf_counter() - began,
                    "download_s": downloaded - began, "reencode_s": time.perf_counter() - downloaded,
                    "requests": len(server.requests), "source_bytes": source_bytes}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"section": section, "full": full}


def failfast(args: dict) -> dict:
    """Seconds until a build without usable model files exits 2: offline, and behind a stalled mirror.

    (Timing bounds the tests no longer assert: a loaded machine would flake them.)
    """
    import http.server  # pylint: disable=import-outside-toplevel
    import socket  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel

    from pipeline.cli import build as build_module  # pylint: disable=import-outside-toplevel

    real_getaddrinfo = socket.getaddrinfo

    def offline(host, *a, **kw):  # no DNS but loopback, as on a machine without network
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *a, **kw)

    class Stalled(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            time.sleep(10)  # accepts, never answers in time: a firewall that drops packets

        def log_message(self, *a):
            pass

    work = tempfile.mkdtemp(prefix="failfast-bench-")
    result = {}
    try:
        csv_path = os.path.join(work, "in.csv")
        with open(csv_path, "w", encoding="utf-8") as f:
            f.write("video,labels\nclip.mp4,a\n")
        socket.getaddrinfo = offline
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalled)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        cases = {"offline": [], "stalled_mirror": ["--model_base_url", f"http://127.0.0.1:{httpd.server_port}",
                                                   "--model_download_timeout", "0.5"]}
        for name, extra in cases.items():
            began = time.perf_counter()
            rc = build_module.main(["--input_csv", csv_path, "--output_dir", os.path.join(work, name), "--models",
                                    "yt8m", "--model_cache", os.path.join(work, name + "_cache"), *extra])
            result[name] = {"rc": rc, "seconds": time.perf_counter() - began}
        httpd.shutdown()
    finally:
        socket.getaddrinfo = real_getaddrinfo
        shutil.rmtree(work, ignore_errors=True)
    return result


def _extractor_reference():
    """tests/extractor_reference.py (the starter extractor's frame_iterator and quantize), loaded by path.

    By path rather than ``import tests...``: another installed distribution may own a top-level
    ``tests`` package, and the benchmark must run the very loop the tests compare against.
    """
    import importlib.util  # pylint: disable=import-outside-toplevel

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                        "extractor_reference.py")
    spec = importlib.util.spec_from_file_location("extractor_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def extractor(args: dict) -> dict:
    """The YouTube-8M starter extractor's way (extract_tfrecords_main.py), timed from this process's start.

    One process; OpenCV's frame_iterator (one frame per second, as tests/extractor_reference.py
    re-implements it); one Inception-v3 call per frame on the decoded uint8 frame at the graph's
    DecodeJpeg:0 (``InceptionV3Features.reference``); the extractor's PCA (its parameters loaded
    once, as its FeatureExtractor does) and Python-loop quantize per frame; zero audio bytes per
    frame (its default --insert_zero_audio_features), no audio decoding or model; one
    SequenceExample per video written to one TFRecord file. Times are epoch seconds (time.time())
    so the parent can measure from the moment it started this process.
    """
    marks = {"child_start": time.time()}
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from pipeline.features import inception, registry  # pylint: disable=import-outside-toplevel

    ref = _extractor_reference()
    marks["imported"] = time.time()
    files = registry.resolve(registry.ModelConfig(mode="synthetic", model_cache=args["model_cache"],
                                                  with_audio=False))
    model = inception.InceptionV3Features.from_graph_def_file(files.rgb_graph)
    pca_mean = np.load(os.path.join(files.rgb_pca_dir, "mean.npy"))[:, 0]
    pca_eigenvals = np.load(os.path.join(files.rgb_pca_dir, "eigenvals.npy"))[:1024, 0]
    pca_eigenvecs = np.load(os.path.join(files.rgb_pca_dir, "eigenvecs.npy")).T[:, :1024]
    marks["model_loaded"] = time.time()
    zero_audio = bytes(128)
    decode_s = infer_s = post_s = write_s = 0.0
    frames = clips = 0
    os.makedirs(os.path.dirname(args["output"]), exist_ok=True)
    with tf.io.TFRecordWriter(args["output"]) as writer:
        for video, labels in args["videos"]:
            rgb_bytes = []
            t0 = time.perf_counter()
            for _, _, frame in ref.frame_iterator(video, every_ms=1000.0, max_num_frames=300):
                t1 = time.perf_counter()
                features = model.reference(frame)  # one graph call per frame, fed at DecodeJpeg:0
                t2 = time.perf_counter()
                feats = (features - pca_mean).reshape((1, 2048)).dot(pca_eigenvecs).reshape((1024,))
                feats = (feats / np.sqrt(pca_eigenvals + 1e-4)).astype(np.float32)
                rgb_bytes.append(ref.quantize(feats))
                t3 = time.perf_counter()
                if "first_features" not in marks:
                    marks["first_features"] = time.time()
                decode_s += t1 - t0
                infer_s += t2 - t1
                post_s += t3 - t2
                frames += 1
                t0 = time.perf_counter()
            decode_s += time.perf_counter() - t0  # the read that ends the loop
            t4 = time.perf_counter()
            example = tf.train.SequenceExample(
                context=tf.train.Features(feature={
                    "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[video.encode()])),
                    "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=labels))}),
                feature_lists=tf.train.FeatureLists(feature_list={
                    "rgb": tf.train.FeatureList(feature=[
                        tf.train.Feature(bytes_list=tf.train.BytesList(value=[b])) for b in rgb_bytes]),
                    "audio": tf.train.FeatureList(feature=[
                        tf.train.Feature(bytes_list=tf.train.BytesList(value=[zero_audio])) for _ in rgb_bytes])}))
            writer.write(example.SerializeToString())
            write_s += time.perf_counter() - t4
            clips += 1
            if "first_clip" not in marks:
                marks["first_clip"] = time.time()
    marks["end"] = time.time()
    return {"marks": marks, "clips": clips, "frames": frames, "decode_s": decode_s, "infer_s": infer_s,
            "pca_quantize_s": post_s, "write_s": write_s, "loop_s": marks["end"] - marks["model_loaded"]}


def dataset_model_bound(args: dict) -> dict:
    """Both models over a dataset's steps with no decoding, at the pipeline's batch sizes.

    Inception-v3 (the batched path plus PCA, as the pipeline's RgbFeaturizer runs it) on
    ``steps`` pre-resized float32 299x299 frames in batches of ``rgb_batch``, and VGGish plus
    PCA on ``steps`` log-mel examples in batches of ``audio_batch``: the time a perfect
    pipeline would spend in the models. Model load and the first call of each (graph
    optimization) are timed apart and not in the bound. Also says which GPUs TensorFlow sees.
    """
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from pipeline.features import models, registry  # pylint: disable=import-outside-toplevel

    files = registry.resolve(registry.ModelConfig(mode="synthetic", model_cache=args["model_cache"]))
    gpus = [device.name for device in tf.config.list_physical_devices("GPU")]
    steps, rgb_batch, audio_batch = args["steps"], args["rgb_batch"], args["audio_batch"]
    t0 = time.perf_counter()
    rgb = models.RgbFeaturizer(files)
    t1 = time.perf_counter()
    audio = models.AudioFeaturizer(files)
    t2 = time.perf_counter()
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 255, (rgb_batch, 299, 299, 3)).astype(np.float32)
    examples = rng.normal(0.0, 1.0, (audio_batch, 96, 64)).astype(np.float32)
    t3 = time.perf_counter()
    rgb(frames)
    t4 = time.perf_counter()
    audio(examples)
    t5 = time.perf_counter()

    def over_steps(fn, batch):
        began = time.perf_counter()
        for start in range(0, steps, len(batch)):
            fn(batch[:min(len(batch), steps - start)])
        return time.perf_counter() - began

    rgb_s = over_steps(rgb, frames)
    audio_s = over_steps(audio, examples)
    result = {"steps": steps, "gpus": gpus, "rgb_load_s": t1 - t0, "audio_load_s": t2 - t1,
              "rgb_first_call_s": t4 - t3, "audio_first_call_s": t5 - t4, "rgb_s": rgb_s, "audio_s": audio_s,
              "rgb_fps": steps / rgb_s, "audio_eps": steps / audio_s, "combined_s": rgb_s + audio_s}
    if gpus:  # batch 1 vs the pipeline's batches matters on an accelerator, where one call per frame leaves it idle
        count = min(steps, 100)
        began = time.perf_counter()
        for _ in range(count):
            rgb(frames[:1])
        result["rgb_fps_batch1"] = count / (time.perf_counter() - began)
    return result


KINDS = {"model_bound": model_bound, "baseline": baseline, "build": build, "fetch": fetch, "failfast": failfast,
         "extractor": extractor, "dataset_model_bound": dataset_model_bound}

if __name__ == "__main__":
    _emit(KINDS[sys.argv[1]](json.loads(sys.argv[2])))
