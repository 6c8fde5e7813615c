"""The typed elements that cross the pipeline's stages: one dataclass per boundary.

    ReadAnnotations --ClipRequest--> FetchClips --FetchedClip--> DecodeClips
    DecodeClips --ClipMeta (+ per-step model inputs keyed (clip_id, k))--> features --> AssembleRecords
    AssembleRecords --BuiltRecord--> WriteDataset
    FetchClips (fetch-only builds) --KeptClip--> WriteDataset
    every stage --Failure--> WriteDataset (the failure report)

`FetchFigures` is what a fetch cost, carried by the fetched clip to its record and to stats.json.
All of them are frozen and picklable: they travel between Beam workers.
"""

from __future__ import annotations

import dataclasses

from pipeline.net.redact import redact

# FetchFigures.method values, and the clips_by_source entry of stats.json each counts under.
YOUTUBE_METHODS = ("section", "full")
_SOURCES = {"section": "fetched", "full": "fetched", "mirror": "mirror", "kept": "kept"}


@dataclasses.dataclass(frozen=True)
class ClipRequest:
    """One clip to build a record for: one data row of the annotation CSV.

    Attributes:
      clip_id: the record's `id`; unique in a dataset.
      source: "file" (a local path, gs:// path or http(s) URL in `video`) or "youtube"
        (`video` is a YouTube id, fetched with yt-dlp).
      video: path, URL or YouTube id.
      start: section start in seconds, or None for the start of the video.
      end: section end in seconds, or None for the end of the video (capped at 300 steps).
      labels: label tokens as written in the CSV (names, or integers in text form).
      split: output split name (`all` when the CSV has none).
      row: 1-based line number in the CSV, for the failure report.
      fields: the row as read, for the failure report.
    """

    clip_id: str
    source: str
    video: str
    start: float | None
    end: float | None
    labels: tuple[str, ...]
    split: str
    row: int
    fields: dict

    @property
    def section_duration(self) -> float | None:
        """end - start of the row's section, or None when it runs to the end of the video."""
        return (self.end - (self.start or 0.0)) if self.end is not None else None


@dataclasses.dataclass(frozen=True)
class FetchFigures:
    """What getting one clip cost.

    Attributes:
      method: ``section`` or ``full`` (from YouTube: only [start, end], or the whole video),
        ``mirror`` (a --clip_sources template), ``kept`` (found in --clips_dir), ``copy`` or
        ``trim`` (a videos-CSV row kept by a fetch-only build).
      bytes: bytes downloaded (or read from the mirror).
      seconds: wall time, retries and waits included.
      attempts: yt-dlp attempts, the successful one included (0: none was needed).
      mirror: the index of the --clip_sources template the clip came from.
    """

    method: str
    bytes: int = 0
    seconds: float = 0.0
    attempts: int = 0
    mirror: int | None = None

    @property
    def from_youtube(self) -> bool:
        """True when the clip was fetched from the site (a section or the whole video)."""
        return self.method in YOUTUBE_METHODS


KEPT = FetchFigures("kept")
"""The figures of a clip found in --clips_dir: nothing fetched."""


def clip_source(fetch: FetchFigures | None) -> str:
    """Where a record's clip came from, for stats.json's clips_by_source: mirror, fetched (YouTube),
    kept (--clips_dir) or file (a videos-CSV row, never fetched)."""
    return _SOURCES.get(fetch.method, "file") if fetch is not None else "file"


@dataclasses.dataclass(frozen=True)
class FetchedClip:
    """What crosses the fusion break between FetchClips and DecodeClips.

    Attributes:
      clip: the row.
      data: the fetched media file's bytes (YouTube rows without --clips_dir), else None.
      path: the kept clip (--clips_dir, local or gs://), else None.
      suffix: file name extension of the fetched media (`.mp4`, `.webm`), for the decoder's temp file.
      start: seconds from the beginning of the media to the clip's start (the decoder seeks there).
      duration: seconds of the clip, or None for the rest of the media.
      fetch: what the fetch cost, None for rows not fetched here.
      header: the media's header as the fetcher probed it (a `pipeline.decode.probe.ProbeResult`),
        when the media is that very file; DecodeClips checks it instead of probing again.
    """

    clip: ClipRequest
    data: bytes | None = None
    path: str | None = None
    suffix: str = ".mp4"
    start: float = 0.0
    duration: float | None = None
    fetch: FetchFigures | None = None
    header: object | None = None

    @property
    def fetched(self) -> bool:
        """True when this stage fetched (or found kept) the media; False for rows passed through."""
        return self.data is not None or self.path is not None


@dataclasses.dataclass(frozen=True)
class KeptClip:
    """A fetch-only build's output for one row: the clip now in --clips_dir."""

    clip_id: str
    path: str
    fetch: FetchFigures

    @property
    def reused(self) -> bool:
        """True when the clip was already there (nothing fetched or written)."""
        return self.fetch.method == "kept"


@dataclasses.dataclass(frozen=True)
class ClipMeta:
    """A decoded clip's summary, joined with its steps' features by clip id.

    Attributes:
      clip: the row.
      num_steps: T, the steps docs/spec.md §2 selects (every feature list has T rows).
      duration: seconds of video decoded.
      silent_audio: True when the clip has no audio stream (its audio is digital silence).
      audio: the --audio mode (``vggish`` or ``zeros``: the record gets zero audio bytes).
      fetch: what getting the clip cost, None for a row never fetched.
    """

    clip: ClipRequest
    num_steps: int
    duration: float
    silent_audio: bool
    audio: str = "vggish"
    fetch: FetchFigures | None = None


@dataclasses.dataclass(frozen=True)
class BuiltRecord:
    """One serialized SequenceExample and the figures stats.json sums over records."""

    split: str
    clip_id: str
    record: bytes
    steps: int
    seconds: float
    silent_audio: bool = False
    source: str = "file"
    label: str = ""
    fetch: FetchFigures | None = None


@dataclasses.dataclass(frozen=True)
class Failure:
    """One line of the failure report: an input row that produced no record, and why.

    Make one with `Failure.of`, which redacts credentials; `to_json` is the line's object.
    """

    clip_id: str
    input: dict
    row: int | None
    stage: str
    reason: str
    message: str
    carried_over: bool = False

    @classmethod
    def of(cls, *, clip_id: str, fields: dict, row: int | None, stage: str, reason: str, message: str) -> Failure:
        """The failure of one row. Credentials in URLs (userinfo, signed-URL signatures, tokens) are
        redacted from all of it (`pipeline.net.redact`): the report is read by people the row's
        credentials were not meant for."""
        return cls(clip_id=redact(clip_id), input=redact(fields), row=row, stage=stage, reason=reason,
                   message=redact(message))

    def carried(self) -> Failure:
        """This failure, carried into a resumed build's report without a new attempt."""
        return dataclasses.replace(self, carried_over=True)

    def to_json(self) -> dict:
        """The report line's object (docs/output-format.md)."""
        line = {"id": self.clip_id, "input": self.input, "row": self.row, "stage": self.stage,
                "reason": self.reason, "message": self.message}
        if self.carried_over:
            line["carried_over"] = True
        return line
