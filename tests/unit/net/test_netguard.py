"""Confinement of remote inputs: address policy, redirects, playlists, deadline.

A hostile loopback server serves a good video, HLS playlists whose segments are local
paths, redirects to another loopback port, to file:// and to the metadata server, and a
2 KB/s slow drip. Only loopback addresses are ever connected to: refusals of 169.254/fe80
are tested on the policy function directly, and the end-to-end redirect to 169.254.169.254
must be refused by the guard before any connection (the test fails on a connection attempt
because the guard records the refusal; a direct attempt would not be recorded).
"""

from __future__ import annotations

import csv
import glob
import http.server
import json
import os
import shutil
import socket
import threading
import time

import pytest

from pipeline.cli import build
from pipeline.decode import probe
from pipeline.errors import ClipError
from pipeline.fetch import clips as fetch
from pipeline.fetch import ytdlp
from pipeline.fetch.config import FetchConfig
from pipeline.net import address_policy, guard_proxy, netguard
from pipeline.testing import testvideo

GOOD = "goodVideo01"
HLS_FILE = "hlsFileUrl1"
HLS_PATH = "hlsAbsPath1"
TO_PORT = "redirPort01"
TO_FILE = "redirFile01"
TO_META = "redirMeta01"
FF_TO_PORT = "ffmpegRedir"  # serves yt-dlp, redirects ffmpeg (the section cut) to an unnamed port
FF_TO_FILE = "ffmpegFile1"  # serves yt-dlp, redirects ffmpeg to file://
DRIP = "slowDrip001"
DRIP_RATE = 2048  # bytes per second


class HostileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, video: bytes, secret: str, other_port: int):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.video = video
        self.secret = secret
        self.other_port = other_port
        self.lock = threading.Lock()
        self.paths: list[str] = []
        self.drip_closed = threading.Event()  # set when a drip client hung up
        self.drip_sent = 0

    def handle_error(self, request, client_address) -> None:
        pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HostileServer

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "video/mp4", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.paths.append(self.path)
        name = self.path.rsplit("/", 1)[-1].split(".", 1)[0]
        secret = self.server.secret
        if name == GOOD:
            self._send(200, self.server.video)
        elif name in (HLS_FILE, HLS_PATH):
            segment = f"file:{secret}" if name == HLS_FILE else secret
            body = (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
                    f"#EXTINF:10.0,\n{segment}\n#EXT-X-ENDLIST\n").encode()
            self._send(200, body, ctype="application/vnd.apple.mpegurl")
        elif name in (FF_TO_PORT, FF_TO_FILE) and not self.headers.get("Icy-MetaData"):
            self._send(200, self.server.video)
        elif name in (TO_PORT, FF_TO_PORT):
            self._send(302, b"", headers={"Location": f"http://127.0.0.1:{self.server.other_port}/{GOOD}.mp4"})
        elif name in (TO_FILE, FF_TO_FILE):
            self._send(302, b"", headers={"Location": f"file://{secret}"})
        elif name == TO_META:
            self._send(302, b"", headers={"Location": "http://169.254.169.254/computeMetadata/v1/"})
        elif name == DRIP:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(self.server.video)))
            self.end_headers()
            try:
                for i in range(0, len(self.server.video), DRIP_RATE // 4):
                    self.wfile.write(self.server.video[i:i + DRIP_RATE // 4])
                    self.wfile.flush()
                    with self.server.lock:
                        self.server.drip_sent += DRIP_RATE // 4
                    time.sleep(0.25)
            except OSError:
                self.server.drip_closed.set()
        else:
            self._send(404, b"")


class _OtherPort(http.server.ThreadingHTTPServer):
    """A service on another loopback port that the user never named: it must see no request."""

    daemon_threads = True

    def __init__(self):
        self.hits = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(("127.0.0.1", 0), H)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    video = testvideo.generate_test_video(str(root / "good.mp4"), seconds=3, size="96x64", audio=True)
    # The "local file" a playlist points at: a real video, so a leak would produce a record.
    secret = testvideo.generate_test_video(str(root / "secret.mp4"), seconds=12, size="64x48", audio=False)
    other = _OtherPort()
    threading.Thread(target=other.serve_forever, daemon=True).start()
    server = HostileServer(open(video, "rb").read(), secret, other.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, other
    server.shutdown()
    other.shutdown()


# --------------------------------------------------------------------------
# The policy, directly (no connection is made to any of these addresses)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["169.254.169.254", "169.254.0.1", "fe80::1", "[fe80::1]", "::ffff:169.254.169.254",
                                  "64:ff9b::a9fe:a9fe", "metadata.google.internal", "METADATA.google.internal."])
def test_link_local_and_metadata_are_refused_even_when_named(host):
    url = f"http://{host if ':' not in host or host.startswith('[') else '[' + host + ']'}/x"
    policy = address_policy.AddressPolicy([url])
    with pytest.raises(address_policy.AddressRefused) as err:
        policy.check(host.strip("[]"), 80)
    assert err.value.reason == "address_not_allowed"


def test_private_and_loopback_need_the_user_to_name_host_and_port():
    policy = address_policy.AddressPolicy(["http://127.0.0.1:8123/videos/{id}.mp4", "https://10.1.2.3/v.mp4"])
    assert policy.check("127.0.0.1", 8123)
    assert policy.check("10.1.2.3", 443)
    for host, port in [("127.0.0.1", 8124), ("127.0.0.2", 8123), ("10.1.2.3", 80), ("192.168.0.1", 443),
                       ("::1", 8123), ("0.0.0.0", 8123), ("::ffff:127.0.0.1", 8124)]:
        with pytest.raises(address_policy.AddressRefused) as err:
            policy.check(host, port)
        assert err.value.reason == "address_not_allowed", (host, port)


def test_public_addresses_are_allowed():
    assert address_policy.AddressPolicy([]).check("8.8.8.8", 443)
    assert address_policy.AddressPolicy([]).check("2001:4860:4860::8888", 80)


# --------------------------------------------------------------------------
# yt-dlp fetches (Kinetics rows) through the guard
# --------------------------------------------------------------------------


def _config(server, **kw):
    kw = {"max_attempts": 2, "backoff_base": 0.01, "socket_timeout": 10.0, **kw}
    return FetchConfig(url_template=server.url + "/v/{id}.mp4", **kw)


def _fetch_error(server, tmp_path, video_id) -> ClipError:
    """The ClipError that fetching [0, 2] s of video_id from the hostile server raises."""
    with pytest.raises(ClipError) as err:
        fetch.fetch_clip(video_id=video_id, start=0, end=2, work_dir=str(tmp_path), config=_config(server))
    return err.value


def test_fetch_through_the_guard_still_works(hostile, tmp_path):
    server, _ = hostile
    result = fetch.fetch_clip(video_id=GOOD, start=0, end=2, work_dir=str(tmp_path), config=_config(server))
    assert os.path.getsize(result.path) > 1000
    assert probe.probe(result.path, untrusted=True).has_video


@pytest.mark.parametrize("video_id", [HLS_FILE, HLS_PATH])
def test_fetched_playlist_of_local_paths_reads_no_local_file(hostile, tmp_path, video_id):
    server, _ = hostile
    error = _fetch_error(server, tmp_path, video_id)
    assert error.reason == "not_video", error
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("video_id", [TO_PORT, FF_TO_PORT])
def test_fetch_redirect_to_an_unnamed_loopback_port_is_refused(hostile, tmp_path, video_id):
    """TO_PORT: yt-dlp follows the redirect; FF_TO_PORT: the ffmpeg that cuts the section does."""
    server, other = hostile
    error = _fetch_error(server, tmp_path, video_id)
    assert error.reason == "address_not_allowed", error
    assert other.hits == 0


def test_fetch_redirect_to_the_metadata_server_is_refused_before_connecting(hostile, tmp_path):
    server, _ = hostile
    error = _fetch_error(server, tmp_path, TO_META)
    assert error.reason == "address_not_allowed", error
    assert "169.254.169.254" in error.message


@pytest.mark.parametrize("video_id", [TO_FILE, FF_TO_FILE])
def test_fetch_redirect_to_a_file_url_is_invalid_url(hostile, tmp_path, video_id):
    server, _ = hostile
    error = _fetch_error(server, tmp_path, video_id)
    assert error.reason == "invalid_url", error


def test_fetch_max_seconds_is_a_hard_deadline_against_a_slow_drip(hostile, tmp_path):
    server, _ = hostile
    server.drip_closed.clear()
    began = time.monotonic()
    with pytest.raises(ClipError) as err:
        fetch.fetch_clip(video_id=DRIP, start=0, end=2, work_dir=str(tmp_path),
                         config=_config(server, max_seconds=2.0, max_attempts=5))
    elapsed = time.monotonic() - began
    assert err.value.reason == "timeout", err.value
    assert "--fetch_max_seconds 2" in err.value.message
    assert server.drip_closed.wait(5), "the server never saw its connection closed"
    assert elapsed < 10, elapsed  # hang guard only (5x the deadline); the drip alone would take ~2 min


# --------------------------------------------------------------------------
# http(s) video rows of a videos CSV
# --------------------------------------------------------------------------


def test_download_video_redirects(hostile, tmp_path):
    server, other = hostile
    config = FetchConfig(max_seconds=10)
    dest = str(tmp_path / "v")
    assert fetch.download_video(f"{server.url}/{GOOD}.mp4", dest, config=config) == len(server.video)
    cases = {TO_PORT: "address_not_allowed", TO_FILE: "invalid_url", TO_META: "address_not_allowed"}
    for name, reason in cases.items():
        with pytest.raises(ClipError) as err:
            fetch.download_video(f"{server.url}/{name}.mp4", dest, config=config)
        assert err.value.reason == reason, (name, err.value)
    assert other.hits == 0
    policy = address_policy.AddressPolicy([server.url])
    with guard_proxy.GuardProxy(policy) as guard, pytest.raises(netguard.DownloadError) as err:
        netguard.download(f"{server.url}/{GOOD}.mp4", dest, guard=guard, timeout_s=10, max_bytes=1000)
    assert err.value.reason == "too_large"


def test_guard_proxy_bookkeeping_of_the_deadline(hostile, tmp_path):
    server, _ = hostile
    server.drip_closed.clear()
    policy = address_policy.AddressPolicy([server.url])
    with guard_proxy.GuardProxy(policy, deadline=time.monotonic() + 1.0) as guard:
        with pytest.raises(netguard.DownloadError) as err:
            netguard.download(f"{server.url}/{DRIP}.mp4", str(tmp_path / "d"), guard=guard, timeout_s=30)
        assert err.value.reason == "timeout"
        assert guard.deadline_hit and guard.closed_at_deadline == 1 and guard.connections == 1
        assert server.drip_closed.wait(5)


def test_build_with_hostile_video_rows(hostile, tmp_path, model_cache):
    """One build: a good http row becomes a record; every hostile row fails with its reason."""
    server, other = hostile
    csv_path = tmp_path / "videos.csv"
    rows = {GOOD: None, HLS_FILE: "invalid_video", HLS_PATH: "invalid_video", TO_PORT: "address_not_allowed",
            TO_FILE: "invalid_url", DRIP: "timeout"}
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "labels", "id"])
        for name in rows:
            w.writerow([f"{server.url}/{name}.mp4", "bars", name])
    out = tmp_path / "out"
    server.drip_closed.clear()
    argv = ["--input_csv", str(csv_path), "--output_dir", str(out), "--models", "synthetic",
            "--model_cache", model_cache, "--fetch_max_seconds", "3"]
    assert build.main(argv) == 0
    import tensorflow as tf

    from pipeline.dataset import records

    paths = sorted(glob.glob(os.path.join(out, "records", "*.tfrecord")))
    ids = [records.check_record(r).clip_id for r in tf.data.TFRecordDataset(paths).as_numpy_iterator()]
    assert ids == [GOOD]
    failures = {}
    for p in glob.glob(os.path.join(out, "failures-*.jsonl")):
        for line in open(p):
            record = json.loads(line)
            failures[record["id"]] = record
    assert {k: v["reason"] for k, v in failures.items()} == {k: v for k, v in rows.items() if v}, failures
    assert other.hits == 0
    assert server.drip_closed.wait(5)
    shutil.rmtree(out)


