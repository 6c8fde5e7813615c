"""pipeline.dataset.fileio: the one atomic-write helper (every output file goes through it) and the path helpers.

  PYTHONPATH=. python -m pytest -q tests/unit/dataset/test_fileio.py
"""

from __future__ import annotations

import glob
import os

import pytest

from pipeline.dataset import fileio


def _siblings(folder) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("folder_name", ["plain", "d[x]*?"])  # user-chosen folders may hold glob characters
def test_bytes_appear_under_the_final_name_only_when_complete(tmp_path, folder_name):
    path = str(tmp_path / folder_name / "sub" / "a.tfrecord")  # parent folders are created
    with fileio.atomic_write(path) as f:
        f.write(b"first half ")
        # Mid-write a reader sees nothing under the final name, only the temporary sibling.
        assert not os.path.exists(path)
        (tmp,) = _siblings(os.path.dirname(path))
        assert tmp.startswith("a.tfrecord" + fileio.TEMP_MARKER)
        f.write(b"second half")
    assert open(path, "rb").read() == b"first half second half"
    assert _siblings(os.path.dirname(path)) == ["a.tfrecord"]
    fileio.write_atomically(path, "replaced: é")  # str is written as UTF-8, over the old file
    assert open(path, "rb").read() == "replaced: é".encode()
    assert _siblings(os.path.dirname(path)) == ["a.tfrecord"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    folder = tmp_path / "d[1]"
    folder.mkdir()
    path = str(folder / "stats.json")
    fileio.write_atomically(path, b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with fileio.atomic_write(path) as f:
            f.write(b"half")
            raise RuntimeError("disk on fire")
    assert open(path, "rb").read() == b"old"
    assert _siblings(folder) == ["stats.json"]
    # Compressed-looking names are written as given (no gzip from the extension).
    fileio.write_atomically(path + ".gz", b"raw bytes")
    assert open(path + ".gz", "rb").read() == b"raw bytes"


def test_a_fixed_temporary_name_is_overwritten_and_removed_on_failure(tmp_path):
    path, part = str(tmp_path / "train0000.tfrecord"), str(tmp_path / "train0000.tfrecord.part")
    with open(part, "wb") as stale:
        stale.write(b"stale leftover of an earlier run, longer than the new data")
    with pytest.raises(ValueError):
        with fileio.atomic_write(path, temp_path=part) as f:
            f.write(b"new")
            f.flush()
            assert open(part, "rb").read() == b"new"  # truncated, not appended
            raise ValueError("md5 mismatch")
    assert _siblings(tmp_path) == []
    with fileio.atomic_write(path, temp_path=part) as f:
        f.write(b"good")
    assert _siblings(tmp_path) == ["train0000.tfrecord"] and open(path, "rb").read() == b"good"


def test_path_helpers(tmp_path):
    assert fileio.join("gs://b/d", "x", "y.csv") == "gs://b/d/x/y.csv"
    assert fileio.join(str(tmp_path), "y.csv") == os.path.join(str(tmp_path), "y.csv")
    assert fileio.is_local("/a/b") and fileio.is_local("rel") and not fileio.is_local("gs://b/a")
    for name in ("a[b]", "a*", "a?", "[x]*?"):
        (tmp_path / name).mkdir()
    (tmp_path / "ab").mkdir()
    for name in ("a[b]", "a*", "a?", "[x]*?"):
        assert glob.glob(fileio.escape_glob(str(tmp_path / name))) == [str(tmp_path / name)], name


def test_staged_files_appear_only_when_published_and_the_staging_folder_goes(tmp_path):
    directory = str(tmp_path / "out")
    os.makedirs(directory)
    (tmp_path / "out" / "a").write_text("old")
    with fileio.staging_dir(directory) as staging:
        assert os.path.dirname(staging) == directory and fileio.TEMP_MARKER in os.path.basename(staging)
        for name in ("a", "b", "marker"):
            with open(os.path.join(staging, name), "w", encoding="utf-8") as f:
                f.write(name)
        assert (tmp_path / "out" / "a").read_text() == "old"
        fileio.publish_files(staging, directory, ["a", "b", "marker"])
    assert sorted(os.listdir(directory)) == ["a", "b", "marker"]
    assert [(tmp_path / "out" / n).read_text() for n in ("a", "b", "marker")] == ["a", "b", "marker"]
    with pytest.raises(ValueError), fileio.staging_dir(directory) as staging:
        with open(os.path.join(staging, "c"), "w", encoding="utf-8") as f:
            f.write("c")
        raise ValueError("check failed")
    assert sorted(os.listdir(directory)) == ["a", "b", "marker"]

