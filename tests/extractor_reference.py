"""Test-only re-implementations of the YouTube-8M starter extractor (`extract_tfrecords_main.py`).

Written from its published behaviour (docs/spec.md §2, §3) so tests can compare the pipeline with what
users compare it with; nothing here is used by the pipeline.
"""

from __future__ import annotations

import cv2
import numpy as np


def frame_iterator(filename: str, every_ms: float = 1000.0, max_num_frames: int = 300, end_ms: float | None = None):
    """The extractor's loop, yielding (index of the frame read, CAP_PROP_POS_MSEC, RGB frame).

    `end_ms` (not in the extractor) treats frames at or past it as absent: the file cut at end_ms.
    """
    capture = cv2.VideoCapture()
    assert capture.open(filename), filename
    last_ts = -99999
    num_retrieved = 0
    index = -1
    try:
        while num_retrieved < max_num_frames:
            while capture.get(cv2.CAP_PROP_POS_MSEC) < every_ms + last_ts:
                if not capture.read()[0] or _past(capture, end_ms):
                    return
                index += 1
            last_ts = capture.get(cv2.CAP_PROP_POS_MSEC)
            has_frames, frame = capture.read()
            if not has_frames or _past(capture, end_ms):
                break
            index += 1
            yield index, capture.get(cv2.CAP_PROP_POS_MSEC), frame[:, :, ::-1]
            num_retrieved += 1
    finally:
        capture.release()


def _past(capture, end_ms: float | None) -> bool:
    return end_ms is not None and capture.get(cv2.CAP_PROP_POS_MSEC) >= end_ms


def quantize(features: np.ndarray, min_quantized_value: float = -2.0, max_quantized_value: float = 2.0) -> bytes:
    """The extractor's `quantize`: clip, scale to [0, 255], Python's round per value."""
    assert features.dtype == np.float32 and features.ndim == 1
    features = np.clip(features, min_quantized_value, max_quantized_value)
    features = (features - min_quantized_value) * (255.0 / (max_quantized_value - min_quantized_value))
    return bytes(int(round(f)) for f in features)


def apply_pca(features: np.ndarray, pca_dir: str) -> np.ndarray:
    """The extractor's PCA (feature_extractor.py): mean[:, 0], eigenvecs.T[:, :1024], eigenvals[:1024, 0]."""
    import os

    mean = np.load(os.path.join(pca_dir, "mean.npy"))[:, 0]
    eigenvecs = np.load(os.path.join(pca_dir, "eigenvecs.npy")).T[:, :1024]
    eigenvals = np.load(os.path.join(pca_dir, "eigenvals.npy"))[:1024, 0]
    feats = features - mean
    feats = feats.reshape((1, 2048)).dot(eigenvecs).reshape((1024,))
    return feats / np.sqrt(eigenvals + 1e-4)