def test_untrusted_local_playlist_is_refused_but_trusted_inputs_are_unchanged(hostile, tmp_path):
    server, _ = hostile
    # A gs:// copy keeps the remote name's extension; ".m3u8" makes ffmpeg pick its HLS demuxer.
    playlist = tmp_path / "input.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{server.secret}\n#EXT-X-ENDLIST\n")
    with pytest.raises(ClipError) as err:
        probe.probe(str(playlist), untrusted=True)
    assert err.value.reason == "protocol_not_allowed"  # ffmpeg: "Format not on whitelist"
    assert probe.probe(server.secret, untrusted=True).has_video
    assert probe.probe(server.secret).has_video


def test_ffmpeg_env_drops_no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,169.254.169.254")
    monkeypatch.setenv("NO_PROXY", "*")
    env = netguard.ffmpeg_env("http://127.0.0.1:1")
    assert "no_proxy" not in env and "NO_PROXY" not in env and env["http_proxy"] == "http://127.0.0.1:1"


def test_fetch_ignores_no_proxy_in_the_environment(hostile, tmp_path, monkeypatch):
    """With no_proxy naming every host, yt-dlp's ffmpeg would bypass the guard; the redirect must still be refused."""
    server, other = hostile
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    error = _fetch_error(server, tmp_path, FF_TO_PORT)
    assert error.reason == "address_not_allowed", error
    assert other.hits == 0


