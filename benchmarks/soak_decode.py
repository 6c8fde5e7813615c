"""Soak test of deterministic decoding: many decodes of good clips, zero failures.

    PYTHONPATH=. python benchmarks/soak_decode.py [--decodes 10000] [--workers 2] [--busy N]

Decodes a few good generated clips over and over in `--workers` processes while `--busy`
processes keep the CPUs saturated (as on a loaded Dataflow worker), and checks that every decode
gives exactly the first decode's steps: frame indices, times, a hash of the pixels, T and the
audio length. Prints the figures; exits 1 on any failure or difference. When times were read
from ffmpeg's log, about one decode in a thousand lost its time base to an interleaved log line.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import sys
import tempfile
import time

from pipeline.decode import probe
from pipeline.testing import testvideo


def _fingerprint(path: str) -> tuple:
    from pipeline.decode import media  # pylint: disable=import-outside-toplevel

    info = probe.probe(path)
    decoder = media.ClipDecoder(path, has_audio=info.has_audio, declared_duration=info.duration)
    digest = hashlib.sha1()
    indices = []
    for step in decoder.steps():
        indices.append((step.index, round(step.pts_seconds, 6)))
        digest.update(step.frame.tobytes())
    summary = decoder.summary
    return (tuple(indices), digest.hexdigest(), summary.num_steps,
            -1 if summary.waveform is None else len(summary.waveform))


def _worker(args) -> tuple[int, list[str], float]:
    paths, expected, count, seed = args
    failures = []
    began = time.perf_counter()
    for i in range(count):
        path = paths[(i + seed) % len(paths)]
        try:
            got = _fingerprint(path)
            if got != expected[path]:
                failures.append(f"{os.path.basename(path)}: different result {got[2]} steps vs {expected[path][2]}")
        except Exception as e:  # pylint: disable=broad-except
            failures.append(f"{os.path.basename(path)}: {type(e).__name__}: {e}")
    return count, failures, time.perf_counter() - began


def _busy(stop) -> None:
    x = 0
    while not stop.is_set():
        for i in range(100000):
            x += i * i


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decodes", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--busy", type=int, default=0,
                        help="extra CPU-burning processes alongside the decoding workers (0: the workers alone)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        paths = [
            testvideo.generate_test_video(os.path.join(tmp, "a.mp4"), seconds=3, size="64x48", rate=25),
            testvideo.generate_test_video(os.path.join(tmp, "b.mp4"), seconds=3, size="64x48", rate=30),
            testvideo.generate_test_video(os.path.join(tmp, "c.mp4"), seconds=2.5, size="96x64", rate=24, audio=False),
            testvideo.generate_test_video(os.path.join(tmp, "d.mp4"), seconds=3, size="64x48", rate=60),
        ]
        expected = {path: _fingerprint(path) for path in paths}
        stop = multiprocessing.Event()
        busy = [multiprocessing.Process(target=_busy, args=(stop,), daemon=True) for _ in range(args.busy)]
        for proc in busy:
            proc.start()
        per_worker = [args.decodes // args.workers + (i < args.decodes % args.workers) for i in range(args.workers)]
        began = time.perf_counter()
        try:
            with multiprocessing.Pool(args.workers) as pool:
                results = pool.map(_worker, [(paths, expected, n, i) for i, n in enumerate(per_worker)])
        finally:
            stop.set()
            for proc in busy:
                proc.join(timeout=5)
        wall = time.perf_counter() - began
    done = sum(r[0] for r in results)
    failures = [f for r in results for f in r[1]]
    print(f"decodes: {done}  workers: {args.workers}  busy processes: {args.busy}  wall: {wall:.1f} s  "
          f"decodes/s: {done / wall:.1f}")
    print(f"spurious failures or differences: {len(failures)}")
    for failure in failures[:20]:
        print(f"  {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
