"""Input/output safety: no row lost, no write outside the output, safe resume and concurrent runs.

Real inputs throughout: hostile CSVs, an output directory with glob characters, corrupt shards,
a held lock, a changed CSV; builds run the CLI with `--models synthetic` on the in-process
DirectRunner.
"""

import csv
import glob
import io
import json
import os
import socket
import subprocess
import sys
import tempfile

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline import elements
from pipeline.cli import build, inspect, options, report, yt8m_files
from pipeline.dataset import outputs
from pipeline.dataset.lock import BuildLock
from pipeline.dataset.vocabulary import Vocabulary
from pipeline.errors import ClipError
from pipeline.fetch.config import FetchConfig
from pipeline.read import annotations as A
from transforms import assemble
from transforms.assemble import AssembleRecords
from transforms.decode import DecodeClips
from transforms.fetch import FetchClips
from transforms.support import fetch_rows as fetch
from transforms.write import rows_accounted_for


def parse(text):
    return [r for _, r in A.read_rows(io.StringIO(text))]


# ---------------------------------------------------------------------------------------------
# CSV rows: each hostile line fails alone.


def test_oversized_field_fails_its_row_only():
    rows = parse("video,labels\na.mp4,x\nb.mp4," + "y" * 200_000 + "\nc.mp4,z\n")
    assert [type(r).__name__ for r in rows] == ["ClipRequest", "RowError", "ClipRequest"]
    assert rows[1].reason == "malformed_row" and "field limit" in rows[1].message and rows[1].row == 3
    assert rows[2].clip_id == "c.mp4" and rows[2].row == 4


def test_out_of_range_integer_label_fails_its_row():
    big = str(2**63)
    rows = parse(f"a.mp4,{big}\nb.mp4,{2**63 - 1}\n")  # headerless yt8m rows: integer labels
    assert rows[0].reason == "bad_label" and "2^63-1" in rows[0].message
    assert rows[1].labels == (str(2**63 - 1),)
    rows = parse(f"video,labels\na.mp4,cat;{big}\nb.mp4,cat\n")
    assert rows[0].reason == "bad_label" and isinstance(rows[1], elements.ClipRequest)


def test_undecodable_bytes_fail_their_row_and_stay_printable():
    raw = b"video,labels\na.mp4,x\nb\xff\xfe.mp4,y\nc.mp4,z\n"
    rows = [r for _, r in A.read_rows(A.open_text(io.BytesIO(raw)))]
    assert [getattr(r, "reason", "ok") for r in rows] == ["ok", "malformed_row", "ok"]
    assert "not UTF-8" in rows[1].message
    json.dumps(rows[1].fields, ensure_ascii=False).encode("utf-8")  # the failure line can be written


def test_nul_bytes_and_huge_rows_fail_their_row_with_a_bounded_failure_line():
    raw = b"video,labels\na.mp4,x\nb\x00.mp4,y\nc.mp4,x" + b",1" * 100_000 + b"\nd.mp4,z\n"
    rows = [r for _, r in A.read_rows(A.open_text(io.BytesIO(raw)))]
    assert [getattr(r, "reason", "ok") for r in rows] == ["ok", "malformed_row", "malformed_row", "ok"]
    assert "NUL" in rows[1].message
    assert len(json.dumps(rows[2].fields)) < 1000 and "found 100002" in rows[2].message


@pytest.mark.parametrize("split", ["../../x", "/abs/x", "a/b", "..", ".hidden", "-x", "a\\b", "x" * 101])
def test_unsafe_split_names_fail_their_row(split):
    (row,) = parse(f"video,labels,split\na.mp4,x,{split}\n")
    assert row.reason == "bad_split"


def test_safe_split_names_pass():
    rows = parse("video,labels,split\na.mp4,x,train\nb.mp4,x,val_2.small-1\n")
    assert [r.split for r in rows] == ["train", "val_2.small-1"]


# ---------------------------------------------------------------------------------------------
# Kept clips stay inside --clips_dir.


def _clip(clip_id, labels=("a",)):
    return elements.ClipRequest(clip_id=clip_id, source="youtube", video="x", start=None, end=None, labels=labels,
                         split="all", row=1, fields={})


def test_clip_path_is_one_component_and_refuses_symlinks_out(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    path = fetch.clip_path(str(clips), _clip("../../etc/x", labels=("../up",)))
    assert os.path.dirname(os.path.dirname(path)) == str(clips) and ".." not in path.split(os.sep)[-2:]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, clips / "dog")
    with pytest.raises(ClipError) as e:
        fetch.clip_path(str(clips), _clip("abc", labels=("dog",)))
    assert e.value.reason == "unsafe_path" and str(clips) in e.value.message