def test_a_socks_proxy_is_refused_at_config_time():
    with pytest.raises(ValueError, match="http://"):
        FetchConfig(proxy="socks5://127.0.0.1:1080")


def test_connect_tunnel_policy(hostile):
    """https goes through CONNECT: an unnamed port is refused with 403 and recorded; a named one is tunnelled."""
    server, other = hostile
    with guard_proxy.GuardProxy(address_policy.AddressPolicy([server.url])) as guard:
        port = int(guard.url.rsplit(":", 1)[1])
        for target, status in [(f"127.0.0.1:{other.server_address[1]}", b"403"),
                               (f"127.0.0.1:{server.server_address[1]}", b"200")]:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
                          f"Proxy-Authorization: {guard.proxy_authorization}\r\n\r\n".encode())
                assert s.recv(100).split()[1] == status
                if status == b"200":
                    s.sendall(f"GET /{GOOD}.mp4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
                    assert data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200")
                    assert data.endswith(server.video)
        assert [r.reason for r in guard.refusals] == ["address_not_allowed"]
    assert other.hits == 0


@pytest.mark.parametrize("message", [
    "[http @ 0x5] Protocol 'file' not on whitelist 'http,https,tcp,tls,crypto,httpproxy'!",
    "No connection adapters were found for 'file:///etc/passwd'",
    "file:// URLs are disabled by default in yt-dlp for security reasons",
])
def test_off_http_redirect_messages_are_invalid_url(message):
    assert ytdlp.classify_error(message) == ("invalid_url", False)


def test_user_proxy_is_chained_after_the_checks(hostile, tmp_path):
    """--proxy: the guard checks, then connects through the user's proxy (here a second guard) with CONNECT."""
    server, other = hostile
    policy = address_policy.AddressPolicy([server.url, f"http://127.0.0.1:{other.server_address[1]}"])
    with guard_proxy.GuardProxy(policy) as user_proxy:
        with guard_proxy.GuardProxy(address_policy.AddressPolicy([server.url]), upstream=user_proxy.url) as guard:
            dest = str(tmp_path / "v")
            assert netguard.download(f"{server.url}/{GOOD}.mp4", dest, guard=guard, timeout_s=10) == len(server.video)
            with pytest.raises(netguard.DownloadError) as err:
                netguard.download(f"{server.url}/{TO_PORT}.mp4", dest, guard=guard, timeout_s=10)
            assert err.value.reason == "address_not_allowed"
        assert user_proxy.connections == 2 and not user_proxy.refusals  # the refused hop never reached it
    assert other.hits == 0


def test_one_list_of_stranger_formats():
    """media.py (decoder) and netguard (fetcher) must refuse the same demuxers."""
    assert probe.UNTRUSTED_FORMATS == netguard.STRANGER_FORMATS
    assert not {"hls", "concat", "ffconcat", "image2", "dash"} & set(netguard.STRANGER_FORMATS.split(","))
    assert "file" not in probe.REMOTE_PROTOCOLS.split(",") and "file" not in netguard.NETWORK_PROTOCOLS.split(",")
