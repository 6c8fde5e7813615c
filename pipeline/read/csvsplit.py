"""An annotation CSV as parallel splits: byte ranges that start at a row, found by one streaming pass.

The launcher streams the whole CSV once before a build anyway (`pipeline.cli.build.check_input_csv`:
the format, the row count for the progress line, the labels for vocabulary.csv). `scan` is that
pass; it also notes, every `rows_per_split` rows or `bytes_per_split` bytes, where the next row
starts: its byte offset, the number of lines before it, and the format and header. The build
then reads each `CsvSplit` in its own element (`transforms.read.ReadAnnotations`), so 10^7 rows
are parsed by every worker at once instead of by one DoFn streaming the file, and the launcher
keeps only the labels and the split points, whatever the row count.

Split points are csv-aware, not line-based guesses: the scan runs the csv module over exactly the
lines a split reader sees (`ByteLines`), and notes a point only between two rows, so a quoted
field holding newlines never straddles two splits. A reader starting at a split's offset is in the
state the sequential reader was in there (the csv reader starts every row afresh, also after an
unreadable row), and row numbers continue from the split's line count: every row gets the same
`row`, reason and fields as one sequential read of the file gives (tests/unit/read/test_csvsplit.py compares
them for every split size). Compressed inputs (`.gz`, ...) cannot be entered at an offset and are
read as one split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import BinaryIO

from pipeline import elements
from pipeline.read import annotations

DEFAULT_ROWS_PER_SPLIT = 50_000
"""Rows per split: a few seconds of parsing each, so 10^7 rows make ~200 elements to spread."""
DEFAULT_BYTES_PER_SPLIT = 64 << 20
"""A split also ends after this many bytes, so CSVs of long rows still split."""
_CHUNK = 1 << 20
_BOM = b"\xef\xbb\xbf"


@dataclasses.dataclass(frozen=True)
class CsvSplit:
    """One range of rows of an annotation CSV.

    Attributes:
      path: the CSV (local or any Beam filesystem).
      start: byte offset of the range's first line; 0 is the file's start, where the format is
        detected from the first row and a UTF-8 byte order mark is skipped.
      end: byte offset after the range's last row, or None for the end of the file.
      first_line: lines before `start`; row numbers (1-based line numbers) continue from it.
      format: the CSV's format (None for the split at 0, which detects it).
      header: the CSV's header cells (None for headerless yt8m rows and for the split at 0).
    """

    path: str
    start: int = 0
    end: int | None = None
    first_line: int = 0
    format: str | None = None
    header: tuple[str, ...] | None = None


@dataclasses.dataclass
class CsvScan:
    """What the launcher's pass over a CSV learned: all it keeps is the labels and the split points."""

    format: str | None
    rows: int
    labels: set[str]
    splits: list[CsvSplit]


