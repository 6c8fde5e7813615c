"""CSV formats, row failures, clip ids and the vocabulary."""

import io

import pytest

from pipeline import elements
from pipeline.dataset.vocabulary import Vocabulary
from pipeline.read import annotations as A


def parse(text):
    return [r for _, r in A.read_rows(io.StringIO(text))]


def test_headerless_yt8m_rows():
    rows = parse("/data/a.mp4,3;1\n/data/b.mp4,\n/data/c.mp4,x\n/data/d.mp4\n")
    a, b, c, d = rows
    assert isinstance(a, elements.ClipRequest) and a.clip_id == "/data/a.mp4" and a.labels == ("3", "1")
    assert a.split == "all" and a.source == "file" and a.row == 1
    assert isinstance(b, elements.ClipRequest) and b.labels == ()
    assert isinstance(c, A.RowError) and c.reason == "bad_label" and c.row == 3
    assert isinstance(d, A.RowError) and d.reason == "malformed_row"


def test_headered_videos_rows_with_sections_and_errors():
    text = ("video,labels,id,start,end,split\n"
            "a.mp4,cat;dog,,2,12,train\n"
            "b.mp4,dog,myid,,,val\n"
            "c.mp4,dog,,abc,5,train\n"
            "d.mp4,dog,,-1,5,train\n"
            "e.mp4,dog,,5,5,train\n"
            "f.mp4,dog,,1.5,3.25,\n"
            "g.mp4,dog,too,many,cols,here,x\n")
    rows = parse(text)
    assert rows[0].clip_id == "a.mp4_000002_000012" and rows[0].start == 2 and rows[0].end == 12
    assert rows[0].labels == ("cat", "dog") and rows[0].row == 2
    assert rows[1].clip_id == "myid" and rows[1].start is None and rows[1].split == "val"
    assert [r.reason for r in rows[2:5]] == ["bad_time", "bad_time", "bad_time_range"]
    assert rows[5].clip_id == "f.mp4_000001.500_000003.250" and rows[5].split == "all"
    assert rows[6].reason == "malformed_row"
    assert rows[2].fields["start"] == "abc"  # the failure report carries the row as read


@pytest.mark.parametrize("header,has_label", [
    ("label,youtube_id,time_start,time_end,split,is_cc", True),
    ("label,youtube_id,time_start,time_end,split", True),
    ("youtube_id,time_start,time_end,split", False),
    ("YouTube Identifier,Start time,End time,Class label", True),
])
def test_kinetics_variants_by_header(header, has_label):
    cols = header.split(",")
    values = {"label": "abseiling", "Class label": "abseiling", "youtube_id": "0wR5jVB-WPk",
              "YouTube Identifier": "0wR5jVB-WPk", "time_start": "417", "Start time": "417", "time_end": "427",
              "End time": "427", "split": "val", "is_cc": "0"}
    row = ",".join(values[c] for c in cols)
    (clip,) = parse(f"{header}\n{row}\n")
    assert clip.clip_id == "0wR5jVB-WPk_000417_000427"
    assert clip.source == "youtube" and clip.video == "0wR5jVB-WPk"
    assert clip.labels == (("abseiling",) if has_label else ())


def test_kinetics_invalid_id():
    (bad,) = parse("label,youtube_id,time_start,time_end,split\nx,short,1,2,val\n")
    assert bad.reason == "invalid_id"


def test_unknown_format_is_an_error():
    with pytest.raises(A.UnknownFormatError):
        list(A.read_rows(io.StringIO("labels,id\nx,y\n")))


def test_vocabulary_sorted_names_independent_of_order():
    v1 = Vocabulary.from_labels(["zebra", "apple", "mango"])
    v2 = Vocabulary.from_labels(["mango", "zebra", "apple", "apple"])
    assert v1 == v2 and v1.index("apple") == 0 and v1.index("zebra") == 2
    assert v1.to_csv() == "Index,Name\n0,apple\n1,mango\n2,zebra\n"


def test_vocabulary_integer_labels_keep_their_value():
    v = Vocabulary.from_labels(["3", "17", "3"])
    assert v.integer and v.index("17") == 17
    assert v.to_csv() == "Index,Name\n3,3\n17,17\n"


def test_real_kinetics_files_parse_completely(shared_dir):
    path = shared_dir / "data" / "kinetics" / "kinetics-400_val.csv"
    with open(path, newline="") as f:
        rows = [r for _, r in A.read_rows(f)]
    assert len(rows) == 19906
    good = [r for r in rows if isinstance(r, elements.ClipRequest)]
    assert len(good) == len(rows)
    assert len({r.labels[0] for r in good}) == 400
    with open(shared_dir / "data" / "kinetics" / "kinetics-600_test.csv", newline="") as f:
        test_rows = [r for _, r in A.read_rows(f)]
    assert test_rows and all(isinstance(r, elements.ClipRequest) and r.labels == () for r in test_rows)


@pytest.mark.parametrize("header,fix", [
    ("video,label", "`label` -> `labels`"),                      # Kinetics' singular
    ("video,labels,spilt", "`spilt` -> `split`"),                # a typo
    ("filename,category", "`filename` -> `video`"),              # other names: not a headerless data row
    ("path,labels", "`path` -> `video`"),
    ("labels,youtube_id,time_start,time_end,split", "`labels` -> `label`"),
])
def test_misspelled_header_is_an_error_naming_the_fix(header, fix):
    with pytest.raises(A.UnknownFormatError, match="rename") as e:
        list(A.read_rows(io.StringIO(f"{header}\na.mp4,cat\n")))
    assert fix in str(e.value)


def test_semicolon_separated_csv_is_an_error():
    with pytest.raises(A.UnknownFormatError, match="comma-separated"):
        list(A.read_rows(io.StringIO("video;labels\na.mp4;cat\n")))
    with pytest.raises(A.UnknownFormatError, match="comma-separated"):
        list(A.read_rows(io.StringIO("/data/a.mp4;3\n")))


def test_header_like_first_line_without_video_column_is_an_error():
    with pytest.raises(A.UnknownFormatError, match="looks like a header"):
        list(A.read_rows(io.StringIO("clip,topic\na.mp4,cat\n")))
    # a real headerless row still reads: a path, integer labels
    (row,) = parse("/data/a.mp4,3\n")
    assert row.labels == ("3",)
