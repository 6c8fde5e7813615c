"""Parallel CSV splits: every split size reads the same rows, row numbers and failures as one sequential read."""

import io
import random

import pytest

from pipeline.elements import ClipRequest
from pipeline.read import annotations as A
from pipeline.read import csvsplit


def _sequential(raw: bytes):
    return list(A.read_rows(A.open_text(io.BytesIO(raw))))


def _split_read(path, **kwargs):
    scanned = csvsplit.scan(str(path), **kwargs)
    rows = [row for split in scanned.splits for row in csvsplit.read_split(split)]
    return scanned, rows


# Hostile and awkward rows of every kind a split boundary could fall next to: quoted newlines
# (one row over several lines), blank lines, \r\n and bare \r line ends, an oversized field
# (the csv module's error, then its resync), undecodable bytes, a NUL, a wrong column count, a
# duplicate id, no newline at the end.
HOSTILE = (
    b"\xef\xbb\xbfvideo,labels,id,start,end\r\n"
    b"a.mp4,cat,a,,\r\n"
    b"\"b\nwith\nnewlines.mp4\",\"dog;\ncat\",b,1,2\n"
    b"\n\n"
    b"c.mp4,emu,c,abc,\r"
    b"d.mp4,emu,d,,\r"
    b"e.mp4," + b"y" * 200_000 + b",e,,\n"
    b"f.mp4,emu,f,,\n"
    b"g\xff.mp4,emu,g,,\n"
    b"h\x00.mp4,emu,h,,\n"
    b"i.mp4,emu\n"
    b"\"j.mp4\",\"quoted, comma\",a,,\n"
    b"k.mp4,\"unterminated\n"
    b"l.mp4,emu,l,,"
)


@pytest.mark.parametrize("rows_per_split", [1, 2, 3, 5, 1000])
def test_every_split_size_reads_what_one_sequential_read_reads(tmp_path, rows_per_split):
    path = tmp_path / "in.csv"
    path.write_bytes(HOSTILE)
    expected = _sequential(HOSTILE)
    scanned, rows = _split_read(path, rows_per_split=rows_per_split)
    assert rows == expected  # same order, row numbers, reasons, fields and ids
    assert scanned.rows == len(expected)
    assert len(scanned.splits) == (1 if rows_per_split == 1000 else -(-len(expected) // rows_per_split))
    assert scanned.labels == {label for _, r in expected if isinstance(r, ClipRequest) for label in r.labels}
    reasons = [getattr(r, "reason", "ok") for _, r in expected]
    assert reasons.count("malformed_row") >= 5 and "bad_time" in reasons  # the hostile rows are there


def test_byte_budget_splits_long_rows_and_compressed_files_stay_whole(tmp_path):
    import gzip

    text = "video,labels\n" + "".join(f"v{i}.mp4,{'x' * 50}\n" for i in range(200))
    path = tmp_path / "in.csv"
    path.write_text(text)
    scanned, rows = _split_read(path, bytes_per_split=1000)
    assert len(scanned.splits) > 10 and rows == _sequential(text.encode())
    gz = tmp_path / "in.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    scanned, rows = _split_read(gz, rows_per_split=7)
    assert len(scanned.splits) == 1 and [r for _, r in rows] == [r for _, r in _sequential(text.encode())]


def test_line_splitting_matches_text_io_at_every_chunk_boundary(monkeypatch):
    """The byte line splitter cuts where io.TextIOWrapper(newline="") does, even when \\r\\n straddles chunks."""
    rng = random.Random(0)
    alphabet = [b"a", b",", b"\r", b"\n", b"\r\n", b'"', b"\xc3\xa9"]
    for chunk in (1, 2, 3, 7):
        monkeypatch.setattr(csvsplit, "_CHUNK", chunk)
        for _ in range(200):
            raw = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
            expected = list(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", errors="surrogateescape",
                                             newline=""))
            lines = csvsplit.ByteLines(io.BytesIO(raw))
            assert list(lines) == expected, raw
            assert lines.offset == len(raw) and lines.count == len(expected)


def test_unknown_format_still_raises_from_the_scan(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("labels,id\nx,y\n")
    with pytest.raises(A.UnknownFormatError):
        csvsplit.scan(str(path))


@pytest.mark.parametrize("text", [
    # A label first seen on rows that fail (bad time, bad split, wrong width) must not enter the labels;
    # a later good row with it must.
    "video,labels,start,split\na.mp4,cat,,x\nb.mp4,dog,abc,x\nc.mp4,dog,,../x\nd.mp4,dog\ne.mp4,cat;emu,,x\n"
    "f.mp4,dog,,y\n",
    # Two `labels` columns: the parser keeps the last one.
    "video,labels,labels\na.mp4,cat,dog\nb.mp4,dog,cat\nc.mp4,cat,emu\n",
    "label,youtube_id,time_start,time_end,split\ncat,0wR5jVB-WPk,1,2,val\ndog,short,1,2,val\n"
    "dog,0wR5jVB-WPk,5,2,val\n",
    "a.mp4,1;2\nb.mp4,007\nc.mp4,x;3\nd.mp4,4\n",  # yt8m: integer labels as written vs normalized
])
def test_scan_labels_are_exactly_those_of_the_rows_that_parse(tmp_path, text):
    path = tmp_path / "in.csv"
    path.write_text(text)
    expected = {label for _, r in _sequential(text.encode()) if isinstance(r, ClipRequest) for label in r.labels}
    scanned = csvsplit.scan(str(path))
    assert scanned.labels == expected and scanned.rows == len(_sequential(text.encode()))


def test_read_annotations_over_many_splits_dedupes_across_them(tmp_path):
    """Duplicates in different splits: the first row wins; rows, failures and vocabulary as from one read."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.read import ReadAnnotations

    path = tmp_path / "in.csv"
    path.write_text("video,labels,id\n"
                    "a.mp4,dog;cat,x\n"
                    "\"b\nb.mp4\",emu,x\n"
                    "c.mp4,cat,y\n"
                    "d.mp4,cat\n"
                    "e.mp4,yak,x\n"
                    "f.mp4,cat,z\n")
    scanned = csvsplit.scan(str(path), rows_per_split=2)
    assert len(scanned.splits) == 3
    with TestPipeline() as p:
        out = p | ReadAnnotations(str(path), splits=scanned.splits, keep_labels=("ant",))
        assert_that(out["clips"] | beam.Map(lambda r: (r.clip_id, r.row)), equal_to([("x", 2), ("y", 5), ("z", 8)]),
                    label="FirstRowOfEachIdWins")
        assert_that(out["failures"] | beam.Map(lambda f: (f.reason, f.row, f.message[-5:])),
                    equal_to([("duplicate_id", 4, "row 2"), ("malformed_row", 6, "und 2"),
                              ("duplicate_id", 7, "row 2")]), label="Failures")
        assert_that(out["vocabulary"] | beam.Map(lambda v: v.names),
                    equal_to([("ant", "cat", "dog", "emu", "yak")]), label="VocabularyOverAllSplits")
        assert_that(out["rows_read"], equal_to([6]), label="RowsRead")
