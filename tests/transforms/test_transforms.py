"""Transforms under TestPipeline: reading annotations, decoding, writing the dataset layout."""

import glob
import json
import os

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline import elements
from pipeline.dataset import records
from pipeline.dataset.vocabulary import Vocabulary
from pipeline.decode.config import DecodeConfig
from transforms.decode import DecodeClips
from transforms.read import ReadAnnotations
from transforms.support import metrics
from transforms.write import WriteDataset


def test_read_annotations_dedupes_and_reports(tmp_path):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("video,labels,id\n"
                        "a.mp4,dog;cat,x\n"
                        "b.mp4,emu,x\n"
                        "c.mp4,cat,y\n"
                        "d.mp4,cat\n")
    with TestPipeline() as p:
        out = p | ReadAnnotations(str(csv_path))
        assert_that(out["clips"] | beam.Map(lambda r: (r.clip_id, r.row)), equal_to([("x", 2), ("y", 4)]),
                    label="FirstRowOfEachIdWins")
        assert_that(out["failures"] | beam.Map(lambda f: (f.reason, f.row, f.stage)),
                    equal_to([("duplicate_id", 3, "read"), ("malformed_row", 5, "read")]), label="Failures")
        assert_that(out["vocabulary"] | beam.Map(lambda v: v.names), equal_to([("cat", "dog", "emu")]),
                    label="VocabularyFromAllParsedRows")
        assert_that(out["rows_read"], equal_to([4]), label="RowsRead")


@pytest.mark.parametrize("decode_ahead", [0, 1, 3])
def test_decode_clips_outputs_per_step_elements_and_failures(tmp_path, videos, decode_ahead):
    clips = [
        elements.ClipRequest(clip_id="ok", source="file", video=videos["v4_5_silent"], start=None, end=None,
                                labels=("a",), split="all", row=1, fields={}),
        elements.ClipRequest(clip_id="short", source="file", video=videos["v0_5"], start=None, end=None,
                                labels=(), split="all", row=2, fields={"video": "v0_5"}),
        elements.ClipRequest(clip_id="gone", source="file", video=videos["missing"], start=None, end=None,
                                labels=(), split="all", row=3, fields={}),
    ]
    p = TestPipeline()
    # Each clip carries its own timestamp: decoded ahead, a clip's outputs may leave during a later
    # clip's process() call (or in finish_bundle), and must still carry their own clip's.
    out = (p | beam.Create(clips) | beam.Map(lambda c: beam.window.TimestampedValue(c, 100 * c.row))
           | beam.ParDo(DecodeClips(base_dir=str(tmp_path), config=DecodeConfig(decode_ahead=decode_ahead)))
           .with_outputs(DecodeClips.RGB, DecodeClips.AUDIO, DecodeClips.META, DecodeClips.FAILURES))
    assert_that(out[DecodeClips.RGB] | beam.Map(lambda kv: (kv[0], kv[1].shape, str(kv[1].dtype))),
                equal_to([(("ok", k), (240, 320, 3), "uint8") for k in range(5)]
                         + [(("short", 0), (240, 320, 3), "uint8")]), label="Rgb")  # native size: no resize
    assert_that(out[DecodeClips.AUDIO] | beam.Map(lambda kv: (kv[0], kv[1].shape)),
                equal_to([(("ok", k), (96, 64)) for k in range(5)] + [(("short", 0), (96, 64))]), label="Audio")
    # No audio stream: every example is digital silence, log(0.01).
    assert_that(out[DecodeClips.AUDIO] | beam.Filter(lambda kv: kv[0][0] == "ok")
                | beam.Map(lambda kv: bool(np.allclose(kv[1], np.log(0.01)))),
                equal_to([True] * 5), label="SilentAudio")
    # docs/spec.md §2: T is the number of frames selected; 4.5 s -> 5 steps, 0.5 s -> 1 step (no duration rule).
    assert_that(out[DecodeClips.META] | beam.Map(lambda kv: (kv[0], kv[1].num_steps, kv[1].silent_audio)),
                equal_to([("ok", 5, True), ("short", 1, False)]), label="Meta")
    assert_that(out[DecodeClips.FAILURES] | beam.Map(lambda f: (f.clip_id, f.reason, f.row)),
                equal_to([("gone", "missing_file", 3)]), label="Failures")
    stamped = {tag: out[tag] | f"Stamp{tag}" >> beam.Map(lambda x, ts=beam.DoFn.TimestampParam: int(ts))
               for tag in (DecodeClips.RGB, DecodeClips.META, DecodeClips.FAILURES)}
    assert_that(stamped[DecodeClips.RGB], equal_to([100] * 5 + [200]), label="RgbTimestamps")
    assert_that(stamped[DecodeClips.META], equal_to([100, 200]), label="MetaTimestamps")
    assert_that(stamped[DecodeClips.FAILURES], equal_to([300]), label="FailureTimestamps")
    result = p.run()
    result.wait_until_finish()
    # Counted on the bundle's thread, whichever thread decoded: Beam sees every update.
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))["counters"]}
    assert counters.get("clips_decoded") == 2 and counters.get("failed_missing_file") == 1, counters


