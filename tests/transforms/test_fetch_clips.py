"""The fetch stage (FetchClips) and fetch-only builds (--features none)."""

import csv
import dataclasses
import glob
import json
import os
import subprocess
import sys
import threading

import pytest

from pipeline.cli import build, inspect, report
from pipeline.decode import probe
from pipeline.decode.config import DecodeConfig
from pipeline.elements import ClipRequest, Failure, FetchedClip, FetchFigures, KeptClip
from pipeline.errors import ClipError
from pipeline.fetch.config import FetchConfig, FetchResult
from pipeline.testing import testvideo
from pipeline.testing.loopback import LoopbackServer
from transforms.fetch import FetchClips
from transforms.support.fetch_rows import ClipFetcher
from transforms.support.progress import PROGRESS_DIR_ENV

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OK_ID, SHORT_ID, GONE_ID = "0wR5jVB-WPk", "3caPS4FHFF8", "7pRfb0t34uo"


def _clip(n: int, source: str = "youtube", video: str | None = None, **kw) -> ClipRequest:
    return ClipRequest(clip_id=f"c{n}", source=source, video=video or f"vid{n:08d}x", start=kw.get("start", 1.0),
                       end=kw.get("end", 3.0), labels=("a",), split="val", row=n + 1, fields={"n": str(n)})


class _FakeFetcher:
    """Stands in for ClipFetcher: writes `size` bytes per clip; optionally waits for `barrier` first."""

    def __init__(self, *, size: int = 10, barrier: threading.Barrier | None = None, fail: set[str] = frozenset(),
                 **config):
        self.size, self.barrier, self.fail = size, barrier, fail
        self.config = FetchConfig(**config)
        self.counted = []

    def setup(self):
        pass

    def fetch(self, clip, tmp):  # takes no `count`: the stage counts in the bundle's thread (count_figures)
        if clip.clip_id in self.fail:
            raise ClipError("not_found", "gone", stage="fetch")
        if self.barrier is not None:
            self.barrier.wait()  # raises BrokenBarrierError unless all parties are in flight at once
        path = os.path.join(tmp, "x.webm")
        with open(path, "wb") as f:
            f.write(b"v" * self.size)
        return FetchResult(path, 0.5, 2.0, FetchFigures("section", bytes=self.size, seconds=0.1, attempts=1))

    def count_figures(self, figures):
        self.counted.append(figures)


def _run_dofn(dofn: FetchClips, clips: list[ClipRequest]) -> tuple[list, list]:
    """Runs the DoFn's lifecycle by hand; returns (main outputs, Failures), windowed values unwrapped."""
    import apache_beam as beam
    from apache_beam.transforms.window import GlobalWindow

    main, failures = [], []

    def collect(outputs):
        for out in outputs:
            tagged = isinstance(out, beam.pvalue.TaggedOutput)
            value = out.value if tagged else out
            value = getattr(value, "value", value) if not isinstance(value, (FetchedClip, KeptClip, Failure)) else value
            (failures if tagged else main).append(value)

    dofn.setup()
    dofn.start_bundle()
    for clip in clips:
        collect(dofn.process(clip, window=GlobalWindow(), timestamp=0))
    collect(dofn.finish_bundle() or [])
    dofn.teardown()
    return main, failures


def test_fetch_stage_keeps_n_fetches_in_flight_and_accounts_every_row_once(tmp_path, monkeypatch):
    monkeypatch.setenv(PROGRESS_DIR_ENV, str(tmp_path))
    fetcher = _FakeFetcher(barrier=threading.Barrier(3, timeout=30), fail={"c6"}, concurrency=3)
    clips = [_clip(n) for n in range(6)] + [_clip(6)] + [_clip(7, source="file", video="/data/v.mp4")]
    main, failures = _run_dofn(FetchClips(fetcher=fetcher), clips)
    # Six YouTube rows pass the 3-party barrier only because three fetches run at once (twice).
    assert sorted(m.clip.clip_id for m in main if m.fetched) == [f"c{n}" for n in range(6)]
    fetched = next(m for m in main if m.clip.clip_id == "c0")
    assert fetched.data == b"v" * 10 and fetched.suffix == ".webm" and (fetched.start, fetched.duration) == (0.5, 2.0)
    assert [m.clip.clip_id for m in main if not m.fetched] == ["c7"]  # a file row passes through, unfetched
    assert [(f.clip_id, f.stage, f.reason, f.row) for f in failures] == [("c6", "fetch", "not_found", 7)]
    assert len(fetcher.counted) == 6
    # Progress: only the failure is recorded here (a fetched clip is recorded once, by the decoder).
    lines = [line for p in glob.glob(str(tmp_path / "*.log")) for line in open(p)]
    assert [line.split()[0] for line in lines] == ["failed"]


