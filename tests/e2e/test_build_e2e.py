"""End to end: the CLI on the DirectRunner with two worker processes, read back and checked field by field."""

import csv
import glob
import json
import os

import numpy as np
import pytest
import references

from pipeline.cli import build, inspect, options
from pipeline.dataset import records


@pytest.fixture(scope="module")
def built(tmp_path_factory, videos, model_cache):
    d = tmp_path_factory.mktemp("e2e")
    csv_path = d / "videos.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "labels", "split"])
        w.writerow([videos["v10_audio"], "music;bars", "train"])
        w.writerow([videos["v4_5_silent"], "bars", "train"])
        w.writerow([videos["v0_5"], "bars", "train"])
        w.writerow([videos["empty"], "bars", "train"])
        w.writerow([videos["missing"], "music", "train"])
    out = d / "out"
    argv = ["--input_csv", str(csv_path), "--output_dir", str(out), "--models", "synthetic",
            "--model_cache", model_cache, "--records_per_shard", "1",
            "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    assert build.main(argv) == 0
    return {"out": str(out), "argv": argv, "videos": videos}


def read_all(out):
    import tensorflow as tf

    paths = sorted(glob.glob(os.path.join(out, "records", "*.tfrecord")))
    return paths, list(tf.data.TFRecordDataset(paths).as_numpy_iterator())


def test_three_records_with_10_5_and_1_steps(built):
    paths, data = read_all(built["out"])
    assert [os.path.basename(p) for p in paths] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    parsed = {r.clip_id: r for r in map(records.check_record, data)}
    v = built["videos"]
    assert sorted(parsed) == sorted([v["v10_audio"], v["v4_5_silent"], v["v0_5"]])
    ten, four = parsed[v["v10_audio"]], parsed[v["v4_5_silent"]]
    # docs/spec.md §2 (the extractor's frame_iterator): T = frames selected; 4.5 s -> 5 steps, 0.5 s -> 1 step.
    assert ten.rgb.shape == (10, 1024) and ten.audio.shape == (10, 128)
    assert four.rgb.shape == (5, 1024) and four.audio.shape == (5, 128)
    assert parsed[v["v0_5"]].rgb.shape == (1, 1024) and parsed[v["v0_5"]].audio.shape == (1, 128)
    # vocabulary: sorted names -> bars 0, music 1
    assert ten.labels == [0, 1] and four.labels == [0]
    # Features vary over time and between clips (not constant bytes).
    assert len(np.unique(ten.rgb)) > 20 and not np.array_equal(ten.rgb[0], ten.rgb[5])
    # The silent clip's audio steps are all the same (digital silence), and not zero bytes.
    assert (four.audio == four.audio[0]).all() and four.audio.any()
    # The YouTube-8M reader's parsing spec reads every record.
    rows = references.yt8m_reader_parse(data)
    assert sorted(r[1] for r in rows) == [[0], [0], [0, 1]]


def test_failures_vocabulary_and_stats(built):
    out, v = built["out"], built["videos"]
    (failures_path,) = glob.glob(os.path.join(out, "failures-*.jsonl"))
    failures = {f["id"]: f for f in map(json.loads, open(failures_path))}
    assert {k: f["reason"] for k, f in failures.items()} == {
        v["empty"]: "empty_file", v["missing"]: "missing_file"}
    assert all(f["message"] and f["stage"] == "decode" and f["input"]["video"] for f in failures.values())
    assert open(os.path.join(out, "vocabulary.csv")).read() == "Index,Name\n0,bars\n1,music\n"
    stats = json.load(open(os.path.join(out, "stats.json")))
    assert stats["rows_read"] == 5 and stats["records_written"] == 3 and stats["failures"] == 2
    assert stats["all_rows_accounted_for"] is True
    assert stats["steps_written"] == 16 and stats["clips_with_silent_audio"] == 1
    assert stats["seconds_of_video"] == pytest.approx(15.02, abs=0.1)
    assert stats["synthetic"] is True and stats["models"]["synthetic"] is True
    assert stats["failures_by_reason"] == {"empty_file": 1, "missing_file": 1}


def test_inspect_passes_on_the_output(built, capsys):
    assert inspect.main([built["out"]]) == 0
    text = capsys.readouterr().out
    assert "records: 3" in text and "steps: 16" in text and "OK" in text


def test_records_folder_holds_only_shards_and_its_glob_inspects(built, capsys):
    """records/ holds TFRecord shards only (the id indexes are in index/), so `records/*` reads as records."""
    out = built["out"]
    assert all(name.endswith(".tfrecord") for name in os.listdir(os.path.join(out, "records")))
    assert sorted(os.listdir(os.path.join(out, "index"))) == [f"train-0000{i}-of-00003.ids" for i in range(3)]
    assert inspect.main([os.path.join(out, "records", "*")]) == 0
    assert "records: 3" in capsys.readouterr().out


def test_rerun_refuses_to_mix_unless_overwrite(built):
    with pytest.raises(options.UsageError, match="--overwrite"):
        build.run(built["argv"])


def test_yt8m_models_fail_fast_naming_files(tmp_path, built):
    argv = [a for a in built["argv"]]
    i = argv.index("--models")
    argv[i + 1] = "yt8m"
    argv[argv.index("--output_dir") + 1] = str(tmp_path / "never")
    from pipeline.errors import ModelArtifactError

    with pytest.raises(ModelArtifactError) as e:
        build.run(argv + ["--model_dir", str(tmp_path / "empty_models")])
    msg = str(e.value)
    assert "classify_image_graph_def.pb" in msg and "vggish_model.ckpt" in msg and "--model_dir" in msg
    assert not (tmp_path / "never").exists()  # failed before any work


def test_progress_lines_and_summary_table(tmp_path, videos, model_cache, capfd, monkeypatch):
    monkeypatch.setenv("VIDEO_FEATURES_PROGRESS_SECONDS", "0")
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"video,labels\n{videos['v3_30fps']},a\n{videos['empty']},a\n")
    assert build.main(["--input_csv", str(csv_path), "--output_dir", str(tmp_path / "o"), "--models", "synthetic",
                       "--model_cache", model_cache]) == 0
    err = capfd.readouterr().err
    # One display for the run (this is not a terminal: plain lines), counting rows of the CSV.
    progress = [line for line in err.splitlines() if line.startswith("progress: ")]
    assert progress and progress[-1].startswith("progress: 2/2 rows done (1 decoded, 1 failed)")
    # The last line gives the rate, then an ETA or, once every row is done, what the run waits for.
    assert "video-s/s" in progress[-1] and ("ETA" in progress[-1] or progress[-1].endswith("writing the dataset")
                                            or progress[-1].endswith("stopping workers")), progress
    summary = err[err.index("Run summary"):]
    assert "clips_decoded" in summary and "failed_empty_file" in summary and "wall_seconds" in summary