def _record(clip_id, steps):
    from pipeline.features import quantization

    rgb = np.zeros((steps, 1024), np.float32)
    audio = np.zeros((steps, 128), np.float32)
    return records.build_sequence_example(records.ClipFeatures(
        clip_id=clip_id, labels=[0], rgb=rgb, audio=audio, rgb_quantized=quantization.quantize_rgb(rgb),
        audio_quantized=quantization.quantize_audio(audio)))


def test_write_dataset_layout(tmp_path):
    out_dir = str(tmp_path / "ds")
    recs = [elements.BuiltRecord(split="train" if i < 5 else "val", clip_id=f"c{i}", record=_record(f"c{i}", 2),
                                 steps=2, seconds=2.5, silent_audio=i == 0) for i in range(7)]
    fails = [elements.Failure.of(clip_id="bad", fields={"video": "bad.mp4"}, row=9, stage="decode",
                                 reason="empty_file", message="empty")]
    with TestPipeline() as p:
        vocab = p | "Vocab" >> beam.Create([Vocabulary.from_labels(["dog"])])
        stats = {
            "records": p | "Recs" >> beam.Create(recs), "failures": p | "Fails" >> beam.Create(fails),
            "vocabulary": vocab, "rows_read": p | "Rows" >> beam.Create([8]),
            "skipped_existing": p | "Skipped" >> beam.Create([0]),
        } | WriteDataset(output_dir=out_dir, records_per_shard=2, failures_per_shard=10, run_info={"synthetic": True})
        assert_that(stats | beam.Map(lambda s: (s["records_written"], s["failures"], s["all_rows_accounted_for"])),
                    equal_to([(7, 1, True)]))
    train = sorted(glob.glob(os.path.join(out_dir, "records", "train-*.tfrecord")))
    val = sorted(glob.glob(os.path.join(out_dir, "records", "val-*.tfrecord")))
    # 5 train records at 2 per shard -> 3 shards (some may be empty files, but the set is complete).
    assert [os.path.basename(p) for p in train] == [f"train-{i:05d}-of-00003.tfrecord" for i in range(3)]
    assert [os.path.basename(p) for p in val] == ["val-00000-of-00001.tfrecord"]
    import tensorflow as tf

    ids = sorted(records.parse_sequence_example(r).clip_id
                 for r in tf.data.TFRecordDataset(train + val).as_numpy_iterator())
    assert ids == sorted(f"c{i}" for i in range(7))
    (failure_file,) = glob.glob(os.path.join(out_dir, "failures-*.jsonl"))
    assert os.path.basename(failure_file) == "failures-00000-of-00001.jsonl"
    assert json.loads(open(failure_file).read())["reason"] == "empty_file"
    assert open(os.path.join(out_dir, "vocabulary.csv")).read() == "Index,Name\n0,dog\n"
    stats = json.load(open(os.path.join(out_dir, "stats.json")))
    assert stats["steps_written"] == 14 and stats["seconds_of_video"] == pytest.approx(17.5)
    assert stats["clips_with_silent_audio"] == 1 and stats["synthetic"] is True
    assert stats["failures_by_reason"] == {"empty_file": 1}
    assert not glob.glob(os.path.join(out_dir, "**", "*.tmp-*"), recursive=True)
