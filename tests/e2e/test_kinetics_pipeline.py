"""Kinetics rows end to end: yt-dlp fetch from a loopback server, kept clips, failures, resume."""

import csv
import glob
import json
import os

import numpy as np
import pytest
from extractor_reference import frame_iterator

from pipeline.cli import build
from pipeline.dataset import records
from pipeline.testing import testvideo
from pipeline.testing.loopback import LoopbackServer

OK_ID = "0wR5jVB-WPk"  # real Kinetics-400 val ids (docs/spec.md §6); the videos are generated here
SHORT_ID = "3caPS4FHFF8"
FLAKY_ID = "yq_M1PMw2hY"
GONE_ID = "7pRfb0t34uo"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("youtube")
    (root / "videos").mkdir()
    for vid in (OK_ID, SHORT_ID, FLAKY_ID):
        testvideo.generate_test_video(str(root / "videos" / f"{vid}.mp4"), seconds=30, audio=True)
    with LoopbackServer(str(root)) as server:
        yield server, root


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        w.writerows(rows)


def _argv(csv_path, out, server, model_cache, *extra):
    return ["--input_csv", str(csv_path), "--output_dir", str(out), "--models", "synthetic",
            "--model_cache", model_cache, "--video_url_template", server.url + "/videos/{id}.mp4",
            "--fetch_attempts", "2", "--fetch_backoff", "0.01", "--fetch_timeout", "10", *extra]


def _records(out):
    import tensorflow as tf

    paths = sorted(glob.glob(os.path.join(out, "records", "*.tfrecord")))
    return [records.check_record(r) for r in tf.data.TFRecordDataset(paths).as_numpy_iterator()]


def _failures(out):
    return [json.loads(line) for p in glob.glob(os.path.join(out, "failures-*.jsonl")) for line in open(p)]


def test_fetch_failures_clips_dir_and_resume(tmp_path, served, model_cache):
    server, _ = served
    csv_path = tmp_path / "kinetics.csv"
    _write_csv(csv_path, [
        ["abseiling", OK_ID, 5, 15, "val"],
        ["air drumming", SHORT_ID, 25, 35, "val"],  # the video ends at 30 s: 5 steps
        ["abseiling", FLAKY_ID, 2, 6, "val"],  # 503 in the first run (transient), fine in the second
        ["archery", GONE_ID, 1, 11, "val"],  # never served: not_found
        ["archery", "bad id", 1, 11, "val"],  # invalid_id
    ])
    out, clips = tmp_path / "out", tmp_path / "clips"
    server.faults[f"/videos/{FLAKY_ID}.mp4"] = [503] * 50
    assert build.main(_argv(csv_path, out, server, model_cache, "--clips_dir", str(clips))) == 0
    first = {r.clip_id: r for r in _records(out)}
    assert sorted(first) == [f"{OK_ID}_000005_000015", f"{SHORT_ID}_000025_000035"]
    # T is what the extractor's frame_iterator gives on the kept clip cut at end - start (docs/spec.md §2): a
    # stream-copied section can hold a frame or two past `end`, which are not part of the clip.
    for clip_id, label, steps in ((f"{OK_ID}_000005_000015", "abseiling", 10),
                                  (f"{SHORT_ID}_000025_000035", "air drumming", 5)):
        expected = len(list(frame_iterator(str(clips / label / f"{clip_id}.mp4"), end_ms=10_000)))
        assert first[clip_id].rgb.shape == (expected, 1024) and expected == steps
    reasons = {f["id"]: (f["reason"], f["stage"]) for f in _failures(out)}
    assert reasons == {f"{FLAKY_ID}_000002_000006": ("network", "fetch"), f"{GONE_ID}_000001_000011":
                       ("not_found", "fetch"), "bad id": ("invalid_id", "read")}
    stats = json.load(open(out / "stats.json"))
    assert stats["all_rows_accounted_for"] and stats["fetch"]["clips_fetched"] == 2
    assert stats["fetch"]["bytes_downloaded"] > 0
    # Kept clips: DIR/{label}/{id}.mp4, label names kept as they are when safe (spaces too).
    kept = sorted(os.path.relpath(p, clips) for p in glob.glob(str(clips / "*" / "*.mp4")))
    assert kept == [f"abseiling/{OK_ID}_000005_000015.mp4", f"air drumming/{SHORT_ID}_000025_000035.mp4"]

    # A crashed run's leftovers, then a resume: only the failed rows are fetched again.
    (out / "records" / "val-00000-of-00004.tfrecord.tmp-dead").write_bytes(b"partial")
    del server.faults[f"/videos/{FLAKY_ID}.mp4"]
    before = len(server.requests)
    assert build.main(_argv(csv_path, out, server, model_cache, "--clips_dir", str(clips), "--skip_existing")) == 0
    paths_requested = {r[1] for r in server.requests[before:]}
    assert f"/videos/{OK_ID}.mp4" not in paths_requested and f"/videos/{SHORT_ID}.mp4" not in paths_requested
    ids = [r.clip_id for r in _records(out)]
    assert sorted(ids) == sorted([f"{OK_ID}_000005_000015", f"{SHORT_ID}_000025_000035",
                                  f"{FLAKY_ID}_000002_000006"])  # each exactly once
    assert not glob.glob(str(out / "records" / "*.tmp-*"))
    stats = json.load(open(out / "stats.json"))
    assert stats["records_written"] == 1 and stats["records_skipped_existing"] == 2 and stats["failures"] == 2
    assert stats["all_rows_accounted_for"]
    shard_names = sorted(os.path.basename(p) for p in glob.glob(str(out / "records" / "*.tfrecord")))
    assert len(shard_names) == 2 and shard_names[0] == "val-00000-of-00001.tfrecord"
    assert shard_names[1].startswith("val-r") and shard_names[1].endswith("-00000-of-00001.tfrecord")


def test_fetched_section_matches_local_trim(tmp_path, served, model_cache):
    """The fetched, trimmed section starts at `start` within one frame: same features as cutting locally."""
    server, root = served
    kin_csv = tmp_path / "k.csv"
    _write_csv(kin_csv, [["abseiling", OK_ID, 7, 10, "val"]])
    assert build.main(_argv(kin_csv, tmp_path / "k", server, model_cache)) == 0
    local_csv = tmp_path / "v.csv"
    local_csv.write_text(f"video,labels,start,end\n{root / 'videos' / (OK_ID + '.mp4')},abseiling,7,10\n")
    assert build.main(_argv(local_csv, tmp_path / "v", server, model_cache)) == 0
    (fetched,), (local,) = _records(tmp_path / "k"), _records(tmp_path / "v")
    assert fetched.rgb.shape == local.rgb.shape == (3, 1024)
    diff = np.abs(fetched.rgb.astype(int) - local.rgb.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    audio_diff = np.abs(fetched.audio.astype(int) - local.audio.astype(int))
    assert (audio_diff <= 2).mean() > 0.95  # AAC priming at the cut may shift the first audio samples slightly