def test_fetch_stage_bounds_the_element_size(tmp_path):
    main, failures = _run_dofn(FetchClips(fetcher=_FakeFetcher(size=1000, max_bytes=999)), [_clip(0)])
    assert not main and [(f.reason, f.stage) for f in failures] == [("too_large", "fetch")]
    assert "--fetch_max_bytes" in failures[0].message and "--clips_dir" in failures[0].message
    main, failures = _run_dofn(FetchClips(fetcher=_FakeFetcher(size=1000, max_bytes=1000)), [_clip(0)])
    assert not failures and len(main[0].data) == 1000


def test_fetch_stage_turns_an_unexpected_error_into_its_failure_line():
    class Exploding(_FakeFetcher):
        def fetch(self, clip, tmp):
            raise KeyError("bug")

    main, failures = _run_dofn(FetchClips(fetcher=Exploding(concurrency=2)), [_clip(0), _clip(1)])
    assert not main
    assert sorted((f.clip_id, f.stage, f.reason) for f in failures) == [
        ("c0", "fetch", "internal_error"), ("c1", "fetch", "internal_error")]


def _decode_outputs(element: FetchedClip, **kw) -> tuple[int, list]:
    """Runs DecodeClips on one element: (RGB steps, Failures)."""
    from transforms.decode import DecodeClips

    steps, failures = 0, []
    for out in DecodeClips(base_dir=".", config=DecodeConfig(audio_mode="zeros", **kw)).process(element):
        steps += out.tag == DecodeClips.RGB
        if out.tag == DecodeClips.FAILURES:
            failures.append(out.value)
    return steps, failures


def test_a_fetched_clip_is_probed_once_by_the_fetcher_not_again_by_the_decoder(tmp_path, served, monkeypatch):
    from pipeline.decode import probe
    from pipeline.fetch.config import FetchConfig

    server, _ = served
    config = FetchConfig(url_template=server.url + "/videos/{id}.mp4", socket_timeout=5.0, max_attempts=1)
    clip = ClipRequest(clip_id="c", source="youtube", video=OK_ID, start=2.0, end=4.0, labels=("a",), split="val",
                       row=1, fields={})
    probed = []
    real_read_header = probe.read_header

    def counting_read_header(target, **kw):
        probed.append(target)
        return real_read_header(target, **kw)

    monkeypatch.setattr(probe, "read_header", counting_read_header)
    [element], failures = _run_dofn(FetchClips(fetcher=ClipFetcher(config=config)), [clip])
    assert not failures and element.header is not None and element.header.has_video
    assert element.header.stderr == ""  # ffmpeg's text stays behind: the element carries the facts only
    fetcher_probes = len(probed)
    assert fetcher_probes >= 1
    steps, failures = _decode_outputs(element)
    assert not failures and steps == 2
    assert len(probed) == fetcher_probes  # the decoder checked the fetcher's header instead of probing again

    # The decoder's checks still hold on a carried header: frame caps, and a missing header means a probe.
    steps, failures = _decode_outputs(element, max_frame_side=100)
    assert steps == 0 and [f.reason for f in failures] == ["too_large"]
    assert len(probed) == fetcher_probes
    steps, failures = _decode_outputs(dataclasses.replace(element, header=None))
    assert not failures and steps == 2 and len(probed) == fetcher_probes + 1


