"""Annotation CSVs: the formats, detected from the first line, and one row at a time parsing.

Formats:
  * `yt8m`: the YouTube-8M feature extractor's headerless `video_file,labels` (labels are
    integers joined by `;`).
  * `videos`: a headered CSV with columns `video,labels` and optional `id,start,end,split`
    (labels are names or integers joined by `;`; `start`/`end` in seconds cut a section).
  * `kinetics`: Kinetics annotation files (docs/spec.md §6), parsed by header name:
    `label,youtube_id,time_start,time_end,split[,is_cc]`, the unlabeled test variant
    `youtube_id,time_start,time_end,split`, and the older
    `YouTube Identifier,Start time,End time,Class label`.

Every data row ends as either a `ClipRequest` or a `RowError` with a stable reason, so that
rows read = records written + failure lines holds downstream.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from pipeline.elements import ClipRequest
from pipeline.net.redact import redact

YOUTUBE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")
# A split name becomes part of a shard file name: one path component, no dot names, no separators.
SPLIT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
# Label indices are int64 in the record (docs/spec.md §1); a larger integer label would fail the whole run there.
MAX_LABEL = 2**63 - 1

FORMAT_YT8M = "yt8m"
FORMAT_VIDEOS = "videos"
FORMAT_KINETICS = "kinetics"

# Header spellings of the Kinetics releases, mapped onto one vocabulary.
_KINETICS_COLUMNS = {
    "label": "label",
    "class label": "label",
    "youtube_id": "youtube_id",
    "youtube identifier": "youtube_id",
    "time_start": "start",
    "start time": "start",
    "time_end": "end",
    "end time": "end",
    "split": "split",
    "is_cc": "is_cc",
}


@dataclasses.dataclass(frozen=True)
class RowError:
    """A CSV row that cannot become a clip."""

    reason: str
    message: str
    row: int
    fields: dict
    clip_id: str = ""


class UnknownFormatError(ValueError):
    """The first line matches none of the supported CSV formats."""


_VIDEOS_COLUMNS = ("video", "labels", "id", "start", "end", "split")
# Column names people use for the videos format's columns (other datasets' spellings); a header
# using one would otherwise build silently without labels, or be read as a headerless data row.
_VIDEOS_SYNONYMS = {
    "label": "labels", "category": "labels", "categories": "labels", "class": "labels", "classes": "labels",
    "tag": "labels", "tags": "labels", "class_name": "labels", "label_name": "labels",
    "filename": "video", "file_name": "video", "file": "video", "path": "video", "video_file": "video",
    "video_path": "video", "url": "video", "video_url": "video", "videos": "video",
    "video_id": "id", "clip_id": "id", "ids": "id",
    "start_time": "start", "time_start": "start", "begin": "start", "end_time": "end", "time_end": "end",
    "stop": "end", "subset": "split", "splits": "split",
}
_KINETICS_SYNONYMS = {"labels": "label", "class": "label", "category": "label", "start": "time_start",
                      "end": "time_end", "youtube id": "youtube_id", "youtubeid": "youtube_id", "id": "youtube_id",
                      "video_id": "youtube_id", "subset": "split"}
_HEADER_WORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9 _-]*$")
_VIDEOS_HELP = "a videos CSV's header is video,labels[,id,start,end,split]"
_KINETICS_HELP = "a Kinetics header is label,youtube_id,time_start,time_end,split[,is_cc]"


def _renames(cells: list[str], known: Iterable[str], synonyms: dict[str, str]) -> list[str]:
    """`` `x` -> `y` `` for each header cell that is not a known column but looks like a misspelled one."""
    import difflib  # pylint: disable=import-outside-toplevel

    known = list(known)
    fixes = []
    for cell in cells:
        name = cell.strip().lower()
        if not name or name in known:
            continue
        target = synonyms.get(name) or next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.75)), None)
        if target is not None:
            fixes.append(f"`{cell.strip()}` -> `{target}`")
    return fixes


def _header_error(first_row: list[str], fixes: list[str], help_text: str) -> UnknownFormatError:
    return UnknownFormatError(f"header {','.join(c.strip() for c in first_row)!r} has misspelled column(s): rename "
                              f"{', '.join(fixes)} ({help_text}); nothing was built")


def detect_format(first_row: list[str]) -> str:
    """Decides the CSV format from its first row (a header, or the first data row).

    Raises UnknownFormatError, naming the fix, where a header would otherwise be misread: a known
    column misspelled (`label` for `labels`), a header of other names read as a headerless data row
    (`filename,category`), or a file separated by something other than commas.
    """
    names = {cell.strip().lower() for cell in first_row}
    if len(first_row) == 1:
        for sep, what in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'")):
            if sep in first_row[0]:
                raise UnknownFormatError(
                    f"the first line {first_row[0][:100]!r} is one column with {what} in it: the CSV must be "
                    "comma-separated (e.g. video,labels; several labels in one cell are joined by ';')")
    if "video" in names:
        fixes = _renames(first_row, _VIDEOS_COLUMNS, _VIDEOS_SYNONYMS)
        if fixes:
            raise _header_error(first_row, fixes, _VIDEOS_HELP)
        return FORMAT_VIDEOS
    if names & {"youtube_id", "youtube identifier"}:
        fixes = _renames(first_row, _KINETICS_COLUMNS, _KINETICS_SYNONYMS)
        if fixes:
            raise _header_error(first_row, fixes, _KINETICS_HELP)
        return FORMAT_KINETICS
    fixes = _renames(first_row, _VIDEOS_COLUMNS, _VIDEOS_SYNONYMS)
    header_like = len(first_row) >= 2 and all(_HEADER_WORD_RE.match(c.strip()) for c in first_row)
    if header_like and fixes:
        raise _header_error(first_row, fixes, _VIDEOS_HELP + "; headerless rows are video_file,labels with "
                                                           "integer labels")
    if len(first_row) >= 1 and first_row[0].strip() and not names & {"labels", "label", "id"}:
        if header_like and not re.fullmatch(r"[\d;\s]*", first_row[1]):
            raise UnknownFormatError(
                f"the first line {','.join(first_row)!r} looks like a header, but it has no `video` column "
                f"({_VIDEOS_HELP}; headerless rows are video_file,labels with integer labels)")
        return FORMAT_YT8M
    raise UnknownFormatError(
        f"cannot tell the CSV format from its first line {first_row!r}: expected a header with a `video` "
        "column (video,labels[,id,start,end,split]), a Kinetics header (label,youtube_id,time_start,time_end,split), "
        "or headerless `video_file,labels` rows" + (f"; rename {', '.join(fixes)}" if fixes else ""))


def _parse_seconds(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise _RowProblem("bad_time", f"{what} {text!r} is not a number of seconds") from e
    if not math.isfinite(value) or value < 0:
        raise _RowProblem("bad_time", f"{what} {text!r} must be a finite number >= 0")
    return value


class _RowProblem(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def _split_labels(text: str) -> tuple[str, ...]:
    labels = tuple(token.strip() for token in text.split(";") if token.strip())
    for token in labels:
        if token.isdigit() and int(token) > MAX_LABEL:
            raise _RowProblem("bad_label", f"integer label {_short(token)} is larger than 2^63-1, the largest "
                                           "label index a record can hold")
    return labels


def _check_split(split: str) -> str:
    if not SPLIT_RE.match(split):
        raise _RowProblem("bad_split", f"split {_short(split)} is not a safe file name part (letters, digits, "
                                       "'_', '.', '-'; not starting with '.' or '-'; at most 100 characters)")
    return split


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _format_seconds(value: float) -> str:
    return f"{int(value):06d}" if float(value).is_integer() else f"{value:010.3f}"


def section_id(base: str, start: float | None, end: float | None) -> str:
    """`{base}_{start:06d}_{end:06d}`, the Kinetics clip id convention (fractions keep 3 decimals)."""
    if start is None and end is None:
        return base
    return f"{base}_{_format_seconds(start or 0.0)}_{_format_seconds(end) if end is not None else 'end'}"


def _check_range(start: float | None, end: float | None) -> None:
    if start is not None and end is not None and start >= end:
        raise _RowProblem("bad_time_range", f"start {start:g} must be before end {end:g}")


class RowParser:
    """Turns the data rows of one CSV into ClipRequests or RowErrors."""

    def __init__(self, fmt: str, header: list[str] | None):
        self.format = fmt
        self.header = [h.strip() for h in header] if header is not None else None
        if fmt == FORMAT_KINETICS:
            self._columns = [_KINETICS_COLUMNS.get(h.lower(), h.lower()) for h in self.header]
            if "youtube_id" not in self._columns or "start" not in self._columns or "end" not in self._columns:
                raise UnknownFormatError(f"Kinetics header {header!r} lacks youtube_id, time_start or time_end")
        elif fmt == FORMAT_VIDEOS:
            self._columns = [h.lower() for h in self.header]
        if fmt == FORMAT_YT8M:
            self._label_column, self._width = 1, 2
        else:
            name = "label" if fmt == FORMAT_KINETICS else "labels"
            # The last column of that name, as the row parsers' dicts keep it.
            self._label_column = (len(self._columns) - 1 - self._columns[::-1].index(name)
                                  if name in self._columns else None)
            self._width = len(self._columns)

    def label_tokens(self, cells: list[str]) -> list[str] | None:
        """The row's label tokens as written (not checked), or None when it has the wrong number of columns.

        The launcher's pass over a CSV of 10^7 rows uses it to parse in full only the rows that could
        bring a label it has not seen yet (`pipeline.read.csvsplit.scan`).
        """
        if len(cells) != self._width:
            return None
        if self._label_column is None:
            return []
        return [t.strip() for t in cells[self._label_column].split(";") if t.strip()]

    def fields(self, cells: list[str]) -> dict:
        """The row's cells by header name (`video,labels` for headerless rows), extra cells under `_extra`.

        This is what a failure line shows of the row, so a hostile row's cells are capped.
        """
        if self.header is None:
            names = ["video", "labels"]
        else:
            names = self.header
        out = {name: value for name, value in zip(names, cells, strict=False)}
        if len(cells) > len(names):
            extra = cells[len(names):]
            # A hostile row may have 10^5 cells: the failure line keeps the first ones and a count.
            out["_extra"] = extra if len(extra) <= 20 else extra[:20] + [f"... {len(extra) - 20} more cells"]
        return out

    def parse(self, cells: list[str], row: int) -> ClipRequest | RowError:
        """One data row (1-based `row` in the CSV) as a ClipRequest, or a RowError with a stable reason."""
        fields = self.fields(cells)
        try:
            if self.format == FORMAT_YT8M:
                return self._parse_yt8m(cells, row, fields)
            if self.format == FORMAT_VIDEOS:
                return self._parse_videos(cells, row, fields)
            return self._parse_kinetics(cells, row, fields)
        except _RowProblem as p:
            return RowError(reason=p.reason, message=p.message, row=row, fields=fields,
                            clip_id=_best_effort_id(self.format, fields))

    def _expect_columns(self, cells: list[str], expected: int) -> None:
        if len(cells) != expected:
            raise _RowProblem("malformed_row", f"expected {expected} columns, found {len(cells)}")

    def _parse_yt8m(self, cells: list[str], row: int, fields: dict) -> ClipRequest:
        self._expect_columns(cells, 2)
        video, label_text = cells[0].strip(), cells[1]
        if not video:
            raise _RowProblem("malformed_row", "empty video_file")
        labels = _split_labels(label_text)
        for token in labels:
            if not re.fullmatch(r"\d+", token):
                raise _RowProblem("bad_label", f"label {token!r} is not a non-negative integer "
                                               "(headerless video_file,labels rows take integer labels joined by ';')")
        return ClipRequest(clip_id=redact(video), source="file", video=video, start=None, end=None,
                           labels=tuple(str(int(t)) for t in labels), split="all", row=row, fields=fields)

    def _parse_videos(self, cells: list[str], row: int, fields: dict) -> ClipRequest:
        self._expect_columns(cells, len(self._columns))
        values = {name: cell.strip() for name, cell in zip(self._columns, cells, strict=False)}
        video = values.get("video", "")
        if not video:
            raise _RowProblem("malformed_row", "empty video")
        start = _parse_seconds(values["start"], "start") if values.get("start") else None
        end = _parse_seconds(values["end"], "end") if values.get("end") else None
        _check_range(start, end)
        # No credentials of a URL in ids (redacted before the section suffix, which stays readable).
        clip_id = redact(values["id"]) if values.get("id") else section_id(redact(video), start, end)
        return ClipRequest(clip_id=clip_id, source="file", video=video, start=start, end=end,
                           labels=_split_labels(values.get("labels", "")),
                           split=_check_split(values.get("split") or "all"), row=row, fields=fields)

    def _parse_kinetics(self, cells: list[str], row: int, fields: dict) -> ClipRequest:
        self._expect_columns(cells, len(self._columns))
        values = {name: cell.strip() for name, cell in zip(self._columns, cells, strict=False)}
        youtube_id = values["youtube_id"]
        if not YOUTUBE_ID_RE.match(youtube_id):
            raise _RowProblem("invalid_id", f"YouTube id {youtube_id!r} is not 11 characters of [A-Za-z0-9_-]")
        start = _parse_seconds(values["start"], "time_start")
        end = _parse_seconds(values["end"], "time_end")
        _check_range(start, end)
        label = values.get("label", "")
        split = _check_split(values.get("split") or "all")
        return ClipRequest(clip_id=section_id(youtube_id, start, end), source="youtube", video=youtube_id,
                           start=start, end=end, labels=(label,) if label else (), split=split, row=row,
                           fields=fields)


def _best_effort_id(fmt: str, fields: dict) -> str:
    if fmt == FORMAT_KINETICS:
        return str(fields.get("youtube_id") or fields.get("YouTube Identifier") or "")
    return str(fields.get("id") or fields.get("video") or "")


def open_text(raw: BinaryIO) -> io.TextIOWrapper:
    """A binary CSV stream as text. Undecodable bytes survive as surrogates so that only their row fails."""
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")


def printable(value: Any) -> Any:
    """`value` (str, list or dict of them) with undecodable bytes shown as U+FFFD, safe to write as UTF-8 JSON."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, list):
        return [printable(v) for v in value]
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    return value


