"""--clip_sources mirrors (CVDF layout, whole videos, loopback http) and resumed builds (--skip_existing):
transient failures retried, permanent ones carried over, build settings checked, stats.json of the whole dataset."""

import csv
import glob
import json
import logging
import os

import pytest

from pipeline import errors
from pipeline.cli import build
from pipeline.dataset import settings
from pipeline.dataset.vocabulary import Vocabulary
from pipeline.decode import probe
from pipeline.elements import BuiltRecord, ClipRequest, Failure
from pipeline.fetch import mirrors
from pipeline.testing import testvideo
from pipeline.testing.loopback import LoopbackServer
from transforms.support.fetch_rows import ClipFetcher

# Real Kinetics-400 val ids (docs/spec.md §6); the videos are generated here.
YT_ID = "0wR5jVB-WPk"        # only on the fake YouTube
CVDF_ID = "3caPS4FHFF8"      # only in the CVDF-layout mirror (trimmed clip)
WHOLE_ID = "yq_M1PMw2hY"     # only in the whole-video mirror
HTTP_ID = "7pRfb0t34uo"      # only on the loopback http mirror
FLAKY_ID = "--07WQ2iBlw"     # on YouTube, answers 503 until the test lets it through: transient
FLAKY2_ID = "-0JYRFdr4cA"    # 503 in the first two builds: transient
GONE_ID = "-1hFVr0lkzU"      # not served at first: not_found (permanent); served later
HOSTILE_ID = "-3B32lodo2M"   # its label tries to leave the mirror folder; on YouTube


def _clip(youtube_id, start=2.0, end=5.0, label="abseiling", split="val"):
    from pipeline.read.annotations import section_id

    return ClipRequest(clip_id=section_id(youtube_id, start, end), source="youtube", video=youtube_id, start=start,
                       end=end, labels=(label,), split=split, row=2, fields={})


# ------------------------------------------------------------------------------------------------
# Templates: placeholders, CVDF names, confinement (no Beam, no ffmpeg).

def test_cvdf_template_names_the_trimmed_clip_and_whole_video_templates_the_video(tmp_path):
    sources = mirrors.ClipSources.parse(f"{tmp_path}/{{split}}/{{youtube_id}}_{{start:06d}}_{{end:06d}}.mp4,"
                                        f"{tmp_path}/whole/{{youtube_id}}.mp4")
    found = [(t.trimmed, loc) for _, t, loc, _ in sources.candidates(_clip(YT_ID, 5, 15))]
    # The CVDF file name is the project's clip id for whole seconds.
    assert found == [(True, f"{tmp_path}/val/{YT_ID}_000005_000015.mp4"), (False, f"{tmp_path}/whole/{YT_ID}.mp4")]
    assert mirrors.ClipSources.parse(f"{tmp_path}/{{id}}.mp4").templates[0].trimmed
    # A fractional time cannot fill {start:06d}: that template is skipped for the row.
    (_, _, location, why), _ = sources.candidates(_clip(YT_ID, 5.5, 15))
    assert location is None and "whole seconds" in why


@pytest.mark.parametrize("label", ["..", "../../etc", "a/b", "a\\b", "x\x00y", ""])
def test_hostile_labels_never_leave_the_mirror_folder(tmp_path, label):
    sources = mirrors.ClipSources.parse(f"{tmp_path}/m/{{label}}/{{youtube_id}}.mp4,"
                                        "http://127.0.0.1:1/m/{label}/{id}.mp4")
    for _, _, location, why in sources.candidates(_clip(YT_ID, label=label)):
        assert location is None and why


def test_symlink_out_of_a_local_mirror_is_refused(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "m" / "abseiling")
    sources = mirrors.ClipSources.parse(f"{tmp_path}/m/{{label}}/{{youtube_id}}.mp4")
    ((_, _, location, why),) = sources.candidates(_clip(YT_ID))
    assert location is None and "leads out" in why


def test_http_template_values_are_percent_encoded():
    sources = mirrors.ClipSources.parse("https://mirror.example/k700/{label}/{id}.mp4")
    ((_, _, location, _),) = sources.candidates(_clip(YT_ID, label="air drumming?x=1#"))
    assert location == f"https://mirror.example/k700/air%20drumming%3Fx%3D1%23/{YT_ID}_000002_000005.mp4"


