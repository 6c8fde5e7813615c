"""Reference code the tests compare the package against, kept out of the package.

* `examples_per_second`: one 0.96-s log-mel example per whole second, the straightforward
  form of what `pipeline.features.audio.examples_at` computes for whole-second starts;
* `yt8m_reader_parse`: the YouTube-8M starter code's frame-level parsing, to prove records
  parse with it;
* `write_rgb_pca_dir`: an RGB PCA in the released ``yt8m_pca.tgz`` layout.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np

from pipeline.dataset import fileio, records
from pipeline.features import audio, postprocess


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _float(value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float32)


def samples_needed(num_steps: int) -> int:
    """Waveform length (samples) that covers the example windows of ``num_steps`` steps."""
    if num_steps <= 0:
        return 0
    last_frame = audio.EXAMPLE_HOP_FRAMES * (num_steps - 1) + audio.EXAMPLE_WINDOW_FRAMES - 1
    return last_frame * audio.STFT_HOP_SAMPLES + audio.STFT_WINDOW_SAMPLES


def examples_per_second(waveform: np.ndarray, num_steps: int) -> np.ndarray:
    """Cuts one 0.96 s log-mel example per output second, aligned with the video steps.

    Example ``k`` holds log-mel frames ``100*k .. 100*k+95``, i.e. the window that starts at
    ``k`` seconds, so audio step ``k`` lines up with video step ``k``. The waveform is
    zero-padded at the end (digital silence) when it is too short, and samples beyond the last
    window are ignored, so the result always has exactly ``num_steps`` examples. Pass an empty
    waveform for a clip without an audio stream.

    Args:
        waveform: 1-D 16 kHz mono samples in [-1, 1].
        num_steps: Number of output steps (seconds) the record has.

    Returns:
        float32 array [num_steps, 96, 64].

    Raises:
        ValueError: If the waveform is not 1-D or ``num_steps`` is negative.
    """
    samples = audio._as_mono_float(waveform)  # pylint: disable=protected-access
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}.")
    if num_steps == 0:
        return np.zeros((0, audio.EXAMPLE_WINDOW_FRAMES, audio.NUM_MEL_BANDS), dtype=np.float32)
    needed = samples_needed(num_steps)
    if samples.shape[0] >= needed:
        samples = samples[:needed]
    else:
        samples = np.concatenate([samples, np.zeros(needed - samples.shape[0], dtype=np.float64)])
    log_mel = audio.log_mel_spectrogram(samples)
    rows = audio.EXAMPLE_HOP_FRAMES * np.arange(num_steps)[:, np.newaxis] + np.arange(audio.EXAMPLE_WINDOW_FRAMES)
    return log_mel[rows].astype(np.float32)


def yt8m_reader_parse(serialized: Sequence[bytes]):
    """Parses records exactly as the YouTube-8M starter code's frame-level reader does.

    Returns (ids, labels as a dense [N, max] tensor padded with -1, rgb list, audio list) where
    rgb/audio are float features dequantized by the reader's formula. The tests use it to prove
    the records parse with that reader's parsing spec.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    out = []
    for data in serialized:
        context, features = tf.io.parse_single_sequence_example(
            data,
            context_features={
                "id": tf.io.FixedLenFeature([], tf.string),
                "labels": tf.io.VarLenFeature(tf.int64),
            },
            sequence_features={
                "rgb": tf.io.FixedLenSequenceFeature([], dtype=tf.string),
                "audio": tf.io.FixedLenSequenceFeature([], dtype=tf.string),
            })
        decoded = {}
        for name, width in (("rgb", records.RGB_BYTES), ("audio", records.AUDIO_BYTES)):
            raw = tf.reshape(tf.cast(tf.io.decode_raw(features[name], tf.uint8), tf.float32), [-1, width])
            decoded[name] = (raw * (4.0 / 255.0) + (4.0 / 512.0) - 2.0).numpy()
        out.append((context["id"].numpy().decode("utf-8"), tf.sparse.to_dense(context["labels"]).numpy().tolist(),
                    decoded["rgb"], decoded["audio"]))
    return out


def write_rgb_pca_dir(path: str, *, mean: np.ndarray, eigenvecs: np.ndarray, eigenvals: np.ndarray) -> None:
    """Writes an RGB PCA in the ``yt8m_pca.tgz`` layout (mean/eigenvals as [2048, 1]).

    Used by stand-in and synthetic artifacts so they load through exactly the same
    ``RgbPca.from_dir`` path as the real files. Each file is written atomically.

    Raises:
        ModelArtifactError: If the arrays do not have the official shapes.
    """
    postprocess.RgbPca.from_arrays(mean=mean, eigenvecs=eigenvecs, eigenvals=eigenvals)  # Validate first.
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    layouts = {
        "mean.npy": _float(mean).reshape(postprocess.RGB_FEATURE_SIZE, 1),
        "eigenvecs.npy": _float(eigenvecs),
        "eigenvals.npy": _float(eigenvals).reshape(postprocess.RGB_FEATURE_SIZE, 1),
    }
    for file_name, array in layouts.items():
        fileio.write_atomically(os.path.join(path, file_name), _npy_bytes(array))