def _has_undecodable(cells: list[str]) -> bool:
    return any(_SURROGATE_RE.search(c) for c in cells)


_SURROGATE_RE = re.compile("[\udc80-\udcff]")


def read_rows(lines: Iterable[str], *, parser: RowParser | None = None,
              first_line: int = 0) -> Iterator[tuple[str, ClipRequest | RowError]]:
    """Parses CSV text lines. Yields (format, ClipRequest | RowError) per data row.

    Blank lines are skipped (they are not rows). Raises UnknownFormatError when the first
    line fits no format: that is a usage error for the whole file, not a row failure. Every
    other problem belongs to one row and becomes its RowError: a field over the csv module's
    limit (128 KiB), bytes that are not UTF-8 (read through `open_text`), or an unexpected
    error of the parser itself (`internal_error`), so that one hostile line never stops a run.

    `parser` and `first_line` continue a file from a row in its middle (`pipeline.read.csvsplit`):
    the format and header are known, and row numbers count the lines before.
    """
    return iter(RowReader(lines, parser=parser, first_line=first_line))


class RowReader:
    """`read_rows` as an object whose `parser` (format and header) can be read once the first row is in."""

    def __init__(self, lines: Iterable[str], *, parser: RowParser | None = None, first_line: int = 0,
                 needs_parse: Callable[[RowParser, list[str]], bool] | None = None):
        """`needs_parse(parser, cells)` False: the row is counted but not parsed, it comes out as None."""
        self._lines = lines
        self.parser = parser
        self._first_line = first_line
        self._needs_parse = needs_parse

    def __iter__(self) -> Iterator[tuple[str, ClipRequest | RowError]]:
        reader = csv.reader(self._lines)
        first_line = self._first_line
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                # The reader resynchronizes at the next line; the offending record is one row.
                row_number = first_line + reader.line_num
                if self.parser is None:
                    raise UnknownFormatError(f"cannot read the CSV's first line: {e}") from e
                yield self.parser.format, RowError(reason="malformed_row", message=f"unreadable CSV row: {e}",
                                                   row=row_number, fields={})
                continue
            row_number = first_line + reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            parser = self.parser
            if parser is None:
                if _has_undecodable(cells):
                    raise UnknownFormatError(f"the CSV's first line is not UTF-8 text: {printable(cells)!r}")
                fmt = detect_format(cells)
                if fmt == FORMAT_YT8M:
                    parser = self.parser = RowParser(fmt, None)
                else:
                    self.parser = RowParser(fmt, cells)
                    continue
            if self._needs_parse is not None and not self._needs_parse(parser, cells):
                yield parser.format, None
                continue
            yield parser.format, _parse_cells(parser, cells, row_number)


