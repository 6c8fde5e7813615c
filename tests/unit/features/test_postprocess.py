"""Tests for PCA and artifact I/O (postprocess.py) and quantization (quantization.py) against the SPEC formulas."""

import numpy as np
import pytest
import references

from pipeline.errors import ClipError, ModelArtifactError
from pipeline.features import postprocess, quantization

# ---------------------------------------------------------------------------------------------
# Plain numpy versions of the SPEC formulas, written independently of the module.


def spec_rgb_pca(features, mean_file, eigenvecs_file, eigenvals_file):
    mean = mean_file[:, 0]
    vectors = eigenvecs_file.T[:, :1024]
    values = eigenvals_file[:1024, 0]
    out = (features.astype(np.float64) - mean).dot(vectors) / np.sqrt(values + 1e-4)
    return out.astype(np.float32)


def spec_quantize_rgb(x):
    """Starter code: clip, scale, then Python's round() (half to even) element by element."""
    clipped = np.clip(x, -2.0, 2.0)
    scaled = (clipped + 2.0) * 255.0 / 4.0
    return np.array([round(value) for value in scaled.ravel()], dtype=np.uint8).reshape(x.shape)


def spec_audio_pca(embeddings, eigen_vectors, means):
    """VGGish postprocessor: dot(E, (x.T - means[:, None])).T."""
    out = np.dot(eigen_vectors.astype(np.float64), embeddings.T.astype(np.float64) - means.reshape(-1, 1)).T
    return out.astype(np.float32)