# ---------------------------------------------------------------------------------------------
# Per-element isolation under TestPipeline.


class _ExplodingFetcher:
    """Stands in for ClipFetcher: a bug that raises something no code path expects."""

    config = FetchConfig()

    def setup(self):
        pass

    def fetch(self, clip, tmp):
        raise KeyError("boom")


def test_unexpected_error_in_a_clip_becomes_internal_error(tmp_path, videos):
    clips = [
        elements.ClipRequest(clip_id="yt", source="youtube", video="abcdefghijk", start=0, end=2, labels=(),
                             split="all", row=2, fields={"youtube_id": "abcdefghijk"}),
        elements.ClipRequest(clip_id="ok", source="file", video=videos["v3_30fps"], start=None, end=None, labels=(),
                             split="all", row=3, fields={}),
    ]
    with TestPipeline() as p:
        fetched = p | beam.Create(clips) | beam.ParDo(FetchClips(fetcher=_ExplodingFetcher())).with_outputs(
            FetchClips.FAILURES, main="clips")
        out = fetched.clips | beam.ParDo(DecodeClips(base_dir=str(tmp_path))).with_outputs(
            DecodeClips.RGB, DecodeClips.AUDIO, DecodeClips.META, DecodeClips.FAILURES)
        failures = (fetched[FetchClips.FAILURES], out[DecodeClips.FAILURES]) | beam.Flatten()
        assert_that(failures | beam.Map(lambda f: (f.clip_id, f.reason, f.stage, f.row, f.message)),
                    equal_to([("yt", "internal_error", "fetch", 2, "KeyError: 'boom'")]), label="Failures")
        assert_that(out[DecodeClips.META] | beam.Map(lambda kv: kv[0]), equal_to(["ok"]), label="Meta")


def _meta(clip_id, steps, labels=("a",)):
    clip = elements.ClipRequest(clip_id=clip_id, source="file", video=f"{clip_id}.mp4", start=None, end=None,
                         labels=labels, split="all", row=7, fields={"video": f"{clip_id}.mp4"})
    return clip_id, elements.ClipMeta(clip=clip, num_steps=steps, duration=float(steps), silent_audio=False)


def test_assemble_reports_missing_steps_and_unexpected_errors():
    rgb = [(("full", k), np.zeros(1024, np.float32)) for k in range(2)]
    rgb += [(("gap", 0), np.zeros(1024, np.float32))]  # step 1 of `gap` never arrives
    rgb += [(("odd", k), np.zeros(1024, np.float32)) for k in range(2)]
    audio = [((cid, k), np.zeros(128, np.float32)) for cid in ("full", "gap", "odd") for k in range(2)]
    metas = [_meta("full", 2), _meta("gap", 2), _meta("odd", 2, labels=("not_in_vocabulary",))]
    with TestPipeline() as p:
        vocab = p | "Vocab" >> beam.Create([Vocabulary.from_labels(["a"])])
        records, failures = {
            "meta": p | "Meta" >> beam.Create(metas),
            "rgb": p | "Rgb" >> beam.Create(rgb) | "KeyR" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1]))),
            "audio": p | "Audio" >> beam.Create(audio) | "KeyA" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1]))),
        } | AssembleRecords(vocab)
        assert_that(records | beam.Map(lambda r: r.clip_id), equal_to(["full"]), label="Records")
        assert_that(failures | beam.Map(lambda f: (f.clip_id, f.reason, f.stage, f.row)),
                    equal_to([("gap", "missing_steps", "features", 7), ("odd", "internal_error", "features", 7)]),
                    label="Failures")


def test_rows_accounted_for_is_exact():
    assert rows_accounted_for(rows=10, records=6, skipped=1, failures=3)
    assert not rows_accounted_for(rows=10, records=6, skipped=1, failures=2)  # a row lost
    assert not rows_accounted_for(rows=10, records=6, skipped=2, failures=3)  # a row counted twice


# ---------------------------------------------------------------------------------------------
# Whole builds with hostile inputs.


def _argv(csv_path, out, model_cache, *extra):
    return ["--input_csv", str(csv_path), "--output_dir", str(out), "--models", "synthetic",
            "--model_cache", model_cache, *extra]


def _ids(out):
    import tensorflow as tf

    from pipeline.dataset import records

    paths = sorted(glob.glob(glob.escape(str(out)) + "/records/*.tfrecord"))
    return [records.parse_sequence_example(r).clip_id for r in tf.data.TFRecordDataset(paths).as_numpy_iterator()]