@pytest.mark.parametrize("decode_ahead", [0, 2])
def test_the_decoder_counts_what_it_downloads_and_fetches_whichever_thread_does_it(served, decode_ahead):
    """Beam counts metrics only in the bundle's thread: decoding ahead, the counts must still arrive."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.testing.test_pipeline import TestPipeline

    from pipeline.fetch.config import FetchConfig
    from transforms.decode import DecodeClips
    from transforms.support import metrics

    server, root = served
    config = FetchConfig(url_template=server.url + "/videos/{id}.mp4", socket_timeout=5.0, max_attempts=1)
    clips = [ClipRequest(clip_id="http", source="file", video=f"{server.url}/videos/{OK_ID}.mp4", start=None,
                         end=None, labels=("a",), split="val", row=1, fields={}),
             ClipRequest(clip_id="yt", source="youtube", video=SHORT_ID, start=2.0, end=4.0, labels=("a",),
                         split="val", row=2, fields={})]
    fetcher = ClipFetcher(config=config)
    p = TestPipeline()
    # The YouTube row is fetched by FetchClips (the build's path); the http row is downloaded by the decoder.
    fetched = p | beam.Create(clips) | beam.ParDo(FetchClips(fetcher=fetcher)).with_outputs(
        FetchClips.FAILURES, main="clips")
    decode = DecodeClips(base_dir=".", config=DecodeConfig(audio_mode="zeros", decode_ahead=decode_ahead),
                         fetcher=fetcher)
    _ = fetched.clips | beam.ParDo(decode).with_outputs(DecodeClips.RGB, DecodeClips.META, DecodeClips.FAILURES)
    result = p.run()
    result.wait_until_finish()
    counters = {}  # summed over the steps: both stages count fetch_bytes
    for c in result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))["counters"]:
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + c.committed
    whole = os.path.getsize(root / "videos" / f"{OK_ID}.mp4")
    assert counters.get("clips_decoded") == 2 and counters.get("clips_fetched") == 1, counters
    # The http row's whole file, plus the YouTube row's section (a part of the other file).
    assert whole < counters.get("fetch_bytes", 0) < whole + os.path.getsize(root / "videos" / f"{SHORT_ID}.mp4")


# --------------------------------------------------------------------------- fetch-only builds


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("youtube")
    (root / "videos").mkdir()
    for vid in (OK_ID, SHORT_ID):
        testvideo.generate_test_video(str(root / "videos" / f"{vid}.mp4"), seconds=12, audio=True)
    with LoopbackServer(str(root)) as server:
        yield server, root


def _kinetics_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        w.writerows(rows)


def _fetch_only_argv(csv_path, out, clips, server, *extra):
    # --models yt8m with no model files anywhere: a fetch-only build must not look for them.
    return ["--input_csv", str(csv_path), "--output_dir", str(out), "--features", "none", "--clips_dir", str(clips),
            "--models", "yt8m", "--model_dir", str(out) + "-no-models", "--no_download",
            "--video_url_template", server.url + "/videos/{id}.mp4", "--fetch_attempts", "1",
            "--fetch_timeout", "10", *extra]


def _run_cli_without_tensorflow(argv: list[str]) -> subprocess.CompletedProcess:
    """Runs the build in a fresh interpreter (the in-memory runner runs the DoFns in it too) and
    fails there if TensorFlow got imported at any point."""
    code = ("import sys; from pipeline.cli import build; rc = build.main(sys.argv[1:]); "
            "tf = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')); "
            "print('TF_MODULES', tf); sys.exit(rc if not tf else 99)")
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, check=False,
                          timeout=600)


def test_fetch_only_build_keeps_clips_loads_no_model_and_reuses_kept_clips(tmp_path, served, capsys):
    server, _ = served
    csv_path = tmp_path / "k.csv"
    _kinetics_csv(csv_path, [
        ["abseiling", OK_ID, 2, 6, "val"],
        ["air drumming", SHORT_ID, 8, 12, "val"],
        ["archery", GONE_ID, 1, 5, "val"],  # never served: not_found
        ["archery", "bad id", 1, 5, "val"],  # invalid_id at read
    ])
    out, clips = tmp_path / "out", tmp_path / "clips"
    proc = _run_cli_without_tensorflow(_fetch_only_argv(csv_path, out, clips, server))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TF_MODULES []" in proc.stdout and "Kept 2 clips" in proc.stdout
    kept = sorted(os.path.relpath(p, clips) for p in glob.glob(str(clips / "*" / "*.mp4")))
    assert kept == [f"abseiling/{OK_ID}_000002_000006.mp4", f"air drumming/{SHORT_ID}_000008_000012.mp4"]
    info = probe.probe(str(clips / "abseiling" / f"{OK_ID}_000002_000006.mp4"))
    assert abs(info.duration - 4.0) < 0.6  # the section, not the 12-s source
    assert not glob.glob(str(out / "records" / "*.tfrecord"))
    failures = [json.loads(line) for p in glob.glob(str(out / "failures-*.jsonl")) for line in open(p)]
    assert sorted((f["id"], f["stage"], f["reason"]) for f in failures) == [
        (f"{GONE_ID}_000001_000005", "fetch", "not_found"), ("bad id", "read", "invalid_id")]
    stats = json.load(open(out / "stats.json"))
    assert (stats["features"], stats["clips_kept"], stats["clips_already_kept"], stats["failures"],
            stats["rows_read"], stats["records_written"]) == ("none", 2, 0, 2, 4, 0)
    assert stats["all_rows_accounted_for"] and stats["models"] is None and not stats["synthetic"]
    assert stats["fetch"]["clips_fetched"] == 2 and stats["fetch"]["bytes_downloaded"] > 0
    # inspect and report say what such a directory is instead of "no records found".
    assert inspect.main([str(out)]) == 0
    assert "a fetch-only build (--features none) has no records: 2 clips kept" in capsys.readouterr().out
    assert report.main([str(out), "--out", str(tmp_path / "r.html")]) == 0
    assert "a fetch-only build" in (tmp_path / "r.html").read_text()

    # Again (--overwrite replaces the report): kept clips are reused, not fetched again.
    before = len(server.requests)
    assert build.main(_fetch_only_argv(csv_path, out, clips, server, "--overwrite")) == 0
    assert {r[1] for r in server.requests[before:]} == {f"/videos/{GONE_ID}.mp4"}
    stats = json.load(open(out / "stats.json"))
    assert (stats["clips_kept"], stats["clips_already_kept"], stats["failures"]) == (0, 2, 2)
    assert stats["all_rows_accounted_for"] and stats["fetch"]["clips_fetched"] == 0


def test_fetch_only_build_of_local_videos_trims_sections_and_copies_whole_mp4s(tmp_path, served):
    _, root = served
    source = root / "videos" / f"{OK_ID}.mp4"
    csv_path = tmp_path / "v.csv"
    csv_path.write_text(f"video,labels,id,start,end\n{source},cats,sec,3,5\n{source},dogs,whole,,\n"
                        f"{tmp_path / 'missing.mp4'},dogs,gone,,\n")
    out, clips = tmp_path / "out", tmp_path / "clips"
    argv = ["--input_csv", str(csv_path), "--output_dir", str(out), "--features", "none", "--clips_dir", str(clips)]
    assert build.main(argv) == 0
    assert (clips / "dogs" / "whole.mp4").read_bytes() == source.read_bytes()  # copied byte for byte
    assert abs(probe.probe(str(clips / "cats" / "sec.mp4")).duration - 2.0) < 0.3  # [3, 5) cut and re-encoded
    stats = json.load(open(out / "stats.json"))
    assert (stats["clips_kept"], stats["failures"], stats["failures_by_reason"]) == (2, 1, {"missing_file": 1})
    assert stats["all_rows_accounted_for"]


def test_fetch_only_build_needs_clips_dir(tmp_path, capsys):
    csv_path = tmp_path / "k.csv"
    _kinetics_csv(csv_path, [["abseiling", OK_ID, 2, 6, "val"]])
    assert build.main(["--input_csv", str(csv_path), "--output_dir", str(tmp_path / "o"), "--features", "none"]) == 2
    err = capsys.readouterr().err
    assert "--features none" in err and "pass --clips_dir" in err
    assert not (tmp_path / "o").exists()
