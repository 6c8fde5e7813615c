"""pipeline.report on small datasets in both layouts: ours (records/, stats.json, failures, vocabulary)
and a directory of official-style YouTube-8M shards (trainXXXX.tfrecord only).

  PYTHONPATH=. python -m pytest -q tests/unit/cli/test_report.py
"""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tensorflow as tf

from pipeline.cli import inspect, report
from pipeline.dataset import records

VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "embed", "source", "track", "wbr"}


def _clip(clip_id: str, labels: list[int], steps: int, rng: np.random.Generator) -> bytes:
    rgb_q = rng.integers(0, 256, (steps, records.RGB_BYTES), dtype=np.uint8)
    audio_q = rng.integers(0, 256, (steps, records.AUDIO_BYTES), dtype=np.uint8)
    return records.build_sequence_example(records.ClipFeatures(
        clip_id=clip_id, labels=labels, rgb=rgb_q.astype(np.float32), audio=audio_q.astype(np.float32),
        rgb_quantized=rgb_q, audio_quantized=audio_q))


def _write_shard(path, payloads: list[bytes]) -> None:
    with tf.io.TFRecordWriter(str(path)) as w:
        for p in payloads:
            w.write(p)


def _dequantized(payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    parsed = [records.parse_sequence_example(p) for p in payloads]
    rgb = np.concatenate([r.rgb for r in parsed]).astype(np.float64) * 4 / 255 + 4 / 512 - 2
    audio = np.concatenate([r.audio for r in parsed]).astype(np.float64) * 4 / 255 + 4 / 512 - 2
    return rgb, audio


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """Our layout: 2 splits, 5 records, 3 labels (one unused), 3 failures, synthetic stats."""
    d = tmp_path_factory.mktemp("ours")
    rng = np.random.default_rng(1)
    (d / "records").mkdir()
    train = [_clip("a", [0, 1], 10, rng), _clip("b", [1], 4, rng), _clip("c", [], 7, rng)]
    test = [_clip("d", [1, 2], 3, rng), _clip("e", [0], 12, rng)]
    _write_shard(d / "records" / "train-00000-of-00001.tfrecord", train)
    _write_shard(d / "records" / "test-00000-of-00002.tfrecord", test)
    _write_shard(d / "records" / "test-00001-of-00002.tfrecord", [])
    (d / "vocabulary.csv").write_text("Index,Name\n0,bars & tone\n1,music\n2,speech\n3,unused\n")
    failures = [
        {"id": "x", "input": {}, "row": 7, "stage": "decode", "reason": "too_short", "message": "0.5 s"},
        {"id": "y", "input": {}, "row": 8, "stage": "decode", "reason": "empty_file", "message": "0 bytes"},
        {"id": "z", "input": {}, "row": 9, "stage": "fetch", "reason": "not_found", "message": "<gone>"},
    ]
    (d / "failures-00000-of-00001.jsonl").write_text("".join(json.dumps(f) + "\n" for f in failures))
    stats = {"rows_read": 8, "records_written": 5, "failures": 3,
             "failures_by_reason": {"empty_file": 1, "not_found": 1, "too_short": 1},
             "failures_by_stage": {"decode": 2, "fetch": 1}, "all_rows_accounted_for": True,
             "seconds_of_video": 36.5, "steps_written": 36, "clips_with_silent_audio": 1,
             "records_per_split": {"test": 2, "train": 3}, "vocabulary_size": 4, "synthetic": True,
             "models": {"synthetic": True}, "started_at": "2024-01-01T00:00:00+00:00",
             "finished_at": "2024-01-01T00:01:00+00:00"}
    (d / "stats.json").write_text(json.dumps(stats))
    return {"dir": str(d), "payloads": train + test, "stats": stats}


@pytest.fixture(scope="module")
def yt8m(tmp_path_factory):
    """The official layout: trainXXXX.tfrecord files directly in the folder, nothing else."""
    d = tmp_path_factory.mktemp("yt8m")
    rng = np.random.default_rng(2)
    payloads = [_clip(f"yt{i:02d}", sorted({int(i % 5), 3861}), 120 + 20 * i, rng) for i in range(8)]
    _write_shard(d / "train0000.tfrecord", payloads[:5])
    _write_shard(d / "train0001.tfrecord", payloads[5:])
    return {"dir": str(d), "payloads": payloads}


class _TagChecker(html.parser.HTMLParser):
    """Fails on unbalanced or mis-nested elements; collects tags and attributes for the assertions."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _page(*argv) -> tuple[str, dict[str, ET.Element]]:
    assert report.main(list(argv)) == 0
    out = argv[argv.index("--out") + 1] if "--out" in argv else argv[0].rstrip("/") + "/report.html"
    text = open(out, encoding="utf-8").read()
    checker = _TagChecker()
    checker.feed(text)
    checker.close()
    assert not checker.errors and not checker.stack, (checker.errors, checker.stack)
    assert text.startswith("<!DOCTYPE html>")
    # Self-contained: no scripts, stylesheets, images or fonts from elsewhere.
    for tag, attrs in checker.tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        assert "src" not in attrs, (tag, attrs)
        for name in ("href", "xlink:href"):  # only references inside the page (matplotlib's tick markers)
            assert attrs.get(name, "#").startswith("#"), (tag, attrs)
    assert "@import" not in text
    svgs = {}
    for chunk in re.findall(r"<svg\b.*?</svg>", text, flags=re.S):
        # The "render check" without a browser: every plot is well-formed XML with a size and viewBox.
        root = ET.fromstring(chunk)
        assert float(root.get("width")) > 0 and float(root.get("height")) > 0
        assert len(root.get("viewBox").split()) == 4
        # matplotlib clips marks with clip paths and draws ticks with <use> markers: references inside this
        # same <svg> only.
        ids = {e.get("id") for e in root.iter()}
        refs = re.findall(r"url\(([^)]*)\)", chunk) + re.findall(r"href=\"([^\"]*)\"", chunk)
        for ref in refs:
            assert ref.startswith("#") and ref[1:] in ids, ref
        svgs[root.get("id")] = root
    assert len(svgs) == text.count("<svg")
    assert "url(" not in re.sub(r"<svg\b.*?</svg>", "", text, flags=re.S)  # none in the page's own CSS/HTML
    ids = [attrs["id"] for _, attrs in checker.tags if "id" in attrs]
    assert len(ids) == len(set(ids)), "ids must be unique in the page"
    return text, svgs


def _marks(svg: ET.Element, kind: str) -> list[ET.Element]:
    return [e for e in svg.iter() if e.get("class") == kind]


def _bars(svg: ET.Element) -> list[ET.Element]:
    return _marks(svg, "bar")


def _vertices(mark: ET.Element) -> np.ndarray:
    """The (x, y) vertices of the one path a mark draws, as matplotlib wrote them (absolute M/L commands)."""
    (path,) = [e for e in mark.iter() if e.tag.endswith("}path")]
    numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", path.get("d"))]
    return np.array(numbers).reshape(-1, 2)


def test_our_layout(ours):
    text, svgs = _page(ours["dir"])
    assert set(svgs) == {"plot-labels", "plot-steps", "plot-failures-reason", "plot-failures-stage",
                         "plot-rgb-mean", "plot-rgb-std", "plot-audio-mean", "plot-audio-std"}
    assert "SYNTHETIC FEATURES" in text and 'class="warning synthetic"' in text
    assert "sampled" not in text.lower().replace("(sampled)", "")
    # One bar per label used, named from vocabulary.csv (escaped in the markup).
    labels = {b.get("data-label"): float(b.get("data-value")) for b in _bars(svgs["plot-labels"])}
    assert labels == {"bars & tone (0)": 2, "music (1)": 3, "speech (2)": 1}
    # The drawn bars are as long as their values say (not just labelled with them).
    lengths = {b.get("data-label"): np.ptp(_vertices(b)[:, 0]) for b in _bars(svgs["plot-labels"])}
    assert lengths["music (1)"] == pytest.approx(3 * lengths["speech (2)"], rel=1e-3)
    assert lengths["bars & tone (0)"] == pytest.approx(2 * lengths["speech (2)"], rel=1e-3)
    assert "bars &amp; tone (0)" in text
    reasons = {b.get("data-label"): float(b.get("data-value")) for b in _bars(svgs["plot-failures-reason"])}
    assert reasons == {"too_short": 1, "empty_file": 1, "not_found": 1}
    stages = {b.get("data-label"): float(b.get("data-value")) for b in _bars(svgs["plot-failures-stage"])}
    assert stages == {"decode": 2, "fetch": 1}
    # Steps 10, 4, 7, 3, 12 -> 12 one-step bins, one bar each.
    steps = {b.get("data-label"): float(b.get("data-value")) for b in _bars(svgs["plot-steps"])}
    assert len(steps) == 12 and sum(steps.values()) == 5 and steps["12"] == 1 and steps["1"] == 0
    # stats.json figures, and the failure message escaped.
    for figure in ("input rows read", "records written", "seconds of video", "36.5", "train: 3"):
        assert figure in text
    assert "&lt;gone&gt;" in text
    assert "Fetching" not in text  # no fetch figures in stats.json: no section


def test_feature_plots_match_numpy(ours):
    _, svgs = _page(ours["dir"])
    rgb, audio = _dequantized(ours["payloads"])
    for name, values in (("rgb", rgb), ("audio", audio)):
        (mean_line,) = _marks(svgs[f"plot-{name}-mean"], "mean")
        (std_line,) = _marks(svgs[f"plot-{name}-std"], "std")
        got_mean = np.array(mean_line.get("data-values").split(","), float)
        got_spread = np.array(mean_line.get("data-spread").split(","), float)
        got_std = np.array(std_line.get("data-values").split(","), float)
        assert got_mean.shape == (values.shape[1],)
        np.testing.assert_allclose(got_mean, values.mean(0), atol=2e-6)
        np.testing.assert_allclose(got_std, values.std(0), atol=2e-6)
        np.testing.assert_allclose(got_spread, values.std(0), atol=2e-6)
        # One vertex per dimension, left to right, at heights that follow the values (SVG y points down).
        drawn = _vertices(mean_line)
        assert drawn.shape == (values.shape[1], 2) and np.all(np.diff(drawn[:, 0]) > 0)
        assert np.corrcoef(drawn[:, 1], got_mean)[0, 1] < -0.9999
        assert len(_marks(svgs[f"plot-{name}-mean"], "band")) == 1


def test_yt8m_layout_with_compare_and_glob(yt8m, ours, tmp_path):
    shutil.copy(ours["dir"] + "/vocabulary.csv", tmp_path / "unused.csv")
    # YouTube-8M's vocabulary layout, with a quoted, comma-holding description column.
    (tmp_path / "yt").mkdir()
    for f in ("train0000.tfrecord", "train0001.tfrecord"):
        shutil.copy(f"{yt8m['dir']}/{f}", tmp_path / "yt" / f)
    (tmp_path / "yt" / "vocabulary.csv").write_text(
        "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,Vertical3,WikiDescription\n"
        + "".join(f'{i},100,/m/0{i},Name{i},https://en.wikipedia.org/wiki/N{i},Games,,,"A, b"\n' for i in range(5))
        + '3861,5,/m/zz,Last one,https://x,Arts,,,"multi\nline"\n')
    out = str(tmp_path / "cmp.html")
    text, svgs = _page(str(tmp_path / "yt"), "--compare", ours["dir"], "--out", out)
    assert "no stats.json" not in text  # official shards are not an unfinished build of ours
    labels = {b.get("data-label") for b in _bars(svgs["plot-labels"])}
    assert labels == {f"Name{i} ({i})" for i in range(5)} | {"Last one (3861)"}
    assert len(_bars(svgs["plot-labels-2"])) == 3  # the compared dataset's labels get their own chart
    # Steps 120..260 and 3..12 on common 10-step bins, as shares of each dataset's records.
    bars = _bars(svgs["plot-steps"])
    assert len(bars) == 2 * 26
    for series in ("0", "1"):
        assert sum(float(b.get("data-value")) for b in bars if b.get("data-series") == series) == pytest.approx(100)
    yt_rgb, _ = _dequantized(yt8m["payloads"])
    ours_rgb, _ = _dequantized(ours["payloads"])
    lines = {e.get("data-series"): e for e in _marks(svgs["plot-rgb-mean"], "mean")}
    np.testing.assert_allclose(np.array(lines["0"].get("data-values").split(","), float), yt_rgb.mean(0), atol=2e-6)
    np.testing.assert_allclose(np.array(lines["1"].get("data-values").split(","), float), ours_rgb.mean(0), atol=2e-6)
    assert len(_marks(svgs["plot-rgb-mean"], "band")) == 2
    assert "SYNTHETIC FEATURES" in text  # the compared dataset's warning still shows
    # A glob works too, and the default output goes beside the shards.
    _, svgs = _page(str(tmp_path / "yt" / "train000*.tfrecord"), "--out", str(tmp_path / "glob.html"))
    assert sum(float(b.get("data-value")) for b in _bars(svgs["plot-steps"])) == 8


def test_sampling_note_and_fetch_section(ours, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(ours["dir"], d)
    stats = dict(ours["stats"], synthetic=False, models={"synthetic": False},
                 fetch={"bytes_downloaded": 5_000_000, "seconds": 2.0, "clips_fetched": 5,
                        "bytes_by_method": {"section": 4_000_000, "full": 1_000_000}})
    (d / "stats.json").write_text(json.dumps(stats))
    text, svgs = _page(str(d), "--max_records", "2")
    assert "SYNTHETIC" not in text
    assert 'class="note sampling"' in text and "--max_records 2" in text
    assert sum(float(b.get("data-value")) for b in _bars(svgs["plot-steps"])) == 2
    assert "Fetching" in text and "4.8 MiB" in text and "2.4 MiB/s" in text
    assert len(_bars(svgs["plot-fetch-bytes_by_method"])) == 2
    assert "976.6 KiB, 0.40 s" in text  # per fetched clip
    # A build from local files records all-zero fetch figures: no section.
    stats["fetch"] = {"clips_fetched": 0, "bytes_downloaded": 0, "seconds": 0.0}
    (d / "stats.json").write_text(json.dumps(stats))
    text, _ = _page(str(d))
    assert "Fetching" not in text


def test_errors_and_inspect_helpers(tmp_path, ours):
    assert report.main([str(tmp_path / "nothing")]) == 2
    assert inspect.parse_vocabulary_csv("\ufeffIndex,Name\n0,a\nx,b\n") == {0: "a"}
    assert inspect.parent_dir("gs://b/d/f.tfrecord") == "gs://b/d" and inspect.parent_dir("gs://b") is None
    assert inspect.parent_dir("f.tfrecord") == "." and inspect.parent_dir("/f") == "/"
    assert inspect.dataset_dir(ours["dir"] + "/records/*.tfrecord") == ours["dir"]
    assert len(inspect.expand_paths(ours["dir"])) == 3
    # inspect's output over the same records is unchanged in substance.
    summary = inspect.inspect_records(inspect.expand_paths(ours["dir"]))
    assert summary["records"] == 5 and summary["steps"] == 36 and summary["violations_total"] == 0
    assert summary["labels"] == {"music": 3, "bars & tone": 2, "speech": 1}
    rgb, _ = _dequantized(ours["payloads"])
    np.testing.assert_allclose(summary["rgb"]["per_dim_std"], rgb.std(0), atol=6e-5)


def test_hostile_label_names_are_drawn_as_text(ours, tmp_path):
    """Names come from strangers' vocabularies: "$...$" is not mathtext, control characters do not break XML."""
    d = tmp_path / "ds"
    shutil.copytree(ours["dir"], d)
    (d / "vocabulary.csv").write_text('Index,Name\n0,"$\\frac{1}{$"\n1,bell\x07 <b>x</b>\n2,speech\n')
    text, svgs = _page(str(d))
    labels = {b.get("data-label") for b in _bars(svgs["plot-labels"])}
    assert labels == {"$\\frac{1}{$ (0)", "bell\ufffd <b>x</b> (1)", "speech (2)"}
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text
    tick_texts = {"".join(t.itertext()) for t in svgs["plot-labels"].iter() if t.tag.endswith("}text")}
    assert "$\\frac{1}{$ (0)" in tick_texts


def test_one_name_is_singular_and_a_fetch_only_build_gets_a_clips_report(tmp_path):
    d = tmp_path / "one"
    (d / "records").mkdir(parents=True)
    _write_shard(d / "records" / "all-00000-of-00001.tfrecord", [_clip("a", [0], 3, np.random.default_rng(3))])
    (d / "vocabulary.csv").write_text("Index,Name\n0,cats\n")
    text, _ = _page(str(d), "--out", str(tmp_path / "one.html"))
    assert "1 name<" in text and "1 names" not in text and "(all 1 label)" in text

    fetch_only = tmp_path / "fetch_only"
    fetch_only.mkdir()
    (fetch_only / "failures-00000-of-00001.jsonl").write_text(json.dumps(
        {"id": "x", "input": {}, "row": 2, "stage": "fetch", "reason": "not_found", "message": "gone"}) + "\n")
    (fetch_only / "stats.json").write_text(json.dumps({
        "rows_read": 3, "records_written": 0, "failures": 1, "failures_by_reason": {"not_found": 1},
        "failures_by_stage": {"fetch": 1}, "all_rows_accounted_for": True, "features": "none", "clips_kept": 2,
        "clips_already_kept": 0, "clips_dir": "/clips", "fetch": {"clips_fetched": 2, "bytes_downloaded": 10}}))
    (fetch_only / "vocabulary.csv").write_text("Index,Name\n")
    out = tmp_path / "fo.html"
    assert report.main([str(fetch_only), "--out", str(out)]) == 0
    page = out.read_text()
    assert "Fetch-only build report (kept clips)" in page and "Frame-level dataset report" not in page
    assert "clips kept (fetched now)" in page and "not_found" in page
    for empty_section in ("<h2>Features", "<h2>Steps per clip", "<h2>Labels", "records read"):
        assert empty_section not in page, empty_section
