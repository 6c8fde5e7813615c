"""gs:// end to end against a GCS emulator on loopback (`gcp-storage-emulator`, tests/gcs_emulator.py).

One emulator serves the module; one dataset is built on it (CSV, video rows, --model_dir and
output all on gs://) and read back by inspect and report, resumed with --skip_existing, then
the lock, literal paths, concurrent and killed builds and missing buckets are checked.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from pipeline.cli import build, inspect, report
from pipeline.dataset import fileio, outputs
from pipeline.dataset.lock import BuildLock

HERE = pathlib.Path(__file__).resolve().parents[1]
REPO = HERE.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """The emulator in its own process, its objects in `data_dir`: a test can stop it mid-run and start it again."""

    def __init__(self, *buckets: str, data_dir: str):
        try:
            import gcp_storage_emulator  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        except ImportError:
            pytest.skip("gcp-storage-emulator is not installed (pip install '.[test]')")
        self.port = _free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        self.buckets, self.data_dir = buckets, data_dir
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(HERE / "gcs_emulator.py"), str(self.port), *self.buckets,
                                         "--data_dir", self.data_dir],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("{"):
            err = self.process.stderr.read() if self.process.poll() is not None else ""
            self.stop()
            pytest.skip(f"the GCS emulator did not start on 127.0.0.1:{self.port}: {err.strip()[-300:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    emulator = Emulator("bucket", data_dir=str(tmp_path_factory.mktemp("gcs_objects")))
    saved = os.environ.get(fileio.EMULATOR_ENV)
    os.environ[fileio.EMULATOR_ENV] = emulator.host
    fileio.use_emulator_if_set()
    yield emulator
    emulator.stop()
    if saved is None:
        os.environ.pop(fileio.EMULATOR_ENV, None)
    else:
        os.environ[fileio.EMULATOR_ENV] = saved


def _put(path: str, data: bytes) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as f:
        f.write(data)


def _objects(prefix: str) -> list[str]:
    """Every object under gs://bucket/prefix/ (the emulator lists literally with a `**` match)."""
    return fileio.glob(fileio.escape_glob(prefix.rstrip("/")) + "/**")