@pytest.mark.parametrize("bad", ["/m/{video}.mp4", "/m/static.mp4", "ftp://h/{id}.mp4", "http://{id}.example/x.mp4",
                                 "/m/{id!r}.mp4", "/m/{label:>9}/{id}.mp4", "/m/{id.__class__}.mp4", " , "])
def test_bad_templates_are_refused_at_parse_time(bad):
    with pytest.raises(ValueError):
        mirrors.ClipSources.parse(bad)


def test_bad_clip_sources_flag_is_a_usage_error(tmp_path, capsys):
    csv_path = tmp_path / "k.csv"
    csv_path.write_text(f"label,youtube_id,time_start,time_end,split\na,{YT_ID},1,3,val\n")
    assert build.main(["--input_csv", str(csv_path), "--output_dir", str(tmp_path / "o"), "--models", "synthetic",
                       "--clip_sources", "/m/{video}.mp4"]) == 2
    assert "unknown placeholder {video}" in capsys.readouterr().err


def test_transient_reasons_are_defined_once():
    assert {"network", "timeout", "rate_limited"} <= errors.TRANSIENT_REASONS
    for permanent in ("not_found", "unavailable_private", "invalid_id", "not_video", "unavailable_sign_in"):
        assert not errors.is_transient(permanent)


def test_settings_differences_name_each_setting():
    old = {"frames_per_second": 1.0, "audio": "vggish", "video_level": False, "fetch_max_height": 360,
           "models": {"rgb_graph": "1:a", "rgb_pca": "2:b"}}
    new = {**old, "frames_per_second": 2.0, "models": {"rgb_graph": "1:c", "rgb_pca": "2:b"}}
    diff = settings.differences(old, new)
    assert diff == ["frames_per_second: 1.0 -> now 2.0", "models.rgb_graph: 1:a -> now 1:c"]
    assert settings.differences(old, dict(old)) == []


# ------------------------------------------------------------------------------------------------
# Real files: a CVDF mirror, a whole-video mirror, a loopback http mirror, the fake YouTube.

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirrors")
    youtube, cvdf, whole, http_root = (root / n for n in ("youtube", "cvdf", "whole", "http"))
    for d in (youtube / "videos", cvdf / "val", whole, http_root / "k"):
        d.mkdir(parents=True)
    for vid in (YT_ID, FLAKY_ID, FLAKY2_ID, GONE_ID, HOSTILE_ID):
        testvideo.generate_test_video(str(youtube / "videos" / f"{vid}.mp4"), seconds=8, audio=True)
    gone = youtube / "videos" / f"{GONE_ID}.mp4"
    os.rename(gone, root / "gone.mp4")  # served only once the test puts it back
    # CVDF: the clip already cut to [start, end), named {youtube_id}_{start:06d}_{end:06d}.mp4.
    testvideo.generate_test_video(str(cvdf / "val" / f"{CVDF_ID}_000002_000005.mp4"), seconds=3, audio=True)
    testvideo.generate_test_video(str(whole / f"{WHOLE_ID}.mp4"), seconds=12, audio=True)
    testvideo.generate_test_video(str(http_root / "k" / f"{HTTP_ID}_000002_000005.mp4"), seconds=3, audio=True)
    # Also on the http mirror: the CVDF folder, tried first, must win.
    testvideo.generate_test_video(str(http_root / "k" / f"{CVDF_ID}_000002_000005.mp4"), seconds=3, audio=True)
    (cvdf / "val" / f"{YT_ID}_000002_000005.mp4").write_bytes(b"<html>not a video</html>")  # broken mirror file
    with LoopbackServer(str(youtube)) as yt, LoopbackServer(str(http_root)) as mirror:
        yield {"root": root, "yt": yt, "mirror": mirror, "cvdf": cvdf, "whole": whole,
               "templates": f"{root}/nothing/{{id}}.mp4,{cvdf}/{{split}}/{{youtube_id}}_{{start:06d}}_{{end:06d}}.mp4,"
                            f"{whole}/{{youtube_id}}.mp4,{mirror.url}/k/{{id}}.mp4,{root}/by_label/{{label}}/{{id}}.mp4"}


def _tmp(path):
    path.mkdir()
    return str(path)


def _fetcher(world, clips_dir=None):
    from pipeline.fetch.config import FetchConfig

    config = FetchConfig(url_template=world["yt"].url + "/videos/{id}.mp4", max_attempts=1, backoff_base=0.0,
                         socket_timeout=10, clips_dir=clips_dir, sources=mirrors.ClipSources.parse(world["templates"]))
    fetcher = ClipFetcher(config=config)
    fetcher.setup()
    return fetcher


