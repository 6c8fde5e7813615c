"""Decode throughput of `pipeline.decode.media.ClipDecoder` alone (no models), to compare two versions.

    PYTHONPATH=/path/to/checkout python benchmarks/decode_speed.py --work_dir /tmp/decode-bench [--reps 3]

Decodes a 60-s 1280x720 clip and four 10-s 640x360 clips (25 fps, AAC audio; generated once
into --work_dir, so two checkouts decode the very same files) with whichever `pipeline` package
PYTHONPATH points at, and prints video-seconds decoded per wall second and CPU time (this
process and ffmpeg) per video-second, medians of --reps; on a shared machine compare the CPU.
Uses only the API both the old and the new decoder have (probe, ClipDecoder(has_audio=...),
steps(), summary).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

from pipeline.decode import probe
from pipeline.testing import testvideo


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg): robust to other load on the machine."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work_dir", required=True)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    from pipeline.decode import media  # pylint: disable=import-outside-toplevel

    os.makedirs(args.work_dir, exist_ok=True)
    clips = {"720p_60s": (60, "1280x720")} | {f"360p_10s_{i}": (10, "640x360") for i in range(4)}
    paths = {}
    for name, (seconds, size) in clips.items():
        path = os.path.join(args.work_dir, f"{name}.mp4")
        if not os.path.exists(path):
            testvideo.generate_test_video(path, seconds=seconds, size=size, rate=25)
        paths[name] = path
    for group in (["720p_60s"], [n for n in clips if n.startswith("360p")]):
        rates, cpu = [], []
        for _ in range(args.reps):
            began, cpu_began = time.perf_counter(), _cpu_seconds()
            total = 0.0
            for name in group:
                info = probe.probe(paths[name])
                decoder = media.ClipDecoder(paths[name], has_audio=info.has_audio)
                for step in decoder.steps():
                    step.frame.sum()  # touch the pixels, as the resize does
                total += decoder.summary.duration
            rates.append(total / (time.perf_counter() - began))
            cpu.append((_cpu_seconds() - cpu_began) / total)
        print(f"{media.__file__}: {'+'.join(group) if len(group) == 1 else '4 x 360p_10s'}: "
              f"median {statistics.median(rates):.1f} video-s/s over {args.reps} reps "
              f"({', '.join(f'{r:.1f}' for r in rates)}); CPU {statistics.median(cpu) * 1000:.0f} ms "
              "per video-second (this process + ffmpeg)")


if __name__ == "__main__":
    main()
