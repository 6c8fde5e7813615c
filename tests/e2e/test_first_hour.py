"""A new user's first hour: flags checked up front, a readable --help, no silent wrong builds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from pipeline.cli import build, logs, options
from pipeline.features import registry
from pipeline.testing import testvideo

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("flag, value", [
    ("--records_per_shard", "0"), ("--failures_per_shard", "-1"), ("--rgb_batch_size", "0"),
    ("--audio_batch_size", "-3"), ("--fetch_attempts", "0"), ("--fetch_concurrency", "0"),
    ("--fetch_timeout", "0"), ("--fetch_max_seconds", "-5"), ("--decode_timeout", "nan"),
    ("--fetch_backoff", "-1"), ("--fetch_max_height", "0"), ("--model_download_timeout", "0"),
    ("--csv_split_rows", "0"), ("--decode_ahead", "-1"), ("--models", "synthtic"),
])
def test_bad_flag_values_exit_2_with_one_usage_line_before_any_work(tmp_path, capsys, flag, value):
    out = tmp_path / "out"
    code = build.main(["--input_csv", str(tmp_path / "absent.csv"), "--output_dir", str(out), "--models",
                       "synthetic", flag, value])
    assert code == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("usage: python -m pipeline.build"), err
    assert flag in lines[1] and "error" in lines[1]
    assert registry.SYNTHETIC_WARNING not in err and "no such file" not in err
    assert not out.exists()


@pytest.mark.parametrize("arg", ["--direct_num_workers=-1", "--num_workers=0", "--max_num_workers=-2"])
def test_beam_numeric_flags_are_checked_too(tmp_path, capsys, arg):
    code = build.main(["--input_csv", str(tmp_path / "absent.csv"), "--output_dir", str(tmp_path / "o"), arg])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --") and "must be >=" in err and "\n" not in err


def test_validation_helpers_are_argparse_types():
    import argparse

    assert options.positive_int("3") == 3 and options.non_negative_int("0") == 0
    assert options.positive_float("0.5") == 0.5 and options.non_negative_float("0") == 0.0
    for helper, text in ((options.positive_int, "0"), (options.positive_int, "1.5"), (options.non_negative_int, "-1"),
                         (options.positive_float, "inf"), (options.non_negative_float, "-0.1")):
        with pytest.raises(argparse.ArgumentTypeError):
            helper(text)


def test_an_existing_dataset_is_refused_first(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stats.json").write_text("{}")
    code = build.main(["--input_csv", str(tmp_path / "absent.csv"), "--output_dir", str(out), "--models",
                       "synthetic"])
    assert code == 2
    err = capsys.readouterr().err
    assert "already holds a dataset" in err
    assert registry.SYNTHETIC_WARNING not in err and "no such file" not in err


def _cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.build", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, timeout=timeout, check=False)


def test_help_is_short_grouped_by_stage_with_defaults():
    result = _cli("--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert len(lines) <= 150, len(lines)
    text = result.stdout
    positions = [text.index(title + ":") for _, title in options.STAGES]
    assert positions == sorted(positions), "stages in the order a build runs them"
    assert text.index("--input_csv") < positions[1]
    for expected in ("-v, --verbose", "--help_beam", "--records_per_shard N", "(default 1000)", "(default 4)"):
        assert expected in text, expected
    for beam_only in ("s3_", "azure", "hdfs", "kafka", "--runner RUNNER"):
        assert beam_only not in text.lower(), beam_only
    every_flag = {a.option_strings[-1] for a in options.help_parser()._actions}  # pylint: disable=protected-access
    assert {"--input_csv", "--features", "--model_copies", "--clips_dir"} <= every_flag
    beam = _cli("--help_beam")
    assert beam.returncode == 0 and "--runner" in beam.stdout and "--records_per_shard" in beam.stdout


@pytest.mark.parametrize("header, fix", [("video,label", "`label` -> `labels`"),
                                         ("filename,category", "`filename` -> `video`")])
def test_a_misspelled_header_stops_the_build_naming_the_fix(tmp_path, capsys, header, fix):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"{header}\na.mp4,cat\n")
    code = build.main(["--input_csv", str(csv_path), "--output_dir", str(tmp_path / "out"), "--features", "none",
                       "--clips_dir", str(tmp_path / "clips")])
    assert code == 2
    err = capsys.readouterr().err
    assert fix in err and err.startswith("error: --input_csv")


def test_a_semicolon_csv_stops_the_build(tmp_path, capsys):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("video;labels\na.mp4;cat\n")
    assert build.main(["--input_csv", str(csv_path), "--output_dir", str(tmp_path / "out")]) == 2
    assert "comma-separated" in capsys.readouterr().err


@pytest.mark.parametrize("stats, code", [
    ({"rows_read": 3, "records_written": 0, "records_skipped_existing": 0, "failures": 3}, 1),
    ({"rows_read": 3, "records_written": 1, "records_skipped_existing": 0, "failures": 2}, 0),
    ({"rows_read": 3, "records_written": 0, "records_skipped_existing": 3, "failures": 0}, 0),
    ({"rows_read": 2, "features": "none", "clips_kept": 0, "clips_already_kept": 0, "failures": 2}, 1),
    ({"rows_read": 2, "features": "none", "clips_kept": 0, "clips_already_kept": 2, "failures": 0}, 0),
])
def test_a_run_that_made_nothing_exits_1(monkeypatch, tmp_path, capsys, stats, code):
    full = {"steps_written": 0, "seconds_of_video": 0.0, "all_rows_accounted_for": True, **stats}
    monkeypatch.setattr(build, "run", lambda argv: full)
    assert build.main(["--input_csv", "x.csv", "--output_dir", str(tmp_path / "out")]) == code
    err = capsys.readouterr().err
    assert ("all" in err and "failures-*.jsonl" in err) == (code == 1)


def test_a_fetch_only_run_where_every_row_fails_exits_1(tmp_path, videos):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"video,labels\n{videos['missing']},a\n{videos['empty']},a\n")
    out = tmp_path / "out"
    result = _cli("--input_csv", str(csv_path), "--output_dir", str(out), "--features", "none", "--clips_dir",
                  str(tmp_path / "clips"), timeout=300)
    assert result.returncode == 1, result.stderr
    assert "no clip was kept" in result.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["clips_kept"] == 0 and stats["failures"] == 2


@pytest.fixture
def rangeless(tmp_path):
    """`python -m http.server` as a mirror: no Range support; a moov-at-the-end MP4 and an HTML page named .mp4."""
    import functools
    import http.server
    import threading


    root = tmp_path / "www"
    (root / "videos").mkdir(parents=True)
    testvideo.generate_test_video(str(root / "videos" / "0wR5jVB-WPk.mp4"), seconds=8, audio=True)  # moov at the end
    (root / "videos" / "3caPS4FHFF8.mp4").write_text("<html><body>Not here</body></html>\n" * 40)
    (root / "videos" / "7pRfb0t34uo.mp4").write_text("<html><body>Not here</body></html>\n" * 40)  # as video/mp4

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def guess_type(self, path):  # an HTML error page served under the video's name, as mirrors do
            return "text/html" if "3caPS4FHFF8" in str(path) else super().guess_type(path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_rangeless_mirror_gets_the_whole_file_fallback(rangeless, tmp_path):
    from pipeline.fetch.clips import fetch_clip
    from pipeline.fetch.config import FetchConfig

    config = FetchConfig(url_template=rangeless + "/videos/{id}.mp4", max_attempts=1)
    result = fetch_clip(video_id="0wR5jVB-WPk", start=2, end=5, config=config, work_dir=str(tmp_path))
    assert result.figures.method == "full" and result.start_offset == 2.0
    assert result.probe.has_video and abs(result.probe.duration - 8.0) < 0.5


def test_a_fetched_file_that_is_not_media_names_the_server_and_what_it_sent(rangeless, tmp_path):
    from pipeline.errors import ClipError
    from pipeline.fetch.clips import fetch_clip
    from pipeline.fetch.config import FetchConfig

    config = FetchConfig(url_template=rangeless + "/videos/{id}.mp4", max_attempts=1)
    with pytest.raises(ClipError) as e:
        fetch_clip(video_id="7pRfb0t34uo", start=2, end=5, config=config, work_dir=str(tmp_path))
    assert e.value.reason == "not_video"
    host = rangeless.split("//")[1]
    assert f"from {host}: HTTP 200" in e.value.message and "Content-Type" in e.value.message
    assert "Content-Type video/mp4" in e.value.message
    assert "Accept-Ranges none" in e.value.message and "1,400 bytes" in e.value.message


def test_fetch_only_keeps_only_real_media(rangeless, tmp_path, videos):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("video,labels,id\n"
                        f"{rangeless}/videos/3caPS4FHFF8.mp4,a,page\n"
                        f"{videos['empty']},a,empty\n"
                        f"{videos['audio_only']},a,audio\n"
                        f"{videos['v3_30fps']},a,good\n")
    out, clips = tmp_path / "out", tmp_path / "clips"
    code = build.main(["--input_csv", str(csv_path), "--output_dir", str(out), "--features", "none",
                       "--clips_dir", str(clips)])
    assert code == 0
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["clips_kept"], stats["failures"]) == (1, 3)
    assert sorted(os.listdir(clips / "a")) == ["good.mp4"]
    failures = {f["id"]: f for p in out.glob("failures-*.jsonl") for f in map(json.loads, p.open())}
    assert failures["page"]["reason"] == "not_video" and "text/html" in failures["page"]["message"]
    assert failures["empty"]["reason"] == "empty_file"
    assert failures["audio"]["reason"] == "no_video_stream"
    assert all(f["stage"] == "fetch" for f in failures.values())


def test_fetch_only_counters_summary_and_stats_agree(tmp_path, videos, capsys):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"video,labels,id\n{videos['v3_30fps']},a,good\n{videos['missing']},a,gone\n")
    out, clips = tmp_path / "out", tmp_path / "clips"
    argv = ["--input_csv", str(csv_path), "--output_dir", str(out), "--features", "none", "--clips_dir", str(clips)]

    def figures() -> tuple[dict, dict, str]:
        captured = capsys.readouterr()
        table = dict(re.findall(r"^(clips_kept|clips_already_kept)\s+([\d,]+)$", captured.err, flags=re.M))
        return ({k: int(v) for k, v in table.items()}, json.loads((out / "stats.json").read_text()),
                captured.out + captured.err)

    assert build.main(argv) == 0
    counters, stats, text = figures()
    assert counters.get("clips_kept", 0) == stats["clips_kept"] == 1
    assert counters.get("clips_already_kept", 0) == stats["clips_already_kept"] == 0
    assert "Kept 1 clip (0 more were already kept)" in text
    assert build.main([*argv, "--overwrite"]) == 0  # the clip is in --clips_dir now: reused
    counters, stats, text = figures()
    assert counters.get("clips_kept", 0) == stats["clips_kept"] == 0
    assert counters.get("clips_already_kept", 0) == stats["clips_already_kept"] == 1
    assert "Kept 0 clips (1 more was already kept)" in text and "decoded" not in text


def test_progress_says_what_it_waits_for(monkeypatch):
    import io

    from transforms.support import progress

    monkeypatch.delenv(progress.PROGRESS_DIR_ENV, raising=False)
    stream = io.StringIO()
    with progress.RunProgress(total=2, stream=stream, interval=0) as run:
        assert "starting workers" in run.line()
        progress.PROGRESS.phase("loading models")
        run._display.update(run._read)  # pylint: disable=protected-access  (the poll loop's tick, now)
        assert run.line().endswith("; loading models")
        progress.PROGRESS.record(ok=True, seconds=3.0, total=2)
        progress.PROGRESS.record(ok=False, total=2)
        run._display.update(run._read)  # pylint: disable=protected-access
        assert run.line().endswith("; writing the dataset, stopping workers")
        assert "writing the dataset" in run._bar_text()  # pylint: disable=protected-access
    lines = stream.getvalue().splitlines()
    assert any("loading models" in line for line in lines)
    assert lines[-1].startswith("progress: 2/2 rows done (1 decoded, 1 failed)")


def test_fetch_only_progress_counts_kept_clips_not_decoded_video(monkeypatch):
    import io

    from transforms.support import progress

    monkeypatch.delenv(progress.PROGRESS_DIR_ENV, raising=False)
    stream = io.StringIO()
    with progress.RunProgress(total=1, stream=stream, interval=0, done_word="kept"):
        progress.PROGRESS.record(ok=True, total=1)
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("progress: 1/1 rows done (1 kept, 0 failed)")
    assert "decoded" not in last and "video-s/s" not in last


def test_the_model_load_line_is_words_not_a_dict(caplog, model_cache):
    import logging

    from pipeline.features import models, tf_setup
    from transforms.inference import FeatureModelHandler

    config = registry.ModelConfig(mode="synthetic", model_cache=model_cache)
    handler = FeatureModelHandler(models.AUDIO, config, batch_size=4, sharing=tf_setup.ModelSharing(copies=1))
    with caplog.at_level(logging.INFO):
        handler.load_model()
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Loading")]
    assert "{" not in line and "'" not in line and "vggish" in line and "audio model" in line


def test_yt_dlp_bug_report_advice_is_stripped():
    from yt_dlp.utils import bug_reports_message

    from pipeline.fetch import ytdlp

    text = f"[generic] x: Unable to download webpage: HTTP Error 403{bug_reports_message()}"
    assert ytdlp.strip_bug_report_advice(text) == "[generic] x: Unable to download webpage: HTTP Error 403"

    class Logger:
        errors: list = []

    message = ytdlp.error_text(Exception(f"ERROR: [youtube] y: Sign in{bug_reports_message()}"), Logger())
    assert message == "[youtube] y: Sign in" and "yt-dlp -U" not in message


def test_guard_refusals_log_one_line_per_destination_and_reason(tmp_path, caplog):
    import logging

    from pipeline.errors import ClipError
    from pipeline.fetch.clips import fetch_clip
    from pipeline.fetch.config import FetchConfig
    from pipeline.net import guard_proxy

    guard_proxy._LOGGED_REFUSALS.clear()  # pylint: disable=protected-access  (a fresh worker process)
    config = FetchConfig(url_template="http://169.254.169.254/{id}", max_attempts=1, socket_timeout=3)
    with caplog.at_level(logging.INFO):
        for video_id in ("0wR5jVB-WPk", "3caPS4FHFF8", "7pRfb0t34uo"):
            with pytest.raises(ClipError) as e:
                fetch_clip(video_id=video_id, start=1, end=2, config=config, work_dir=str(tmp_path))
            assert e.value.reason == "address_not_allowed" and "yt-dlp -U" not in e.value.message
    refused = [r for r in caplog.records if r.levelno >= logging.INFO and "Guard proxy refused" in r.getMessage()]
    assert len(refused) == 1, [r.getMessage() for r in refused]


def test_a_long_model_error_is_short_lines(tmp_path, capsys):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("video,labels\n/x.mp4,a\n")
    code = build.main(["--input_csv", str(csv_path), "--output_dir", str(tmp_path / "out"), "--no_download",
                       "--model_cache", str(tmp_path / "empty-cache")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert lines[0].startswith("error: --models yt8m needs") and len(lines) >= 6
    assert max(len(line) for line in lines) <= 110
    for name in ("classify_image_graph_def.pb", "vggish_model.ckpt", "--models synthetic"):
        assert name in err
    assert logs.readable_error("error: short") == "error: short"


def test_tasks_sh_checks_matplotlib_and_says_what_setup_does(tmp_path):
    # A venv whose python has everything but matplotlib (the report's): tasks.sh must not use it as is.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text("raise ImportError('no matplotlib here')\n")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f"#!/bin/sh\nPYTHONPATH={blocker}:{REPO} exec {sys.executable} \"$@\"\n")
    (venv / "bin" / "python").chmod(0o755)
    # The interpreter that would make a new venv: records that it was asked, makes nothing.
    maker = tmp_path / "maker"
    maker.write_text("#!/bin/sh\necho \"venv-maker $*\" >&2\nexit 3\n")
    maker.chmod(0o755)
    result = subprocess.run(["bash", os.path.join(REPO, "tasks.sh"), "test", "--version"], capture_output=True,
                            text=True, timeout=120, check=False,
                            env={**os.environ, "VENV": str(venv), "PYTHON": str(maker)})
    assert "setting up" in result.stderr and "several minutes" in result.stderr, result.stderr
    assert "venv-maker -m venv" in result.stderr and result.returncode != 0
