"""What a user sees of a build: flag checking, the runner chosen, quiet logs, one progress display."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.cli import build, logs, options
from pipeline.features import registry
from transforms.support import progress

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("args, expected", [
    (["--frames_per_secnd", "2"], "unknown argument --frames_per_secnd (did you mean --frames_per_second?)"),
    (["--model-dir", "/models"], "unknown argument --model-dir (did you mean --model_dir?)"),
    (["--skip-existing"], "unknown argument --skip-existing (did you mean --skip_existing?)"),
    (["--direct_num_worker=2"], "unknown argument --direct_num_worker (did you mean --direct_num_workers?)"),
    (["videos.csv"], "unexpected argument 'videos.csv'"),
])
def test_unknown_arguments_exit_2_naming_them_before_any_work(tmp_path, capsys, args, expected):
    out = tmp_path / "out"
    code = build.main(["--input_csv", str(tmp_path / "absent.csv"), "--output_dir", str(out), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert f"error: {expected}" in err
    assert "no such file" not in err, "the flags are checked before the inputs"
    assert not out.exists()


def test_known_beam_and_project_flags_pass_the_check():
    options.check_arguments(["--input_csv", "a.csv", "--output_dir=o", "--models", "synthetic", "--skip_existing",
                           "--runner", "DataflowRunner", "--project", "p", "--direct_num_workers=2",
                           "--experiments=use_runner_v2", "--no_download"])


def test_local_runs_get_the_fnapi_runner_and_others_what_they_ask_for():
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    for argv in ([], ["--runner", "DirectRunner"], ["--runner=direct"]):
        assert build.is_local_run(PipelineOptions(argv)), argv
    for argv in (["--runner", "DataflowRunner"], ["--runner=PrismRunner"]):
        assert not build.is_local_run(PipelineOptions(argv)), argv
    runner = build.local_runner(PipelineOptions(["--direct_num_workers=3", "--default_sdk_harness_log_level=WARNING"]))
    assert isinstance(runner, fn_runner.FnApiRunner)
    # What the SDK worker processes receive as PIPELINE_OPTIONS.
    sent = runner._provision_info.provision_info.pipeline_options  # pylint: disable=protected-access
    assert str(sent["beam:option:direct_num_workers:v1"]) == "3"
    assert sent["beam:option:default_sdk_harness_log_level:v1"] == "WARNING"


def _record(name: str, level: int, msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord(name, level, "x.py", 1, msg, args, None)


def test_quiet_filter_keeps_project_info_and_third_party_warnings(monkeypatch):
    monkeypatch.delenv(logs.VERBOSE_ENV, raising=False)
    quiet = logs._QuietFilter()  # pylint: disable=protected-access
    assert quiet.filter(_record("root", logging.INFO, "Loading rgb model"))
    assert quiet.filter(_record("pipeline.fetch.clips", logging.INFO, "retrying"))
    assert not quiet.filter(_record("apache_beam.typehints", logging.INFO, "Converting string literal"))
    assert not quiet.filter(_record("absl", logging.INFO, "x"))
    assert quiet.filter(_record("tensorflow", logging.WARNING, "x"))
    # A record a worker process forwarded, as Beam's launcher logs it.
    forwarded = ('severity: WARN timestamp {   seconds: 1 } message: "disk almost full" '
                 f'log_location: "{REPO}/pipeline/fetch.py:12" thread: "7"')
    record = _record("apache_beam.runners.portability.local_job_service", logging.WARNING, "Worker: %s", forwarded)
    assert quiet.filter(record) and record.getMessage() == "[worker] disk almost full"
    startup = ('severity: WARN message: "No semi_persistent_directory found" '
               'log_location: "/venv/apache_beam/runners/worker/sdk_worker_main.py:421"')
    assert not quiet.filter(_record("apache_beam.runners.portability.local_job_service", logging.WARNING,
                                    "Worker: %s", startup))
    monkeypatch.setenv(logs.VERBOSE_ENV, "1")
    assert quiet.filter(_record("apache_beam.typehints", logging.INFO, "Converting string literal"))


def test_quiet_filter_drops_known_beam_noise_logged_here_or_in_a_worker(monkeypatch):
    monkeypatch.delenv(logs.VERBOSE_ENV, raising=False)
    quiet = logs._QuietFilter()  # pylint: disable=protected-access
    base = "/venv/lib/site-packages/apache_beam/ml/inference/base.py"
    message = "Resource module is not available for current platform, memory usage cannot be fetched."

    def here(path: str, text: str) -> logging.LogRecord:
        return logging.LogRecord("root", logging.WARNING, path, 2202, text, None, None)

    def forwarded(path: str, text: str) -> logging.LogRecord:
        entry = f'severity: WARN message: "{text}" log_location: "{path}:2202" thread: "7"'
        return _record("apache_beam.runners.portability.local_job_service", logging.WARNING, "Worker: %s", entry)

    for make in (here, forwarded):
        assert not quiet.filter(make(base, message)), make.__name__
        # The same file's other warnings, and the same words from elsewhere, still pass.
        assert quiet.filter(make(base, "Model load failed")), make.__name__
        assert quiet.filter(make("/venv/other/base.py", message)), make.__name__
    monkeypatch.setenv(logs.VERBOSE_ENV, "1")
    assert quiet.filter(here(base, message))


def _report_from_another_process(outcomes: list[tuple[bool, float]]) -> None:
    code = textwrap.dedent(f"""
        from transforms.support.progress import PROGRESS
        for ok, seconds in {outcomes!r}:
            PROGRESS.record(ok=ok, seconds=seconds, total=6)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": REPO})


