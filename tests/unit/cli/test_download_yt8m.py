"""Tests for pipeline.download_yt8m against a loopback HTTP server with injected faults.

Run: /tmp/venv/bin/python -m pytest tests/unit/cli/test_download_yt8m.py -q
Only 127.0.0.1 is contacted; backoff is kept tiny so the file runs in a few seconds.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import itertools
import json
import random
import string
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.cli import download_yt8m as dl
from pipeline.cli import yt8m_files

PARTITION = "2/frame/train"
PLAN_PATH = "/2/download_plans/frame_train.json"


# ------------------------------------------------------------- independent oracles


@functools.lru_cache(maxsize=1)
def _pair_index() -> dict[str, int]:
    vocab = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    vocab += [chr(c) for c in range(ord("0"), ord("9") + 1)]
    return {"".join(pair): i for i, pair in enumerate(itertools.product(vocab, repeat=2))}


def expected_final_name(name: str) -> str:
    """The renaming rule, computed independently of the module under test."""
    index = _pair_index()
    stem, dot, ext = name.rpartition(".")
    if dot and ext == "tfrecord" and len(stem) >= 2 and stem[-2:] in index:
        return f"{stem[:-2]}{index[stem[-2:]]:04d}.tfrecord"
    return name


def expected_shard(names, x: int, n: int) -> set[str]:
    return {name for name in names if int(hashlib.md5(name.encode()).hexdigest(), 16) % n == x - 1}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ------------------------------------------------------------------ fake server


class FakeYT8M:
    """Serves a plan and files like data.yt8m.org, with scripted faults per file.

    ``faults[name] = (script, then)``: the first requests for ``name`` follow
    ``script`` (one action each), later ones do ``then``. Actions: ``ok``, ``wrong``
    (same length, different bytes), ``503``, ``404``, ``drop`` (half the body, then
    the connection closes), ``stall`` (half the body, then silence).
    """

    def __init__(self, *, files: dict[str, bytes], plan_md5: dict[str, str] | None = None,
                 faults: dict[str, tuple[tuple[str, ...], str]] | None = None, stall_s: float = 1.0):
        self.files = files
        self.plan = {"files": {name: md5(data) for name, data in files.items()} | (plan_md5 or {})}
        self.faults = faults or {}
        self.stall_s = stall_s
        self.requests: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.fake = self
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def requests_for(self, name: str) -> int:
        with self.lock:
            return self.requests[f"/{PARTITION}/{name}"]

    def file_requests(self) -> set[str]:
        prefix = f"/{PARTITION}/"
        with self.lock:
            return {path[len(prefix):] for path in self.requests if path.startswith(prefix)}

    def next_action(self, name: str, count: int) -> str:
        script, then = self.faults.get(name, ((), "ok"))
        return script[count - 1] if count <= len(script) else then

    def start(self) -> FakeYT8M:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, code: int, body: bytes, *, length: int | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:
        fake: FakeYT8M = self.server.fake
        path = urllib.parse.unquote(self.path)
        with fake.lock:
            fake.requests[path] += 1
            count = fake.requests[path]
        if path == PLAN_PATH:
            return self._send(200, json.dumps(fake.plan).encode())
        name = path[len(f"/{PARTITION}/"):] if path.startswith(f"/{PARTITION}/") else None
        if name not in fake.files:
            return self._send(404, b"not found")
        data = fake.files[name]
        action = fake.next_action(name, count)
        if action == "ok":
            self._send(200, data)
        elif action == "wrong":
            self._send(200, bytes([data[0] ^ 0xFF]) + data[1:])
        elif action in ("503", "404"):
            self._send(int(action), b"nope")
        elif action == "drop":
            self._send(200, data[: len(data) // 2], length=len(data))
            self.close_connection = True
        elif action == "stall":
            self._send(200, data[: len(data) // 2], length=len(data))
            time.sleep(fake.stall_s)
            self.close_connection = True
        else:
            raise AssertionError(action)


def make_files(names, *, seed: int = 8) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {name: rng.randbytes(rng.randint(3_000, 60_000)) for name in names}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def serve():
    started: list[FakeYT8M] = []

    def start(**kwargs) -> FakeYT8M:
        fake = FakeYT8M(**kwargs).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


FAST = ["--backoff_base", "0.01", "--backoff_max", "0.05", "--timeout", "5", "--progress_interval", "0"]


# ---------------------------------------------------------------- pure functions


def test_naming_rule_matches_independent_computation():
    assert yt8m_files.final_name("trainaa.tfrecord") == "train0000.tfrecord"
    assert yt8m_files.final_name("trainab.tfrecord") == "train0001.tfrecord"
    assert yt8m_files.final_name("trainaZ.tfrecord") == "train0051.tfrecord"
    assert yt8m_files.final_name("trainba.tfrecord") == "train0062.tfrecord"
    assert yt8m_files.final_name("trainAa.tfrecord") == "train1612.tfrecord"
    assert yt8m_files.final_name("train09.tfrecord") == "train3285.tfrecord"
    assert yt8m_files.final_name("validate99.tfrecord") == "validate3843.tfrecord"
    # Names of another shape keep their name.
    for name in ("README.txt", "x.tfrecord", "train_a.tfrecord", "trainab.tfrecord.gz"):
        assert yt8m_files.final_name(name) == name
    alphabet = string.ascii_letters + string.digits
    for a, b in itertools.product(alphabet, repeat=2):
        name = f"test{a}{b}.tfrecord"
        assert yt8m_files.final_name(name) == expected_final_name(name)


def test_shard_selection_matches_formula_and_partitions_the_plan():
    names = [f"train{a}{b}.tfrecord" for a, b in itertools.product("aZ9q", "bY0")] + [f"f{i}" for i in range(200)]
    plan = {name: "0" * 32 for name in names}
    for n in (1, 3, 7):
        seen: set[str] = set()
        for x in range(1, n + 1):
            chosen = set(yt8m_files.select_files(plan, shard_index=x, num_shards=n))
            assert chosen == expected_shard(names, x, n)
            assert not chosen & seen
            seen |= chosen
        assert seen == set(names)
    assert list(yt8m_files.select_files(plan)) == sorted(names)


@pytest.mark.parametrize("text", ["0,3", "4,3", "1", "a,b", "1,2,3"])
def test_bad_shard_is_a_usage_error(text):
    with pytest.raises(ValueError):
        yt8m_files.parse_shard(text)
    with pytest.raises(SystemExit) as exc:
        dl.main(["--partition", PARTITION, "--shard", text, "--dry_run"])
    assert exc.value.code == 2


def test_partition_and_urls():
    part = yt8m_files.parse_partition("2/frame/validate")
    assert yt8m_files.plan_url(part) == "http://data.yt8m.org/2/download_plans/frame_validate.json"
    assert yt8m_files.file_url(part, "validateab.tfrecord", mirror="asia") == (
        "http://asia.data.yt8m.org/2/frame/validate/validateab.tfrecord")
    assert yt8m_files.plan_url(part, base_url="http://m/x/") == "http://m/x/2/download_plans/frame_validate.json"
    assert yt8m_files.file_url(part, "a.tfrecord", base_url="http://m/x") == "http://m/x/2/frame/validate/a.tfrecord"
    for bad in ("2/frame", "2/audio/train", "two/frame/train", "2/frame/dev"):
        with pytest.raises(ValueError):
            yt8m_files.parse_partition(bad)


def test_backoff_grows_with_full_jitter_and_cap():
    rng = random.Random(0)
    for attempt in range(1, 8):
        delays = [dl.backoff_delay(attempt, base=1.0, cap=10.0, rng=rng) for _ in range(50)]
        full = min(10.0, 2 ** (attempt - 1))
        assert all(0 <= d <= full for d in delays)
        # Full jitter: the whole window is used, the lower half included.
        assert min(delays) < full / 4 and max(delays) > 3 * full / 4


def test_progress_rewrites_in_place_on_a_tty():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = yt8m_files.Progress(total=2, stream=stream, tty_interval=0)
    progress.add_bytes(2048)
    progress.file_done("downloaded")
    progress.file_done("skipped")
    progress.finish()
    text = stream.getvalue()
    # A rich bar redrawn in place (no plain "[yt8m] N/M files" lines), ending on its final state.
    assert "\x1b[2K" in text and "━" in text
    assert "files," not in text
    final = text[text.rindex("\r"):]
    assert "[yt8m]" in final and "2/2" in final and "2.0 KiB" in final and "ETA" in final


# ------------------------------------------------------------ against the server


FAULT_FILES = ["trainaa.tfrecord", "trainab.tfrecord", "trainAb.tfrecord", "train09.tfrecord",
               "trainZz.tfrecord", "train9a.tfrecord", "trainzz.tfrecord"]


def fault_server(serve) -> FakeYT8M:
    return serve(
        files=make_files(FAULT_FILES),
        plan_md5={"trainAb.tfrecord": md5(b"something else entirely")},  # never matches
        faults={
            "trainab.tfrecord": (("wrong",), "ok"),        # md5 mismatch once, then right
            "train09.tfrecord": (("503", "503"), "ok"),    # overloaded twice
            "trainZz.tfrecord": ((), "404"),               # permanent
            "train9a.tfrecord": (("drop",), "ok"),         # connection dropped mid-body once
        },
    )


def test_full_run_with_faults(serve, tmp_path, capsys):
    fake = fault_server(serve)
    out = tmp_path / "out"
    code = dl.main(["--partition", PARTITION, "--base_url", fake.base_url, "--output_dir", str(out),
                    "--parallelism", "3", "--max_attempts", "4", *FAST])
    captured = capsys.readouterr()
    assert code == 1

    good = ["trainaa.tfrecord", "trainab.tfrecord", "train09.tfrecord", "train9a.tfrecord", "trainzz.tfrecord"]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected_final_name(n) for n in good)
    for name in good:
        assert (out / expected_final_name(name)).read_bytes() == fake.files[name]
    assert not list(out.glob("*.part"))
    assert not (out / expected_final_name("trainAb.tfrecord")).exists()

    assert fake.requests_for("trainZz.tfrecord") == 1       # 404 is not retried
    assert fake.requests_for("trainAb.tfrecord") == 4       # every attempt used
    assert fake.requests_for("trainab.tfrecord") == 2
    assert fake.requests_for("train09.tfrecord") == 3
    assert fake.requests_for("train9a.tfrecord") == 2
    assert fake.requests_for("trainaa.tfrecord") == 1

    assert "downloaded: 5, skipped (already present): 0, failed: 2" in captured.out
    assert f"FAILED {expected_final_name('trainAb.tfrecord')}: md5_mismatch after 4 attempts" in captured.out
    assert f"FAILED {expected_final_name('trainZz.tfrecord')}: http_404 after 1 attempt:" in captured.out
    progress_lines = [line for line in captured.err.splitlines() if line.startswith("[yt8m] ")]
    assert progress_lines and "7/7 files" in progress_lines[-1] and "2 failed" in progress_lines[-1]
    assert "\r" not in captured.err  # not a terminal: whole lines


def test_download_api_summary(serve, tmp_path):
    fake = fault_server(serve)
    summary = dl.download(partition=PARTITION, base_url=fake.base_url, output_dir=tmp_path, parallelism=4,
                          max_attempts=3, backoff_base=0.01, backoff_max=0.05, timeout=5)
    assert not summary.ok
    assert summary.total == 7
    assert summary.downloaded == sorted(expected_final_name(n) for n in
                                        ["trainaa.tfrecord", "trainab.tfrecord", "train09.tfrecord",
                                         "train9a.tfrecord", "trainzz.tfrecord"])
    assert summary.skipped == []
    assert summary.failed[expected_final_name("trainAb.tfrecord")].startswith("md5_mismatch after 3 attempts")
    assert summary.failed[expected_final_name("trainZz.tfrecord")].startswith("http_404 after 1 attempt")
    # Every good byte counted, plus the discarded attempts.
    assert summary.bytes_downloaded >= sum(len(d) for n, d in fake.files.items() if n != "trainZz.tfrecord")
    assert summary.seconds > 0


def test_resumed_run_skips_good_files_and_replaces_bad_ones(serve, tmp_path, capsys):
    names = ["trainaa.tfrecord", "trainab.tfrecord", "train09.tfrecord", "trainzz.tfrecord", "trainQ7.tfrecord"]
    fake = serve(files=make_files(names, seed=3))
    out = tmp_path
    # State left by an interrupted first run:
    (out / expected_final_name("trainaa.tfrecord")).write_bytes(fake.files["trainaa.tfrecord"])  # complete
    (out / expected_final_name("trainab.tfrecord")).write_bytes(b"stale wrong content")          # wrong md5
    (out / (expected_final_name("trainzz.tfrecord") + ".part")).write_bytes(b"half")              # stale .part
    (out / "train09.tfrecord").write_bytes(fake.files["train09.tfrecord"])  # official script's original name

    code = dl.main(["--partition", PARTITION, "--base_url", fake.base_url, "--output_dir", str(out), *FAST])
    captured = capsys.readouterr()
    assert code == 0
    assert fake.file_requests() == {"trainab.tfrecord", "trainzz.tfrecord", "trainQ7.tfrecord"}
    assert sorted(p.name for p in out.iterdir()) == sorted(expected_final_name(n) for n in names)
    for name in names:
        assert (out / expected_final_name(name)).read_bytes() == fake.files[name]
    assert "downloaded: 3, skipped (already present): 2, failed: 0" in captured.out

    # A second rerun has nothing to do and asks the server for no file at all.
    before = sum(fake.requests.values())
    assert dl.main(["--partition", PARTITION, "--base_url", fake.base_url, "--output_dir", str(out), *FAST]) == 0
    assert "downloaded: 0, skipped (already present): 5, failed: 0" in capsys.readouterr().out
    assert sum(fake.requests.values()) == before + 1  # the plan only


def test_sharded_run_and_dry_run_fetch_only_their_shard(serve, tmp_path, capsys):
    names = [f"train{a}{b}.tfrecord" for a, b in itertools.product("aM5", "cX2")]
    fake = serve(files=make_files(names, seed=5))
    wanted = expected_shard(names, 2, 3)
    assert wanted  # the fixture names make shard 2 of 3 non-empty

    assert dl.main(["--partition", PARTITION, "--base_url", fake.base_url, "--shard", "2,3", "--dry_run"]) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert {(row[0], row[1]) for row in listed} == {(n, expected_final_name(n)) for n in wanted}
    assert all(row[2] == f"{fake.base_url}/{PARTITION}/{row[0]}" for row in listed)
    assert fake.file_requests() == set()

    out = tmp_path / "shard"
    assert dl.main(["--partition", PARTITION, "--base_url", fake.base_url, "--shard", "2,3",
                    "--output_dir", str(out), *FAST]) == 0
    assert fake.file_requests() == wanted
    assert {p.name for p in out.iterdir()} == {expected_final_name(n) for n in wanted}


def test_read_timeout_is_retried(serve, tmp_path):
    fake = serve(files=make_files(["trainaa.tfrecord"]), faults={"trainaa.tfrecord": (("stall",), "ok")},
                 stall_s=1.0)
    summary = dl.download(partition=PARTITION, base_url=fake.base_url, output_dir=tmp_path, timeout=0.3,
                          backoff_base=0.01)
    assert summary.ok and summary.downloaded == ["train0000.tfrecord"]
    assert fake.requests_for("trainaa.tfrecord") == 2


def test_missing_plan_is_reported(serve, tmp_path, capsys):
    fake = serve(files={})
    code = dl.main(["--partition", "3/frame/train", "--base_url", fake.base_url, "--output_dir", str(tmp_path),
                    *FAST])
    assert code == 1
    assert "http_404" in capsys.readouterr().err
    assert fake.requests["/3/download_plans/frame_train.json"] == 1