def _failures(out):
    return [json.loads(line) for p in glob.glob(glob.escape(str(out)) + "/failures-*.jsonl") for line in open(p)]


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, videos, model_cache):
    """One build over a CSV with a hostile row of each class, into `out[x]*?` (glob characters)."""
    d = tmp_path_factory.mktemp("hostile")
    csv_path = d / "in.csv"
    good = videos["v3_30fps"]
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "labels", "id", "split"])
        w.writerow([good, "cat", "ok", "train"])
        w.writerow([good, "cat", "up", "../../escaped"])
        w.writerow([good, "cat", "abs", str(d / "abs_split")])
        w.writerow([good, "cat", "nested", "a/b"])
        w.writerow([good, "cat", "huge", "x" * 200_000])
        w.writerow([good, f"cat;{2**64}", "biglabel", "train"])
    with open(csv_path, "ab") as f:
        f.write(b"bad\xff.mp4,cat,bytes,train\n")
    out = d / "out[x]*?"
    tmp = d / "tmp"
    tmp.mkdir()
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = str(tmp), str(tmp)
    try:
        code = build.main(_argv(csv_path, out, model_cache, "--csv_split_rows", "2"))  # 7 rows in 4 splits
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            os.environ.pop("TMPDIR")
        else:
            os.environ["TMPDIR"] = saved[1]
    return {"code": code, "dir": d, "out": out, "csv": csv_path, "tmp": tmp}


def test_hostile_rows_fail_alone_and_nothing_escapes(hostile):
    assert hostile["code"] == 0
    d, out = hostile["dir"], hostile["out"]
    reasons = {f["id"]: f["reason"] for f in _failures(out)}
    assert reasons == {"up": "bad_split", "abs": "bad_split", "nested": "bad_split", "biglabel": "bad_label",
                       "bytes": "malformed_row", "": "malformed_row"}  # the oversized field: no id readable
    assert _ids(out) == ["ok"]
    stats = json.load(open(out / "stats.json"))
    assert stats["rows_read"] == 7 and stats["all_rows_accounted_for"]
    # Nothing was written beside the output: the CSV's folder holds the CSV, the output and the temp dir.
    assert sorted(os.listdir(d)) == ["in.csv", "out[x]*?", "tmp"]
    assert not os.path.exists(d.parent.parent / "escaped") and not os.path.exists(d / "abs_split")
    assert _tree(out) == ["failures-00000-of-00001.jsonl", "index/train-00000-of-00001.ids",
                          "records/train-00000-of-00001.tfrecord", "settings.json", "stats.json",
                          "vocabulary.csv"]  # no lock or temp file left; the shard's id index in index/
    assert os.listdir(hostile["tmp"]) == []  # nothing of the run left in the temp directory


def test_glob_output_dir_is_recognised_and_inspected(hostile, model_cache):
    out = hostile["out"]
    with pytest.raises(options.UsageError, match="already holds a dataset"):
        build.run(_argv(hostile["csv"], out, model_cache))
    assert inspect.main([str(out)]) == 0
    assert report.main([str(out), "--out", str(hostile["dir"] / "r.html")]) == 0
    os.remove(hostile["dir"] / "r.html")


def test_corrupt_shard_on_resume_is_named_before_anything_is_touched(tmp_path, hostile, model_cache, capsys):
    out = tmp_path / "copy[1]"
    subprocess.run(["cp", "-r", str(hostile["out"]), str(out)], check=True)
    shard = out / "records" / "train-00000-of-00001.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-100])  # truncated
    before = {p: open(out / p, "rb").read() for p in _tree(out)}
    assert build.main(_argv(hostile["csv"], out, model_cache, "--skip_existing")) == 2
    err = capsys.readouterr().err
    assert str(shard) in err and "corrupt" in err and "Traceback" not in err
    assert {p: open(out / p, "rb").read() for p in _tree(out)} == before  # stats, vocabulary, failures kept
    # inspect and report exit non-zero naming the file.
    assert inspect.main([str(out)]) == 1
    assert str(shard) in capsys.readouterr().out
    assert report.main([str(out), "--out", str(tmp_path / "r.html")]) == 1
    assert str(shard) in capsys.readouterr().err


def test_changed_csv_on_resume_refuses_and_keeps_the_dataset(tmp_path, hostile, model_cache, capsys):
    out = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(hostile["out"]), str(out)], check=True)
    before = {p: open(out / p, "rb").read() for p in _tree(out)}
    changed = tmp_path / "changed.csv"
    changed.write_text(f"video,labels,id\n{hostile['csv']},aardvark,new\n")  # sorts before `cat`: index 0 -> 1
    assert build.main(_argv(changed, out, model_cache, "--skip_existing")) == 2
    err = capsys.readouterr().err
    assert "aardvark" in err and "label indices" in err and "Traceback" not in err
    assert {p: open(out / p, "rb").read() for p in _tree(out)} == before


