"""Bounded work per clip: the fetch-only re-encode has the decoder's frame-size caps and timeout."""

from __future__ import annotations

import json

import pytest

from pipeline import annotations as A
from pipeline import build
from pipeline.errors import ClipError
from transforms.fetch import ClipFetcher, TrimLimits
from transforms.fetch_stage import keep_video_row


def _row(video, *, start=1.0, end=2.0):
    return A.ClipRequest(clip_id="c", source="file", video=video, start=start, end=end, labels=("a",), split="all",
                         row=2, fields={})


@pytest.mark.parametrize("limits, reason", [
    (TrimLimits(max_frame_side=64), "too_large"),
    (TrimLimits(max_frame_pixels=64 * 64), "too_large"),
    (TrimLimits(timeout_s=0.001), "timeout"),
])
def test_fetch_only_re_encode_has_the_decoders_bounds(tmp_path, videos, limits, reason):
    fetcher = ClipFetcher(config=None, trim_limits=limits)
    with pytest.raises(ClipError) as e:
        keep_video_row(_row(videos["v3_30fps"]), str(tmp_path / "kept.mp4"), str(tmp_path), base_dir=".",
                       fetcher=fetcher)
    assert (e.value.reason, e.value.stage) == (reason, "fetch")
    assert not (tmp_path / "kept.mp4").exists()


def test_fetch_only_build_applies_max_frame_side(tmp_path, videos):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"video,labels,id,start,end\n{videos['v3_30fps']},a,cut,1,2\n")
    out, clips = tmp_path / "out", tmp_path / "clips"
    assert build.main(["--input_csv", str(csv_path), "--output_dir", str(out), "--features", "none",
                       "--clips_dir", str(clips), "--max_frame_side", "64"]) == 0
    stats = json.load(open(out / "stats.json"))
    assert (stats["clips_kept"], stats["failures_by_reason"]) == (0, {"too_large": 1})
