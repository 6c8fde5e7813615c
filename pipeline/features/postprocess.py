"""PCA whitening of RGB and audio features, as YouTube-8M ships them.

YouTube-8M frame features are not raw network activations: RGB goes through the released PCA
(2048 -> 1024, whitened) and audio through the VGGish postprocessor PCA (128 -> 128), and
both are then stored as uint8 (`pipeline.features.quantization`). Any deviation here (which
eigenvectors, the whitening epsilon) silently shifts every feature a downstream model sees.

numpy-only apart from file access through `pipeline.dataset.fileio` (Beam's FileSystems, writes
atomic), so artifacts may live on local disk or ``gs://``.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable

import numpy as np

from pipeline.dataset import fileio
from pipeline.dataset.fileio import join, write_atomically
from pipeline.errors import ModelArtifactError

RGB_FEATURE_SIZE = 2048
"""Inception-v3 pool feature width the RGB PCA expects."""

RGB_PCA_SIZE = 1024
"""Components kept by the YouTube-8M RGB PCA."""

RGB_EIGENVALUE_EPSILON = 1e-4
"""Added to eigenvalues before whitening, as in the YouTube-8M reference extractor."""

AUDIO_EMBEDDING_SIZE = 128
"""VGGish embedding width (and the audio PCA's input and output width)."""

RGB_PCA_FLAG = "--rgb_pca_dir"
AUDIO_PCA_FLAG = "--audio_pca"

RGB_PCA_FILES = ("mean.npy", "eigenvecs.npy", "eigenvals.npy")
AUDIO_PCA_EIGEN_VECTORS_KEY = "pca_eigen_vectors"
AUDIO_PCA_MEANS_KEY = "pca_means"

_RGB_PCA_HINT = (
    f"Pass the directory holding mean.npy, eigenvecs.npy and eigenvals.npy (unpacked from the "
    f"YouTube-8M yt8m_pca.tgz) with {RGB_PCA_FLAG}."
)
_AUDIO_PCA_HINT = (
    f"Pass the VGGish postprocessor parameters (vggish_pca_params.npz with "
    f"'{AUDIO_PCA_EIGEN_VECTORS_KEY}' [128, 128] and '{AUDIO_PCA_MEANS_KEY}' [128]) with {AUDIO_PCA_FLAG}."
)


def _read_bytes(path: str, *, what: str, hint: str) -> bytes:
    """Reads a whole artifact file, turning I/O failures into an actionable ModelArtifactError."""
    try:
        if not fileio.exists(path):
            raise ModelArtifactError(f"{what} not found: {path} does not exist. {hint}")
        return fileio.read_bytes(path)
    except ModelArtifactError:
        raise
    except Exception as err:  # OSError, BeamIOError: they vary by file system.
        raise ModelArtifactError(f"Could not read {what} at {path}: {err}. {hint}") from err


def _as_float_array(value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    return array


def _check_array(
    value: object,
    *,
    describe: str,
    expected_shapes: tuple[tuple[int, ...], ...],
    hint: str,
) -> np.ndarray:
    """Validates an artifact array's shape and finiteness; returns it as float64.

    Args:
        value: The loaded array.
        describe: Human description naming where the array came from (file or argument).
        expected_shapes: Acceptable shapes; the first one is quoted in messages.
        hint: Sentence telling the user which flag supplies the artifact.
    """
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ModelArtifactError(f"{describe} is not a numeric array ({err}). {hint}") from err
    if array.shape not in expected_shapes:
        expected = " or ".join(str(shape) for shape in expected_shapes)
        raise ModelArtifactError(f"{describe} has shape {array.shape}, expected {expected}. {hint}")
    if not np.all(np.isfinite(array)):
        raise ModelArtifactError(f"{describe} contains NaN or infinite values; the file is corrupt. {hint}")
    return array


def _check_features(features: np.ndarray, *, width: int, what: str) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{what} must have shape [num_frames, {width}], got {array.shape}.")
    return array


@dataclasses.dataclass(frozen=True, eq=False)
class RgbPca:
    """The YouTube-8M RGB PCA: 2048-d Inception features -> 1024-d whitened features.

    Attributes:
        mean: [2048] feature mean subtracted first (``mean.npy[:, 0]``).
        projection: [2048, 1024] the first 1024 eigenvectors as columns (``eigenvecs.T[:, :1024]``).
        scale: [1024] per-component divisor ``sqrt(eigenvals[:1024] + 1e-4)``; kept as a divisor
            (rather than folded into ``projection``) so results match the reference operation
            for operation.
    """

    mean: np.ndarray
    projection: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_arrays(cls, *, mean: np.ndarray, eigenvecs: np.ndarray, eigenvals: np.ndarray) -> RgbPca:
        """Builds the PCA from arrays in the layout of ``yt8m_pca.tgz``.

        Args:
            mean: [2048, 1] (or [2048]) feature mean.
            eigenvecs: [2048, 2048] eigenvectors as rows (the reference transposes them).
            eigenvals: [2048, 1] (or [2048]) eigenvalues, largest first.

        Raises:
            ModelArtifactError: If a shape is wrong or a value is not finite.
        """
        return cls._build(
            {"mean": mean, "eigenvecs": eigenvecs, "eigenvals": eigenvals},
            describe=lambda name: f"RGB PCA array `{name}`",
        )

    @classmethod
    def from_dir(cls, path: str) -> RgbPca:
        """Loads ``mean.npy``, ``eigenvecs.npy`` and ``eigenvals.npy`` from a local or gs:// directory.

        Raises:
            ModelArtifactError: If a file is missing or unreadable, or an array has the wrong
                shape or non-finite values; the message names the file and ``--rgb_pca_dir``.
        """
        path = os.fspath(path)
        arrays = {}
        for file_name in RGB_PCA_FILES:
            file_path = join(path, file_name)
            data = _read_bytes(file_path, what=f"RGB PCA file {file_name}", hint=_RGB_PCA_HINT)
            try:
                arrays[file_name[: -len(".npy")]] = np.load(io.BytesIO(data), allow_pickle=False)
            except Exception as err:  # np.load raises ValueError/OSError/EOFError on bad files.
                raise ModelArtifactError(
                    f"RGB PCA file {file_path} is not a valid .npy array ({err}). {_RGB_PCA_HINT}"
                ) from err
        return cls._build(arrays, describe=lambda name: f"RGB PCA file {join(path, name + '.npy')}")

    @classmethod
    def _build(cls, arrays: dict[str, object], *, describe: Callable[[str], str]) -> RgbPca:
        mean = _check_array(
            arrays["mean"],
            describe=describe("mean"),
            expected_shapes=((RGB_FEATURE_SIZE, 1), (RGB_FEATURE_SIZE,)),
            hint=_RGB_PCA_HINT,
        )
        eigenvecs = _check_array(
            arrays["eigenvecs"],
            describe=describe("eigenvecs"),
            expected_shapes=((RGB_FEATURE_SIZE, RGB_FEATURE_SIZE),),
            hint=_RGB_PCA_HINT,
        )
        eigenvals = _check_array(
            arrays["eigenvals"],
            describe=describe("eigenvals"),
            expected_shapes=((RGB_FEATURE_SIZE, 1), (RGB_FEATURE_SIZE,)),
            hint=_RGB_PCA_HINT,
        )
        kept = eigenvals.reshape(RGB_FEATURE_SIZE)[:RGB_PCA_SIZE] + RGB_EIGENVALUE_EPSILON
        if np.any(kept <= 0):
            raise ModelArtifactError(
                f"{describe('eigenvals')} has eigenvalues <= -1e-4 among the first {RGB_PCA_SIZE}; "
                f"expected non-negative variances. {_RGB_PCA_HINT}"
            )
        return cls(
            mean=mean.reshape(RGB_FEATURE_SIZE),
            projection=np.ascontiguousarray(eigenvecs.T[:, :RGB_PCA_SIZE]),
            scale=np.sqrt(kept),
        )

    def apply(self, features: np.ndarray) -> np.ndarray:
        """Projects and whitens Inception features: ``(f - mean) @ V / sqrt(eigenvals + 1e-4)``.

        Computed in float64 so the float32 result is as close to exact as possible before
        quantization.

        Args:
            features: [N, 2048] Inception-v3 pool features.

        Returns:
            float32 [N, 1024].
        """
        values = _check_features(features, width=RGB_FEATURE_SIZE, what="RGB features")
        return (((values - self.mean) @ self.projection) / self.scale).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class AudioPca:
    """The VGGish postprocessor PCA: ``E @ (x - mean)`` on 128-d embeddings.

    Attributes:
        eigen_vectors: [128, 128] rows are the PCA directions (``pca_eigen_vectors``).
        means: [128] embedding mean (``pca_means``).
    """

    eigen_vectors: np.ndarray
    means: np.ndarray

    @classmethod
    def from_arrays(cls, *, eigen_vectors: np.ndarray, means: np.ndarray) -> AudioPca:
        """Builds the PCA from the arrays of ``vggish_pca_params.npz``.

        Raises:
            ModelArtifactError: If a shape is wrong or a value is not finite.
        """
        return cls._build(
            {AUDIO_PCA_EIGEN_VECTORS_KEY: eigen_vectors, AUDIO_PCA_MEANS_KEY: means},
            describe=lambda key: f"audio PCA array `{key}`",
        )

    @classmethod
    def from_npz(cls, path: str) -> AudioPca:
        """Loads ``vggish_pca_params.npz`` from a local or gs:// path.

        Raises:
            ModelArtifactError: If the file is missing, unreadable, lacks a key, or an array has
                the wrong shape; the message names the file and ``--audio_pca``.
        """
        path = os.fspath(path)
        data = _read_bytes(path, what="VGGish PCA parameters", hint=_AUDIO_PCA_HINT)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except Exception as err:  # Bad zips raise BadZipFile/ValueError/OSError.
            raise ModelArtifactError(f"{path} is not a valid .npz archive ({err}). {_AUDIO_PCA_HINT}") from err
        missing = [key for key in (AUDIO_PCA_EIGEN_VECTORS_KEY, AUDIO_PCA_MEANS_KEY) if key not in arrays]
        if missing:
            raise ModelArtifactError(
                f"{path} lacks the array(s) {', '.join(missing)} (found: {', '.join(sorted(arrays)) or 'none'}). "
                f"{_AUDIO_PCA_HINT}"
            )
        return cls._build(arrays, describe=lambda key: f"array '{key}' in {path}")

    @classmethod
    def _build(cls, arrays: dict[str, object], *, describe: Callable[[str], str]) -> AudioPca:
        eigen_vectors = _check_array(
            arrays[AUDIO_PCA_EIGEN_VECTORS_KEY],
            describe=describe(AUDIO_PCA_EIGEN_VECTORS_KEY),
            expected_shapes=((AUDIO_EMBEDDING_SIZE, AUDIO_EMBEDDING_SIZE),),
            hint=_AUDIO_PCA_HINT,
        )
        means = _check_array(
            arrays[AUDIO_PCA_MEANS_KEY],
            describe=describe(AUDIO_PCA_MEANS_KEY),
            expected_shapes=((AUDIO_EMBEDDING_SIZE,), (AUDIO_EMBEDDING_SIZE, 1)),
            hint=_AUDIO_PCA_HINT,
        )
        return cls(eigen_vectors=eigen_vectors, means=means.reshape(AUDIO_EMBEDDING_SIZE))

    def apply(self, embeddings: np.ndarray) -> np.ndarray:
        """Applies ``E @ (x - mean)`` to each embedding (row), in float64.

        Args:
            embeddings: [N, 128] VGGish embeddings (pre-activation).

        Returns:
            float32 [N, 128].
        """
        values = _check_features(embeddings, width=AUDIO_EMBEDDING_SIZE, what="VGGish embeddings")
        return ((values - self.means) @ self.eigen_vectors.T).astype(np.float32)


def write_audio_pca_npz(path: str, *, eigen_vectors: np.ndarray, means: np.ndarray) -> None:
    """Writes VGGish postprocessor parameters in the ``vggish_pca_params.npz`` layout, atomically.

    Raises:
        ModelArtifactError: If the arrays do not have the official shapes.
    """
    AudioPca.from_arrays(eigen_vectors=eigen_vectors, means=means)  # Validate first.
    path = os.fspath(path)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        **{
            AUDIO_PCA_EIGEN_VECTORS_KEY: _as_float_array(eigen_vectors),
            AUDIO_PCA_MEANS_KEY: _as_float_array(means).reshape(AUDIO_EMBEDDING_SIZE),
        },
    )
    write_atomically(path, buffer.getvalue())
