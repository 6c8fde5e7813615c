"""Builds the sample datasets of the README quickstart, offline.

  python -m pipeline.sample --output_dir sample_output

1. `kinetics/`: the whole YouTube path. Five real Kinetics-400 annotation rows
   (examples/kinetics400_val_sample.csv); stand-in source videos generated with ffmpeg are
   served under those YouTube ids by a loopback HTTP server (Range requests), fetched by
   yt-dlp as sections, trimmed, featurized, written and inspected. The last id is not
   served, so it ends as a `not_found` failure line. Expected: 4 records of 10 steps (the clip
   is [start, end): frames a stream-copied section holds past `end` are not decoded).
2. `videos/`: local files. A 10 s clip with audio, a 4.5 s clip without audio, a 0.5 s clip,
   a zero-byte file and a missing path. Expected: 3 records (10, 5 and 1 steps) and 2 failure
   lines (empty_file, missing_file).

Both use `--models synthetic` (the official model files cannot be downloaded here; the run
says so loudly) on the DirectRunner with two worker processes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import pathlib
import sys

from pipeline.cli import build, inspect
from pipeline.testing import testvideo
from pipeline.testing.loopback import LoopbackServer

KINETICS_SAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "kinetics400_val_sample.csv"

SAMPLE_FILES = [
    # (file name, seconds, audio, labels)
    ("tone_and_bars.mp4", 10.0, True, "music;test pattern"),
    ("silent_bars.mp4", 4.5, False, "test pattern"),
    ("blink.mp4", 0.5, True, "test pattern"),
]


def make_video_inputs(directory: str) -> str:
    """Writes the local sample videos and their CSV into `directory`; returns the CSV path."""
    videos = os.path.join(directory, "videos")
    os.makedirs(videos, exist_ok=True)
    rows = []
    for name, seconds, has_audio, labels in SAMPLE_FILES:
        path = os.path.join(videos, name)
        if not os.path.exists(path):
            testvideo.generate_test_video(path, seconds=seconds, audio=has_audio)
        rows.append({"video": f"videos/{name}", "labels": labels, "split": "train"})
    open(os.path.join(videos, "empty.mp4"), "wb").close()
    rows.append({"video": "videos/empty.mp4", "labels": "test pattern", "split": "train"})
    rows.append({"video": "videos/does_not_exist.mp4", "labels": "music", "split": "train"})
    csv_path = os.path.join(directory, "videos.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["video", "labels", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def make_youtube_stand_ins(directory: str, csv_path: pathlib.Path = KINETICS_SAMPLE) -> list[str]:
    """Generates a source video per id of the sample CSV but the last; returns the ids served."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    served = []
    os.makedirs(directory, exist_ok=True)
    for row in rows[:-1]:
        path = os.path.join(directory, f"{row['youtube_id']}.mp4")
        if not os.path.exists(path):
            # A source longer than the annotated section, so only a part of it is fetched.
            testvideo.generate_test_video(path, seconds=float(row["time_end"]) + 8, size="640x360", audio=True)
        served.append(row["youtube_id"])
    return served


def _build_and_inspect(argv: list[str], dataset: str) -> int:
    """Builds, then inspects; the inspection shows in full only with -v or when it finds a problem."""
    code = build.main(argv)
    if code != 0:
        return code
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        code = inspect.main([dataset])
    lines = report.getvalue().splitlines()
    if code != 0 or "-v" in argv or "--verbose" in argv or len(lines) < 2:
        print(f"python -m pipeline.inspect {dataset}:\n" + report.getvalue(), end="")
    else:  # the counts and the verdict; the feature statistics are one command away
        print(f"python -m pipeline.inspect {dataset}: {lines[0]}; {lines[-1]}")
    return code


def main(argv: list[str] | None = None) -> int:
    """Builds and inspects the samples of the module docstring; returns the first non-zero exit status, else 0."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.sample", description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default="sample_output")
    parser.add_argument("--direct_num_workers", type=int, default=2)
    parser.add_argument("--only", choices=("kinetics", "videos"), default=None, help="build one sample only")
    args, beam_args = parser.parse_known_args(argv)
    common = ["--models", "synthetic", "--overwrite", "--direct_running_mode=multi_processing",
              f"--direct_num_workers={args.direct_num_workers}", *beam_args]
    if args.only in (None, "kinetics"):
        served_dir = os.path.join(args.output_dir, "youtube_stand_ins")
        make_youtube_stand_ins(served_dir)
        dataset = os.path.join(args.output_dir, "kinetics")
        with LoopbackServer(served_dir) as server:
            print(f"Serving stand-in videos for the sample's YouTube ids at {server.url}")
            code = _build_and_inspect([
                "--input_csv", str(KINETICS_SAMPLE), "--output_dir", dataset,
                "--video_url_template", server.url + "/{id}.mp4", "--fetch_backoff", "0.2",
                "--clips_dir", os.path.join(args.output_dir, "clips"), *common], dataset)
        if code == 0:
            with open(os.path.join(dataset, "stats.json")) as f:
                fetched = json.load(f)["fetch"]
            sources = sum(os.path.getsize(os.path.join(served_dir, n)) for n in os.listdir(served_dir))
            print(f"Fetched {fetched['clips_fetched']} sections, {fetched['bytes_downloaded']:,} bytes in all, "
                  f"from source videos of {sources:,} bytes")
        if code != 0:
            return code
    if args.only in (None, "videos"):
        csv_path = make_video_inputs(os.path.join(args.output_dir, "inputs"))
        dataset = os.path.join(args.output_dir, "videos")
        code = _build_and_inspect(["--input_csv", csv_path, "--output_dir", dataset, *common], dataset)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
