"""Benchmarks of the dataset builder against its performance targets.

    python benchmarks/run.py [--quick] [--json OUT] [--work_dir DIR] [--only SECTION ...]

Everything uses `--models synthetic` (the real Inception-v3 and VGGish architectures and
compute, random weights; generated once into `--work_dir`/models). Each measurement runs in
its own child process (benchmarks/children.py). Sections:

  model     model bound: Inception-v3 frames/s at --rgb_batch_size 32, VGGish examples/s at
            --audio_batch_size 64, and 1 / (1/rgb_fps + 1/audio_eps) video-seconds/s
  baseline  reference-style extraction (OpenCV decodes every frame, one frame per second,
            one frame per model call at DecodeJpeg:0, RGB only)
  pipeline  pipeline.cli.build.main on the DirectRunner, multi_processing with 1 and 2 workers,
            for a set of 10-s 360p clips and one long 720p video; a 2-s clip run per worker
            count measures the fixed start-up cost (process start, TF import, model load and
            first-call graph optimization), and "steady" figures subtract it
  memory    peak RSS of an in-process (in_memory, 1 worker) build for a 60-s and a 300-s 720p input
  profile   (with --profile) cProfile of an in-process build of 4 clips, time per stage
  fetch     a 10-s section of a 5-minute 720p source over loopback HTTP through
            pipeline.fetch.clips.fetch_clip vs whole download + libx264 re-encode
  failfast  seconds until a build without model files exits 2, offline (no DNS; includes the
            process's TensorFlow import) and behind a model mirror that accepts connections
            but never answers (0.5-s timeout); the bounds tests used to assert
  dataset   the dataset-scale case (benchmarks/dataset.py): --dataset_clips (default 40;
            4 with --quick) 10-s 640x360 30-fps clips through a starter-extractor-style run
            (OpenCV frame_iterator, one Inception-v3 call per frame, no audio), the model bound
            over the same steps (no decoding), and `python -m pipeline.build` with --audio zeros
            and VGGish, 1 and 2 workers (--dataset_runs); process times, start-up, ratios and
            verdicts against the issue's targets

--quick shortens the inputs (printed in the table): 4 clips, a 60-s long video, memory on
20-s vs 60-s inputs, and a 60-s fetch source.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks import dataset  # noqa: E402  pylint: disable=wrong-import-position
from pipeline.testing import testvideo  # noqa: E402

SECTIONS = ("model", "baseline", "pipeline", "memory", "fetch", "failfast", "profile", "dataset")
RGB_BATCH, AUDIO_BATCH = 32, 64  # the pipeline's defaults (--rgb_batch_size / --audio_batch_size)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _child(kind: str, args: dict, *, env: dict | None = None, timeout: float = 3600) -> dict:
    child_env = dict(os.environ)
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    child_env["PYTHONPATH"] = REPO + (os.pathsep + child_env["PYTHONPATH"] if child_env.get("PYTHONPATH") else "")
    child_env.update(env or {})
    spawn_epoch, began, usage = time.time(), time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.children", kind, json.dumps(args)], cwd=REPO,
                          env=child_env, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child {kind} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["process_wall_s"] = time.perf_counter() - began
    result["spawn_epoch"] = spawn_epoch  # time.time() just before the child started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # children run one at a time: the delta is this one's
    result["process_cpu_s"] = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return result


class Inputs:
    """Generated inputs, cached in the work directory across runs."""

    def __init__(self, work_dir: str):
        self.dir = os.path.join(work_dir, "inputs")
        os.makedirs(self.dir, exist_ok=True)

    def video(self, name: str, *, seconds: float, size: str) -> str:
        path = os.path.join(self.dir, f"{name}.mp4")
        if not os.path.exists(path):
            _log(f"generating {path} ({seconds:g} s, {size})")
            tmp = path + ".tmp.mp4"
            testvideo.generate_test_video(tmp, seconds=seconds, size=size, rate=25, audio=True)
            os.replace(tmp, path)
        return path

    def csv(self, name: str, videos: list[str]) -> str:
        path = os.path.join(self.dir, f"{name}.csv")
        with open(path, "w", encoding="utf-8") as f:
            f.write("video,labels\n")
            for video in videos:
                f.write(f"{video},bench\n")
        return path


def _build_args(work_dir: str, model_cache: str, csv_path: str, name: str, mode: str, workers: int) -> dict:
    out = os.path.join(work_dir, "out", name)
    argv = ["--input_csv", csv_path, "--output_dir", out, "--models", "synthetic", "--model_cache", model_cache,
            "--overwrite", f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    return {"argv": argv, "output_dir": out}


def run_model(cfg) -> dict:
    args = {"model_cache": cfg.model_cache, "rgb_batch": RGB_BATCH, "audio_batch": AUDIO_BATCH,
            "min_seconds": 15 if cfg.quick else 40}
    _log("model bound with YT8M_INCEPTION_CHUNK=4 (32-frame batches run as 8 graph calls)")
    before = _child("model_bound", args, env={"YT8M_INCEPTION_CHUNK": "4"})
    _log("model bound (current settings)")
    result = _child("model_bound", args)
    result["before"] = before  # the sub-batch variant
    return result


def run_baseline(cfg, inputs: Inputs) -> dict:
    videos = [inputs.video(f"clip360_{i:02d}", seconds=10, size="640x360") for i in range(2 if cfg.quick else 4)]
    _log(f"reference-style baseline on {len(videos)} clips")
    result = _child("baseline", {"model_cache": cfg.model_cache, "videos": videos})
    result["input"] = f"{len(videos)} x 10-s 360p clips"
    return result


def run_pipeline(cfg, inputs: Inputs) -> dict:
    n_clips = 4 if cfg.quick else 10
    long_s = 60 if cfg.quick else 300
    clips = [inputs.video(f"clip360_{i:02d}", seconds=10, size="640x360") for i in range(n_clips)]
    long_video = inputs.video(f"long720_{long_s}s", seconds=long_s, size="1280x720")
    tiny = inputs.video("tiny360_2s", seconds=2, size="640x360")
    sets = {
        "startup": (inputs.csv("startup", [tiny]), "one 2-s 360p clip (fixed start-up cost)"),
        "clips": (inputs.csv("clips", clips), f"{n_clips} x 10-s 360p clips"),
        "long": (inputs.csv("long", [long_video]), f"one {long_s}-s 720p video"),
    }
    results: dict = {"inputs": {name: desc for name, (_, desc) in sets.items()}}
    for workers in cfg.workers:
        for name, (csv_path, desc) in sets.items():
            _log(f"pipeline {name} ({desc}), multi_processing, {workers} worker(s)")
            args = _build_args(cfg.work_dir, cfg.model_cache, csv_path, f"{name}-w{workers}", "multi_processing",
                               workers)
            results[f"{name}_w{workers}"] = _child("build", args)
    for workers in cfg.workers:
        startup = results[f"startup_w{workers}"]["wall_s"]
        for name in ("clips", "long"):
            r = results[f"{name}_w{workers}"]
            r["video_seconds_per_s"] = r["seconds_of_video"] / r["wall_s"]
            r["steady_video_seconds_per_s"] = r["seconds_of_video"] / max(1e-6, r["wall_s"] - startup)
    return results


def run_memory(cfg, inputs: Inputs) -> dict:
    lengths = (20, 60) if cfg.quick else (60, 300)
    results = {}
    for seconds in lengths:
        video = inputs.video(f"long720_{seconds}s", seconds=seconds, size="1280x720")
        _log(f"memory: in-process build of a {seconds}-s 720p video")
        args = _build_args(cfg.work_dir, cfg.model_cache, inputs.csv(f"mem{seconds}", [video]), f"mem{seconds}",
                           "in_memory", 1)
        r = _child("build", args)
        r["peak_rss_mib"] = max(r["maxrss_self_mib"], r["maxrss_children_mib"])
        results[f"{seconds}s"] = r
    results["lengths"] = list(lengths)
    return results


def run_profile(cfg, inputs: Inputs) -> dict:
    """cProfile of an in-process (in_memory) build of 4 clips: where the time of one worker goes."""
    clips = [inputs.video(f"clip360_{i:02d}", seconds=10, size="640x360") for i in range(4)]
    prof = os.path.join(cfg.work_dir, "build.prof")
    args = _build_args(cfg.work_dir, cfg.model_cache, inputs.csv("profile", clips), "profile", "in_memory", 1)
    args["profile"] = prof
    _log("profile: in-process build of 4 x 10-s 360p clips under cProfile")
    result = _child("build", args)
    result.update(dataset.profile_breakdown(prof))
    return result


def run_fetch(cfg, inputs: Inputs) -> dict:
    seconds = 60 if cfg.quick else 300
    source = inputs.video(f"long720_{seconds}s", seconds=seconds, size="1280x720")
    start = 20 if cfg.quick else 120
    _log(f"fetch: 10-s section of a {seconds}-s 720p source")
    result = _child("fetch", {"source": source, "start": start, "end": start + 10})
    result["input"] = f"[{start}, {start + 10}] s of a {seconds}-s 720p source ({os.path.getsize(source)} bytes)"
    return result


# ------------------------------------------------------------------------------------------
# Report


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def summarize(results: dict) -> list[tuple[str, str, str]]:
    """Rows (figure, value, target/verdict)."""
    rows: list[tuple[str, str, str]] = []
    model = results.get("model")
    if model:
        rows.append(("Inception-v3 frames/s (batch 32)", f"{model['rgb_fps']:.2f}", ""))
        rows.append(("VGGish examples/s (batch 64)", f"{model['audio_eps']:.1f}", ""))
        rows.append(("model bound, video-s/s", f"{model['video_seconds_per_s']:.2f}",
                     f"(load {model['load_s']:.1f} s, first call {model['first_call_s']:.1f} s)"))
        before = model.get("before")
        if before:
            rows.append(("  variant: Inception-v3 frames/s in sub-batches of 4", f"{before['rgb_fps']:.2f}",
                         f"{before['rgb_fps'] / model['rgb_fps']:.2f}x of whole batches"))
    base = results.get("baseline")
    if base:
        rows.append((f"reference-style baseline video-s/s ({base['input']}, RGB only)",
                     f"{base['video_seconds_per_s']:.2f}",
                     f"(decode {base['decode_s']:.1f} s, model {base['model_s']:.1f} s, "
                     f"{base['frames_decoded']} frames decoded)"))
    pipe = results.get("pipeline")
    if pipe:
        for workers in (1, 2):
            s = pipe.get(f"startup_w{workers}")
            if s:
                rows.append((f"pipeline start-up, {workers} worker(s) (s)", f"{s['wall_s']:.1f}",
                             pipe["inputs"]["startup"]))
        for name in ("clips", "long"):
            for workers in (1, 2):
                r = pipe.get(f"{name}_w{workers}")
                if not r:
                    continue
                rows.append((f"pipeline {pipe['inputs'][name]}, {workers} worker(s): video-s/s end-to-end / steady",
                             f"{r['video_seconds_per_s']:.2f} / {r['steady_video_seconds_per_s']:.2f}",
                             f"wall {r['wall_s']:.1f} s for {r['seconds_of_video']:.0f} video-s"))
            one, two = pipe.get(f"{name}_w1"), pipe.get(f"{name}_w2")
            if one and model:
                ratio = one["steady_video_seconds_per_s"] / model["video_seconds_per_s"]
                rows.append((f"  {name}: 1 worker steady / model bound", f"{ratio:.2f}",
                             f">= 0.75 {_verdict(ratio >= 0.75)}"))
            if one and base:
                ratio = one["steady_video_seconds_per_s"] / base["video_seconds_per_s"]
                ratio_e2e = one["video_seconds_per_s"] / base["video_seconds_per_s"]
                rows.append((f"  {name}: 1 worker steady / baseline (end-to-end)",
                             f"{ratio:.2f} ({ratio_e2e:.2f})", f">= 3 {_verdict(ratio >= 3)}"))
            if one and two:
                ratio = two["steady_video_seconds_per_s"] / one["steady_video_seconds_per_s"]
                ratio_e2e = two["video_seconds_per_s"] / one["video_seconds_per_s"]
                rows.append((f"  {name}: 2 workers / 1 worker steady (end-to-end)", f"{ratio:.2f} ({ratio_e2e:.2f})",
                             f">= 1.7 {_verdict(ratio >= 1.7)}"))
    mem = results.get("memory")
    if mem:
        short, long_ = mem["lengths"]
        a, b = mem[f"{short}s"], mem[f"{long_}s"]
        rows.append((f"peak RSS, {short}-s 720p, in-process 1 worker (MiB)", f"{a['peak_rss_mib']:.0f}", ""))
        rows.append((f"peak RSS, {long_}-s 720p, in-process 1 worker (MiB)", f"{b['peak_rss_mib']:.0f}", ""))
        ratio = b["peak_rss_mib"] / a["peak_rss_mib"]
        rows.append((f"  peak RSS {long_}-s / {short}-s", f"{ratio:.2f}", f"<= 1.2 {_verdict(ratio <= 1.2)}"))
    fetch = results.get("fetch")
    if fetch:
        sec, full = fetch["section"], fetch["full"]
        rows.append((f"fetch_clip section ({fetch['input']})",
                     f"{sec['bytes'] / 1e6:.2f} MB, {sec['seconds']:.2f} s", f"method {sec['method']}"))
        rows.append(("whole download + libx264 re-encode", f"{full['bytes'] / 1e6:.2f} MB, {full['seconds']:.2f} s",
                     f"(download {full['download_s']:.2f} s, re-encode {full['reencode_s']:.2f} s)"))
        rb, rt = sec["bytes"] / full["bytes"], sec["seconds"] / full["seconds"]
        rows.append(("  fetch bytes section / whole", f"{rb:.3f}", f"<= 0.20 {_verdict(rb <= 0.20)}"))
        rows.append(("  fetch time section / whole", f"{rt:.3f}", f"<= 0.25 {_verdict(rt <= 0.25)}"))
    failfast = results.get("failfast")
    if failfast:
        for name, bound in (("offline", 15.0), ("stalled_mirror", 4.0)):
            case = failfast[name]
            ok = case["rc"] == 2 and case["seconds"] <= bound
            rows.append((f"build without model files, {name.replace('_', ' ')}: exit {case['rc']} after (s)",
                         f"{case['seconds']:.1f}", f"<= {bound:.0f} {_verdict(ok)}"))
    prof = results.get("profile")
    if prof:
        rows.append(("profile: in-process build, 4 x 10-s 360p clips (s)", f"{prof['profiled_s']:.1f}", ""))
        for label, item in prof["breakdown"].items():
            rows.append((f"  {label}", f"{item['seconds']:.1f} s",
                         f"{100 * item['share']:.0f}% (cumulative), {item['calls']} calls"))
    if results.get("dataset"):
        rows.extend(dataset.summarize(results["dataset"]))
    return rows


def print_table(results: dict, rows) -> None:
    meta = results["meta"]
    print(f"\nvideo-features-pipeline benchmarks ({'QUICK: shortened inputs' if meta['quick'] else 'full'}), "
          f"{meta['cpu_count']} cores, {meta['platform']}, python {meta['python']}, --models synthetic")
    width = max(len(r[0]) for r in rows) if rows else 10
    vwidth = max(len(r[1]) for r in rows) if rows else 10
    for figure, value, note in rows:
        print(f"{figure:<{width}}  {value:>{vwidth}}  {note}")
    print(f"total benchmark time {meta['total_s']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Shortened inputs; finishes in a few minutes.")
    parser.add_argument("--json", default=None, help="Also write all figures to this JSON file.")
    parser.add_argument("--work_dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "yt8m-bench"),
                        help="Inputs, outputs and the synthetic model cache (kept across runs).")
    parser.add_argument("--model_cache", default=None, help="Synthetic model cache (default WORK_DIR/models).")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, default=None, help="Run only these sections.")
    parser.add_argument("--profile", action="store_true",
                        help="Also run the cProfile section (and, with the dataset section, a cProfile of its build).")
    parser.add_argument("--workers", default="1,2", help="Worker counts of the pipeline section.")
    parser.add_argument("--dataset_clips", type=int, default=None,
                        help="Clips of the dataset section (default 40; 4 with --quick).")
    parser.add_argument("--dataset_runs", default=",".join(dataset.RUNS),
                        help="Builds of the dataset section: zeros_wN / vggish_wN (N workers; 1 = the default "
                             "in_memory runner, more = multi_processing) and zeros_mpN / vggish_mpN (N workers, "
                             "multi_processing even for 1).")
    cfg = parser.parse_args(argv)
    cfg.model_cache = cfg.model_cache or os.path.join(cfg.work_dir, "models")
    cfg.workers = [int(w) for w in cfg.workers.split(",")]
    cfg.dataset_clips = cfg.dataset_clips or (4 if cfg.quick else 40)
    cfg.dataset_runs = [name.strip() for name in cfg.dataset_runs.split(",") if name.strip()]
    for name in cfg.dataset_runs:
        try:
            dataset.parse_run_name(name)
        except ValueError as e:
            parser.error(str(e))
    sections = cfg.only or [s for s in SECTIONS if s != "profile" or cfg.profile]
    began = time.perf_counter()
    os.makedirs(cfg.work_dir, exist_ok=True)
    inputs = Inputs(cfg.work_dir)
    from pipeline.features import registry  # pylint: disable=import-outside-toplevel

    if not os.path.exists(os.path.join(registry.synthetic_dir(registry.ModelConfig(mode="synthetic",
                                                                                   model_cache=cfg.model_cache)),
                                       "audio", registry.AUDIO_PCA)):
        _log(f"generating synthetic models into {cfg.model_cache} (once)")
        subprocess.run([sys.executable, "-c", "import sys; from pipeline.features import registry; "
                        "registry.ensure_synthetic(registry.ModelConfig(mode='synthetic', model_cache=sys.argv[1]))",
                        cfg.model_cache], cwd=REPO, check=True,
                       env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"))
    results: dict = {"meta": {"quick": cfg.quick, "cpu_count": os.cpu_count(), "platform": platform.platform(),
                              "python": platform.python_version(), "sections": sections,
                              "env": {k: v for k, v in os.environ.items() if k.startswith("YT8M_")}}}
    runners = {"model": lambda: run_model(cfg), "baseline": lambda: run_baseline(cfg, inputs),
               "pipeline": lambda: run_pipeline(cfg, inputs), "memory": lambda: run_memory(cfg, inputs),
               "fetch": lambda: run_fetch(cfg, inputs), "profile": lambda: run_profile(cfg, inputs),
               "failfast": lambda: _child("failfast", {}),
               "dataset": lambda: dataset.run_dataset(cfg, _child, cfg.model_cache, RGB_BATCH, AUDIO_BATCH)}
    for section in sections:
        results[section] = runners[section]()
    results["meta"]["total_s"] = time.perf_counter() - began
    rows = summarize(results)
    results["table"] = [list(r) for r in rows]
    print_table(results, rows)
    if cfg.json:
        with open(cfg.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
