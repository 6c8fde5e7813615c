"""Model copies and memory of a two-worker local build: models shared per machine vs one per process.

    PYTHONPATH=/path/to/checkout python -m benchmarks.model_copies --work_dir /tmp/model-copies \
        [--clips 4] [--seconds 3] [--size 640x360] [--workers 2] [--modes 1,per_process]

Runs ``python -m pipeline.build`` on the DirectRunner with ``--direct_running_mode=multi_processing
--direct_num_workers=N`` and ``--models synthetic`` over a few generated clips, once per
``--model_copies`` mode, and prints per mode: how many times each model was loaded and in how
many processes, with how many intra-op TensorFlow threads (the "Loading the rgb model in process P
(TensorFlow threads: T intra-op ..." lines the workers log), the peak of the
run's process tree memory (sum of RSS, and of PSS, which counts pages shared between processes
once; sampled from /proc every --interval seconds) and the wall time. The synthetic model files
are generated into the model cache first, so no run pays for that. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

from benchmarks.proctree import TreeMemory
from pipeline.testing import testvideo

_LOAD = re.compile(r"Loading the ((?:rgb|audio)(?: and (?:rgb|audio))?) models? in process (\d+)(?: on \S+)? "
        r"\(TensorFlow: (\d+) intra-op")


def _prepare(args: argparse.Namespace, env: dict) -> str:
    """Generates the clips and the CSV once, and the synthetic model files into the cache."""

    clips_dir = os.path.join(args.work_dir, "clips")
    os.makedirs(clips_dir, exist_ok=True)
    rows = ["video,labels"]
    for index in range(args.clips):
        path = os.path.join(clips_dir, f"clip{index}-{args.size}-{args.seconds:g}s.mp4")
        if not os.path.exists(path):
            testvideo.generate_test_video(path, seconds=args.seconds, size=args.size, rate=25, audio=True)
        rows.append(f"{path},label{index % 2}")
    csv_path = os.path.join(args.work_dir, "clips.csv")
    with open(csv_path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(rows) + "\n")
    code = ("from pipeline.features import registry; "
            f"registry.resolve(registry.ModelConfig(mode='synthetic', model_cache={args.model_cache!r}))")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    return csv_path


def measure(mode: str, csv_path: str, args: argparse.Namespace, env: dict) -> dict:
    """One build with --model_copies MODE: model loads, processes holding models, peak memory, wall time."""
    out = os.path.join(args.work_dir, f"out-{mode}")
    cmd = [sys.executable, "-m", "pipeline.build", "--input_csv", csv_path, "--output_dir", out, "--overwrite",
           "--models", "synthetic", "--model_cache", args.model_cache, "--model_copies", mode,
           "--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}",
           # The workers' INFO lines (the model loads) are forwarded to the launcher, which prints them.
           "--default_sdk_harness_log_level=INFO"]
    began = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    sampler = TreeMemory(process.pid, args.interval)
    sampler.start()
    output, _ = process.communicate()
    sampler.stop()
    wall = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"--model_copies {mode}: the build failed ({process.returncode}):\n{output[-4000:]}")
    loads = [(name, pid, threads) for names, pid, threads in _LOAD.findall(output)
             for name in names.split(" and ")]
    stats_path = os.path.join(out, "stats.json")
    with open(stats_path, encoding="utf-8") as handle:
        records = json.load(handle)["records_written"]
    return {
        "model_copies": mode,
        "rgb_loads": sum(1 for name, _, _ in loads if name == "rgb"),
        "audio_loads": sum(1 for name, _, _ in loads if name == "audio"),
        "processes_holding_models": len({pid for _, pid, _ in loads}),
        "intra_op_threads": sorted({int(threads) for _, _, threads in loads}),
        "peak_rss_mib": round(sampler.peak_rss / 2**20, 1),
        "peak_pss_mib": round(sampler.peak_pss / 2**20, 1),
        "peak_processes": sampler.peak_processes,
        "records": records,
        "peak_rss_mib_by_process": sorted(
            ((what, round(peak / 2**20, 1)) for peak, what in sampler.peaks.values() if peak > 50 * 2**20),
            key=lambda item: -item[1]),
        "wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--work_dir", required=True, help="Clips, CSV and outputs go here (reused).")
    parser.add_argument("--model_cache", default=None, help="Synthetic model cache (default WORK_DIR/models).")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modes", default="1,per_process", help="Comma-separated --model_copies values.")
    parser.add_argument("--interval", type=float, default=0.2, help="Memory sampling period, seconds.")
    args = parser.parse_args(argv)
    args.work_dir = os.path.abspath(args.work_dir)
    args.model_cache = os.path.abspath(args.model_cache or os.path.join(args.work_dir, "models"))
    os.makedirs(args.work_dir, exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("YT8M_TF", "VIDEO_FEATURES_")) and key != "PIPELINE_OPTIONS"}
    csv_path = _prepare(args, env)
    print(f"{args.clips} clips of {args.seconds:g} s at {args.size}, {args.workers} worker processes, "
          f"{os.cpu_count()} cores", flush=True)
    header = (f"{'--model_copies':<15}{'rgb loads':>10}{'audio loads':>12}{'procs w/ model':>15}{'TF threads':>11}"
              f"{'peak RSS MiB':>14}{'peak PSS MiB':>14}{'wall s':>8}")
    print(header, flush=True)
    results = []
    for mode in args.modes.split(","):
        result = measure(mode.strip(), csv_path, args, env)
        results.append(result)
        print(f"{result['model_copies']:<15}{result['rgb_loads']:>10}{result['audio_loads']:>12}"
              f"{result['processes_holding_models']:>15}{','.join(map(str, result['intra_op_threads'])):>11}"
              f"{result['peak_rss_mib']:>14,.1f}"
              f"{result['peak_pss_mib']:>14,.1f}{result['wall_s']:>8.1f}", flush=True)
        print("    peak RSS MiB per process: " + ", ".join(
            f"{what} {mib:,.0f}" for what, mib in result["peak_rss_mib_by_process"]), flush=True)
    print("RESULT " + json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
