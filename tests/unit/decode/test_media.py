"""ffmpeg decoding: docs/spec.md §2's frame choice, durations, audio, integrity, caps and bad inputs."""

import numpy as np
import pytest

from pipeline.decode import media, probe
from pipeline.errors import ClipError
from pipeline.testing import testvideo


def decode(path, **kw):
    info = probe.probe(path)
    decoder = media.ClipDecoder(path, has_audio=info.has_audio, **kw)
    steps = list(decoder.steps())
    return steps, decoder.summary


def test_ten_seconds_at_25fps_gives_frames_0_26_51(videos):
    steps, summary = decode(videos["v10_audio"])
    # docs/spec.md §2: the frame AFTER the first one at or past each mark: 0, 26, 51, 76, ... at 25 fps.
    assert [s.step for s in steps] == list(range(10))
    assert [s.index for s in steps] == [0] + [25 * k + 1 for k in range(1, 10)]
    assert [s.pts_seconds for s in steps] == pytest.approx([0.0] + [k + 0.04 for k in range(1, 10)], abs=1e-9)
    assert summary.num_steps == 10 and summary.duration == pytest.approx(10.0, abs=1e-6)
    assert summary.frames_decoded == 250 and summary.first_frame_seconds == 0.0
    assert steps[0].frame.shape == (240, 320, 3) and steps[0].frame.dtype == np.uint8
    assert summary.waveform is not None and abs(len(summary.waveform) - 160000) < 2000
    # The 440 Hz tone is there: its spectrum peaks at 440 Hz.
    spectrum = np.abs(np.fft.rfft(summary.waveform[16000:32000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) <= 2
    assert summary.audio_starts() == [16000 * k for k in range(10)]


def test_30fps_takes_frames_0_31_61(videos):
    steps, summary = decode(videos["v3_30fps"])
    assert summary.num_steps == 3 and [s.index for s in steps] == [0, 31, 61]
    assert [s.msec for s in steps] == pytest.approx([0.0, 1033.333, 2033.333], abs=1e-3)


def test_frames_per_second_flag_divides_the_interval(videos):
    steps, summary = decode(videos["v3_30fps"], frames_per_second=4)
    # every_ms = 250: marks at frames 8 (266.7 ms), 16, 23, ... and the frame after each.
    assert [s.index for s in steps][:4] == [0, 9, 17, 25]
    assert summary.num_steps == len(steps) == 12
    assert summary.audio_starts()[:3] == [0, 4000, 8000]


def test_section_start_picks_the_frame_after_the_mark(videos):
    steps, summary = decode(videos["v10_audio"], start=2.5, duration=3.0)
    # 25 fps: the section's first frame is at 2.52 (0.02 s into the clip); marks at +1.00, +2.00 s.
    assert [round(s.pts_seconds, 3) for s in steps] == [0.02, 1.06, 2.06]
    assert summary.num_steps == 3 and summary.duration == pytest.approx(2.96, abs=0.05)
    assert summary.first_frame_seconds == pytest.approx(0.02, abs=1e-6)
    assert summary.audio_starts() == [320, 16320, 32320]


def test_fractional_duration_and_no_audio_stream(videos):
    steps, summary = decode(videos["v4_5_silent"])
    # 4.5 s at 25 fps: frames up to 4.48 s, so the frame after the 4-s mark (4.04 s) is step 4.
    assert summary.num_steps == 5 and summary.duration == pytest.approx(4.5, abs=0.04)
    assert summary.waveform is None
    assert [s.step for s in steps] == list(range(5))


def test_half_second_clip_has_one_step(videos):
    steps, summary = decode(videos["v0_5"])
    assert summary.num_steps == 1 and [s.index for s in steps] == [0]


def test_ffmpeg_selection_picks_the_spec_frames(videos):
    info = probe.probe(videos["v3_30fps"])
    fast = media.ClipDecoder(videos["v3_30fps"], has_audio=info.has_audio)
    fast_steps = list(fast.steps())
    assert [s.index for s in fast_steps] == [0, 31, 61]


def test_selection_mismatch_fails_the_clip(videos, monkeypatch):
    """A (simulated) disagreement between ffmpeg's select and docs/spec.md §2 is caught, never silently wrong."""
    monkeypatch.setattr(media, "select_expression", lambda *a, **k: "not(mod(n,30))")  # frames 0, 30, 60
    info = probe.probe(videos["v3_30fps"])
    decoder = media.ClipDecoder(videos["v3_30fps"], has_audio=info.has_audio)
    handed_on = []
    with pytest.raises(ClipError) as e:
        for step in decoder.steps():
            handed_on.append((step.index, step.step))
    assert e.value.reason == "decode_error" and "docs/spec.md §2" in e.value.message
    assert handed_on == [(0, 0)]  # frame 0 agrees with the rule; frame 30 (the rule says 31) is never handed on


def test_cut_in_half_mp4_fails_truncated_with_both_durations(tmp_path):
    import subprocess

    whole = str(tmp_path / "whole.mp4")  # moov first (as web videos are), so the first half stays playable
    subprocess.run([probe.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=64x48:rate=25:duration=8", "-f", "lavfi", "-i", "sine=duration=8",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart", whole],
                   check=True)
    data = open(whole, "rb").read()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    info = probe.probe(str(half))
    assert info.duration == pytest.approx(8.0, abs=0.05)
    decoder = media.ClipDecoder(str(half), has_audio=info.has_audio, declared_duration=info.duration)
    with pytest.raises(ClipError) as e:
        list(decoder.steps())
    assert e.value.reason == "truncated"
    assert "8.000 s" in e.value.message and "ends at" in e.value.message
    # The intact file passes the same check.
    steps, summary = decode(whole, declared_duration=8.0)
    assert summary.num_steps == 8


def test_huge_frames_fail_too_large_before_decoding(tmp_path):
    import subprocess

    huge = tmp_path / "huge.avi"
    subprocess.run([probe.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=red:size=16000x16000:rate=1:duration=1", "-frames:v", "1", "-c:v", "mjpeg",
                    "-q:v", "31", str(huge)], check=True)
    with pytest.raises(ClipError) as e:
        probe.probe(str(huge))
    assert e.value.reason == "too_large" and "16000x16000" in e.value.message
    # The caps are flags: a larger cap lets the header through.
    info = probe.probe(str(huge), max_frame_side=20000, max_frame_pixels=300_000_000)
    assert (info.width, info.height) == (16000, 16000)
    # And the decoder itself refuses frames over its pixel cap, whatever the header said.
    decoder = media.ClipDecoder(str(huge), has_audio=False, max_frame_pixels=40_000_000)
    with pytest.raises(ClipError):
        list(decoder.steps())


@pytest.mark.parametrize("start", [1e20, 12.0])
def test_start_past_the_end_fails_bad_time(videos, start):
    info = probe.probe(videos["v3_30fps"])
    with pytest.raises(ClipError) as e:
        list(media.ClipDecoder(videos["v3_30fps"], start=start, duration=2.0, has_audio=info.has_audio,
                               declared_duration=info.duration).steps())
    assert e.value.reason == "bad_time"
    # Without the declared duration the decoder still names a time reason, not no_frames.
    with pytest.raises(ClipError) as e:
        list(media.ClipDecoder(videos["v3_30fps"], start=start, has_audio=False).steps())
    assert e.value.reason == "bad_time"


@pytest.mark.parametrize("name,reason", [
    ("missing", "missing_file"), ("empty", "empty_file"), ("corrupt", "invalid_video"),
    ("audio_only", "no_video_stream"),
])
def test_bad_inputs_have_stable_reasons(videos, name, reason):
    with pytest.raises(ClipError) as e:
        probe.probe(videos[name])
    assert e.value.reason == reason


def test_file_names_are_not_read_as_protocols(tmp_path, videos):
    import shutil

    odd = tmp_path / "http:odd|name.mp4"
    shutil.copy(videos["v3_30fps"], odd)
    steps, summary = decode(str(odd))
    assert summary.num_steps == 3


def test_classify_ffmpeg_error():
    assert probe.classify_ffmpeg_error("HTTP error 404 Not Found\nServer returned 404 Not Found")[0] == "not_found"
    assert probe.classify_ffmpeg_error("whatever")[0] == "decode_error"


def test_at_most_300_steps_and_audio_for_the_last_one(tmp_path):
    path = testvideo.generate_test_video(str(tmp_path / "t20.mp4"), seconds=20, size="64x48", rate=25)
    # every_ms = 33.3 at 25 fps: nearly every frame is a step, so the cap is reached at 12 s.
    steps, summary = decode(path, frames_per_second=30, declared_duration=20.0)
    assert summary.num_steps == len(steps) == 300 and steps[-1].index == 300
    starts = summary.audio_starts()
    assert len(starts) == 300 and starts[-1] == round(299 / 30 * 16000)
    # The audio was read at least to the end of the last window (the tone, not padding).
    assert len(summary.waveform) >= starts[-1] + 15600
