"""The typed elements that cross the stages: the failure line's one constructor and the figures' meaning."""

import json

from pipeline import elements
from transforms.write import failure_line

SECRET_URL = "https://user:hunter2@example.com/v.mp4?X-Goog-Signature=abc123&token=t0k3n"


def test_a_failure_is_redacted_when_made_and_written_with_the_report_s_keys():
    failure = elements.Failure.of(clip_id=SECRET_URL, fields={"video": SECRET_URL, "labels": "a"}, row=4,
                                  stage="fetch", reason="not_found", message=f"HTTP 404 for {SECRET_URL}")
    line = json.loads(failure_line(failure))
    assert sorted(line) == ["id", "input", "message", "reason", "row", "stage"]
    text = json.dumps(line)
    assert "hunter2" not in text and "abc123" not in text and "t0k3n" not in text
    assert (line["row"], line["stage"], line["reason"], line["input"]["labels"]) == (4, "fetch", "not_found", "a")
    carried = json.loads(failure_line(failure.carried()))
    assert carried == {**line, "carried_over": True} and not failure.carried_over


def test_fetch_figures_say_where_a_record_came_from():
    assert [elements.clip_source(elements.FetchFigures(m)) for m in ("section", "full", "mirror", "kept", "trim")] \
        == ["fetched", "fetched", "mirror", "kept", "file"]
    assert elements.clip_source(None) == "file"
    assert elements.FetchFigures("full").from_youtube and not elements.FetchFigures("mirror").from_youtube
    assert elements.KeptClip("a", "/c/a.mp4", elements.KEPT).reused
    assert not elements.KeptClip("a", "/c/a.mp4", elements.FetchFigures("copy")).reused


def test_a_row_s_section_duration():
    def row(start, end):
        return elements.ClipRequest(clip_id="a", source="youtube", video="abcdefghijk", start=start, end=end,
                                    labels=(), split="all", row=2, fields={})

    assert row(2.0, 7.5).section_duration == 5.5
    assert row(None, 3.0).section_duration == 3.0
    assert row(2.0, None).section_duration is None