def test_progress_from_several_processes_makes_one_plain_display(monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_DIR_ENV, raising=False)
    stream = io.StringIO()
    with progress.RunProgress(total=6, stream=stream, interval=0) as run:
        directory = os.environ[progress.PROGRESS_DIR_ENV]
        _report_from_another_process([(True, 10.0), (False, 0.0)])
        _report_from_another_process([(True, 4.5), (True, 2.0)])
        progress.PROGRESS.record(ok=False, total=6)  # this process (in_memory runs)
    assert progress.PROGRESS_DIR_ENV not in os.environ and not os.path.exists(directory)
    lines = stream.getvalue().splitlines()
    assert lines, "a plain line when the stream is no terminal"
    assert all(line.startswith("progress: ") for line in lines)
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    assert lines[-1].startswith("progress: 5/6 rows done (3 decoded, 2 failed), 16 s of video")
    assert "ETA" in lines[-1] and (run.tally.done, run.tally.failed) == (3, 2)


def test_progress_on_a_terminal_is_one_bar(monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_DIR_ENV, raising=False)
    stream = io.StringIO()
    with progress.RunProgress(total=4, stream=stream, live=True, interval=0):
        for ok in (True, True, False):
            progress.PROGRESS.record(ok=ok, seconds=3.0, total=4)
    text = stream.getvalue()
    assert "3/4" in text and "1 failed" in text and "video-s/s" in text
    assert "progress: " not in text


def test_a_local_build_is_quiet_offline_and_reports_once(tmp_path, videos, model_cache):
    """A two-worker build in a fresh process, as `python -m pipeline.build` runs: every line it prints."""
    registry.ensure_synthetic(registry.ModelConfig(mode="synthetic", model_cache=model_cache))  # as a rerun finds them
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"video,labels\n{videos['v3_30fps']},a\n{videos['empty']},a\n")
    hosts = tmp_path / "hosts.json"
    # Any name lookup but loopback is recorded and fails (as offline): the Prism runner download
    # would start with one.
    code = textwrap.dedent(f"""
        import json, socket, sys
        looked_up, real = [], socket.getaddrinfo
        def offline(host, *args, **kwargs):
            if host not in ("127.0.0.1", "localhost", "::1", "[::]", "0.0.0.0", None):
                looked_up.append(host)
                raise socket.gaierror(socket.EAI_NONAME, "offline")
            return real(host, *args, **kwargs)
        socket.getaddrinfo = offline
        from pipeline.cli import build, inspect
        code = build.main(sys.argv[1:])
        json.dump(looked_up, open({str(hosts)!r}, "w"))
        # Then reading the records back in the same process, as `tasks.sh sample` does: this
        # launcher ran no model, so this is where TensorFlow is first imported.
        print("INSPECT", inspect.main([{str(tmp_path / "out")!r}]))
        sys.exit(code)
    """)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_CPP", "VIDEO_FEATURES_", "YT8M_TF")) and k != "PIPELINE_OPTIONS"}
    env["PYTHONPATH"] = REPO
    result = subprocess.run(
        [sys.executable, "-c", code, "--input_csv", str(csv_path), "--output_dir", str(tmp_path / "out"),
         "--models", "synthetic", "--model_cache", model_cache, "--direct_running_mode=multi_processing",
         "--direct_num_workers=2"],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, "\n".join(lines)
    assert json.loads(hosts.read_text()) == [], "no name lookup: no runner download"
    text = "\n".join(lines)
    assert (result.stdout + result.stderr).count(registry.SYNTHETIC_WARNING) == 1
    assert "models: SYNTHETIC" in text.split("Run summary")[1]
    for noise in ("absl::InitializeLog", "Worker: severity", "Converting string literal", "rism",
                  "Traceback", "cuda", "semi_persistent", "Discarding unparseable", "Resource module"):
        assert noise not in text, noise
    assert not [line for line in lines if line[:1] in "IWE" and line[1:5].isdigit()], "TensorFlow C++ lines"
    assert not [line for line in lines if line.startswith("INFO ")], "nothing at INFO from a clean run"
    assert any(line.startswith("progress: 2/2 rows done (1 decoded, 1 failed)") for line in lines)
    assert "INSPECT 0" in lines and "files: 1  records: 1  steps: 3" in lines
    assert len(lines) <= 40, text
