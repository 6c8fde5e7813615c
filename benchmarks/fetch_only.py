"""Fetch-only builds vs the Kinetics crawler's method: clips/s of 10-s sections over loopback "YouTube".

    PYTHONPATH=$PWD python benchmarks/fetch_only.py [--videos 20] [--video_seconds 120] [--concurrency 4]

Serves N generated videos (--video_seconds long, 640x360, 25 fps, AAC; one generated, the rest
copies under other ids) from a loopback HTTP server standing in for YouTube, writes a Kinetics
CSV of one 10-s section per video (seeded random starts), and times, in one run:

- pipeline: `python -m pipeline.build --features none --clips_dir DIR` (a fresh process, start-up
  included; yt-dlp fetches only the section, stream copy; `--fetch_concurrency` in flight);
- crawler: the ActivityNet Kinetics crawler's method (`download.py`): `youtube-dl -f mp4` of the
  whole video (here `python -m yt_dlp`, its successor), then `ffmpeg -i FULL -ss START -t 10
  -c:v libx264 -c:a copy -threads 1`, with the same number of clips in parallel.

Prints clips/s of each, their ratio, the bytes each moved, and the mean kept clip size (what a
fetched clip weighs in the pipeline's element when no --clips_dir is given). The pipeline's
start-up is a fixed cost per job: a 1-row run first measures it, and a "steady" rate with it
subtracted is printed too (what a job of thousands of clips sees). Develop with tiny
sizes (`--videos 2 --video_seconds 30`); compare ratios on a quiet machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from pipeline.decode import probe
from pipeline.testing import testvideo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION_S = 10


def _ids(n: int) -> list[str]:
    rng = random.Random(12)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    return ["".join(rng.choice(alphabet) for _ in range(11)) for _ in range(n)]


def _serve_root(work: str, ids: list[str], seconds: int) -> str:

    root = os.path.join(work, "youtube")
    os.makedirs(os.path.join(root, "videos"), exist_ok=True)
    first = os.path.join(root, "videos", f"{ids[0]}.mp4")
    testvideo.generate_test_video(first, seconds=seconds, size="640x360", rate=25)
    for vid in ids[1:]:
        shutil.copyfile(first, os.path.join(root, "videos", f"{vid}.mp4"))
    return root


def _rows(ids: list[str], seconds: int) -> list[tuple[str, str, int, int]]:
    rng = random.Random(7)
    rows = []
    for i, vid in enumerate(ids):
        start = rng.randrange(0, max(1, seconds - SECTION_S))
        rows.append((f"label{i % 5}", vid, start, start + SECTION_S))
    return rows


def run_pipeline(csv_path: str, url: str, work: str, concurrency: int, name: str = "") -> tuple[float, dict, list[str]]:
    out, clips = os.path.join(work, f"out{name}"), os.path.join(work, f"clips{name}")
    cmd = [sys.executable, "-m", "pipeline.build", "--input_csv", csv_path, "--output_dir", out,
           "--features", "none", "--clips_dir", clips, "--video_url_template", url + "/videos/{id}.mp4",
           "--fetch_concurrency", str(concurrency), "--fetch_attempts", "2"]
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"pipeline run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "stats.json"), encoding="utf-8") as f:
        stats = json.load(f)
    return wall, stats, sorted(glob.glob(os.path.join(clips, "*", "*.mp4")))


def _crawl_one(row: tuple[str, str, int, int], url: str, work: str) -> str:
    """One row the crawler's way: whole download with yt-dlp, then a libx264 re-encode of the section."""

    label, vid, start, end = row
    tmp = os.path.join(work, "tmp", f"{vid}.mp4")
    dest_dir = os.path.join(work, "crawler", label)
    os.makedirs(dest_dir, exist_ok=True)
    dest = os.path.join(dest_dir, f"{vid}_{start:06d}_{end:06d}.mp4")
    subprocess.run([sys.executable, "-m", "yt_dlp", "--quiet", "--no-warnings", "--no-part", "-f", "mp4",
                    "-o", tmp, f"{url}/videos/{vid}.mp4"], check=True, capture_output=True)
    subprocess.run([probe.ffmpeg_exe(), "-nostdin", "-y", "-i", tmp, "-ss", str(start), "-t", str(end - start),
                    "-c:v", "libx264", "-c:a", "copy", "-threads", "1", "-loglevel", "panic", dest],
                   check=True, capture_output=True)
    os.remove(tmp)
    return dest


