"""Input at scale: CSVs of many rows whose videos do not exist, through the whole build.

    python -m benchmarks.csv_scale                              # 10^5 and 10^6 rows (the issue's figures)
    python -m benchmarks.csv_scale --rows 1000,10000            # a quick look
    python -m benchmarks.csv_scale --rows 100000 --json out.json
    python -m benchmarks.csv_scale --beam_only --skip_build      # plain Beam of the build's shape only

For each row count it writes a headered videos CSV (`video,labels`, paths that do not exist, so
every row ends as a `missing_file` failure line without decoding anything) and measures, each in
a fresh process:

  * the launcher's pass over the CSV (`pipeline.cli.build.check_input_csv`: format, row count,
    labels, split points): rows/s and how much it grew the process's peak RSS;
  * the whole build (`python -m pipeline.build --models synthetic --audio zeros`, DirectRunner
    multi_processing with 2 workers): rows/s, and the peak RSS of the launching process and of
    each worker process, sampled from /proc every 0.2 s.

Memory flat in the row count means the 10^6 figures match the 10^5 ones. The launching process
hosts Beam's FnApiRunner, which keeps every shuffle's data (GroupByKey, Reshuffle, CoGroupByKey)
in its own memory: its growth with rows is the DirectRunner's, not the build's code (on Dataflow
the shuffle lives outside the workers). The launcher pass figure is our code alone.

With --beam_only it also runs benchmarks/beam_shape.py, the build's shape in plain Beam without
any of the project's code, with and without the GroupByKey that groups the failure report into
shards: whatever grows there with the row count is the runner's, not the build's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.proctree import TreeMemory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_S = 0.2
LABELS = 400


def write_csv(path: str, rows: int) -> None:
    """`video,labels` rows of missing videos, 400 labels, one id per row."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("video,labels\n")
        for i in range(rows):
            f.write(f"/nonexistent/csv_scale/video_{i:09d}.mp4,label_{i % LABELS:03d}\n")


_PASS = """
import json, resource, sys, time
from pipeline.cli import build
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
began = time.perf_counter()
fmt, rows, labels, splits = build.check_input_csv(sys.argv[1])
seconds = time.perf_counter() - began
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RESULT " + json.dumps({"rows": rows, "seconds": seconds, "labels": len(labels), "splits": len(splits),
                              "rss_growth_mib": (after - before) / 1024.0, "peak_rss_mib": after / 1024.0}))
"""


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="2")