def test_mirrors_are_tried_in_order_and_fall_through_to_youtube(world, tmp_path):
    fetcher = _fetcher(world)
    yt_before, http_before = len(world["yt"].requests), len(world["mirror"].requests)
    cvdf = fetcher.fetch(_clip(CVDF_ID), _tmp(tmp_path / "a"))
    assert cvdf.figures.method == "mirror" and cvdf.figures.mirror == 1  # the missing first folder fell through
    assert cvdf.path == str(world["cvdf"] / "val" / f"{CVDF_ID}_000002_000005.mp4") and cvdf.start_offset == 0.0
    whole = fetcher.fetch(_clip(WHOLE_ID), _tmp(tmp_path / "b"))
    assert whole.figures.mirror == 2
    assert probe.read_header(whole.path).duration == pytest.approx(3.0, abs=0.2)  # cut to [2, 5) of 12 s
    over_http = fetcher.fetch(_clip(HTTP_ID), _tmp(tmp_path / "c"))
    assert over_http.figures.mirror == 3 and over_http.figures.bytes > 0
    assert len(world["mirror"].requests) > http_before
    assert len(world["yt"].requests) == yt_before  # no YouTube request for a clip a mirror has
    # The broken CVDF file is not a video: the row falls through the http mirror's 404 to YouTube.
    fetched = fetcher.fetch(_clip(YT_ID), _tmp(tmp_path / "d"))
    assert fetched.figures.method in ("section", "full") and len(world["yt"].requests) > yt_before
    assert any(r[1] == f"/k/{YT_ID}_000002_000005.mp4" and r[3] == 0 for r in world["mirror"].requests)


def test_kept_clip_comes_from_the_mirror(world, tmp_path):
    clips = tmp_path / "clips"
    fetched = _fetcher(world, clips_dir=str(clips)).fetch(_clip(WHOLE_ID), _tmp(tmp_path / "w"))
    kept = clips / "abseiling" / f"{WHOLE_ID}_000002_000005.mp4"
    assert fetched.figures.method == "mirror" and kept.is_file()
    assert probe.read_header(str(kept)).duration == pytest.approx(3.0, abs=0.2)


def test_http_mirror_goes_through_the_guard(world, tmp_path, caplog):
    """A mirror URL that redirects to a link-local address (the metadata server) is refused, then YouTube."""
    from pipeline.fetch.config import FetchConfig

    fetcher = ClipFetcher(config=FetchConfig(url_template=world["yt"].url + "/videos/{id}.mp4", max_attempts=1,
                                             socket_timeout=5,
                                             sources=mirrors.ClipSources.parse("http://169.254.169.254/k/{id}.mp4")))
    fetcher.setup()
    caplog.set_level(logging.INFO)
    fetched = fetcher.fetch(_clip(YT_ID), _tmp(tmp_path / "g"))
    assert fetched.figures.method in ("section", "full")
    assert "address_not_allowed" in caplog.text


# ------------------------------------------------------------------------------------------------
# Whole builds on the DirectRunner: mirrors, resume, settings, stats.

def _write_csv(path):
    rows = [["abseiling", YT_ID, 2, 5, "val"], ["abseiling", CVDF_ID, 2, 5, "val"],
            ["archery", WHOLE_ID, 2, 5, "val"], ["archery", HTTP_ID, 2, 5, "train"],
            ["archery", FLAKY_ID, 2, 5, "train"], ["bowling", FLAKY2_ID, 2, 5, "train"],
            ["bowling", GONE_ID, 2, 5, "train"], ["../../escape", HOSTILE_ID, 2, 5, "val"],
            ["bowling", "bad id", 2, 5, "val"]]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        w.writerows(rows)


def _argv(world, csv_path, out, model_cache, *extra):
    return ["--input_csv", str(csv_path), "--output_dir", str(out), "--models", "synthetic", "--model_cache",
            model_cache, "--video_url_template", world["yt"].url + "/videos/{id}.mp4", "--clip_sources",
            world["templates"], "--fetch_attempts", "1", "--fetch_backoff", "0", "--fetch_timeout", "10", *extra]


def _failures(out):
    return {f["id"]: f for p in glob.glob(os.path.join(out, "failures-*.jsonl")) for f in map(json.loads, open(p))}