def run_crawler(rows, url: str, work: str, concurrency: int) -> tuple[float, list[str]]:
    os.makedirs(os.path.join(work, "tmp"), exist_ok=True)
    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        kept = list(pool.map(lambda row: _crawl_one(row, url, work), rows))
    return time.perf_counter() - began, kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=20, help="clips (one 10-s section per served video)")
    parser.add_argument("--video_seconds", type=int, default=120, help="length of each served video")
    parser.add_argument("--concurrency", type=int, default=4, help="clips in flight, both methods")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--work_dir", help="keep the inputs and outputs here (default: a removed temp dir)")
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO)
    from pipeline.testing.loopback import LoopbackServer  # pylint: disable=import-outside-toplevel

    work = args.work_dir or tempfile.mkdtemp(prefix="fetch-only-bench-")
    try:
        ids = _ids(args.videos)
        root = _serve_root(work, ids, args.video_seconds)
        rows = _rows(ids, args.video_seconds)
        csv_path, one_row_csv = os.path.join(work, "kinetics.csv"), os.path.join(work, "one-row.csv")
        for path, selected in ((csv_path, rows), (one_row_csv, rows[:1])):
            with open(path, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
                writer.writerows(row + ("train",) for row in selected)
        with LoopbackServer(root) as server:
            # One row first: the start-up (launcher, Beam, first fetch) to subtract for a steady rate.
            one_wall, _, _ = run_pipeline(one_row_csv, server.url, work, args.concurrency, name="-one-row")
            before = server.bytes_sent()
            pipe_wall, stats, kept = run_pipeline(csv_path, server.url, work, args.concurrency)
            pipe_bytes = server.bytes_sent() - before
            crawl_wall, crawled = run_crawler(rows, server.url, work, args.concurrency)
            crawl_bytes = server.bytes_sent() - pipe_bytes - before
        if stats["clips_kept"] != args.videos or len(kept) != args.videos or len(crawled) != args.videos:
            raise SystemExit(f"expected {args.videos} clips: pipeline kept {stats['clips_kept']} "
                             f"({stats['failures_by_reason']}), crawler {len(crawled)}")
        mean_clip = sum(os.path.getsize(p) for p in kept) / len(kept)
        figures = {
            "clips": args.videos, "video_seconds": args.video_seconds, "section_seconds": SECTION_S,
            "concurrency": args.concurrency,
            "pipeline_seconds": round(pipe_wall, 2), "pipeline_clips_per_s": round(args.videos / pipe_wall, 3),
            "crawler_seconds": round(crawl_wall, 2), "crawler_clips_per_s": round(args.videos / crawl_wall, 3),
            "speedup": round(crawl_wall / pipe_wall, 2),
            "pipeline_one_row_seconds": round(one_wall, 2),
            "pipeline_steady_clips_per_s": (round((args.videos - 1) / (pipe_wall - one_wall), 3)
                                            if args.videos > 1 and pipe_wall > one_wall else None),
            "pipeline_bytes_served": pipe_bytes, "crawler_bytes_served": crawl_bytes,
            "mean_kept_clip_bytes": int(mean_clip),
        }
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{args.videos} x {SECTION_S}-s sections of {args.video_seconds}-s 640x360 videos over loopback, "
          f"{args.concurrency} in flight")
    print(f"  pipeline --features none: {figures['pipeline_seconds']:8.2f} s  {figures['pipeline_clips_per_s']:7.3f} "
          f"clips/s  {pipe_bytes / 1e6:8.1f} MB served (start-up included)")
    print(f"  crawler (whole + x264):   {figures['crawler_seconds']:8.2f} s  {figures['crawler_clips_per_s']:7.3f} "
          f"clips/s  {crawl_bytes / 1e6:8.1f} MB served")
    steady = figures["pipeline_steady_clips_per_s"]
    if steady:
        print(f"  pipeline steady (start-up of a 1-row run, {one_wall:.2f} s, subtracted): {steady:.3f} clips/s = "
              f"{steady / figures['crawler_clips_per_s']:.2f}x the crawler")
    print(f"  ratio pipeline / crawler clips/s (end to end): {figures['speedup']:.2f}x; mean kept clip "
          f"{mean_clip / 1e6:.2f} MB (the fetched-clip element without --clips_dir)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
