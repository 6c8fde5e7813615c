"""Builds the small sample dataset of the README quickstart, offline.

  python -m pipeline.sample --output_dir sample_output

Generates videos with ffmpeg (a 10 s clip with audio, a 4.5 s clip without audio, a 0.5 s
clip, a zero-byte file), writes `videos.csv` naming them plus a path that does not exist,
builds the dataset with `--models synthetic` (the official model files cannot be
downloaded here) on the DirectRunner with two worker processes, and checks the result
with `pipeline.inspect`. Expected: 2 records (10 and 4 steps) and 3 failure lines.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

from pipeline import build, inspect, media

SAMPLE_ROWS = [
    # (file name, seconds, audio, labels)
    ("tone_and_bars.mp4", 10.0, True, "music;test pattern"),
    ("silent_bars.mp4", 4.5, False, "test pattern"),
    ("blink.mp4", 0.5, True, "test pattern"),
]


def make_sample_inputs(directory: str) -> str:
    """Writes the sample videos and their CSV into `directory`; returns the CSV path."""
    videos = os.path.join(directory, "videos")
    os.makedirs(videos, exist_ok=True)
    rows = []
    for name, seconds, has_audio, labels in SAMPLE_ROWS:
        path = os.path.join(videos, name)
        if not os.path.exists(path):
            media.generate_test_video(path, seconds=seconds, audio=has_audio)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.sample", description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default="sample_output")
    parser.add_argument("--direct_num_workers", type=int, default=2)
    args, beam_args = parser.parse_known_args(argv)
    csv_path = make_sample_inputs(args.output_dir)
    dataset = os.path.join(args.output_dir, "dataset")
    code = build.main([
        "--input_csv", csv_path, "--output_dir", dataset, "--models", "synthetic", "--overwrite",
        "--direct_running_mode=multi_processing", f"--direct_num_workers={args.direct_num_workers}", *beam_args])
    if code != 0:
        return code
    print(f"\nInspecting {dataset}:")
    return inspect.main([dataset])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
