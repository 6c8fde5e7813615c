"""The build lock and interrupted builds on local disks.

Stale-lock takeover without a race, an empty lock (a full disk) that does not block the
directory, a lock that cannot be written leaving nothing behind, and SIGTERM / SIGINT ending a
build with one line, its lock and temp folder removed, and exit 143 / 130.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from pipeline.dataset import outputs
from pipeline.dataset.lock import BuildLock

REPO = pathlib.Path(__file__).resolve().parents[3]


def _racer(out: str, start, done, results) -> None:
    start.wait()
    try:
        lock = BuildLock.acquire(out)
        results.put(("held", lock.owner["token"]))
    except outputs.OutputError as e:
        lock = None
        results.put(("refused", str(e)))
    done.wait()  # a holder keeps the lock until every racer has tried
    if lock is not None:
        lock.release()


def race_in_processes(out: str, racers: int) -> tuple[list[str], list[str]]:
    """`racers` forked processes call BuildLock.acquire(out) at the same moment; (tokens held, refusals)."""
    context = multiprocessing.get_context("fork")
    start, done, results = context.Barrier(racers), context.Barrier(racers), context.Queue()
    children = [context.Process(target=_racer, args=(out, start, done, results)) for _ in range(racers)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
    return [v for k, v in outcomes if k == "held"], [v for k, v in outcomes if k == "refused"]


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_stale_lock_takeover_has_exactly_one_holder(tmp_path):
    racers, tries, dead = 4, 30, _dead_pid()
    for attempt in range(tries):
        out = tmp_path / f"race{attempt}"
        out.mkdir()
        if attempt % 3:  # a lock left by a build killed with -9 (dead pid on this host), or an empty one
            stale = {"host": socket.gethostname(), "pid": dead, "started_at": "2026-01-01T00:00:00+00:00"}
            (out / outputs.LOCK_NAME).write_text(json.dumps(stale) if attempt % 3 == 1 else "")
        held, refused = race_in_processes(str(out), racers)
        assert len(held) == 1, (attempt, refused)
        assert all("in use by another build" in e for e in refused), refused
        assert not (out / outputs.LOCK_NAME).exists()  # released by its holder


def test_empty_lock_left_by_a_full_disk_is_taken_over_with_a_message(tmp_path, caplog):
    (tmp_path / outputs.LOCK_NAME).write_bytes(b"")
    lock = BuildLock.acquire(str(tmp_path))
    assert "empty or unreadable" in caplog.text and "full disk" in caplog.text
    assert json.loads((tmp_path / outputs.LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / outputs.LOCK_NAME).exists()


def _acquire_with_no_room(directory: str, result) -> None:
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        BuildLock.acquire(directory)
        result.put("acquired")
    except outputs.OutputError as e:
        result.put(str(e))


def test_a_lock_that_cannot_be_written_leaves_no_empty_lock(tmp_path):
    context = multiprocessing.get_context("fork")
    result = context.Queue()
    child = context.Process(target=_acquire_with_no_room, args=(str(tmp_path), result))
    child.start()
    message = result.get(timeout=60)
    child.join()
    assert "cannot write the build lock" in message, message
    assert not (tmp_path / outputs.LOCK_NAME).exists()  # the next build is not blocked
    BuildLock.acquire(str(tmp_path)).release()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_build_cleans_up_and_says_how_to_resume(tmp_path, videos, model_cache, signum):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("video,labels\n" + "".join(f"{videos['v10_audio']},a{i}\n" for i in range(1))
                        + f"{videos['v4_5_silent']},b\n{videos['v3_30fps']},c\n")
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}
    run = subprocess.Popen([sys.executable, "-m", "pipeline.build", "--input_csv", str(csv_path), "--output_dir",
                            str(out), "--models", "synthetic", "--model_cache", model_cache],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / outputs.LOCK_NAME).exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2)  # inside the pipeline: models loading or clips decoding
    assert run.poll() is None, run.stderr.read()[-2000:]
    run.send_signal(signum)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signum, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "interrupted" in errors[0] and "--skip_existing" in errors[0], err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert not (out / outputs.LOCK_NAME).exists() and not (out / "stats.json").exists()
    assert os.listdir(tmp) == []  # the build's private temp folder went too
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
