"""Secrets and reasons: URL credentials never reach the outputs, the guard proxy is the clip's own,
and a full disk, an over-long name, a CR/LF URL or an oversized plan each get their own reason."""

from __future__ import annotations

import base64
import errno
import glob
import http.server
import json
import os
import shutil
import socket
import threading

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline import elements
from pipeline.cli import build, download_yt8m, yt8m_files
from pipeline.errors import ClipError
from pipeline.fetch import clips as fetch
from pipeline.fetch.config import FetchConfig
from pipeline.net import address_policy, guard_proxy, redact
from pipeline.read import annotations as A
from pipeline.testing.loopback import LoopbackServer
from transforms.fetch import FetchClips
from transforms.support.fetch_rows import ClipFetcher

SECRETS = ("PWSECRET1", "SIGSECRET2", "TOKSECRET3", "AMZSECRET4", "KEYSECRET5")


# ---------------------------------------------------------------------------------------------
# Redaction: one rule.


@pytest.mark.parametrize("text, expected", [
    ("https://user:PWSECRET1@example.com/v.mp4", "https://REDACTED@example.com/v.mp4"),
    ("https://storage.googleapis.com/b/v.mp4?X-Goog-Algorithm=GOOG4&X-Goog-Signature=SIGSECRET2&x=1",
     "https://storage.googleapis.com/b/v.mp4?X-Goog-Algorithm=GOOG4&X-Goog-Signature=REDACTED&x=1"),
    ("fetch http://h/v?token=TOKSECRET3 failed: HTTP 404 for http://h/v?X-Amz-Signature=AMZSECRET4",
     "fetch http://h/v?token=REDACTED failed: HTTP 404 for http://h/v?X-Amz-Signature=REDACTED"),
    ("http://h/v?sig=a;api_key=KEYSECRET5#frag", "http://h/v?sig=REDACTED;api_key=REDACTED#frag"),
    ("/data/videos/a.mp4", "/data/videos/a.mp4"),
    ("no url: token=x", "no url: token=x"),
])
def test_redact(text, expected):
    assert redact.redact(text) == expected


def test_ids_made_from_urls_carry_no_credentials():
    rows = [r for _, r in A.read_rows(__import__("io").StringIO(
        "video,labels,start,end\nhttps://u:PWSECRET1@h/v.mp4?X-Goog-Signature=SIGSECRET2,a,1,2\n"))]
    assert rows[0].clip_id == "https://REDACTED@h/v.mp4?X-Goog-Signature=REDACTED_000001_000002"
    assert "SIGSECRET2" in rows[0].video  # the download itself still has them


@pytest.fixture(scope="module")
def server(tmp_path_factory, videos):
    root = tmp_path_factory.mktemp("served")
    shutil.copyfile(videos["v3_30fps"], root / "v.mp4")
    with LoopbackServer(str(root)) as s:
        yield s


def test_build_outputs_and_logs_hold_no_url_secret(server, tmp_path, model_cache, capfd, caplog):
    port_url = server.url
    rows = [
        f"{port_url}/v.mp4?X-Goog-Signature=SIGSECRET2&token=TOKSECRET3&w=1",  # a record
        port_url.replace("http://", "http://user:PWSECRET1@") + "/gone.mp4?X-Amz-Signature=AMZSECRET4",  # 404
        f"{port_url}/gone2.mp4?api_key=KEYSECRET5",  # 404
    ]
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("video,labels\n" + "".join(f"{r},a\n" for r in rows))
    out = tmp_path / "out"
    assert build.main(["--input_csv", str(csv_path), "--output_dir", str(out), "--models", "synthetic",
                       "--model_cache", model_cache, "-v"]) == 0
    stats = json.load(open(out / "stats.json"))
    assert (stats["records_written"], stats["failures_by_reason"]) == (1, {"not_found": 2})
    written = b"".join(open(p, "rb").read() for p in glob.glob(str(out / "**" / "*"), recursive=True)
                       if os.path.isfile(p))
    assert b"REDACTED" in written  # the ids, the record's source and the failure lines are there, redacted
    logged = capfd.readouterr()
    for secret in SECRETS:
        assert secret.encode() not in written, secret
        assert secret not in logged.out + logged.err + caplog.text, secret


