"""Hostile labels and ids in --clips_dir: every row keeps its own clip, none overwrites another.

Names that all became `unnamed/unnamed.mp4` (non-Latin) or met (`a/b` = `a_b`) used to leave a
few files for many rows while the run counted every row kept.
"""

from __future__ import annotations

import json
import os
import threading
import unicodedata

import pytest

from pipeline import elements
from pipeline.cli import build
from pipeline.errors import ClipError
from transforms.support import fetch_rows as fetch

# The probe's set and its neighbours: non-Latin, separators, dot names, > 255 bytes, case only,
# NFC against NFD, spaces, the hash mark itself, empty.
HOSTILE = ["猫", "кошка", "قطة", "🐱", "a/b", "a_b", "a\\b", "a b", "a  b", " a b", "..", ".", ".hidden", "-x",
           "x" * 300, "x" * 300 + "y", "猫" * 100, "Cat", "cat", "CAT", unicodedata.normalize("NFC", "é"),
           unicodedata.normalize("NFD", "é"), "x~0123456789abcdef", "x~", "", "a\nb", "a\x00b", "a\u202eb",
           "bad\udcffbytes"]


def _clip(clip_id, label):
    return elements.ClipRequest(clip_id=clip_id, source="file", video="v.mp4", start=None, end=None,
                         labels=(label,) if label is not None else (), split="all", row=1, fields={})


def test_names_are_distinct_single_components_under_the_file_name_limit():
    names = [fetch.path_component(text) for text in HOSTILE]
    assert len(set(names)) == len(HOSTILE), [n for n in names if names.count(n) > 1]
    for text, name in zip(HOSTILE, names, strict=True):
        assert name and name not in (".", "..") and not name.startswith((".", "-")), (text, name)
        assert "/" not in name and "\\" not in name and "\0" not in name and "\n" not in name, (text, name)
        # with `.mp4` and the temporary suffix (`.tmp-` + 32 hex) it fits in 255 bytes
        assert len((name + ".mp4" + ".tmp-" + "0" * 32).encode("utf-8")) <= 255, (text, len(name.encode()))
    # Unicode and case are kept where safe: the names read as the labels do.
    assert [fetch.path_component(t) for t in ("猫", "кошка", "Cat", "cat", "a b", "a_b")] == [
        "猫", "кошка", "Cat", "cat", "a b", "a_b"]
    assert fetch.path_component("a/b").startswith("a_b~")


def test_paths_of_label_and_id_pairs_are_distinct(tmp_path):
    pairs = [(i, label) for i in HOSTILE[:8] for label in ("猫", "a/b", "a_b", None)]
    paths = [fetch.clip_path(str(tmp_path), _clip(i, label)) for i, label in pairs]
    assert len(set(paths)) == len(pairs)
    assert all(os.path.dirname(os.path.dirname(p)) == str(tmp_path) for p in paths)


def test_a_second_writer_never_overwrites_a_kept_clip(tmp_path):
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(b"first clip")
    second.write_bytes(b"second clip")
    dest = str(tmp_path / "clips" / "cat" / "x.mp4")
    barrier = threading.Barrier(8)

    def write(source):
        barrier.wait()
        fetch._store(str(source), dest)

    threads = [threading.Thread(target=write, args=(first if i % 2 else second,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = open(dest, "rb").read()
    assert kept in (b"first clip", b"second clip")
    fetch._store(str(first if kept == b"second clip" else second), dest)  # later: still the first one's
    assert open(dest, "rb").read() == kept
    assert os.listdir(os.path.dirname(dest)) == ["x.mp4"]  # no temporary file left


def test_a_case_insensitive_match_is_a_collision_not_a_reuse(tmp_path, monkeypatch):
    folder = tmp_path / "cat"
    folder.mkdir()
    (folder / "Abc.mp4").write_bytes(b"another clip")
    real_exists = fetch.FileSystems.exists

    def folding_exists(path):  # what a case-insensitive disk answers
        parent, name = os.path.split(path)
        return real_exists(path) or (os.path.isdir(parent)
                                     and name.lower() in [n.lower() for n in os.listdir(parent)])

    monkeypatch.setattr(fetch.FileSystems, "exists", staticmethod(folding_exists))
    with pytest.raises(ClipError) as e:
        fetch.kept_exists(str(folder / "abc.mp4"))
    assert e.value.reason == "name_collision"
    assert fetch.kept_exists(str(folder / "Abc.mp4"))


def test_fetch_only_build_keeps_one_file_per_hostile_row(tmp_path, videos):
    """The probe's build: every row's clip kept under its own name, the count right, nothing elsewhere."""
    source = videos["v3_30fps"]
    ids = ["猫", "кошка", "a/b", "a_b", "..", "x" * 300, "猫" * 100, "Cat", "cat",
           unicodedata.normalize("NFC", "é"), unicodedata.normalize("NFD", "é")]
    labels = ["猫", "кошка", "a/b", "a_b", "..", "Cat", "cat", "a/b", "a_b", "猫", "猫"]
    csv_path = tmp_path / "in.csv"
    with open(csv_path, "w", encoding="utf-8", newline="") as f:
        f.write("video,labels,id\n")
        for clip_id, label in zip(ids, labels, strict=True):
            f.write(f"{source},{label},{clip_id}\n")
    out, clips = tmp_path / "out", tmp_path / "clips"
    assert build.main(["--input_csv", str(csv_path), "--output_dir", str(out), "--features", "none",
                       "--clips_dir", str(clips)]) == 0
    kept = sorted(os.path.join(d, f) for d, _, fs in os.walk(clips) for f in fs)
    assert len(kept) == len(ids), kept
    assert all(os.path.dirname(os.path.dirname(p)) == str(clips) for p in kept)
    stats = json.load(open(out / "stats.json"))
    assert (stats["clips_kept"], stats["failures"]) == (len(ids), 0) and stats["all_rows_accounted_for"]
    assert sorted(os.listdir(tmp_path)) == ["clips", "in.csv", "out"]
