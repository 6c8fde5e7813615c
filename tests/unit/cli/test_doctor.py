"""`python -m pipeline.doctor`: one line per item, the fix on every problem, no secret in the output."""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from pipeline.cli import checks, doctor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PASSWORD = "s3cr3t-Pa55"
USER = "proxy-login-77"
COOKIE_VALUE = "VALUE-never-shown-1234"
MALFORMED_VALUE = "MALFORMED-value-5678"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.doctor", *args], capture_output=True, text=True,
                          cwd=REPO, env=env or _env(), timeout=300, check=False)


def _cookies(path, *, now: float) -> str:
    later, earlier = int(now + 86400 * 30), int(now - 86400)
    path.write_text(
        "# Netscape HTTP Cookie File\n"
        "# a comment\n"
        f".youtube.com\tTRUE\t/\tTRUE\t{later}\tLOGIN_INFO\t{COOKIE_VALUE}\n"
        f"#HttpOnly_.youtube.com\tTRUE\t/\tTRUE\t{earlier}\tOLD_SID\t{COOKIE_VALUE}-old\n"
        f".youtube.com\tTRUE\t/\tTRUE\tsoon\tBROKEN\t{MALFORMED_VALUE}\n"
        f".youtube.com\tTRUE\t{MALFORMED_VALUE}\n"
        f".google.com\tTRUE\t/\tFALSE\t0\tSESSION\t{COOKIE_VALUE}-session\n")
    return str(path)


