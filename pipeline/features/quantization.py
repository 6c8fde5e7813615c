"""8-bit quantization of features as YouTube-8M stores them, and the reader's dequantization.

The one place that knows the byte format of a feature value (docs/spec.md §1, §3, §4): the writer
(`transforms.assemble`) quantizes, and every reader in the package (`inspect`, `report`,
tests) dequantizes here, so the two cannot drift apart. Any deviation (rounding mode, clip
range, bin-centre bias) silently shifts every feature a downstream model sees.

numpy-only: no Beam or TensorFlow import.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import ClipError

QUANTIZE_MIN = -2.0
QUANTIZE_MAX = 2.0
STEP = (QUANTIZE_MAX - QUANTIZE_MIN) / 255.0
"""Width of one quantization bin in feature units (4/255): also the scale of a dequantized std."""
BIAS = (QUANTIZE_MAX - QUANTIZE_MIN) / 512.0 + QUANTIZE_MIN
"""Added after scaling by STEP (4/512 - 2): moves a byte to the centre of its bin, as the reader does."""


def _scaled_for_quantization(x: np.ndarray, *, what: str) -> np.ndarray:
    """Clips to [-2, 2] and maps to [0, 255] as ``(x + 2) * 255 / 4``.

    The arithmetic runs in float32 unless the input is float64: the starter code quantizes
    float32 arrays in float32, and the VGGish postprocessor quantizes whatever precision its
    PCA produced, so we keep the caller's precision instead of silently changing it.
    """
    values = np.asarray(x)
    if values.dtype != np.float64:
        values = values.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise ClipError(
            "non_finite_features",
            f"{what} features contain NaN or infinite values and cannot be quantized; "
            "check the model artifacts passed to the pipeline.",
            stage="quantize",
        )
    clipped = np.clip(values, QUANTIZE_MIN, QUANTIZE_MAX)
    return (clipped - QUANTIZE_MIN) * 255.0 / (QUANTIZE_MAX - QUANTIZE_MIN)


def quantize_rgb(x: np.ndarray) -> np.ndarray:
    """Quantizes PCA'd RGB features to uint8, rounding half to even like the starter code.

    Raises:
        ClipError: ``reason="non_finite_features"`` if any value is NaN or infinite.
    """
    return np.rint(_scaled_for_quantization(x, what="RGB")).astype(np.uint8)


def quantize_audio(x: np.ndarray) -> np.ndarray:
    """Quantizes PCA'd audio embeddings to uint8 by truncation, like the VGGish postprocessor.

    Raises:
        ClipError: ``reason="non_finite_features"`` if any value is NaN or infinite.
    """
    return np.trunc(_scaled_for_quantization(x, what="Audio")).astype(np.uint8)


def dequantize(q: np.ndarray | float, dtype: type = np.float32) -> np.ndarray:
    """Inverts quantization the way the YouTube-8M reader does: ``q * 4/255 + 4/512 - 2``.

    The ``4/512`` bias re-centres values inside their bucket, which is exactly right for the
    truncating audio path and within half a bucket for the rounding RGB path. Being affine, it
    also maps a mean of bytes to the mean of the dequantized values, which is how `inspect`
    and `report` get exact statistics from integer sums.

    Args:
        q: bytes (uint8) or any real array in byte units, such as a per-dimension mean of bytes.
        dtype: float32 (the reader's precision) or float64 (for statistics).

    Returns:
        An array of `dtype` with the shape of `q`.
    """
    return np.asarray(q).astype(dtype) * dtype(STEP) + dtype(BIAS)