def test_resume_after_kill_converges_without_duplicates(tmp_path, hostile, model_cache, videos, caplog):
    """A run killed -9 (stale lock of a dead pid, no stats.json) and a CSV with one more label sorting last."""
    out = tmp_path / "run[2]"
    subprocess.run(["cp", "-r", str(hostile["out"]), str(out)], check=True)
    os.remove(out / "stats.json")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / outputs.LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid,
                                                     "started_at": "2026-01-01T00:00:00+00:00"}))
    # A damaged id index that, trusted, would skip `second` and build `ok` twice: the records decide.
    index = out / "index" / "train-00000-of-00001.ids"
    index.write_bytes(index.read_bytes().replace(b' "ok"\n', b' "second"\n'))
    more = tmp_path / "more.csv"
    more.write_text(hostile["csv"].read_text(encoding="utf-8", errors="surrogateescape"),
                    encoding="utf-8", errors="surrogateescape")
    with open(more, "a") as f:
        f.write(f"{videos['v3_30fps']},zebra,second,train\n")
    assert build.main(_argv(more, out, model_cache, "--skip_existing", "--failures_per_shard", "2")) == 0
    assert "stale build lock" in caplog.text
    # The earlier failure shard (-of-00001) was replaced by the new set, not mixed with it.
    assert sorted(os.path.basename(p) for p in glob.glob(glob.escape(str(out)) + "/failures-*")) == [
        f"failures-{i:05d}-of-00003.jsonl" for i in range(3)]
    assert len(_failures(out)) == 6
    assert sorted(_ids(out)) == ["ok", "second"]
    stats = json.load(open(out / "stats.json"))
    assert stats["records_written"] == 1 and stats["records_skipped_existing"] == 1 and stats["failures"] == 6
    assert stats["all_rows_accounted_for"]
    assert open(out / "vocabulary.csv").read() == "Index,Name\n0,cat\n1,zebra\n"
    assert not (out / outputs.LOCK_NAME).exists()
    assert "Ignoring the id index" in caplog.text  # the damaged index was seen and not used


def test_second_build_into_a_directory_in_use_refuses(tmp_path, videos, model_cache, capsys):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"video,labels\n{videos['v3_30fps']},a\n")
    out = tmp_path / "out"
    out.mkdir()
    held = BuildLock.acquire(str(out))  # a first build, still running (this live process)
    try:
        assert build.main(_argv(csv_path, out, model_cache)) == 2
        err = capsys.readouterr().err
        assert "in use by another build" in err and f"pid {os.getpid()}" in err and "--break_lock" in err
        assert os.listdir(out / "records") == [] and not (out / "stats.json").exists()
    finally:
        held.release()
    assert not (out / outputs.LOCK_NAME).exists()


def test_lock_of_another_host_needs_break_lock(tmp_path):
    lock = tmp_path / outputs.LOCK_NAME
    lock.write_text(json.dumps({"host": "some-other-host", "pid": 1, "started_at": "2026-01-01T00:00:00+00:00"}))
    with pytest.raises(outputs.OutputError, match="another host.*--break_lock"):
        BuildLock.acquire(str(tmp_path))
    taken = BuildLock.acquire(str(tmp_path), break_lock=True)
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    taken.release()
    assert not lock.exists()


def test_output_dir_that_is_a_file_exits_2(tmp_path, videos, model_cache, capsys):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"video,labels\n{videos['v3_30fps']},a\n")
    (tmp_path / "afile").write_text("x")
    assert build.main(_argv(csv_path, tmp_path / "afile", model_cache)) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err


def test_unwritable_output_dir_is_a_usage_error():
    with pytest.raises(outputs.OutputError, match="cannot be used"):
        outputs.check_output_dir("/proc/no-such-dataset")  # (as root, chmod cannot make a directory read-only)


def test_main_exits_nonzero_when_a_row_is_lost(tmp_path, videos, model_cache, monkeypatch, capsys):
    """A plausible bug: the assembler drops a clip without a failure line. main() must not exit 0."""
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"video,labels\n{videos['v3_30fps']},a\n")

    def drop(self, clip_id, meta, grouped, vocabulary):
        return iter(())

    monkeypatch.setattr(assemble._BuildRecord, "_build", drop)
    assert build.main(_argv(csv_path, tmp_path / "out", model_cache)) == 1
    assert "unaccounted" in capsys.readouterr().err
    assert json.load(open(tmp_path / "out" / "stats.json"))["all_rows_accounted_for"] is False


def test_download_yt8m_refuses_a_zero_timeout_at_parse_time(capsys):
    with pytest.raises(SystemExit) as e:
        yt8m_files.build_parser().parse_args(["--partition", "2/frame/validate", "--timeout", "0"])
    assert e.value.code == 2 and "--timeout" in capsys.readouterr().err
