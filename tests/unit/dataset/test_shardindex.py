"""The per-shard id index: written with each shard, used by resume, never trusted when it does not fit its shard."""

import os
import shutil
import zlib

import pytest

from pipeline.dataset import shardindex, tfrecord
from pipeline.dataset.vocabulary import Vocabulary
from transforms import resume, write


def _record(clip_id: str, size: int = 40) -> bytes:
    import tensorflow as tf

    example = tf.train.SequenceExample()
    example.context.feature["id"].bytes_list.value.append(clip_id.encode("utf-8", "surrogatepass"))
    example.context.feature["pad"].bytes_list.value.append(b"x" * size)
    return example.SerializeToString()


IDS = ["a", "b\nwith newline", "c \"quoted\" ü", "d"]


def _write_shard(out, ids, split="train"):
    """One shard through the real shard writer, as WriteDataset writes it."""
    items = [(clip_id, _record(clip_id)) for clip_id in ids]
    (meta,) = write._WriteShard(str(out), "").process(((split, 0, 1), items))
    return meta["path"]


def _ids(path):
    return [clip_id for clip_id, _ in resume._ids_of_shard(path)]


def _rewrite_body(index_path, transform):
    """Edits the index lines and writes a trailer with a recomputed checksum (a consistent but wrong index)."""
    lines = open(index_path, "rb").read().splitlines(keepends=True)
    body = transform(lines[1:-1])
    crc = zlib.crc32(shardindex.MAGIC)
    for line in body:
        crc = zlib.crc32(line, crc)
    _, _, size, _ = lines[-1].split()
    trailer = f"end {len(body)} {size.decode()} {crc:08x}\n".encode()
    open(index_path, "wb").write(shardindex.MAGIC + b"".join(body) + trailer)


def test_index_is_written_with_the_shard_and_used(tmp_path, monkeypatch):
    path = _write_shard(tmp_path, IDS)
    index = shardindex.index_path(path)
    # records/ holds the shard only; its index sits beside, in index/.
    assert os.listdir(tmp_path / "records") == ["train-00000-of-00001.tfrecord"]
    assert os.listdir(tmp_path / "index") == ["train-00000-of-00001.ids"]
    assert index == str(tmp_path / "index" / "train-00000-of-00001.ids")
    assert shardindex.check(path) is None
    assert list(shardindex.read_ids(path)) == IDS
    assert os.path.getsize(index) < os.path.getsize(path) / 2
    # Resume takes the ids from the index: with the record reader broken, it still answers.
    monkeypatch.setattr(resume, "record_id", lambda serialized: pytest.fail("read a record"))
    assert _ids(path) == IDS


@pytest.mark.parametrize("damage", ["missing", "truncated", "edited_id", "stale", "reordered_shard",
                                    "lines_swapped", "record_appended", "garbage"])
def test_a_wrong_index_falls_back_to_the_records(tmp_path, damage, caplog):
    """Every kind of wrong index: the ids come from the records, none skipped wrongly, none added twice."""
    path = _write_shard(tmp_path, IDS)
    index = shardindex.index_path(path)
    if damage == "missing":
        os.remove(index)
    elif damage == "truncated":
        data = open(index, "rb").read()
        open(index, "wb").write(data[:data.rindex(b"end ")])
    elif damage == "edited_id":  # "a" -> "z": trusted, `z` would be skipped and `a` built twice
        data = open(index, "rb").read()
        open(index, "wb").write(data.replace(b' "a"\n', b' "z"\n'))
    elif damage == "stale":  # the index of another shard with as many records of the same size
        other = _write_shard(tmp_path / "other", [clip_id.upper() for clip_id in IDS])
        shutil.copy(shardindex.index_path(other), index)
    elif damage == "reordered_shard":  # the shard rewritten (a retried bundle) with its old index kept
        saved = open(index, "rb").read()
        _write_shard(tmp_path, list(reversed(IDS)))
        open(index, "wb").write(saved)
    elif damage == "lines_swapped":  # entries out of record order, checksum recomputed: framing CRCs catch it
        _rewrite_body(index, lambda body: [body[1], body[0], *body[2:]])
    elif damage == "record_appended":
        with open(path, "ab") as f:
            tfrecord.write_record(f, _record("e"))
    elif damage == "garbage":
        open(index, "wb").write(b"\x00\xff not an index\n")
    expected = IDS + ["e"] if damage == "record_appended" else (
        list(reversed(IDS)) if damage == "reordered_shard" else IDS)
    assert shardindex.check(path) is not None
    assert _ids(path) == expected
    if damage != "missing":
        assert "Ignoring the id index" in caplog.text