@pytest.fixture
def listening():
    """A loopback port that accepts TCP connections (a stand-in proxy)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_real_ffmpeg_has_everything_the_build_uses():
    check = doctor.check_ffmpeg()
    assert check.status == checks.OK, check.line()


def test_ffmpeg_lacking_something_the_build_uses_is_a_problem_naming_it(monkeypatch):
    monkeypatch.setitem(doctor.FFMPEG_NEEDS, "filters", (*doctor.FFMPEG_NEEDS["filters"], "nosuchfilter"))
    monkeypatch.setitem(doctor.FFMPEG_NEEDS, "demuxers", ("mp4", "nosuchdemuxer"))
    check = doctor.check_ffmpeg()
    assert check.status == checks.PROBLEM
    assert "filter nosuchfilter" in check.text and "demuxer nosuchdemuxer" in check.text
    assert "select" not in check.text and "mp4" not in check.text.split("lacks", 1)[1]
    assert "Fix: " in check.line()


def test_ytdlp_age():
    from yt_dlp.version import __version__

    released = datetime.date(*(int(p) for p in __version__.split(".")[:3]))
    assert doctor.check_ytdlp_version(today=released + datetime.timedelta(days=30)).status == checks.OK
    old = doctor.check_ytdlp_version(today=released + datetime.timedelta(days=200))
    assert old.status == checks.WARN and "200 days" in old.text
    assert "pip install -U" in old.fix and "requirements.txt" in old.fix


def test_js_runtime_and_ejs_are_ok_in_this_environment():
    found = {c.item: c for c in doctor.check_js_runtime()}
    assert found["js runtime"].status == checks.OK, found["js runtime"].line()
    assert "deno-" in found["js runtime"].text
    assert found["yt-dlp-ejs"].status == checks.OK
    assert found["po-token"].status == checks.OK and "no PO-token provider" in found["po-token"].text


def test_missing_deno_is_a_problem_with_its_fix(monkeypatch):
    monkeypatch.setattr(doctor.ytdlp, "deno_exe", lambda: None)
    monkeypatch.setattr(doctor.ytdlp, "js_runtimes", lambda: {"deno": {"path": "/nonexistent/deno"}})
    found = {c.item: c for c in doctor.check_js_runtime()}
    assert found["js runtime"].status == checks.PROBLEM, found["js runtime"].line()
    assert "JS runtimes: none" in found["js runtime"].text
    assert "requirements.txt" in found["js runtime"].fix


def test_ejs_of_another_version_than_ytdlp_uses_is_a_problem(monkeypatch):
    monkeypatch.setattr(doctor, "_ejs_version_wanted", lambda: "99.1.0")
    found = {c.item: c for c in doctor.check_js_runtime()}
    assert found["yt-dlp-ejs"].status == checks.PROBLEM and "99.1.0" in found["yt-dlp-ejs"].text
    assert "pip install yt-dlp-ejs==99.1.0" in found["yt-dlp-ejs"].fix


def test_a_po_token_provider_plugin_is_found(tmp_path):
    plugin = tmp_path / "yt_dlp_plugins" / "extractor"
    plugin.mkdir(parents=True)
    (plugin / "getpot_standin.py").write_text(textwrap.dedent("""
        from yt_dlp.extractor.youtube.pot.provider import PoTokenProvider, PoTokenProviderError, register_provider

        @register_provider
        class StandinPTP(PoTokenProvider):
            PROVIDER_VERSION = "0.1"
            def is_available(self):
                return False  # as a provider whose server is down
            def _real_request_pot(self, request):
                raise PoTokenProviderError("stand-in")
        """))
    env = {**_env(), "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"}
    run = _doctor("--models", "synthetic", env=env)
    line = next(line for line in run.stdout.splitlines() if "po-token" in line)
    assert line.startswith("WARN") and "Standin (unavailable)" in line, run.stdout


def test_cookies_expired_and_malformed_are_named_but_no_value_is_shown(tmp_path):
    now = time.time()
    check = checks.check_cookies(_cookies(tmp_path / "cookies.txt", now=now), now=now)
    assert check.status == checks.WARN, check.line()
    assert "2 valid for youtube.com" in check.text
    assert "1 expired: OLD_SID (.youtube.com)" in check.text
    assert "malformed line(s) 5, 6" in check.text
    assert COOKIE_VALUE not in check.line() and MALFORMED_VALUE not in check.line()


def test_good_cookies_are_ok(tmp_path):
    path = tmp_path / "cookies.txt"
    expires = int(time.time()) + 9999
    path.write_text(f"# HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\t{expires}\tSID\t{COOKIE_VALUE}\n")
    check = checks.check_cookies(str(path))
    assert check.status == checks.OK and "none expired" in check.text, check.line()


@pytest.mark.parametrize(("content", "expected"), [
    (f'[{{"name": "SID", "value": "{COOKIE_VALUE}"}}]', "JSON, not Netscape"),
    (f"SID={COOKIE_VALUE}\n", "not a Netscape cookies file"),
    ("# Netscape HTTP Cookie File\n# nothing else\n", "no cookie in it"),
    (None, "cannot read it"),
])
def test_unusable_cookies_are_a_problem(tmp_path, content, expected):
    path = tmp_path / "cookies.txt"
    if content is not None:
        path.write_text(content)
    check = checks.check_cookies(str(path))
    assert check.status == checks.PROBLEM and expected in check.text, check.line()
    assert COOKIE_VALUE not in check.line() and "cookies-from-browser" in check.fix


def test_proxy_listening_vs_closed_and_the_password_is_never_shown(listening):
    up = checks.check_proxy(f"http://{USER}:{PASSWORD}@127.0.0.1:{listening}")
    assert up.status == checks.OK and "credentials given" in up.text, up.line()
    down = checks.check_proxy(f"http://{USER}:{PASSWORD}@127.0.0.1:{_closed_port()}", timeout=1.0)
    assert down.status == checks.PROBLEM and "cannot connect" in down.text, down.line()
    socks = checks.check_proxy(f"socks5://{USER}:{PASSWORD}@127.0.0.1:{listening}")
    assert socks.status == checks.PROBLEM and "SOCKS" in socks.text
    for check in (up, down, socks):
        assert PASSWORD not in check.line() and USER not in check.line()


@pytest.mark.parametrize("url", [f"http://me:{PASSWORD}@h:1", f"me:{PASSWORD}@h:1", f"http://me:{PASSWORD}@h:x/",
                                 f"https://{PASSWORD}@h", f"http://me:p@ss{PASSWORD}@h:1"])
def test_redaction_hides_user_info_even_in_malformed_urls(url):
    assert PASSWORD not in checks.redact_url(url) and "***@h" in checks.redact_url(url)
    assert PASSWORD not in checks.check_proxy(url, timeout=0.5).line()


def test_several_values_repeated_or_comma_separated():
    assert checks.split_values(["a.txt,b.txt", " c.txt ", ","]) == ["a.txt", "b.txt", "c.txt"]
    assert checks.split_values(None) == []


def test_models_missing_from_an_empty_cache_warn_unless_downloads_are_forbidden(tmp_path):
    allowed = doctor.check_models(model_cache=str(tmp_path / "cache"))
    assert [c.status for c in allowed] == [checks.WARN] * 4 and "will download" in allowed[0].text
    forbidden = doctor.check_models(model_cache=str(tmp_path / "cache"), allow_download=False, with_audio=False)
    assert [c.status for c in forbidden] == [checks.PROBLEM] * 2 and "--no_download" in forbidden[0].text
    assert not os.path.exists(tmp_path / "cache" / "downloads")  # nothing fetched


def test_model_dir_missing_files_name_each_one(tmp_path):
    found = doctor.check_models(model_dir=str(tmp_path), model_cache=str(tmp_path / "cache"))
    assert [c.status for c in found] == [checks.PROBLEM] * 4
    assert "classify_image_graph_def.pb" in found[0].text and "--model_dir" in found[0].fix


def test_gs_paths_are_skipped_offline_with_a_note():
    found = checks.check_gcs([("--output_dir", "gs://bucket/out"), ("--model_dir", None)], online=False)
    assert [(c.status, c.item) for c in found] == [(checks.SKIP, "gs:// --output_dir")]
    assert "offline" in found[0].text
    assert checks.check_gcs([("--output_dir", "/tmp/local")]) == []
    models = doctor.check_models(model_dir="gs://bucket/models", online=False)
    assert [(c.status, c.item) for c in models] == [(checks.SKIP, "models")] and "offline" in models[0].text


def test_command_line_missing_model_dir_exits_non_zero_quietly_and_shows_no_secret(tmp_path, listening):
    now = time.time()
    cookies = _cookies(tmp_path / "cookies.txt", now=now)
    run = _doctor("--model_dir", str(tmp_path / "missing"), "--cookies", cookies,
                  "--proxy", f"http://{USER}:{PASSWORD}@127.0.0.1:{listening},http://127.0.0.1:{_closed_port()}",
                  "--output_dir", "gs://bucket/out")
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    models = next(line for line in lines if line.split()[1] == "models:")
    assert models.startswith("PROBLEM") and "missing is not a directory" in models and "Fix: " in models
    assert sum(line.startswith(("OK", "WARN", "PROBLEM", "SKIP")) for line in lines) == len(lines) - 1
    assert sum("proxy" in line for line in lines) == 2
    assert lines[-1].startswith("doctor: ")
    assert run.stderr == ""
    everything = run.stdout + run.stderr
    for secret in (USER, PASSWORD, COOKIE_VALUE, MALFORMED_VALUE):
        assert secret not in everything


def test_a_build_that_can_start_exits_zero_without_importing_tensorflow():
    code = ("import sys\nfrom pipeline import doctor\nrc = doctor.main(['--models', 'synthetic'])\n"
            "print('tensorflow imported:', 'tensorflow' in sys.modules)\nsys.exit(rc)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=_env(),
                         timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "tensorflow imported: False" in run.stdout
    assert "doctor: a build can start" in run.stdout
