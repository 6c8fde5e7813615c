"""ffmpeg decoding: the per-second timing rule, durations, audio, and bad inputs."""

import numpy as np
import pytest

from pipeline import media
from pipeline.errors import ClipError


def decode(path, **kw):
    info = media.probe(path)
    decoder = media.ClipDecoder(path, has_audio=info.has_audio, **kw)
    steps = list(decoder.steps())
    return steps, decoder.summary


def test_ten_seconds_gives_ten_steps_at_whole_seconds(videos):
    steps, summary = decode(videos["v10_audio"])
    assert [s.step for s in steps] == list(range(10))
    assert [s.pts_seconds for s in steps] == [float(k) for k in range(10)]  # 25 fps: a frame at every mark
    assert summary.num_steps == 10 and summary.duration == pytest.approx(10.0, abs=1e-6)
    assert steps[0].frame.shape == (240, 320, 3) and steps[0].frame.dtype == np.uint8
    assert summary.waveform is not None and abs(len(summary.waveform) - 160000) < 2000
    # The 440 Hz tone is there: its spectrum peaks at 440 Hz.
    spectrum = np.abs(np.fft.rfft(summary.waveform[16000:32000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) <= 2


def test_steps_use_first_frame_at_or_after_each_second_at_30fps(videos):
    steps, summary = decode(videos["v3_30fps"])
    assert summary.num_steps == 3
    assert [s.pts_seconds for s in steps] == pytest.approx([0.0, 1.0, 2.0], abs=1e-6)


def test_section_start_picks_first_frame_past_the_mark(videos):
    steps, summary = decode(videos["v10_audio"], start=2.5, duration=3.0)
    # 25 fps: frames at 2.48, 2.52 -> step 0 is the frame at 2.52, i.e. 0.02 s into the clip.
    assert [round(s.pts_seconds, 3) for s in steps] == [0.02, 1.02, 2.02]
    assert summary.num_steps == 3 and summary.duration == pytest.approx(3.0, abs=0.05)


def test_section_frames_equal_frames_of_whole_decode(videos):
    whole, _ = decode(videos["v10_audio"])
    section, _ = decode(videos["v10_audio"], start=3.0, duration=4.0)
    for k, s in enumerate(section):
        np.testing.assert_array_equal(s.frame, whole[3 + k].frame)


def test_fractional_duration_floors_and_no_audio_stream(videos):
    steps, summary = decode(videos["v4_5_silent"])
    # 4.5 s at 25 fps is 112.5 frames; the encoder writes 113, so D measured on the frames is 4.52.
    assert summary.num_steps == 4 and summary.duration == pytest.approx(4.5, abs=0.04)
    assert summary.waveform is None
    assert max(s.step for s in steps) >= 3


def test_short_clip_has_zero_steps(videos):
    _, summary = decode(videos["v0_5"])
    assert summary.num_steps == 0


@pytest.mark.parametrize("name,reason", [
    ("missing", "missing_file"), ("empty", "empty_file"), ("corrupt", "invalid_video"),
    ("audio_only", "no_video_stream"),
])
def test_bad_inputs_have_stable_reasons(videos, name, reason):
    with pytest.raises(ClipError) as e:
        media.probe(videos[name])
    assert e.value.reason == reason


def test_file_names_are_not_read_as_protocols(tmp_path, videos):
    import shutil

    odd = tmp_path / "http:odd|name.mp4"
    shutil.copy(videos["v3_30fps"], odd)
    steps, summary = decode(str(odd))
    assert summary.num_steps == 3


def test_classify_ffmpeg_error():
    assert media.classify_ffmpeg_error("HTTP error 404 Not Found\nServer returned 404 Not Found")[0] == "not_found"
    assert media.classify_ffmpeg_error("whatever")[0] == "decode_error"