def _chunks(raw: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
    if start:
        raw.seek(start)
    pos = start
    while end is None or pos < end:
        data = raw.read(_CHUNK if end is None else min(_CHUNK, end - pos))
        if not data:
            return
        pos += len(data)
        yield data


def _byte_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    r"""Lines ending in `\n`, `\r\n` or a bare `\r` (as io.TextIOWrapper(newline="") splits them), ends kept."""
    pending: list[bytes] = []  # pieces of a line that runs past the end of a chunk
    for data in chunks:
        lines = data.splitlines(keepends=True)
        first = 0
        if pending:
            head = lines[0]
            if pending[-1].endswith(b"\r"):  # it ended the line, unless this chunk starts with its `\n`
                if head == b"\n":
                    pending.append(head)
                    first = 1
                yield b"".join(pending)
                pending = []
            else:
                pending.append(head)
                first = 1
                if head.endswith(b"\n") or (head.endswith(b"\r") and len(lines) > 1):
                    yield b"".join(pending)
                    pending = []
        if first < len(lines):
            last = lines[-1]
            yield from lines[first:-1]
            if last.endswith(b"\n"):
                yield last
            else:  # no end yet, or a `\r` whose `\n` may open the next chunk
                pending = [last]
    if pending:
        yield b"".join(pending)


class ByteLines:
    """Text lines of a binary stream for `csv.reader`, counting the bytes and lines handed out.

    Decodes as `annotations.open_text` does (UTF-8, a leading byte order mark dropped,
    undecodable bytes kept as surrogates so that only their row fails), line by line: a line
    break is one ASCII byte, never part of a multi-byte character. After the csv reader returns a
    row, `offset` is the byte offset where the next row starts and `count` the lines before it.
    """

    def __init__(self, raw: BinaryIO, *, start: int = 0, end: int | None = None):
        self.offset = start
        self.count = 0
        self._lines = _byte_lines(_chunks(raw, start, end))
        self._at_start = start == 0

    def __iter__(self) -> ByteLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.offset += len(line)
        self.count += 1
        if self._at_start:
            self._at_start = False
            if line.startswith(_BOM):
                line = line[len(_BOM):]
        return line.decode("utf-8", "surrogateescape")


def _splittable(path: str) -> bool:
    from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=import-outside-toplevel

    return CompressionTypes.detect_compression_type(path) == CompressionTypes.UNCOMPRESSED


def _open(path: str) -> BinaryIO:
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    return FileSystems.open(path)  # AUTO: a .gz CSV is read decompressed, as before splits existed


def scan(path: str, *, rows_per_split: int = DEFAULT_ROWS_PER_SPLIT,
         bytes_per_split: int = DEFAULT_BYTES_PER_SPLIT) -> CsvScan:
    """Streams the CSV once: format, data rows, labels of the rows that parse, and the split points.

    Memory holds the label set and one small `CsvSplit` per `rows_per_split` rows, nothing per row.

    Raises:
      annotations.UnknownFormatError: the first row fits no format (a problem of the whole file).
      OSError and Beam's I/O errors: the file cannot be read.
    """
    splittable = _splittable(path)
    splits: list[CsvSplit] = []
    fmt, rows, labels = None, 0, set()
    def needs_parse(parser: annotations.RowParser, cells: list[str]) -> bool:
        # A row whose label tokens are all known cannot add to the labels, whether it parses or not:
        # only the few rows that bring a new label are parsed in full (the labels stay exact).
        tokens = parser.label_tokens(cells)
        return tokens is None or not all(t in labels for t in tokens)

    with _open(path) as raw:
        lines = ByteLines(raw)
        reader = annotations.RowReader(lines, needs_parse=needs_parse)
        start, first_line, in_split = 0, 0, 0
        for row_format, parsed in reader:
            fmt = row_format
            rows += 1
            in_split += 1
            if isinstance(parsed, elements.ClipRequest):
                labels.update(parsed.labels)
            if splittable and (in_split >= rows_per_split or lines.offset - start >= bytes_per_split):
                splits.append(_split(path, start, lines.offset, first_line, reader.parser))
                start, first_line, in_split = lines.offset, lines.count, 0
        if in_split or not splits:
            splits.append(_split(path, start, None, first_line, reader.parser))
        else:  # the last point fell on the last row: the last split reads to the end (rows appended since)
            last = splits.pop()
            splits.append(dataclasses.replace(last, end=None))
    return CsvScan(format=fmt, rows=rows, labels=labels, splits=splits)


def _split(path: str, start: int, end: int | None, first_line: int, parser: annotations.RowParser) -> CsvSplit:
    if start == 0:
        return CsvSplit(path=path, start=0, end=end)
    return CsvSplit(path=path, start=start, end=end, first_line=first_line, format=parser.format,
                    header=tuple(parser.header) if parser.header is not None else None)


def whole_file(path: str) -> list[CsvSplit]:
    """One split reading all of `path`: for pipelines built without the launcher's scan (dry runs, tests)."""
    return [CsvSplit(path=path)]


def read_split(split: CsvSplit) -> Iterator[tuple[str, elements.ClipRequest | annotations.RowError]]:
    """Yields (format, ClipRequest | RowError) for every data row of one split, as `annotations.read_rows` does.

    Raises:
      annotations.UnknownFormatError: only from the split at 0, when the first row fits no format.
    """
    parser = None
    if split.format is not None:
        parser = annotations.RowParser(split.format, list(split.header) if split.header is not None else None)
    with _open(split.path) as raw:
        lines = ByteLines(raw, start=split.start, end=split.end)
        yield from annotations.RowReader(lines, parser=parser, first_line=split.first_line)