def spec_quantize_audio(x):
    clipped = np.clip(x, -2.0, 2.0)
    return ((clipped + 2.0) * (255.0 / 4.0)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rgb_arrays():
    rng = np.random.default_rng(10)
    return {
        "mean": rng.normal(0.3, 0.2, (2048, 1)).astype(np.float32),
        "eigenvecs": (rng.standard_normal((2048, 2048)) / np.sqrt(2048)).astype(np.float32),
        "eigenvals": np.sort(rng.uniform(0.0, 0.1, (2048, 1)).astype(np.float32), axis=0)[::-1],
    }


@pytest.fixture(scope="module")
def audio_arrays():
    rng = np.random.default_rng(11)
    return {
        "eigen_vectors": (rng.standard_normal((128, 128)) / 8.0).astype(np.float32),
        "means": rng.normal(0.0, 1.0, 128).astype(np.float32),
    }


def test_rgb_pca_and_quantization_are_byte_exact(rgb_arrays):
    rng = np.random.default_rng(12)
    features = rng.normal(0.3, 0.25, (6, 2048)).astype(np.float32)
    pca = postprocess.RgbPca.from_arrays(**rgb_arrays)
    projected = pca.apply(features)
    expected = spec_rgb_pca(features, rgb_arrays["mean"], rgb_arrays["eigenvecs"], rgb_arrays["eigenvals"])
    assert projected.shape == (6, 1024) and projected.dtype == np.float32
    np.testing.assert_allclose(projected, expected, rtol=1e-6, atol=1e-6)
    assert (expected > 2).any() and (expected < -2).any(), "test data should exercise clipping"
    np.testing.assert_array_equal(quantization.quantize_rgb(expected), spec_quantize_rgb(expected))
    np.testing.assert_array_equal(quantization.quantize_rgb(projected), spec_quantize_rgb(projected))


def test_audio_pca_and_quantization_are_byte_exact(audio_arrays):
    rng = np.random.default_rng(13)
    embeddings = rng.normal(0.0, 3.0, (7, 128)).astype(np.float32)
    expected = spec_audio_pca(embeddings, audio_arrays["eigen_vectors"], audio_arrays["means"])
    for means in (audio_arrays["means"], audio_arrays["means"].reshape(128, 1)):
        pca = postprocess.AudioPca.from_arrays(eigen_vectors=audio_arrays["eigen_vectors"], means=means)
        projected = pca.apply(embeddings)
        assert projected.dtype == np.float32
        np.testing.assert_allclose(projected, expected, rtol=1e-6, atol=1e-6)
    assert (expected > 2).any() and (expected < -2).any(), "test data should exercise clipping"
    np.testing.assert_array_equal(quantization.quantize_audio(expected), spec_quantize_audio(expected))


def _float32_exact_halves():
    """float32 inputs whose float32 (x + 2) * 255 / 4 is exactly k + 0.5."""
    halves = []
    for k in range(255):
        x = np.float32((k + 0.5) / 63.75 - 2.0)
        for _ in range(4):
            x = np.nextafter(x, np.float32(-10))
        for _ in range(9):
            if (x + np.float32(2)) * np.float32(255) / np.float32(4) == k + 0.5:
                halves.append((k, x))
            x = np.nextafter(x, np.float32(10))
    return halves


def test_quantization_at_exact_half_boundaries_and_out_of_range():
    halves = _float32_exact_halves()
    assert any(k % 2 == 0 for k, _ in halves) and any(k % 2 == 1 for k, _ in halves)
    x = np.array([value for _, value in halves] + [0.0], dtype=np.float32)
    k = np.array([k for k, _ in halves] + [127])
    rgb = quantization.quantize_rgb(x)
    np.testing.assert_array_equal(rgb, np.where(k % 2 == 0, k, k + 1))  # Half to even.
    np.testing.assert_array_equal(rgb, spec_quantize_rgb(x))
    np.testing.assert_array_equal(quantization.quantize_audio(x), k)  # Truncation.
    np.testing.assert_array_equal(quantization.quantize_audio(x), spec_quantize_audio(x))
    assert quantization.quantize_rgb(np.float32([0.0]))[0] == 128  # 127.5 -> 128 (even).

    outside = np.array([-1e6, -5.0, -2.0000002, -2.0, 2.0, 2.0000002, 7.0, 1e6], dtype=np.float32)
    np.testing.assert_array_equal(quantization.quantize_rgb(outside), [0, 0, 0, 0, 255, 255, 255, 255])
    np.testing.assert_array_equal(quantization.quantize_audio(outside), [0, 0, 0, 0, 255, 255, 255, 255])


def test_quantization_keeps_float64_precision():
    x = np.array([(k + 0.5) / 63.75 - 2.0 for k in range(255)])
    exact = (x + 2.0) * 255.0 / 4.0 == np.arange(255) + 0.5
    assert exact.sum() > 50
    np.testing.assert_array_equal(quantization.quantize_rgb(x), spec_quantize_rgb(x))
    np.testing.assert_array_equal(quantization.quantize_audio(x), spec_quantize_audio(x))


def test_non_finite_values_are_a_clip_error():
    for bad in (np.nan, np.inf):
        with pytest.raises(ClipError) as info:
            quantization.quantize_audio(np.array([0.0, bad], dtype=np.float32))
        assert info.value.reason == "non_finite_features"


def test_dequantize_matches_reader_and_bounds_quantization_error():
    np.testing.assert_allclose(quantization.dequantize(np.array([0, 255], np.uint8)), [4 / 512 - 2, 2 + 4 / 512])
    assert quantization.dequantize(np.zeros(3, np.uint8)).dtype == np.float32
    # float64 for statistics (inspect/report dequantize a mean of bytes): the reader's formula, unrounded.
    q = np.arange(256)
    np.testing.assert_allclose(quantization.dequantize(q, np.float64), q * 4 / 255 + 4 / 512 - 2, rtol=0, atol=1e-15)
    assert quantization.dequantize(q + 0.5, np.float64).dtype == np.float64
    x = np.random.default_rng(14).uniform(-2.0, 2.0, 20000).astype(np.float32)
    rgb_error = np.abs(quantization.dequantize(quantization.quantize_rgb(x)) - x)
    audio_error = np.abs(quantization.dequantize(quantization.quantize_audio(x)) - x)
    # Rounding: half a bucket plus the reader's 4/512 bias. Truncation: the bias centres the bucket.
    assert rgb_error.max() <= 2 / 255 + 4 / 512 + 1e-5
    assert audio_error.max() <= 4 / 255 - 4 / 512 + 1e-5
    assert audio_error.max() < rgb_error.max()


def test_rgb_pca_dir_round_trip_uses_official_layout(tmp_path, rgb_arrays):
    references.write_rgb_pca_dir(str(tmp_path), **rgb_arrays)
    assert np.load(tmp_path / "mean.npy").shape == (2048, 1)
    assert np.load(tmp_path / "eigenvals.npy").shape == (2048, 1)
    assert np.load(tmp_path / "eigenvecs.npy").shape == (2048, 2048)
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    features = np.random.default_rng(15).normal(0.3, 0.25, (3, 2048)).astype(np.float32)
    loaded = postprocess.RgbPca.from_dir(str(tmp_path)).apply(features)
    np.testing.assert_array_equal(loaded, postprocess.RgbPca.from_arrays(**rgb_arrays).apply(features))


def test_rgb_pca_dir_errors_name_file_shape_and_flag(tmp_path, rgb_arrays):
    references.write_rgb_pca_dir(str(tmp_path), **rgb_arrays)
    np.save(tmp_path / "eigenvecs.npy", rgb_arrays["eigenvecs"][:, :1024])
    with pytest.raises(ModelArtifactError) as info:
        postprocess.RgbPca.from_dir(str(tmp_path))
    message = str(info.value)
    assert "eigenvecs.npy" in message and "(2048, 2048)" in message and "(2048, 1024)" in message
    assert "--rgb_pca_dir" in message

    (tmp_path / "eigenvals.npy").unlink()
    with pytest.raises(ModelArtifactError) as info:
        postprocess.RgbPca.from_dir(str(tmp_path))
    assert str(tmp_path / "eigenvals.npy") in str(info.value) and "--rgb_pca_dir" in str(info.value)

    np.save(tmp_path / "eigenvals.npy", np.full((2048, 1), np.nan, np.float32))
    np.save(tmp_path / "eigenvecs.npy", rgb_arrays["eigenvecs"])
    with pytest.raises(ModelArtifactError, match="NaN"):
        postprocess.RgbPca.from_dir(str(tmp_path))


def test_audio_pca_npz_round_trip_and_errors(tmp_path, audio_arrays):
    path = tmp_path / "vggish_pca_params.npz"
    postprocess.write_audio_pca_npz(str(path), **audio_arrays)
    with np.load(path) as npz:
        assert npz["pca_eigen_vectors"].shape == (128, 128) and npz["pca_means"].shape == (128,)
    embeddings = np.random.default_rng(16).normal(0, 3, (4, 128)).astype(np.float32)
    np.testing.assert_array_equal(
        postprocess.AudioPca.from_npz(str(path)).apply(embeddings),
        postprocess.AudioPca.from_arrays(**audio_arrays).apply(embeddings),
    )

    missing = tmp_path / "absent.npz"
    with pytest.raises(ModelArtifactError) as info:
        postprocess.AudioPca.from_npz(str(missing))
    assert str(missing) in str(info.value) and "--audio_pca" in str(info.value)

    np.savez(path, pca_eigen_vectors=np.zeros((128, 64)), pca_means=np.zeros((128, 1)))
    with pytest.raises(ModelArtifactError) as info:
        postprocess.AudioPca.from_npz(str(path))
    message = str(info.value)
    assert str(path) in message and "pca_eigen_vectors" in message and "(128, 128)" in message
    assert "--audio_pca" in message

    np.savez(path, pca_eigen_vectors=np.zeros((128, 128)))
    with pytest.raises(ModelArtifactError, match="pca_means") as info:
        postprocess.AudioPca.from_npz(str(path))
    assert "--audio_pca" in str(info.value)

    path.write_bytes(b"not a zip")
    with pytest.raises(ModelArtifactError, match="--audio_pca"):
        postprocess.AudioPca.from_npz(str(path))


def test_writers_reject_unofficial_shapes(tmp_path, audio_arrays):
    with pytest.raises(ModelArtifactError, match="pca_means"):
        postprocess.write_audio_pca_npz(str(tmp_path / "x.npz"), eigen_vectors=audio_arrays["eigen_vectors"],
                                        means=np.zeros(64))
    assert not (tmp_path / "x.npz").exists()
    with pytest.raises(ValueError, match=r"\[num_frames, 128\]"):
        postprocess.AudioPca.from_arrays(**audio_arrays).apply(np.zeros((2, 64)))
