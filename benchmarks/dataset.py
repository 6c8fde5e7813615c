"""The dataset-scale speed case of benchmarks/run.py (`--only dataset`).

N Kinetics-like clips (default 40: 10 s, 640x360, 30 fps, AAC audio) go through, in one run:

* the starter extractor's way (children.extractor): one process, OpenCV frame_iterator, one
  Inception-v3 call per frame at DecodeJpeg:0, PCA + quantize per frame, no audio;
* the model bound (children.dataset_model_bound): Inception-v3 and VGGish over the dataset's
  steps at the pipeline's batch sizes, nothing decoded;
* `python -m pipeline.build` as a user runs it, in a subprocess: `--audio zeros` and VGGish
  with the default runner (in_memory, 1 worker) and with
  `--direct_running_mode=multi_processing --direct_num_workers=2`; and `--audio zeros` with
  `--direct_running_mode=multi_processing --direct_num_workers=1`, so that what a second worker
  costs shows apart from what the multi-process runner costs.

All use the same synthetic model files (`--models synthetic` in the work dir's model cache:
the real architectures and compute with seeded random weights, the official file layout) and
the same headerless extractor-format CSV. The clip is generated once by ffmpeg and copied N
times (identical content, distinct ids), cached in the work dir.

Start-up is measured from the moment the benchmark starts the process: for the extractor to
its first frame's features and to its first clip's record; for a build to the first progress
line that counts a decoded clip (DecodeClips reports a clip once all its frames have gone
downstream, where the models run on them as batches form; records are only written at the
end), with "process time minus the summary's wall_seconds" (what happens before and after
the pipeline itself) shown beside it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time

from pipeline.testing import testvideo

RUNS = ("zeros_w1", "vggish_w1", "zeros_w2", "vggish_w2", "zeros_mp1")
_RUN_NAME = r"(zeros|vggish)_(w|mp)(\d+)"
CLIP_SECONDS, CLIP_SIZE, CLIP_FPS = 10, "640x360", 30

# The targets this case is judged by (docs/benchmarks.md, "verdicts").
ZEROS_VS_EXTRACTOR = 1.15  # --audio zeros at least 1.15x the extractor's speed
VGGISH_VS_BOUND = 0.95  # with VGGish at least 0.95x the combined model bound
WORKERS_2_VS_1 = 1.0  # 2 workers never slower than 1
STARTUP_VS_EXTRACTOR = 1.5  # start-up at most 1.5x the extractor's

_PROGRESS = re.compile(r"progress: \d+(?:/\d+)? rows done \((?P<decoded>\d+) decoded")
_WALL = re.compile(r"^wall_seconds\s+(?P<s>[\d,.]+)\s*$")
_MODEL_LOAD = re.compile(r"Loading (?P<name>rgb|audio) model")


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_run_name(name: str) -> tuple[str, int]:
    """'zeros_w1' -> ('zeros', 1): the audio mode and the worker processes; see :func:`multi_processing`."""
    match = re.fullmatch(_RUN_NAME, name)
    if not match or int(match.group(3)) < 1:
        raise ValueError(f"dataset run {name!r}: expected zeros_wN, vggish_wN, zeros_mpN or vggish_mpN, N >= 1")
    return match.group(1), int(match.group(3))


def multi_processing(name: str) -> bool:
    """Whether run `name` uses the multi_processing runner: _wN with N > 1, and every _mpN (N workers).

    _w1 is the default runner (in_memory, the models in the launcher's process).
    """
    _, workers = parse_run_name(name)
    return workers > 1 or "_mp" in name


def _runner(name: str) -> str:
    """'zeros_w2' -> '2 worker(s)'; 'zeros_mp1' -> '1 worker(s), multi_processing'."""
    workers = parse_run_name(name)[1]
    return f"{workers} worker(s)" + (", multi_processing" if workers == 1 and multi_processing(name) else "")


def make_inputs(work_dir: str, clips: int) -> tuple[str, list[tuple[str, list[int]]]]:
    """Generates the clip once, copies it `clips` times; returns the CSV and (path, labels) per clip."""

    directory = os.path.join(work_dir, "inputs", "dataset")
    os.makedirs(directory, exist_ok=True)
    source = os.path.join(directory, f"source_{CLIP_SIZE}_{CLIP_FPS}fps_{CLIP_SECONDS}s.mp4")
    if not os.path.exists(source):
        _log(f"generating {source}")
        tmp = source + ".tmp.mp4"
        testvideo.generate_test_video(tmp, seconds=CLIP_SECONDS, size=CLIP_SIZE, rate=CLIP_FPS, audio=True)
        os.replace(tmp, source)
    videos = []
    for i in range(clips):
        path = os.path.join(directory, f"clip{i:03d}.mp4")
        if not os.path.exists(path):
            shutil.copyfile(source, path + ".tmp")
            os.replace(path + ".tmp", path)
        videos.append((path, [i % 7, 10 + i % 3]))
    csv_path = os.path.join(directory, f"dataset_{clips}.csv")
    with open(csv_path, "w", encoding="utf-8") as f:  # the extractor's headerless video_file,labels format
        for path, labels in videos:
            f.write(f"{path},{';'.join(str(label) for label in labels)}\n")
    return csv_path, videos


def timed_build(argv: list[str], *, repo: str, log_path: str, timeout: float = 7200) -> dict:
    """Runs `python -m pipeline.build ARGV` as a user would; times it from process start.

    Its output (stdout and stderr together) goes to `log_path`, each line prefixed with the
    seconds since the start; progress lines are printed as soon as a clip is counted
    (VIDEO_FEATURES_PROGRESS_SECONDS=0, stderr is not a terminal).

    Returns:
        rc, process_s (start to exit), wall_seconds (the run summary's), first_decoded_s (start to
        the first progress line with a decoded clip), model_load_s (start to the first "Loading
        ... model" line, when logged), cpu_s (user + system of the process and the worker
        processes it waited for) and maxrss_mib.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["VIDEO_FEATURES_PROGRESS_SECONDS"] = "0"
    found: dict = {"wall_seconds": None, "first_decoded_s": None, "model_load_s": {}}
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.build", *argv], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            for line in proc.stdout:
                now = time.perf_counter() - began
                log.write(f"{now:9.2f}  {line}")
                progress = _PROGRESS.search(line)
                if progress and found["first_decoded_s"] is None and int(progress.group("decoded")) >= 1:
                    found["first_decoded_s"] = now
                wall = _WALL.match(line.strip())
                if wall:
                    found["wall_seconds"] = float(wall.group("s").replace(",", ""))
                load = _MODEL_LOAD.search(line)
                if load:
                    found["model_load_s"].setdefault(load.group("name"), now)
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        proc.stdout.close()
    process_s = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or found["wall_seconds"] is None:
        with open(log_path, encoding="utf-8") as f:
            tail = f.read()[-4000:]
        raise RuntimeError(f"pipeline.build {' '.join(argv)} failed (rc {proc.returncode}); log {log_path}:\n{tail}")
    return {"rc": proc.returncode, "process_s": process_s, "wall_seconds": found["wall_seconds"],
            "first_decoded_s": found["first_decoded_s"], "model_load_s": found["model_load_s"],
            "outside_pipeline_s": process_s - found["wall_seconds"],
            "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_mib": usage.ru_maxrss / 1024.0, "log": log_path}


def run_dataset(cfg, child, model_cache: str, rgb_batch: int, audio_batch: int) -> dict:
    """The whole case: extractor, model bound, then each build of cfg.dataset_runs. `child` is run._child."""
    import json  # pylint: disable=import-outside-toplevel

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    clips = cfg.dataset_clips
    csv_path, videos = make_inputs(cfg.work_dir, clips)
    out_root = os.path.join(cfg.work_dir, "out", "dataset")
    os.makedirs(out_root, exist_ok=True)
    results: dict = {"clips": clips, "input": f"{clips} x {CLIP_SECONDS}-s {CLIP_SIZE} {CLIP_FPS}-fps clips with audio",
                     "csv": csv_path, "rgb_batch": rgb_batch, "audio_batch": audio_batch}

    _log(f"dataset: starter-extractor-style run over {clips} clips")
    ext = child("extractor", {"model_cache": model_cache, "videos": videos,
                              "output": os.path.join(out_root, "extractor", "extractor.tfrecord")})
    marks, spawn = ext["marks"], ext["spawn_epoch"]
    ext.update({"process_s": ext["process_wall_s"], "import_s": marks["imported"] - spawn,
                "model_loaded_s": marks["model_loaded"] - spawn, "first_features_s": marks["first_features"] - spawn,
                "first_clip_s": marks["first_clip"] - spawn})
    results["extractor"] = ext
    steps = ext["frames"]  # the pipeline writes the same steps (tests/e2e/test_models_e2e.py checks the selection)

    _log(f"dataset: model bound over {steps} steps (batches of {rgb_batch} frames / {audio_batch} examples)")
    results["model_bound"] = child("dataset_model_bound", {"model_cache": model_cache, "steps": steps,
                                                           "rgb_batch": rgb_batch, "audio_batch": audio_batch})
    for name in cfg.dataset_runs:
        audio, workers = parse_run_name(name)
        out = os.path.join(out_root, name)
        argv = ["--input_csv", csv_path, "--output_dir", out, "--models", "synthetic", "--model_cache", model_cache,
                "--overwrite", "--audio", audio]
        if multi_processing(name):
            argv += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
        _log(f"dataset: python -m pipeline.build --audio {audio}, {_runner(name)}")
        run = timed_build(argv, repo=repo, log_path=os.path.join(out_root, f"{name}.log"))
        with open(os.path.join(out, "stats.json"), encoding="utf-8") as f:
            stats = json.load(f)
        run.update({"argv": argv, "records_written": stats["records_written"], "steps_written": stats["steps_written"],
                    "failures": stats["failures"], "seconds_of_video": stats["seconds_of_video"]})
        if run["records_written"] != clips or run["failures"]:
            raise RuntimeError(f"dataset run {name}: {run['records_written']} records and {run['failures']} "
                               f"failures for {clips} clips; see {out}")
        results[name] = run
    if getattr(cfg, "profile", False):
        results["profile"] = run_dataset_profile(cfg, child, model_cache, csv_path, out_root)
    return results


# Where a build's time goes, from a cProfile of an in-process run: label -> (file name end, function).
# Seconds are cumulative (a call's callees included), so shares overlap; `calls` of the model
# entries is the number of batches RunInference formed (a generator counts each resumption).
PROFILE_ENTRIES = {
    "TensorFlow import (launcher)": ("logs.py", "import_tensorflow"),
    "pipeline run (Pipeline.run)": ("fn_runner.py", "run_pipeline"),
    "bundle set-up (DoFn setup, model load)": ("bundle_processor.py", "__init__"),
    "model load (load_model)": ("inference.py", "load_model"),
    "  graph check (verify_graph_def)": ("inception.py", "verify_graph_def"),
    "  graph import (_imported_function)": ("inception.py", "_imported_function"),
    "RunInference batches (model + PCA)": ("inference.py", "run_inference"),
    "  Inception-v3 graph calls": ("inception.py", "__call__"),
    "  VGGish graph calls": ("vggish.py", "__call__"),
    "  resize_frame (model step)": ("inception.py", "resize_frame"),
    "  PCA (postprocess apply)": ("postprocess.py", "apply"),
    "DecodeClips.process (probe, decode)": ("decode.py", "process"),
    "  probe (ffmpeg -i)": ("probe.py", "probe"),
    "  frame steps (ClipDecoder.steps)": ("media.py", "steps"),
    "  log-mel examples (examples_at)": ("audio.py", "examples_at"),
}


def profile_breakdown(path: str) -> dict:
    """Seconds (cumulative), share of the whole and calls of each PROFILE_ENTRIES function in a cProfile dump."""
    import pstats  # pylint: disable=import-outside-toplevel

    stats = pstats.Stats(path)
    total = max(stat[3] for stat in stats.stats.values())  # cumulative time of the outermost call
    shares = {}
    for label, (file_end, func) in PROFILE_ENTRIES.items():
        found = [stat for (file, _, name), stat in stats.stats.items() if file.endswith(file_end) and name == func]
        if found:
            seconds = sum(stat[3] for stat in found)
            shares[label] = {"seconds": seconds, "share": seconds / total if total else 0.0,
                             "calls": sum(stat[1] for stat in found)}
    return {"profiled_s": total, "breakdown": shares}


def run_dataset_profile(cfg, child, model_cache: str, csv_path: str, out_root: str) -> dict:
    """cProfile of an in-process (in_memory, 1 worker) VGGish build of the dataset CSV."""
    out = os.path.join(out_root, "profile")
    prof = os.path.join(out_root, "build.prof")
    argv = ["--input_csv", csv_path, "--output_dir", out, "--models", "synthetic", "--model_cache", model_cache,
            "--overwrite"]
    _log("dataset: cProfile of an in-process build (VGGish, 1 worker)")
    result = child("build", {"argv": argv, "output_dir": out, "profile": prof})
    result.update(profile_breakdown(prof))
    result["prof"] = prof
    return result


def _ratio_row(label: str, ratio: float, target: str, ok: bool, note: str = "") -> tuple[str, str, str]:
    return (label, f"{ratio:.2f}", f"{target} {'PASS' if ok else 'MISS'}" + (f"  {note}" if note else ""))


def summarize(data: dict) -> list[tuple[str, str, str]]:
    """Rows (figure, value, target/verdict) of the dataset case."""
    rows: list[tuple[str, str, str]] = [(f"DATASET CASE: {data['input']}", "", "")]
    ext, bound = data["extractor"], data["model_bound"]
    gpus = bound.get("gpus") or []
    rows.append(("  GPU (tf.config.list_physical_devices)", ", ".join(gpus) if gpus else "none",
                 "" if gpus else "CPU only: GPU figures were not measured"))
    rows.append((f"  extractor-style: process time, {ext['clips']} clips / {ext['frames']} frames (s)",
                 f"{ext['process_s']:.1f}",
                 f"CPU {ext['process_cpu_s']:.0f} s; decode {ext['decode_s']:.1f} s, Inception {ext['infer_s']:.1f} s "
                 f"({ext['frames'] / max(ext['infer_s'], 1e-9):.2f} frames/s at batch 1), "
                 f"PCA+quantize {ext['pca_quantize_s']:.1f} s"))
    rows.append(("  extractor-style start-up: model loaded / first frame's features / first clip (s)",
                 f"{ext['model_loaded_s']:.1f} / {ext['first_features_s']:.1f} / {ext['first_clip_s']:.1f}",
                 f"(imports {ext['import_s']:.1f} s)"))
    rows.append((f"  model bound: Inception-v3 frames/s (batch {data.get('rgb_batch', 32)}) / "
                 f"VGGish examples/s (batch {data.get('audio_batch', 64)})",
                 f"{bound['rgb_fps']:.2f} / {bound['audio_eps']:.1f}",
                 f"load {bound['rgb_load_s'] + bound['audio_load_s']:.1f} s, first call of each (one batch) "
                 f"{bound['rgb_first_call_s'] + bound['audio_first_call_s']:.1f} s: not in the bound"))
    if "rgb_fps_batch1" in bound:
        rows.append(("  GPU: Inception-v3 frames/s at batch 1 vs the pipeline's batch",
                     f"{bound['rgb_fps_batch1']:.1f} vs {bound['rgb_fps']:.1f}", ""))
    rows.append((f"  model bound over {bound['steps']} steps: RGB only / RGB + VGGish (s)",
                 f"{bound['rgb_s']:.1f} / {bound['combined_s']:.1f}", ""))
    names = [name for name in RUNS if name in data] + sorted(
        name for name in data if re.fullmatch(_RUN_NAME, name) and name not in RUNS)
    for name in names:
        run = data[name]
        audio, workers = parse_run_name(name)
        decoded = run["first_decoded_s"]
        differs = run.get("steps_written", ext["frames"]) != ext["frames"]
        rows.append((f"  pipeline --audio {audio}, {_runner(name)}: process / wall_seconds (s)",
                     f"{run['process_s']:.1f} / {run['wall_seconds']:.1f}",
                     f"start-up: first clip decoded {'?' if decoded is None else f'{decoded:.1f}'} s, outside the "
                     f"pipeline {run['outside_pipeline_s']:.1f} s; CPU {run['cpu_s']:.0f} s"
                     + (f"; STEPS {run['steps_written']} != the extractor's {ext['frames']}" if differs else "")))
    ext_s = ext["process_s"]
    zeros1, vggish1 = data.get("zeros_w1"), data.get("vggish_w1")
    if zeros1:
        ratio = ext_s / zeros1["process_s"]
        rows.append(_ratio_row("  speed --audio zeros (1 worker) / extractor (process times)", ratio,
                               f">= {ZEROS_VS_EXTRACTOR}", ratio >= ZEROS_VS_EXTRACTOR,
                               f"(by CPU time {ext['process_cpu_s'] / zeros1['cpu_s']:.2f}; RGB-only model "
                               f"bound / its wall_seconds {bound['rgb_s'] / zeros1['wall_seconds']:.2f})"))
    if vggish1:
        ratio = bound["combined_s"] / vggish1["wall_seconds"]
        rows.append(_ratio_row("  speed VGGish (1 worker) / combined model bound (wall_seconds)", ratio,
                               f">= {VGGISH_VS_BOUND}", ratio >= VGGISH_VS_BOUND,
                               f"(by process time {bound['combined_s'] / vggish1['process_s']:.2f}; "
                               f"vs extractor {ext_s / vggish1['process_s']:.2f})"))
    for audio in ("zeros", "vggish"):
        one, two = data.get(f"{audio}_w1"), data.get(f"{audio}_w2")
        if one and two:
            ratio = one["process_s"] / two["process_s"]
            rows.append(_ratio_row(f"  speed 2 workers / 1 worker, --audio {audio} (process times)", ratio,
                                   f">= {WORKERS_2_VS_1}", ratio >= WORKERS_2_VS_1,
                                   f"(by wall_seconds {one['wall_seconds'] / two['wall_seconds']:.2f})"))
        one_mp = data.get(f"{audio}_mp1")
        if one_mp and two:  # the same runner either way: what the second worker itself costs or brings
            rows.append((f"  speed 2 workers / 1 worker, both multi_processing, --audio {audio} (process times)",
                         f"{one_mp['process_s'] / two['process_s']:.2f}",
                         f"(by wall_seconds {one_mp['wall_seconds'] / two['wall_seconds']:.2f}); "
                         f"speed of 1 worker multi_processing / in_memory "
                         + (f"{one['process_s'] / one_mp['process_s']:.2f}" if one else "?")))
    for name in names:
        decoded = data[name]["first_decoded_s"]
        if decoded is None:
            continue
        ratio = decoded / ext["first_clip_s"]
        rows.append(_ratio_row(f"  start-up {name}: first clip decoded / extractor's first clip", ratio,
                               f"<= {STARTUP_VS_EXTRACTOR}", ratio <= STARTUP_VS_EXTRACTOR,
                               f"(vs its first frame's features {decoded / ext['first_features_s']:.2f})"))
    prof = data.get("profile")
    if prof:
        rows.append((f"  profile: in-process VGGish build, {data['clips']} clips, under cProfile (s)",
                     f"{prof['profiled_s']:.1f}", f"dump: {prof['prof']}"))
        for label, item in prof["breakdown"].items():
            rows.append((f"    {label}", f"{item['seconds']:.1f} s",
                         f"{100 * item['share']:.0f}% (cumulative), {item['calls']} calls"))
    return rows