def _env(gcs) -> dict:
    return {**os.environ, fileio.EMULATOR_ENV: gcs.host, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def models_on_gcs(gcs, model_cache):
    """The synthetic stand-ins (official names and layout) uploaded flat to gs://bucket/models."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.cli.options import BuildOptions
    from pipeline.features import registry

    files = registry.ensure_synthetic(PipelineOptions(["--models", "synthetic", "--model_cache", model_cache])
                                      .view_as(BuildOptions).model_config())
    rgb, audio = pathlib.Path(files.rgb_pca_dir), pathlib.Path(files.audio_pca).parent
    for local in [*rgb.glob("*.pb"), *rgb.glob("*.npy"), *audio.iterdir()]:
        _put(f"gs://bucket/models/{local.name}", local.read_bytes())
    return "gs://bucket/models"


@pytest.fixture(scope="module")
def gs_inputs(gcs, videos):
    """Two videos and a missing one as gs:// rows, in a CSV on gs://."""
    for name in ("v3_30fps", "v0_5", "v4_5_silent"):
        _put(f"gs://bucket/in/{name}.mp4", pathlib.Path(videos[name]).read_bytes())
    rows = ["gs://bucket/in/v3_30fps.mp4,cat", "gs://bucket/in/v0_5.mp4,dog", "gs://bucket/in/missing.mp4,cat"]
    _put("gs://bucket/in/videos.csv", ("video,labels\n" + "\n".join(rows) + "\n").encode())
    _put("gs://bucket/in/more.csv", ("video,labels\n" + "\n".join([*rows, "gs://bucket/in/v4_5_silent.mp4,dog"])
                                     + "\n").encode())
    return "gs://bucket/in"


def _argv(csv: str, out: str, models: str, cache: str, *extra: str) -> list[str]:
    return ["--input_csv", csv, "--output_dir", out, "--model_dir", models, "--model_cache", cache,
            "--records_per_shard", "1", *extra]


@pytest.fixture(scope="module")
def built(gcs, gs_inputs, models_on_gcs, tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("gcs_model_cache"))
    out = "gs://bucket/out"
    assert build.main(_argv(f"{gs_inputs}/videos.csv", out, models_on_gcs, cache)) == 0
    return {"out": out, "cache": cache, "models": models_on_gcs, "inputs": gs_inputs}


def _stats(out: str) -> dict:
    return json.loads(fileio.read_text(f"{out}/stats.json"))


def test_build_reads_and_writes_gs_and_inspect_and_report_read_it_back(built, tmp_path, capsys):
    out = built["out"]
    stats = _stats(out)
    assert stats["records_written"] == 2 and stats["failures"] == 1 and stats["all_rows_accounted_for"]
    assert stats["models"]["sources"]["rgb_graph"] == "gs://bucket/models/classify_image_graph_def.pb"
    objects = _objects(out)
    assert not [p for p in objects if fileio.TEMP_MARKER in p or p.endswith(outputs.LOCK_NAME)], objects
    assert sorted(p.rsplit("/", 1)[-1] for p in objects if p.endswith(".tfrecord")) == [
        "all-00000-of-00002.tfrecord", "all-00001-of-00002.tfrecord"]
    # The model files were read through FileSystems into the local cache; TensorFlow read only that copy.
    assert list(pathlib.Path(built["cache"], "copied").glob("*/classify_image_graph_def.pb"))
    capsys.readouterr()
    assert inspect.main([out]) == 0
    text = capsys.readouterr().out
    assert "records: 2" in text and "OK: every record" in text
    assert inspect.main([out, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == 2 and summary["files"] == 2
    page = tmp_path / "report.html"
    assert report.main([out, "--out", str(page)]) == 0
    html = page.read_text()
    assert "missing_file" in html or "not_found" in html  # the failure line, read from gs://
    assert report.main([out, "--out", f"{out}-report/report.html"]) == 0
    assert fileio.exists(f"{out}-report/report.html")


def test_skip_existing_resume_on_gs_adds_only_the_new_row(built, capsys):
    out = built["out"]
    argv = _argv(f"{built['inputs']}/more.csv", out, built["models"], built["cache"], "--skip_existing")
    assert build.main(argv) == 0
    stats = _stats(out)
    assert stats["records_written"] == 1 and stats["records_skipped_existing"] == 2 and stats["failures"] == 1
    capsys.readouterr()
    assert inspect.main([out, "--json"]) == 0  # exit 1 on a duplicate id
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == 3 and not summary["violations"]
    assert not [p for p in _objects(out) if fileio.TEMP_MARKER in p or p.endswith(outputs.LOCK_NAME)]


def test_fetch_only_build_keeps_clips_on_gs(built, tmp_path):
    out, clips = "gs://bucket/fetchonly", "gs://bucket/clips"
    argv = ["--input_csv", f"{built['inputs']}/videos.csv", "--output_dir", out, "--features", "none",
            "--clips_dir", clips]
    assert build.main(argv) == 0
    stats = _stats(out)
    assert stats["clips_kept"] == 2 and stats["failures"] == 1
    kept = [p for p in _objects(clips) if p.endswith(".mp4")]
    assert len(kept) == 2 and not [p for p in _objects(clips) if fileio.TEMP_MARKER in p]
    local = tmp_path / "kept.mp4"
    fileio.copy_to_local(kept[0], str(local))
    assert local.stat().st_size > 1000


# ------------------------------------------------------------------------------------------
# Literal paths: `run[1]` is not `run1`, on gs:// and on local disks.


@pytest.mark.parametrize("where", ["gs", "local"])
def test_overwrite_of_a_bracketed_dir_leaves_its_glob_twin_alone(gcs, tmp_path, where):
    base = "gs://bucket/literal" if where == "gs" else str(tmp_path)
    twin, target = f"{base}/run1", f"{base}/run[1]"
    for directory in (twin, target):
        if where == "local":
            os.makedirs(f"{directory}/records")
        fileio.write_atomically(f"{directory}/stats.json", b"{}")
        fileio.write_atomically(f"{directory}/records/train-00000-of-00001.tfrecord", b"")
        fileio.write_atomically(f"{directory}/failures-00000-of-00001.jsonl", b"")
    assert fileio.list_files(target) == [f"{target}/failures-00000-of-00001.jsonl", f"{target}/stats.json"]
    lock = BuildLock.acquire(target)
    outputs.prepare_output_dir(target, overwrite=True)
    lock.release()
    assert fileio.list_files(target) == [] and fileio.list_files(f"{target}/records") == []
    assert fileio.list_files(twin) == [f"{twin}/failures-00000-of-00001.jsonl", f"{twin}/stats.json"]
    assert fileio.exists(f"{twin}/records/train-00000-of-00001.tfrecord")
    fileio.delete([f"{target}/stats.json", f"{base}/run?/stats.json", f"{base}/run*/stats.json"])
    assert fileio.exists(f"{twin}/stats.json")


# ------------------------------------------------------------------------------------------
# The lock: of builds that start together exactly one gets it, stale locks included.


def race_for_the_lock(out: str, racers: int) -> tuple[list, list[str]]:
    """`racers` threads call BuildLock.acquire(out) at the same moment; returns (locks taken, refusals)."""
    start, held, refused = threading.Barrier(racers), [], []

    def race():
        start.wait()
        try:
            held.append(BuildLock.acquire(out))
        except outputs.OutputError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return held, refused


def test_gs_lock_has_exactly_one_holder_of_many_racing_creates(gcs):
    racers, tries = 4, 20
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for attempt in range(tries):
        out = f"gs://bucket/race{attempt}"
        if attempt % 2:  # a stale lock of a dead process on this host: everybody tries to take it over
            _put(f"{out}/{outputs.LOCK_NAME}", json.dumps({"host": socket.gethostname(), "pid": dead.pid,
                                                             "started_at": "2026-01-01T00:00:00+00:00"}).encode())
        held, refused = race_for_the_lock(out, racers)
        assert len(held) == 1, (attempt, refused)
        assert all("in use by another build" in e for e in refused), refused
        assert json.loads(fileio.read_text(f"{out}/{outputs.LOCK_NAME}"))["token"] == held[0].owner["token"]
        held[0].release()
        assert not fileio.exists(f"{out}/{outputs.LOCK_NAME}")


def test_gs_lock_broken_and_taken_over_is_not_removed_by_its_first_owner(gcs):
    out = "gs://bucket/broken"
    first = BuildLock.acquire(out)
    second = BuildLock.acquire(out, break_lock=True)
    first.release()  # its generation is gone: the precondition keeps the new owner's lock
    assert json.loads(fileio.read_text(f"{out}/{outputs.LOCK_NAME}"))["token"] == second.owner["token"]
    second.release()
    assert not fileio.exists(f"{out}/{outputs.LOCK_NAME}")


def test_two_concurrent_builds_into_one_gs_dir_one_is_refused(built, gcs):
    out = "gs://bucket/concurrent"
    argv = [sys.executable, "-m", "pipeline.build",
            *_argv(f"{built['inputs']}/videos.csv", out, built["models"], built["cache"])]
    runs = [subprocess.Popen(argv, cwd=REPO, env=_env(gcs), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    results = [(r.wait(timeout=300), r.stderr.read()) for r in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "in use by another build" in refused and "Traceback" not in refused
    assert _stats(out)["records_written"] == 2


def _assert_a_resume_converges(out: str, argv: list[str], caplog) -> None:
    """A --skip_existing rerun of a stopped build of more.csv takes its stale lock and ends with 3 distinct ids."""
    assert build.main([*argv, "--skip_existing"]) == 0
    assert "stale build lock" in caplog.text
    stats = _stats(out)
    assert stats["records_written"] + stats["records_skipped_existing"] == 3 and stats["all_rows_accounted_for"]
    ids = [r.record.clip_id for r in inspect.iter_records(inspect.expand_paths(out))]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 3
    assert not [p for p in _objects(out) if fileio.TEMP_MARKER in p or p.endswith(outputs.LOCK_NAME)]


def _start_and_catch_writing(argv_for, env: dict, *, tries: int = 3):
    """Starts `pipeline.build` (argv_for(attempt) gives its flags) and returns once records are being written.

    Returns (attempt, process) with the process still running. The write phase of these small builds
    lasts about a second: a build that finished before it was caught is started again into a new
    directory, `tries` times at most.
    """
    for attempt in range(tries):
        argv = argv_for(attempt)
        out = argv[argv.index("--output_dir") + 1]
        run = subprocess.Popen([sys.executable, "-m", "pipeline.build", *argv], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and run.poll() is None:
            if any(p.endswith(".tfrecord") or fileio.TEMP_MARKER in p for p in _objects(f"{out}/records")):
                break  # the first shard is being written or is there
            time.sleep(0.05)
        if run.poll() is None:
            return attempt, run
        run.communicate()
    pytest.fail(f"every one of {tries} builds finished before its records were seen being written")


def test_kill_9_mid_write_then_rerun_converges_without_duplicates(built, gcs, caplog):
    def argv_for(attempt: int) -> list[str]:
        return _argv(f"{built['inputs']}/more.csv", f"gs://bucket/killed{attempt}", built["models"], built["cache"])

    attempt, run = _start_and_catch_writing(argv_for, _env(gcs))
    run.send_signal(signal.SIGKILL)
    run.communicate()
    out = f"gs://bucket/killed{attempt}"
    assert not fileio.exists(f"{out}/stats.json")  # nothing looks finished
    assert fileio.exists(f"{out}/{outputs.LOCK_NAME}")  # kill -9 cannot clean up: the next run must
    _assert_a_resume_converges(out, argv_for(attempt), caplog)  # in this process: no second start-up to pay


# ------------------------------------------------------------------------------------------
# Missing buckets and objects, an emulator gone mid-run: one line, nothing that looks complete.


@pytest.mark.parametrize("case", ["missing_csv", "missing_bucket_csv", "missing_bucket_output"])
def test_missing_bucket_or_object_is_one_line(built, gcs, capsys, case):
    csv, out = f"{built['inputs']}/videos.csv", "gs://bucket/never"
    if case == "missing_csv":
        csv = "gs://bucket/in/nothing-here.csv"
    elif case == "missing_bucket_csv":
        csv = "gs://no-such-bucket/videos.csv"
    else:
        out = "gs://no-such-bucket/out"
    capsys.readouterr()
    assert build.main(_argv(csv, out, built["models"], built["cache"])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert ("no such file" in err) if case != "missing_bucket_output" else ("no-such-bucket" in err)
    assert not _objects("gs://bucket/never")


def test_inspect_of_a_missing_gs_dataset_is_one_line(gcs, capsys):
    assert inspect.main(["gs://bucket/nothing"]) == 2
    assert capsys.readouterr().err.strip() == "error: no record files found at gs://bucket/nothing"


def test_store_stopped_mid_run_is_one_line_and_a_rerun_converges(built, gcs, model_cache, caplog):
    def argv_for(attempt: int) -> list[str]:
        return ["--input_csv", f"{built['inputs']}/more.csv", "--output_dir", f"gs://bucket/stopped{attempt}",
                "--models", "synthetic", "--model_cache", model_cache, "--records_per_shard", "1"]

    try:
        attempt, run = _start_and_catch_writing(argv_for, _env(gcs))
        gcs.stop()  # the store goes away in the middle of the writes
        _, err = run.communicate(timeout=300)
    finally:
        if gcs.process.poll() is not None:
            gcs.start()  # same port, same objects: what the killed store held is back
    out = f"gs://bucket/stopped{attempt}"
    assert run.returncode == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err, err[-3000:]
    assert len(errors) == 1 and "storage service failed" in errors[0] and "--skip_existing" in errors[0], err
    assert not fileio.exists(f"{out}/stats.json")  # nothing looks finished
    _assert_a_resume_converges(out, argv_for(attempt), caplog)  # the lock it could not remove: stale, taken over


# ------------------------------------------------------------------------------------------
# download_yt8m writes a partition straight into a bucket, and a rerun resumes there.


def test_download_yt8m_into_gs_checks_md5_and_resumes(gcs, tmp_path, capsys):
    import hashlib

    from pipeline.cli import download_yt8m, yt8m_files
    from pipeline.testing.loopback import LoopbackServer

    files = {"trainaa.tfrecord": os.urandom(5000), "trainAb.tfrecord": os.urandom(7000),
             "train09.tfrecord": os.urandom(3000)}
    root = tmp_path / "mirror"
    (root / "2" / "download_plans").mkdir(parents=True)
    (root / "2" / "frame" / "train").mkdir(parents=True)
    plan = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    plan["train9z.tfrecord"] = "0" * 32  # listed, not on the mirror: a failure, nothing written
    (root / "2" / "download_plans" / "frame_train.json").write_text(json.dumps({"files": plan}))
    for name, data in files.items():
        (root / "2" / "frame" / "train" / name).write_bytes(data)
    out = "gs://bucket/yt8m/frame/train"
    # The official script's name for one file, already in the bucket: accepted and renamed, not fetched.
    _put(f"{out}/train09.tfrecord", files["train09.tfrecord"])
    finals = {name: yt8m_files.final_name(name) for name in files}  # the rule: tests/unit/cli/test_download_yt8m.py
    argv = ["--partition", "2/frame/train", "--output_dir", out, "--backoff_base", "0.01", "--backoff_max",
            "0.02", "--max_attempts", "2", "--progress_interval", "0"]
    with LoopbackServer(str(root)) as server:
        assert download_yt8m.main([*argv, "--base_url", server.url]) == 1  # train9z failed
        printed = capsys.readouterr().out
        assert "downloaded: 2, skipped (already present): 1, failed: 1" in printed
        names = sorted(p.rsplit("/", 1)[-1] for p in _objects(out))
        assert names == sorted(finals.values()), names  # no .part, no original name, nothing for train9z
        for name, final in finals.items():
            assert fileio.read_bytes(f"{out}/{final}") == files[name]
        # A rerun finds every file by its md5 in the bucket and fetches none of them again.
        sent = server.bytes_sent("/2/frame/")
        assert download_yt8m.main([*argv, "--base_url", server.url]) == 1
        assert "downloaded: 0, skipped (already present): 3, failed: 1" in capsys.readouterr().out
        assert server.bytes_sent("/2/frame/") == sent