# ---------------------------------------------------------------------------------------------
# The guard proxy serves its own clip only.


def _ask(guard, request: bytes) -> bytes:
    port = int(guard.address.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_guard_proxy_refuses_other_local_users(server):
    with guard_proxy.GuardProxy(address_policy.AddressPolicy([server.url])) as guard:
        before = len(server.requests)
        authority = server.url.split("//", 1)[1]
        wrong = "Basic " + base64.b64encode(b"clip:guessed").decode()
        for extra in ("", f"Proxy-Authorization: {wrong}\r\n"):
            for request in (f"GET {server.url}/v.mp4 HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n",
                            f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n"):
                answer = _ask(guard, request.encode())
                assert answer.split()[1] == b"407" and b"Proxy-Authenticate: Basic" in answer
        assert len(server.requests) == before and guard.connections == 0 and guard.unauthorized == 4
        # The clip's own clients (here urllib, given guard.url) get through.
        answer = _ask(guard, f"GET {server.url}/v.mp4 HTTP/1.1\r\nHost: {authority}\r\n"
                             f"Proxy-Authorization: {guard.proxy_authorization}\r\n\r\n".encode())
        assert answer.split()[1] == b"200"
    other = guard_proxy.GuardProxy(address_policy.AddressPolicy([server.url]))
    assert other.proxy_authorization != guard.proxy_authorization  # one credential per clip
    other.stop()


# ---------------------------------------------------------------------------------------------
# Reasons.


def test_a_url_with_cr_lf_is_invalid_url(server, tmp_path):
    for url in (f"{server.url}/v.mp4\r\nX-Injected: 1", f"{server.url}/v.mp4\n", f"{server.url}/a b.mp4"):
        with pytest.raises(ClipError) as e:
            fetch.download_video(url, str(tmp_path / "v"), config=FetchConfig())
        assert e.value.reason == "invalid_url", url


def test_fetch_max_bytes_bounds_http_rows(server, tmp_path):
    with pytest.raises(ClipError) as e:
        fetch.download_video(f"{server.url}/v.mp4", str(tmp_path / "v"), config=FetchConfig(max_bytes=1000))
    assert e.value.reason == "too_large"
    assert fetch.download_video(f"{server.url}/v.mp4", str(tmp_path / "v"), config=FetchConfig()) > 1000


class _FailingFetcher(ClipFetcher):
    """A fetcher whose disk is full (ENOSPC) for one clip and refuses a long name (ENAMETOOLONG) for another."""

    def fetch(self, clip, tmp):
        if clip.clip_id == "full":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise OSError(errno.ENAMETOOLONG, "File name too long")


def _yt(clip_id, row):
    return elements.ClipRequest(clip_id=clip_id, source="youtube", video="abcdefghijk", start=0, end=2, labels=(),
                         split="all", row=row, fields={})


def test_full_disk_and_long_names_get_their_reasons_and_the_run_goes_on():
    with TestPipeline() as p:
        out = p | beam.Create([_yt("full", 2), _yt("long", 3)]) | beam.ParDo(
            FetchClips(fetcher=_FailingFetcher(config=None))).with_outputs(FetchClips.FAILURES, main="clips")
        assert_that(out[FetchClips.FAILURES] | beam.Map(lambda f: (f.clip_id, f.reason, f.stage)),
                    equal_to([("full", "no_space", "fetch"), ("long", "name_too_long", "fetch")]))


class _PlanServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


def test_download_yt8m_caps_the_plan(monkeypatch):
    monkeypatch.setattr(download_yt8m, "MAX_PLAN_BYTES", 4096)
    body = json.dumps({"files": {f"train{i:04d}.tfrecord": "0" * 32 for i in range(400)}}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()  # no Content-Length: the client cannot know the size up front
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = _PlanServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(yt8m_files.PermanentError) as e:
            download_yt8m.fetch_plan(f"http://127.0.0.1:{httpd.server_address[1]}/plan.json", max_attempts=1)
        assert e.value.reason == "bad_plan" and "4,096" in e.value.message
    finally:
        httpd.shutdown()
        httpd.server_close()
