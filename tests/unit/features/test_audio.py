"""Tests for the VGGish log-mel front end and per-second example windows (pipeline/features/audio.py)."""

import math

import numpy as np
import pytest
import references

from pipeline.features import audio

# Both the module and the reference below compute in float64; they differ only in summation
# order (matmul vs. per-frame dot), so agreement to 1e-9 on log values is expected.
LOG_MEL_ATOL = 1e-9

SILENCE = np.float32(np.log(0.01))


def _reference_mel_matrix() -> np.ndarray:
    """Triangle filters written with scalar loops, independently of the module's vectorised code."""

    def to_mel(hz: float) -> float:
        return 1127.0 * math.log(1.0 + hz / 700.0)

    low, high = to_mel(125.0), to_mel(7500.0)
    edges = [low + (high - low) * i / 65.0 for i in range(66)]
    matrix = np.zeros((257, 64))
    for k in range(1, 257):  # Bin 0 (DC) keeps zero weight.
        mel = to_mel(k * 8000.0 / 256.0)
        for band in range(64):
            left, center, right = edges[band], edges[band + 1], edges[band + 2]
            if left < mel <= center:
                matrix[k, band] = (mel - left) / (center - left)
            elif center < mel < right:
                matrix[k, band] = (right - mel) / (right - center)
    return matrix


def _reference_log_mel(waveform: np.ndarray) -> np.ndarray:
    """Explicit per-frame loop: periodic Hann (np.hanning(401)[:-1]), rfft(512), |.|, mel, log."""
    window = np.hanning(401)[:-1]
    mel = _reference_mel_matrix()
    rows = []
    start = 0
    while start + 400 <= len(waveform):
        spectrum = np.abs(np.fft.rfft(waveform[start : start + 400] * window, 512))
        rows.append(np.log(spectrum.dot(mel) + 0.01))
        start += 160
    return np.array(rows).reshape(-1, 64)


def _tone(seconds: float, hz: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000.0
    return amplitude * np.sin(2 * np.pi * hz * t)


def test_mel_matrix_matches_reference_and_ignores_dc():
    matrix = audio.mel_weight_matrix()
    assert matrix.shape == (257, 64)
    np.testing.assert_allclose(matrix, _reference_mel_matrix(), rtol=0, atol=1e-12)
    assert np.all(matrix[0] == 0)
    assert np.all(matrix.max(axis=0) > 0), "every band should receive some spectrogram bin"


def test_log_mel_matches_independent_per_frame_computation():
    rng = np.random.default_rng(0)
    waveform = _tone(1.23, 440.0) + _tone(1.23, 3000.0, 0.2) + rng.normal(0, 0.05, int(1.23 * 16000))
    ours = audio.log_mel_spectrogram(waveform)
    reference = _reference_log_mel(waveform)
    assert ours.shape == reference.shape == (1 + (len(waveform) - 400) // 160, 64)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=LOG_MEL_ATOL)


@pytest.mark.parametrize("length, frames", [(0, 0), (399, 0), (400, 1), (559, 1), (560, 2), (16000, 98)])
def test_frame_count_without_padding(length, frames):
    assert audio.log_mel_spectrogram(np.zeros(length)).shape == (frames, 64)


def test_pure_tone_peaks_in_band_centred_nearest_its_frequency():
    log_mel = audio.log_mel_spectrogram(_tone(0.5, 1000.0))
    low, high = 1127 * np.log1p(125 / 700), 1127 * np.log1p(7500 / 700)
    centres_mel = np.linspace(low, high, 66)[1:-1]
    expected_band = int(np.argmin(np.abs(centres_mel - 1127 * np.log1p(1000 / 700))))
    assert int(np.argmax(log_mel.mean(axis=0))) == expected_band


def test_log_mel_rejects_multichannel_audio():
    with pytest.raises(ValueError, match="mono"):
        audio.log_mel_spectrogram(np.zeros((1600, 2)))


def _per_second(waveform: np.ndarray, num_steps: int) -> np.ndarray:
    """`audio.examples_at` with one window per whole second, as a clip with no start offset has."""
    return audio.examples_at(waveform, 16000 * np.arange(num_steps))


def test_examples_at_whole_seconds_match_the_one_log_mel_reference():
    rng = np.random.default_rng(3)
    for seconds, steps in ((3.5, 5), (6.0, 4), (0.0, 2)):
        waveform = rng.uniform(-0.5, 0.5, int(seconds * 16000))
        np.testing.assert_allclose(_per_second(waveform, steps), references.examples_per_second(waveform, steps),
                                   rtol=1e-6, atol=1e-6)


def test_example_k_is_log_mel_rows_100k_to_100k_plus_95_of_padded_waveform():
    rng = np.random.default_rng(1)
    waveform = rng.uniform(-0.5, 0.5, int(3.5 * 16000))
    num_steps = 5  # Needs 4.975 s: the tail must be zero-padded.
    examples = _per_second(waveform, num_steps)
    assert examples.shape == (num_steps, 96, 64) and examples.dtype == np.float32

    needed = (100 * (num_steps - 1) + 95) * 160 + 400
    padded = np.concatenate([waveform, np.zeros(needed - len(waveform))])
    log_mel = _reference_log_mel(padded)
    assert log_mel.shape[0] == 100 * (num_steps - 1) + 96
    for k in range(num_steps):
        np.testing.assert_allclose(examples[k], log_mel[100 * k : 100 * k + 96], rtol=1e-6, atol=1e-5)


def test_sine_burst_at_second_two_shows_up_in_example_two_only():
    waveform = np.zeros(5 * 16000)
    burst = slice(int(2.05 * 16000), int(2.9 * 16000))
    waveform[burst] = _tone(5, 1000.0)[burst]
    examples = _per_second(waveform, 5)
    for k in (0, 1, 3, 4):
        assert np.all(examples[k] == SILENCE), f"example {k} should be silent"
    assert examples[2].max() > 0.0


def test_short_audio_is_zero_padded_and_long_audio_truncated():
    rng = np.random.default_rng(2)
    waveform = rng.uniform(-0.5, 0.5, int(1.5 * 16000))
    examples = _per_second(waveform, 4)
    explicit = _per_second(np.concatenate([waveform, np.zeros(4 * 16000)]), 4)
    np.testing.assert_array_equal(examples, explicit)
    assert np.all(examples[2:] == SILENCE)
    assert np.any(examples[1] != SILENCE) and np.any(examples[1] == SILENCE)  # Audio ends inside step 1.
    # Samples after the last window do not matter.
    with_tail = np.concatenate([waveform, np.zeros(4 * 16000), rng.uniform(-1, 1, 16000)])
    np.testing.assert_array_equal(_per_second(with_tail, 4), examples)


def test_silence_and_missing_audio_give_log_offset_everywhere():
    np.testing.assert_array_equal(_per_second(np.zeros(0), 3), np.full((3, 96, 64), SILENCE))
    np.testing.assert_array_equal(_per_second(np.zeros(48000), 2), np.full((2, 96, 64), SILENCE))
    assert _per_second(np.zeros(0), 0).shape == (0, 96, 64)