def test_empty_shard_slots_get_an_empty_index(tmp_path):

    finalize = write._Finalize(output_dir=str(tmp_path), run_info={}, run_tag="")
    os.makedirs(tmp_path / "records")
    path = _write_shard(tmp_path, ["a"])
    shards = [{"split": "train", "shard": 0, "num_shards": 2, "path": path.replace("-of-00001", "-of-00002"),
               "count": 1}]
    os.rename(path, shards[0]["path"])
    os.rename(shardindex.index_path(path), shardindex.index_path(shards[0]["path"]))
    list(finalize.process(None, shards, Vocabulary.from_labels([]), [1], (1, 0, 0.0, 0, 0, 0.0, 0),
                          {}, {}, [0]))
    empty = str(tmp_path / "records" / "train-00001-of-00002.tfrecord")
    assert os.path.getsize(empty) == 0 and shardindex.check(empty) is None and _ids(empty) == []


def test_overwrite_deletes_indexes_and_resume_inspect_see_only_shards(tmp_path):
    from pipeline.cli import inspect
    from pipeline.dataset import outputs

    path = _write_shard(tmp_path, IDS)
    (tmp_path / "vocabulary.csv").write_text("Index,Name\n")
    (tmp_path / "stats.json").write_text("{}")
    assert outputs.existing_records(str(tmp_path)) == [path]  # the index is not a shard to resume from
    assert inspect.expand_paths(str(tmp_path)) == [path]  # inspect and report read shards only
    assert inspect.expand_paths(str(tmp_path / "records") + "/*") == [path]  # a records/* glob meets shards only
    plan = outputs.prepare_output_dir(str(tmp_path), overwrite=False, skip_existing=True, csv_labels=set())
    assert plan.run_tag and os.path.exists(shardindex.index_path(path))  # resume keeps it
    outputs.prepare_output_dir(str(tmp_path), overwrite=True)
    assert os.listdir(tmp_path / "records") == [] and os.listdir(tmp_path / "index") == []  # shard and index gone


def _to_old_layout(path):
    """Moves a shard's index to where datasets written before index/ existed kept it: records/NAME.ids."""
    os.rename(shardindex.index_path(path), shardindex.legacy_index_path(path))
    os.rmdir(os.path.dirname(shardindex.index_path(path)))
    assert shardindex.legacy_index_path(path).endswith("/records/train-00000-of-00001.ids")


def test_resume_reads_an_old_layout_index(tmp_path, monkeypatch):
    """A dataset written with records/NAME.ids: resume trusts that index, checked the same way."""
    path = _write_shard(tmp_path, IDS)
    _to_old_layout(path)
    assert shardindex.check(path) is None
    monkeypatch.setattr(resume, "record_id", lambda serialized: pytest.fail("read a record"))
    assert _ids(path) == IDS


def test_an_old_layout_index_that_does_not_fit_falls_back(tmp_path, caplog):
    path = _write_shard(tmp_path, IDS)
    _to_old_layout(path)
    old = shardindex.legacy_index_path(path)
    data = open(old, "rb").read()
    open(old, "wb").write(data.replace(b' "a"\n', b' "z"\n'))
    assert shardindex.check(path) == "index checksum does not match"
    assert _ids(path) == IDS and "Ignoring the id index" in caplog.text


def test_old_layout_dataset_resume_overwrite_and_inspect_glob(tmp_path):
    """Resume of an old-layout dataset keeps its index; `inspect 'out/records/*'` skips it; --overwrite removes it."""
    from pipeline.cli import inspect
    from pipeline.dataset import outputs

    path = _write_shard(tmp_path, IDS)
    _to_old_layout(path)
    (tmp_path / "vocabulary.csv").write_text("Index,Name\n")
    (tmp_path / "stats.json").write_text("{}")
    assert outputs.existing_records(str(tmp_path)) == [path]
    assert inspect.expand_paths(str(tmp_path / "records") + "/*") == [path]
    plan = outputs.prepare_output_dir(str(tmp_path), overwrite=False, skip_existing=True, csv_labels=set())
    assert plan.run_tag and os.path.exists(shardindex.legacy_index_path(path))
    outputs.prepare_output_dir(str(tmp_path), overwrite=True)
    assert os.listdir(tmp_path / "records") == []


def test_a_remote_style_path_maps_to_index_folder():
    assert shardindex.index_path("gs://b/out/records/train-00000-of-00002.tfrecord") == \
        "gs://b/out/index/train-00000-of-00002.ids"
    assert shardindex.legacy_index_path("gs://b/out/records/train-00000-of-00002.tfrecord") == \
        "gs://b/out/records/train-00000-of-00002.ids"
