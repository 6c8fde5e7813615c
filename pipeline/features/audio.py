"""VGGish audio front end: 16 kHz mono PCM -> log-mel examples, one per output second.

The numbers here must match the VGGish reference front end (``mel_features.py`` /
``vggish_input.py``) because the released VGGish weights and PCA parameters were fitted to
exactly these log-mel patches; any drift (window shape, mel scale, log offset) shifts every
embedding. The module is numpy-only so it can run on any worker without TensorFlow.

Timing follows the project SPEC: audio step ``k`` is the 0.96 s example window that starts at
``k`` seconds (log-mel frames ``100*k .. 100*k+95``), and audio that ends early is zero-padded
(digital silence) rather than dropped, so every clip yields exactly ``num_steps`` examples.
"""

from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16000
"""Sample rate (Hz) the VGGish front end expects; decoders must resample to this."""

STFT_WINDOW_SAMPLES = 400
"""25 ms analysis window at 16 kHz."""

STFT_HOP_SAMPLES = 160
"""10 ms hop at 16 kHz, i.e. 100 log-mel frames per second."""

FFT_LENGTH = 512
"""Smallest power of two >= the window length, as the reference computes it."""

NUM_SPECTROGRAM_BINS = FFT_LENGTH // 2 + 1
"""Bins of the one-sided magnitude spectrum (DC .. Nyquist)."""

NUM_MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
"""Added before the log so silence maps to log(0.01) instead of -inf."""

MEL_BREAK_FREQUENCY_HZ = 700.0
MEL_HIGH_FREQUENCY_Q = 1127.0

FRAMES_PER_SECOND = SAMPLE_RATE // STFT_HOP_SAMPLES
"""Log-mel frames per second of audio (100)."""

EXAMPLE_WINDOW_FRAMES = 96
"""Frames per VGGish example (0.96 s)."""

EXAMPLE_HOP_FRAMES = FRAMES_PER_SECOND
"""One example per output second: example k starts at frame 100*k."""

SILENCE_LOG_MEL = float(np.log(LOG_OFFSET))
"""The log-mel value of digital silence in every band."""

# Frames per vectorised block: bounds peak memory (~10 MB per block) for long clips while
# keeping numpy overhead negligible.
_FRAMES_PER_BLOCK = 2048


def hertz_to_mel(frequencies_hz: np.ndarray | float) -> np.ndarray:
    """Converts frequencies to the HTK mel scale used by VGGish.

    Args:
        frequencies_hz: Frequencies in Hz, scalar or array.

    Returns:
        ``1127 * ln(1 + f / 700)`` as float64.
    """
    return MEL_HIGH_FREQUENCY_Q * np.log1p(np.asarray(frequencies_hz, dtype=np.float64) / MEL_BREAK_FREQUENCY_HZ)


def periodic_hann(window_length: int) -> np.ndarray:
    """Returns the periodic Hann window VGGish uses (not numpy's symmetric ``np.hanning``).

    The periodic form is what an STFT with overlap-add semantics expects; the reference
    front end uses it, so we must too.
    """
    n = np.arange(window_length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / window_length)