def launcher_pass(csv_path: str) -> dict:
    """check_input_csv alone, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", _PASS, csv_path], cwd=REPO, env=_env(), capture_output=True,
                         text=True, check=True).stdout
    result = json.loads(out.rsplit("RESULT ", 1)[1])
    result["rows_per_s"] = result["rows"] / result["seconds"]
    return result


def whole_build(csv_path: str, out_dir: str, model_cache: str, workers: int, extra: list[str] = ()) -> dict:
    """pipeline.build as a subprocess (DirectRunner, multi_processing): rows/s and peak RSS per process."""
    argv = [sys.executable, "-m", "pipeline.build", "--input_csv", csv_path, "--output_dir", out_dir,
            "--models", "synthetic", "--model_cache", model_cache, "--audio", "zeros", "--overwrite",
            "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}", *extra]
    wall, _, memory = _sampled(argv, workers)
    with open(os.path.join(out_dir, "stats.json"), encoding="utf-8") as f:
        stats = json.load(f)
    return {"wall_s": wall, "rows_per_s": stats["rows_read"] / wall, "rows_read": stats["rows_read"],
            "failures_by_reason": stats["failures_by_reason"],
            "all_rows_accounted_for": stats["all_rows_accounted_for"], **memory}


def _sampled(argv: list[str], workers: int) -> tuple[float, str, dict]:
    """Runs argv; its wall time, output, and the peak RSS of it and of its `workers` largest children."""
    began = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeMemory(proc.pid, SAMPLE_S)
    sampler.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - began
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[2]} failed ({proc.returncode}):\n{output[-3000:]}")
    workers_peak = sorted((sampler.peak_mib(pid) for pid in sampler.peaks if pid != proc.pid), reverse=True)
    return wall, output, {"launcher_peak_rss_mib": sampler.peak_mib(proc.pid),
                          "worker_peak_rss_mib": workers_peak[:workers], "child_processes": len(workers_peak)}


def beam_shape(csv_path: str, rows: int, workers: int, group: bool) -> dict:
    """benchmarks.beam_shape (the build's shape in plain Beam) as a subprocess: peak RSS per process."""
    argv = [sys.executable, "-m", "benchmarks.beam_shape", csv_path, "--rows", str(rows),
            f"--workers={workers}", *([] if group else ["--no_group"])]
    wall, output, memory = _sampled(argv, workers)
    counts = json.loads(output.rsplit("RESULT ", 1)[1].splitlines()[0])
    return {"wall_s": wall, "group": group, "counts": counts, **memory}


def _peaks(result: dict) -> str:
    return (f"launcher peak RSS {result['launcher_peak_rss_mib']:.0f} MiB, worker peak RSS "
            f"{', '.join(f'{w:.0f}' for w in result['worker_peak_rss_mib'])} MiB")


def ensure_models(model_cache: str) -> None:
    code = ("import sys; from pipeline.features import registry; "
            "registry.ensure_synthetic(registry.ModelConfig(mode='synthetic', model_cache=sys.argv[1]))")
    subprocess.run([sys.executable, "-c", code, model_cache], cwd=REPO, env=_env(), check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,1000000", help="Comma-separated row counts.")
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes.")
    parser.add_argument("--work_dir", default=os.path.join(tempfile.gettempdir(), "csv_scale"),
                        help="CSVs, outputs and the synthetic model cache (kept across runs).")
    parser.add_argument("--skip_build", action="store_true",
                        help="Leave out the whole build (the launcher pass and --beam_only still run).")
    parser.add_argument("--build_args", default="", help="More flags for the build, e.g. '--failures_per_shard 10000'.")
    parser.add_argument("--beam_only", action="store_true",
                        help="Also run the build's shape in plain Beam (benchmarks/beam_shape.py), with and "
                             "without its GroupByKey: what the runner's own memory does with the row count.")
    parser.add_argument("--json", default=None, help="Also write the figures here.")
    args = parser.parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    model_cache = os.path.join(args.work_dir, "models")
    if not args.skip_build:
        ensure_models(model_cache)
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        csv_path = os.path.join(args.work_dir, f"missing-{rows}.csv")
        if not os.path.exists(csv_path):
            write_csv(csv_path, rows)
        result = {"rows": rows, "launcher_pass": launcher_pass(csv_path)}
        p = result["launcher_pass"]
        print(f"{rows:>10,} rows  launcher pass: {p['seconds']:.2f} s, {p['rows_per_s']:,.0f} rows/s, "
              f"{p['splits']} splits, peak RSS +{p['rss_growth_mib']:.1f} MiB (of {p['peak_rss_mib']:.0f})",
              flush=True)
        if not args.skip_build:
            b = result["build"] = whole_build(csv_path, os.path.join(args.work_dir, f"out-{rows}"), model_cache,
                                              args.workers, args.build_args.split())
            print(f"{rows:>10,} rows  build: {b['wall_s']:.1f} s, {b['rows_per_s']:,.0f} rows/s, {_peaks(b)}, "
                  f"failures {b['failures_by_reason']}, accounted {b['all_rows_accounted_for']}", flush=True)
        if args.beam_only:
            for group in (True, False):
                shape = beam_shape(csv_path, rows, args.workers, group)
                result[f"beam_shape_{'with' if group else 'without'}_group"] = shape
                print(f"{rows:>10,} rows  plain Beam, {'with' if group else 'without'} the GroupByKey: "
                      f"{shape['wall_s']:.1f} s, {_peaks(shape)}, counts {shape['counts']}", flush=True)
        results.append(result)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
