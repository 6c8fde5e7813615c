"""Shared fixtures: ffmpeg-generated videos and the location of ../shared (skipped when absent)."""

from __future__ import annotations

import os
import pathlib

import pytest

from pipeline.decode import probe
from pipeline.testing import testvideo

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    if not (SHARED / "SPEC.md").exists():
        pytest.skip("../shared is not beside this checkout")
    return SHARED


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, str]:
    """Small generated videos, made once per test session."""
    d = tmp_path_factory.mktemp("videos")
    out = {
        "v10_audio": testvideo.generate_test_video(str(d / "v10_audio.mp4"), seconds=10, audio=True),
        "v4_5_silent": testvideo.generate_test_video(str(d / "v4_5_silent.mp4"), seconds=4.5, audio=False),
        "v0_5": testvideo.generate_test_video(str(d / "v0_5.mp4"), seconds=0.5, audio=True),
        "v3_30fps": testvideo.generate_test_video(str(d / "v3_30fps.mp4"), seconds=3, rate=30, audio=True),
    }
    empty = d / "empty.mp4"
    empty.write_bytes(b"")
    out["empty"] = str(empty)
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(4096))
    out["corrupt"] = str(corrupt)
    audio_only = d / "audio_only.m4a"
    import subprocess

    subprocess.run([probe.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=300:duration=3", "-c:a", "aac", str(audio_only)], check=True)
    out["audio_only"] = str(audio_only)
    out["missing"] = str(d / "does_not_exist.mp4")
    return out


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    """One cache for the synthetic models of the whole session (generating them takes a while)."""
    env = os.environ.get("VIDEO_FEATURES_TEST_MODEL_CACHE")
    if env:
        return env
    return str(tmp_path_factory.mktemp("model_cache"))