@functools.lru_cache(maxsize=1)
def mel_weight_matrix() -> np.ndarray:
    """Builds the [257, 64] spectrogram-bin -> mel-band weight matrix.

    Triangles are evaluated in the mel domain over linearly spaced spectrogram bins from DC to
    Nyquist, with band edges linearly spaced in mel between 125 Hz and 7500 Hz. The DC bin gets
    zero weight, as the VGGish reference does, so a DC offset in the audio cannot leak into the
    lowest band. The result is cached and read-only because it never changes.

    Returns:
        float64 array of shape [NUM_SPECTROGRAM_BINS, NUM_MEL_BANDS].
    """
    nyquist_hz = SAMPLE_RATE / 2.0
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist_hz, NUM_SPECTROGRAM_BINS))
    edges_mel = np.linspace(hertz_to_mel(MEL_MIN_HZ), hertz_to_mel(MEL_MAX_HZ), NUM_MEL_BANDS + 2)
    lower = edges_mel[:-2][np.newaxis, :]
    center = edges_mel[1:-1][np.newaxis, :]
    upper = edges_mel[2:][np.newaxis, :]
    mel = bins_mel[:, np.newaxis]
    rising = (mel - lower) / (center - lower)
    falling = (upper - mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    weights.setflags(write=False)
    return weights


def _as_mono_float(waveform: np.ndarray) -> np.ndarray:
    """Validates a mono waveform and returns it as float64 (the reference's precision)."""
    samples = np.asarray(waveform)
    if samples.ndim != 1:
        raise ValueError(
            f"Expected a mono waveform of shape [num_samples] at {SAMPLE_RATE} Hz, got shape "
            f"{samples.shape}; downmix to one channel before the audio front end."
        )
    return samples.astype(np.float64, copy=False)


def num_log_mel_frames(num_samples: int) -> int:
    """Number of complete (unpadded) STFT frames in ``num_samples`` samples."""
    if num_samples < STFT_WINDOW_SAMPLES:
        return 0
    return 1 + (num_samples - STFT_WINDOW_SAMPLES) // STFT_HOP_SAMPLES


def log_mel_spectrogram(waveform: np.ndarray) -> np.ndarray:
    """Computes the VGGish log-mel spectrogram of a 16 kHz mono waveform.

    Frames are taken without padding (a trailing partial window is dropped, as in the
    reference), windowed with a periodic Hann window, transformed with a 512-point real FFT,
    reduced to magnitudes, mapped to 64 mel bands and compressed with ``log(mel + 0.01)``.
    The work is vectorised in blocks of frames so a long clip costs a few FFT calls, not one
    Python iteration per frame.

    Args:
        waveform: 1-D samples in [-1, 1] at 16 kHz.

    Returns:
        float64 array [num_frames, 64] with ``num_frames = 1 + (len - 400) // 160`` (0 when the
        waveform is shorter than one window).

    Raises:
        ValueError: If the waveform is not 1-D.
    """
    samples = _as_mono_float(waveform)
    num_frames = num_log_mel_frames(samples.shape[0])
    out = np.empty((num_frames, NUM_MEL_BANDS), dtype=np.float64)
    if num_frames == 0:
        return out
    frames = np.lib.stride_tricks.sliding_window_view(samples, STFT_WINDOW_SAMPLES)[::STFT_HOP_SAMPLES]
    window = periodic_hann(STFT_WINDOW_SAMPLES)
    weights = mel_weight_matrix()
    for start in range(0, num_frames, _FRAMES_PER_BLOCK):
        block = frames[start : start + _FRAMES_PER_BLOCK] * window
        magnitude = np.abs(np.fft.rfft(block, n=FFT_LENGTH, axis=1))
        out[start : start + block.shape[0]] = np.log(magnitude @ weights + LOG_OFFSET)
    return out


EXAMPLE_WINDOW_SAMPLES = (EXAMPLE_WINDOW_FRAMES - 1) * STFT_HOP_SAMPLES + STFT_WINDOW_SAMPLES
"""Samples one 0.96-s example reads (15,600: 96 frames of 400 samples, 160 apart)."""


def examples_at(waveform: np.ndarray, start_samples: list[int] | np.ndarray) -> np.ndarray:
    """Cuts one 0.96 s log-mel example starting at each given sample (docs/spec.md §2's audio steps).

    Step k's window starts k / F seconds after the first displayed video frame, which need not
    fall on a whole second of the audio; samples before the waveform's start or past its end are
    digital silence. With starts ``16000 * k`` this equals the tests' one-window-per-second reference
    (`tests/references.py`; each log-mel frame depends only on its own 400 samples).

    Args:
        waveform: 1-D 16 kHz mono samples in [-1, 1].
        start_samples: First sample of each window (may be negative or past the end).

    Returns:
        float32 array [len(start_samples), 96, 64].
    """
    samples = _as_mono_float(waveform)
    starts = np.asarray(start_samples, dtype=np.int64).reshape(-1)
    out = np.empty((starts.shape[0], EXAMPLE_WINDOW_FRAMES, NUM_MEL_BANDS), dtype=np.float32)
    segment = np.zeros(EXAMPLE_WINDOW_SAMPLES, dtype=np.float64)
    for k, start in enumerate(starts.tolist()):
        segment[:] = 0.0
        lo, hi = max(start, 0), min(start + EXAMPLE_WINDOW_SAMPLES, samples.shape[0])
        if hi > lo:
            segment[lo - start : hi - start] = samples[lo:hi]
        out[k] = log_mel_spectrogram(segment)
    return out
