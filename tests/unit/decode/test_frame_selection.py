"""docs/spec.md §2 against the YouTube-8M extractor itself: its `frame_iterator`, re-implemented with OpenCV.

The extractor reads frames with cv2.VideoCapture and uses CAP_PROP_POS_MSEC (the time of the
last frame read) to decide; the pipeline decodes with ffmpeg and never imports OpenCV. On every
kind of video users bring (frame rates, VFR, slideshows, a late video stream, an edit list,
fractional and sub-second durations, a stream-copied cut) both must pick the same frames at the
same times, and the same pixels.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from extractor_reference import frame_iterator

from pipeline.decode import media, probe


def _ffmpeg(*args: str) -> None:
    subprocess.run([probe.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def _src(rate: str, seconds: float) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={rate}:duration={seconds}"]


_X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
_TONE = ["-f", "lavfi", "-i", "sine=frequency=440:duration=6"]


def _make(kind: str, path: str) -> str:
    if kind in ("24", "25", "30", "60"):
        _ffmpeg(*_src(kind, 4.5), *_X264, path)
    elif kind == "29.97":
        _ffmpeg(*_src("30000/1001", 10), *_X264, path)
    elif kind == "vfr":  # frames at irregular times (setpts), kept as they are
        _ffmpeg(*_src("30", 4), "-vf", "setpts='(N+0.37*sin(N))/30/TB+0.45*floor(N/25)/TB'", "-fps_mode", "vfr",
                *_X264, path)
    elif kind == "slideshow":  # one frame every 1.6 s
        _ffmpeg(*_src("1/1.6", 9), *_X264, "-g", "1", path)
    elif kind == "late_video":  # the video stream starts 0.7 s after the audio
        _ffmpeg("-itsoffset", "0.7", *_src("25", 4), *_TONE, *_X264, "-c:a", "aac", "-shortest", path)
    elif kind == "edit_list":  # a stream copy from a non-key frame writes an mp4 edit list
        source = path + ".src.mp4"
        _ffmpeg(*_src("30", 6), *_X264, "-g", "60", source)
        _ffmpeg("-ss", "1.3", "-i", source, "-c", "copy", path)
    elif kind == "fractional":
        _ffmpeg(*_src("30", 7.5), *_X264, path)
    elif kind == "subsecond":
        _ffmpeg(*_src("30", 0.5), *_X264, path)
    elif kind == "stream_copy":  # a 5-s stream-copy cut (yt-dlp's --download-sections does the same)
        source = path + ".src.mp4"
        _ffmpeg(*_src("30", 8), *_X264, "-g", "15", source)
        _ffmpeg("-ss", "2", "-i", source, "-t", "5", "-c", "copy", path)
    else:
        raise ValueError(kind)
    return path


KINDS = ["24", "25", "29.97", "30", "60", "vfr", "slideshow", "late_video", "edit_list", "fractional", "subsecond",
         "stream_copy"]


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    d = tmp_path_factory.mktemp("kinds")
    return {kind: _make(kind, str(d / f"{kind.replace('.', '_')}.mp4")) for kind in KINDS}


def _pipeline(path: str, frames_per_second: float = 1.0):
    info = probe.probe(path)
    decoder = media.ClipDecoder(path, has_audio=info.has_audio, frames_per_second=frames_per_second,
                                declared_duration=info.duration)
    steps = list(decoder.steps())
    return steps, decoder.summary


@pytest.mark.parametrize("kind", KINDS)
def test_pipeline_picks_the_extractors_frames(kinds, kind):
    reference = list(frame_iterator(kinds[kind]))
    steps, summary = _pipeline(kinds[kind])
    assert [s.index for s in steps] == [i for i, _, _ in reference]
    assert [s.msec for s in steps] == pytest.approx([t for _, t, _ in reference], abs=1e-6)
    assert summary.num_steps == len(reference) >= 1
    for step, (_, _, frame) in zip(steps, reference, strict=True):
        # Same decoder (libavcodec) on both sides; only the YUV->RGB conversion may differ by rounding.
        diff = np.abs(step.frame.astype(np.int16) - frame.astype(np.int16))
        assert step.frame.shape == frame.shape and np.mean(diff) < 3, kind


def test_expected_frames_on_known_kinds(kinds):
    """The SPEC's own examples, independent of OpenCV."""
    index = {kind: [s.index for s in _pipeline(kinds[kind])[0]] for kind in ("25", "30", "29.97", "slideshow")}
    assert index["25"][:4] == [0, 26, 51, 76]
    assert index["30"][:4] == [0, 31, 61, 91]
    assert index["29.97"][:4] == [0, 31, 61, 91]
    assert index["slideshow"] == [0, 2, 3, 4, 5]  # frames at 0, 1.6, 3.2, 4.8, 6.4, 8.0 s
    fractional, _ = _pipeline(kinds["fractional"])
    assert len(fractional) == 8  # 7.5 s at 30 fps: the extractor's 8 steps, not floor(7.5)
    assert len(_pipeline(kinds["subsecond"])[0]) == 1
    assert len(_pipeline(kinds["stream_copy"])[0]) == 5


def test_late_video_stream_times_from_its_first_frame(kinds):
    steps, summary = _pipeline(kinds["late_video"])
    assert steps[0].msec == 0.0 and steps[1].msec == pytest.approx(1040.0)
    # Audio step k starts k s after the first video frame, on the container's clock (0.7 s in).
    first = summary.first_frame_seconds
    assert first == pytest.approx(0.7, abs=0.03)
    assert summary.audio_starts()[:2] == [round(first * 16000), round((first + 1) * 16000)]


@pytest.mark.parametrize("fps", [2.0, 0.5])
def test_frames_per_second_matches_the_extractors_every_ms(kinds, fps):
    reference = [i for i, _, _ in frame_iterator(kinds["29.97"], every_ms=1000.0 / fps)]
    steps, _ = _pipeline(kinds["29.97"], frames_per_second=fps)
    assert [s.index for s in steps] == reference
