"""yt-dlp gets the deno of the pinned `deno` wheel by path, and reports it usable for YouTube's challenges."""

from __future__ import annotations

import os
import subprocess
import sys

import deno

from pipeline.cli import doctor
from pipeline.decode import probe
from pipeline.fetch import ytdlp
from pipeline.fetch.attempt import build_params
from pipeline.fetch.config import FetchConfig


def _fetch_params(tmp_path) -> dict:
    return build_params(FetchConfig(), out_dir=str(tmp_path), logger=ytdlp.CapturingLogger(),
                        hook=lambda status: None, ffmpeg=probe.ffmpeg_exe(), cookies_file=None, timeout=5.0,
                        proxy="http://127.0.0.1:9")


def test_fetch_params_name_the_packaged_deno_and_ytdlp_reports_it_available(tmp_path, monkeypatch):
    # Nothing on PATH: what yt-dlp uses must come from the params the fetcher builds.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    params = _fetch_params(tmp_path)
    path = params["js_runtimes"]["deno"]["path"]
    assert path == deno.find_deno_bin()
    assert os.path.isfile(path) and os.access(path, os.X_OK)
    # Real yt-dlp, with every param the fetcher passes (its logger replaced): no network is used.
    view = doctor.ytdlp_view({k: v for k, v in params.items() if k not in ("logger", "progress_hooks")})
    assert view.runtimes is not None and view.runtimes.startswith("deno-"), view.runtimes
    assert "unsupported" not in view.runtimes
    assert view.runtime_path == path
    assert view.challenge_providers.get("deno") is True


def test_a_caller_may_choose_another_runtime(tmp_path):
    config = FetchConfig(extra_ytdlp_options={"js_runtimes": {"node": {}}})
    params = build_params(config, out_dir=str(tmp_path), logger=ytdlp.CapturingLogger(),
                          hook=lambda status: None, ffmpeg=probe.ffmpeg_exe(), cookies_file=None, timeout=5.0,
                          proxy="http://127.0.0.1:9")
    assert params["js_runtimes"] == {"node": {}}


def test_without_the_path_ytdlp_would_not_find_deno_off_the_scripts_folder(tmp_path):
    """Why the path is passed: run from a Python whose scripts folder lacks deno (a --target install, a
    Dataflow worker's image), yt-dlp's own lookup falls back to PATH and finds nothing."""
    code = ("import yt_dlp, sysconfig, sys\n"
            "sysconfig.get_path = lambda *a, **k: sys.argv[1]\n"
            "from yt_dlp.utils._jsruntime import DenoJsRuntime\n"
            "print(DenoJsRuntime().info is None, DenoJsRuntime(path=sys.argv[2]).info is not None)\n")
    env = {**os.environ, "PATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), deno.find_deno_bin()], env=env,
                         capture_output=True, text=True, check=True, timeout=120).stdout.split()
    assert out == ["True", "True"]
