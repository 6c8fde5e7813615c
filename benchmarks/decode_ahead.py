"""Decode-ahead: decoding overlapped with a model step that leaves the CPU free, as a GPU's does.

    python -m benchmarks.decode_ahead [--work_dir /tmp/decode-ahead] [--clips 20] [--model_ms_per_frame 25]
                                      [--ahead 4] [--reps 3]

In a build the models run inside DecodeClips' `yield` (the steps are fused), so a worker that
decodes in step waits for every batch. On a 2-core CPU both cores are busy with the model
anyway, so overlap has nothing to fill (benchmarks/run.py --only dataset measures that case);
with the model on an accelerator the host thread only waits, and the CPU could decode meanwhile.

This case isolates that: a Beam pipeline (DirectRunner, one worker) of DecodeClips (`--audio
zeros`) on N 10-s 640x360 30-fps clips (generated once into --work_dir), fused with a stand-in
model step: batches of 32 frames, each of which sleeps --model_ms_per_frame per frame (a device
call: the thread waits, the CPU is free; no TensorFlow). It runs decode-only (no model time),
then `--decode_ahead 0` and `--decode_ahead N` alternately --reps times, and prints the medians.
Decoding in step takes about decode + model; perfect overlap takes about max(decode, model).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from pipeline import elements
from pipeline.decode.config import DecodeConfig
from pipeline.testing import testvideo

BATCH = 32


def _model(batch: list, ms_per_frame: float) -> int:
    time.sleep(len(batch) * ms_per_frame / 1000.0)
    return len(batch)


def run_once(paths: list[str], *, ahead: int, ms_per_frame: float) -> tuple[float, int]:
    """Wall seconds of one pipeline run, and the frames the model step saw."""
    import apache_beam as beam  # pylint: disable=import-outside-toplevel
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel
    from apache_beam.testing.util import assert_that, equal_to  # pylint: disable=import-outside-toplevel

    from transforms.decode import DecodeClips  # pylint: disable=import-outside-toplevel

    clips = [elements.ClipRequest(clip_id=f"c{i}", source="file", video=path, start=None, end=None, labels=(),
                                     split="all", row=i + 1, fields={}) for i, path in enumerate(paths)]
    began = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=in_memory"])) as p:
        decode = DecodeClips(base_dir="/", config=DecodeConfig(audio_mode="zeros", decode_ahead=ahead))
        decoded = p | beam.Create(clips) | beam.ParDo(decode).with_outputs(DecodeClips.RGB, DecodeClips.META)
        frames = (decoded[DecodeClips.RGB]
                  | beam.BatchElements(min_batch_size=BATCH, max_batch_size=BATCH)
                  | beam.Map(_model, ms_per_frame)
                  | beam.CombineGlobally(sum))
        assert_that(decoded[DecodeClips.META] | beam.combiners.Count.Globally(), equal_to([len(clips)]),
                    label="EveryClipDecoded")
        assert_that(frames, equal_to([10 * len(clips)]), label="EveryFrameModelled")
    wall = time.perf_counter() - began
    return wall, 10 * len(clips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work_dir", default="/tmp/decode-ahead")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--model_ms_per_frame", type=float, default=25.0)
    parser.add_argument("--ahead", type=int, default=4, help="--decode_ahead to compare with 0")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    from pipeline.cli import logs  # pylint: disable=import-outside-toplevel

    logs.setup()
    os.makedirs(args.work_dir, exist_ok=True)
    source = os.path.join(args.work_dir, "clip_640x360_30fps_10s.mp4")
    if not os.path.exists(source):
        testvideo.generate_test_video(source, seconds=10, size="640x360", rate=30)
    paths = [source] * args.clips  # the same file N times: identical work per clip

    decode_only = statistics.median(run_once(paths, ahead=0, ms_per_frame=0.0)[0] for _ in range(args.reps))
    walls: dict[int, list[float]] = {0: [], args.ahead: []}
    frames = 0
    for _ in range(args.reps):
        for ahead in (0, args.ahead):
            wall, frames = run_once(paths, ahead=ahead, ms_per_frame=args.model_ms_per_frame)
            walls[ahead].append(wall)
    model_s = frames * args.model_ms_per_frame / 1000.0
    in_step, overlapped = statistics.median(walls[0]), statistics.median(walls[args.ahead])
    rows = [
        (f"{args.clips} x 10-s 640x360 30-fps clips, {frames} frames; model step {args.model_ms_per_frame:g} ms "
         f"per frame in batches of {BATCH} (sleeps: the CPU is free)", ""),
        ("decode only (model step 0 ms), median", f"{decode_only:.1f} s"),
        ("model step alone (its sleeps)", f"{model_s:.1f} s"),
        ("--decode_ahead 0 (in step), median", f"{in_step:.1f} s  ({', '.join(f'{w:.1f}' for w in walls[0])})"),
        (f"--decode_ahead {args.ahead}, median",
         f"{overlapped:.1f} s  ({', '.join(f'{w:.1f}' for w in walls[args.ahead])})"),
        ("in step / ahead", f"{in_step / overlapped:.2f}x"),
        ("ahead / max(decode only, model alone): 1.00 is perfect overlap",
         f"{overlapped / max(decode_only, model_s):.2f}"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