def _ids(out):
    from pipeline.dataset import shardindex

    return sorted(i for p in glob.glob(os.path.join(out, "records", "*.tfrecord")) for i in shardindex.read_ids(p))


def _sid(youtube_id):
    return f"{youtube_id}_000002_000005"


def _accounted(stats):
    return stats["rows_read"] == stats["records_written"] + stats["records_skipped_existing"] + stats["failures"]


def test_build_with_mirrors_then_resume(world, tmp_path, model_cache, caplog, capsys):
    yt = world["yt"]
    csv_path, out = tmp_path / "k.csv", tmp_path / "out"
    _write_csv(csv_path)
    yt.faults[f"/videos/{FLAKY_ID}.mp4"] = [503] * 1000
    yt.faults[f"/videos/{FLAKY2_ID}.mp4"] = [503] * 1000

    # 1. A first build: two clips from YouTube, three from mirrors, four failures.
    assert build.main(_argv(world, csv_path, out, model_cache)) == 0
    stats = json.load(open(out / "stats.json"))
    assert stats["clips_by_source"] == {"fetched": 2, "mirror": 3}
    assert _ids(out) == sorted(_sid(v) for v in (YT_ID, CVDF_ID, WHOLE_ID, HTTP_ID, HOSTILE_ID))
    reasons = {i: (f["reason"], f["stage"]) for i, f in _failures(out).items()}
    assert reasons == {_sid(FLAKY_ID): ("network", "fetch"), _sid(FLAKY2_ID): ("network", "fetch"),
                       _sid(GONE_ID): ("not_found", "fetch"), "bad id": ("invalid_id", "read")}
    assert stats["availability"]["train"]["bowling"] == {"rows": 2, "records": 0, "missing": 2}
    assert stats["availability"]["val"]["abseiling"] == {"rows": 2, "records": 2, "missing": 0}
    assert _accounted(stats) and stats["all_rows_accounted_for"] and stats["failures_carried_over"] == 0
    recorded = json.load(open(out / "settings.json"))["settings"]
    assert recorded["frames_per_second"] == 1.0 and recorded["audio"] == "vggish"
    assert recorded["models"] == {"synthetic_seed": 0, "audio": True} and stats["settings"] == recorded
    first_steps = stats["steps_written"]
    assert first_steps == stats["this_run"]["steps_written"] == 15  # 5 clips of 3 s

    # 2. Settings that change the bytes are refused up front, naming the setting.
    capsys.readouterr()
    assert build.main(_argv(world, csv_path, out, model_cache, "--skip_existing", "--frames_per_second", "2",
                            "--audio", "zeros")) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert "frames_per_second: 1.0 -> now 2.0" in line and "audio: vggish -> now zeros" in line

    # 3. Resume: the transient failure (now served) is tried again, the permanent one is not, although
    #    its video is there now; its line is carried over, so every row stays accounted for.
    del yt.faults[f"/videos/{FLAKY_ID}.mp4"]
    os.rename(world["root"] / "gone.mp4", world["root"] / "youtube" / "videos" / f"{GONE_ID}.mp4")
    before = len(yt.requests)
    assert build.main(_argv(world, csv_path, out, model_cache, "--skip_existing")) == 0
    asked = {r[1] for r in yt.requests[before:]}
    assert f"/videos/{FLAKY_ID}.mp4" in asked and f"/videos/{FLAKY2_ID}.mp4" in asked
    assert f"/videos/{GONE_ID}.mp4" not in asked and f"/videos/{YT_ID}.mp4" not in asked
    stats = json.load(open(out / "stats.json"))
    failures = _failures(out)
    assert failures[_sid(GONE_ID)]["reason"] == "not_found" and failures[_sid(GONE_ID)]["carried_over"]
    assert failures[_sid(FLAKY2_ID)]["reason"] == "network" and not failures[_sid(FLAKY2_ID)].get("carried_over")
    assert stats["records_written"] == 1 and stats["records_skipped_existing"] == 5
    assert stats["failures"] == 3 and stats["failures_carried_over"] == 1 and _accounted(stats)
    # stats.json describes the whole dataset; this run's figures are kept apart.
    assert stats["records_in_dataset"] == 6 and stats["records_per_split"] == {"train": 2, "val": 4}
    assert stats["steps_written"] == first_steps + 3 and stats["this_run"]["steps_written"] == 3
    assert stats["clips_by_source"] == {"fetched": 3, "mirror": 3} and stats["this_run"]["clips_by_source"] == {
        "fetched": 1}
    assert len(stats["record_shards"]) == len(glob.glob(str(out / "records" / "*.tfrecord")))
    assert stats["this_run"]["records_written"] == 1 and stats["this_run"]["failures_new"] == 2
    assert stats["availability"]["train"]["archery"] == {"rows": 2, "records": 2, "missing": 0}

    # 4. A dataset without settings.json (written before they were recorded) still resumes, with a warning;
    #    --retry_permanent tries the permanent failure again too, and the transient one.
    os.remove(out / "settings.json")
    del yt.faults[f"/videos/{FLAKY2_ID}.mp4"]
    caplog.set_level(logging.WARNING)
    before = len(yt.requests)
    assert build.main(_argv(world, csv_path, out, model_cache, "--skip_existing", "--retry_permanent")) == 0
    assert "records no build settings" in caplog.text
    asked = {r[1] for r in yt.requests[before:]}
    assert f"/videos/{GONE_ID}.mp4" in asked and f"/videos/{FLAKY2_ID}.mp4" in asked
    stats = json.load(open(out / "stats.json"))
    assert _ids(out) == sorted(_sid(v) for v in (YT_ID, CVDF_ID, WHOLE_ID, HTTP_ID, HOSTILE_ID, FLAKY_ID,
                                                 FLAKY2_ID, GONE_ID))
    assert set(_failures(out)) == {"bad id"} and stats["failures_carried_over"] == 0 and _accounted(stats)
    assert stats["records_in_dataset"] == 8 and stats["steps_written"] == first_steps + 9
    assert os.path.exists(out / "settings.json")  # recorded now, for the next resume

    # The report shows availability per split and label, and the clips by source.
    pytest.importorskip("matplotlib")
    from pipeline.cli import report

    assert report.main([str(out), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "Availability" in page and "train/bowling" in page and "clips by source" in page


# ------------------------------------------------------------------------------------------------
# The resume pieces on their own (TestPipeline, no model): quick to run, quick to break.

def _request(clip_id, row, split="val", label="a"):
    return ClipRequest(clip_id=clip_id, source="youtube", video="x" * 11, start=1.0, end=2.0, labels=(label,),
                       split=split, row=row, fields={"n": str(row)})


def test_skip_existing_retries_transient_and_carries_permanent(tmp_path):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from transforms import write
    from transforms.resume import SkipExisting

    (tmp_path / "records").mkdir()
    (meta,) = write._WriteShard(str(tmp_path), "").process((("val", 0, 1), [("done", b"\x00")]))
    lines = [{"id": "flaky", "stage": "fetch", "reason": "network", "message": "503"},
             {"id": "limited", "stage": "fetch", "reason": "rate_limited", "message": "429"},
             {"id": "gone", "stage": "fetch", "reason": "not_found", "message": "404", "row": 99},
             {"id": "private", "stage": "fetch", "reason": "unavailable_private", "message": "private"},
             {"id": "parsed", "stage": "read", "reason": "duplicate_id", "message": "dup"}]
    failures = tmp_path / "failures-00000-of-00001.jsonl"
    failures.write_text("".join(json.dumps(x) + "\n" for x in lines) + "not json\n")
    ids = ["done", "flaky", "limited", "gone", "private", "parsed", "new"]
    for retry_permanent, todo, carried in ((False, ["flaky", "limited", "parsed", "new"], ["gone", "private"]),
                                           (True, ["flaky", "limited", "gone", "private", "parsed", "new"], [])):
        with TestPipeline() as p:
            clips = p | beam.Create([_request(i, n + 2) for n, i in enumerate(ids)])
            out = clips | SkipExisting([meta["path"]], [str(failures)], retry_permanent=retry_permanent)
            assert_that(out["todo"] | beam.Map(lambda c: c.clip_id), equal_to(todo), label="todo")
            assert_that(out["skipped_count"], equal_to([1]), label="skipped")
            assert_that(out["carried"] | beam.Map(lambda f: (f.clip_id, f.reason, f.row, f.carried_over)),
                        equal_to([(i, dict((x["id"], x["reason"]) for x in lines)[i], ids.index(i) + 2, True)
                                  for i in carried]), label="carried")


def test_resume_refuses_other_settings_and_warns_without_any(tmp_path, caplog):
    from pipeline.dataset import outputs

    recorded = {"frames_per_second": 1.0, "audio": "vggish", "video_level": False, "fetch_max_height": 360,
                "models": {"synthetic_seed": 0, "audio": True}}
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "val-00000-of-00001.tfrecord").write_bytes(b"")
    (tmp_path / "vocabulary.csv").write_text("Index,Name\n")
    caplog.set_level(logging.WARNING)
    outputs.prepare_output_dir(str(tmp_path), overwrite=False, skip_existing=True, settings=recorded)
    assert "records no build settings" in caplog.text
    settings.write(str(tmp_path), recorded)
    outputs.prepare_output_dir(str(tmp_path), overwrite=False, skip_existing=True, settings=dict(recorded))
    for change in ({"video_level": True}, {"models": {"synthetic_seed": 1, "audio": True}}, {"audio": "zeros"}):
        with pytest.raises(outputs.OutputError, match=next(iter(change))):
            outputs.prepare_output_dir(str(tmp_path), overwrite=False, skip_existing=True,
                                       settings={**recorded, **change})
    with pytest.raises(outputs.OutputError, match="already holds a dataset"):  # settings.json is part of one
        os.remove(tmp_path / "records" / "val-00000-of-00001.tfrecord")
        os.remove(tmp_path / "vocabulary.csv")
        outputs.prepare_output_dir(str(tmp_path), overwrite=False)


def test_model_fingerprint_follows_content_not_path(tmp_path):
    a, b = tmp_path / "a.pb", tmp_path / "b.pb"
    a.write_bytes(os.urandom(3 << 20))
    b.write_bytes(a.read_bytes())
    assert settings.file_fingerprint(str(a)) == settings.file_fingerprint(str(b))
    data = bytearray(a.read_bytes())
    data[-5] ^= 1  # a change in the last MiB
    b.write_bytes(bytes(data))
    assert settings.file_fingerprint(str(a)) != settings.file_fingerprint(str(b))


def test_stats_after_resume_describe_the_whole_dataset(tmp_path):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline

    from transforms.write import WriteDataset

    kept = ({"name": "val-00000-of-00001.tfrecord", "split": "val", "records": 2, "steps": 20, "seconds": 20.0,
             "silent_audio": 1, "sources": {"mirror": 2}},
            {"name": "val-r20261204T033000x1-00000-of-00001.tfrecord", "records": 3})  # from a run that did not finish
    recs = [BuiltRecord(split="train", clip_id=f"n{i}", record=b"\x00", steps=4, seconds=4.0, source="fetched",
                        label="a") for i in range(2)]
    out_dir = str(tmp_path)
    (tmp_path / "records").mkdir()
    with TestPipeline() as p:
        {"records": p | "Recs" >> beam.Create(recs),
         "failures": p | "Fails" >> beam.Create([Failure.of(clip_id="g", fields={}, row=3, stage="fetch",
                                                               reason="not_found", message="gone").carried()]),
         "vocabulary": p | "Vocab" >> beam.Create([Vocabulary.from_labels(["a"])]),
         "rows_read": p | "Rows" >> beam.Create([8]), "skipped_existing": p | "Skipped" >> beam.Create([5]),
         "requests": p | "Requests" >> beam.Create([_request(f"r{i}", i, "train") for i in range(3)]),
         "skipped": p | "SkippedClips" >> beam.Create([])} | WriteDataset(
            output_dir=out_dir, records_per_shard=10, failures_per_shard=10, run_info={}, run_tag="rY",
            kept_shards=kept)
    stats = json.load(open(tmp_path / "stats.json"))
    assert stats["all_rows_accounted_for"] and stats["failures_carried_over"] == 1
    assert stats["records_in_dataset"] == 7 and stats["records_per_split"] == {"train": 2, "val": 5}
    assert stats["steps_written"] == 28 and stats["seconds_of_video"] == 28.0 and stats["clips_with_silent_audio"] == 1
    assert stats["clips_by_source"] == {"fetched": 2, "mirror": 2}
    assert stats["shards_without_figures"] == ["val-r20261204T033000x1-00000-of-00001.tfrecord"]
    assert stats["this_run"]["records_written"] == 2 and stats["this_run"]["steps_written"] == 8
    assert stats["this_run"]["failures_new"] == 0 and stats["this_run"]["records_per_split"] == {"train": 2}
    assert stats["shards"]["train-rY-00000-of-00001.tfrecord"]["steps"] == 8
    assert stats["availability"] == {"train": {"a": {"rows": 3, "records": 2, "missing": 1}}}
