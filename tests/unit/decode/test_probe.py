"""Tests for pipeline.decode.probe: the one header parser that the fetcher and the decoder share."""

from __future__ import annotations

import subprocess

import pytest

from pipeline.decode import probe
from pipeline.errors import ClipError
from pipeline.fetch import ytdlp
from pipeline.net import netguard
from pipeline.testing import testvideo

REAL_HEADER = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/x.mp4':
  Metadata:
    major_brand     : isom
    title           : Duration: 99:00:00.00, start: -50.000000, bitrate: 1 kb/s
                    : Stream #0:7: Video: h264, yuv420p, 9999x9999
    comment         : Stream #0:8: Audio: aac, 44100 Hz
  Duration: 00:00:04.50, start: 0.023220, bitrate: 120 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 320x240, 25 fps
  Stream #0:1[0x2](und): Video: mjpeg (Baseline), yuvj420p(pc), 600x600 (attached pic)
At least one output file must be specified
"""


def test_a_strangers_metadata_cannot_pose_as_the_header():
    info = probe.parse_header(REAL_HEADER)
    assert info.ok
    assert info.duration == pytest.approx(4.5)
    assert info.start == pytest.approx(0.02322)
    assert (info.width, info.height) == (320, 240)
    assert info.has_video and not info.has_audio  # the cover picture is no video, the comment no audio


def test_unknown_duration_and_no_header():
    info = probe.parse_header("Input #0, mpegts, from 'x':\n  Duration: N/A, bitrate: N/A\n"
                              "  Stream #0:0[0x100]: Audio: mp2, 48000 Hz, stereo\n")
    assert info.ok and info.duration is None and info.has_audio and not info.has_video
    missing = probe.parse_header("x.mp4: Invalid data found when processing input\n")
    assert not missing.ok and missing.tail == "x.mp4: Invalid data found when processing input"
    with pytest.raises(ClipError) as e:
        probe.check_decodable(missing, "x.mp4")
    assert e.value.reason == "invalid_video"


def test_metadata_spoof_in_a_real_file(tmp_path, videos):
    spoofed = str(tmp_path / "spoofed.mp4")
    subprocess.run([probe.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i",
                    videos["v4_5_silent"], "-c", "copy", "-metadata", "title=Duration: 00:00:01.00, start: 50.0",
                    spoofed], check=True)
    for info in (probe.probe(spoofed, untrusted=True),
                 probe.read_header(spoofed, input_args=probe.STRANGER_FILE_ARGS)):
        assert info.ok and info.duration == pytest.approx(4.5, abs=0.1) and abs(info.start) < 1.0


def test_timeout_is_reported(videos):
    info = probe.read_header(videos["v0_5"], timeout=1e-4)
    assert info.timed_out and not info.ok
    with pytest.raises(ClipError) as e:
        probe.check_decodable(info, videos["v0_5"])
    assert e.value.reason == "timeout"


def test_whitelists_are_defined_once_and_public_names_stay():
    assert probe.UNTRUSTED_FORMATS is netguard.STRANGER_FORMATS
    assert probe.REMOTE_PROTOCOLS is netguard.NETWORK_PROTOCOLS
    assert probe.UNTRUSTED_FORMATS is probe.UNTRUSTED_FORMATS and probe.probe is probe.probe
    assert probe.ffmpeg_exe is probe.ffmpeg_exe and testvideo.generate_test_video is not None
    assert ytdlp.classify_error("HTTP Error 429: Too Many Requests") == ("rate_limited", True)
    assert "file" not in probe.network_protocols().split(",")
    assert probe.network_protocols(allow_file=True).endswith(",file")