def _parse_cells(parser: RowParser, cells: list[str], row_number: int) -> ClipRequest | RowError:
    text = "".join(cells)  # one scan of the row for both checks: a CSV may have 10^7 rows
    if "\x00" in text:  # no path, URL or label holds one; subprocess args cannot
        fields = {k: (v.replace("\x00", "\\x00") if isinstance(v, str) else v)
                  for k, v in printable(parser.fields(cells)).items()}
        return RowError(reason="malformed_row", message="row contains a NUL character", row=row_number,
                        fields=fields, clip_id=_best_effort_id(parser.format, fields))
    if not text.isascii() and _SURROGATE_RE.search(text):
        fields = printable(parser.fields(cells))
        return RowError(reason="malformed_row", message="row is not UTF-8 text", row=row_number,
                        fields=fields, clip_id=_best_effort_id(parser.format, fields))
    try:
        return parser.parse(cells, row_number)
    except Exception as e:  # pylint: disable=broad-except
        return RowError(reason="internal_error", message=f"{type(e).__name__}: {e}", row=row_number,
                        fields=printable(parser.fields(cells)))


def resolve_video_path(video: str, base_dir: str) -> str:
    """Relative paths in a CSV are relative to the CSV's own directory (so a dataset folder can move)."""
    if "://" in video or os.path.isabs(video):
        return video
    if "://" in base_dir:
        return posixpath.join(base_dir, video)
    return os.path.join(base_dir, video)
