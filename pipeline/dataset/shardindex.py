"""The id index of a record shard: `DIR/index/NAME.ids` for `DIR/records/NAME.tfrecord`.

The index lives beside records/, not in it, so that records/ holds TFRecord shards only and
any reader that globs `records/*` (YouTube-8M's `--train_data_pattern`, `pipeline.inspect`)
meets nothing else. Datasets written before this layout kept `records/NAME.ids`; resume still
reads those (`check`/`read_ids` look there when `index/` has no entry).

A resumed build (--skip_existing) must know which ids the dataset already holds. Reading every
record to learn its id costs a protobuf parse of ~100 KB per record; the index is a few bytes per
record, written by the shard writer from the same records in the same pass.

Format (ASCII text, one entry per line):

    video-features-ids 1
    <masked CRC-32C of record i's data, 8 hex digits> <record i's id as a JSON string>
    ...
    end <records> <shard bytes> <CRC-32 of every line above, 8 hex digits>

An index is trusted only when it provably belongs to its shard (`check`): its trailer is there
(a truncated index has none) and its own checksum holds (an edited index fails), its record
count and the shard's size match, and record i's data CRC, read from the shard's framing (one
seek per record, no payload read), equals entry i's (an index of another shard, or of the same
shard before a rewrite, fails). Anything else makes the reader fall back to the records
themselves, so a wrong index can neither skip a clip whose record is missing nor re-add one
that is there. Crash order: the shard writer renames the index before the shard, so a shard
never exists without its index; an index whose shard is missing is ignored (and removed with
--overwrite, which clears records/ and index/).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from pipeline.dataset import tfrecord

SUFFIX = ".ids"
MAGIC = b"video-features-ids 1\n"
INDEX_DIR = "index"
_RECORDS_DIR = "records"
_SHARD_SUFFIX = ".tfrecord"


def _base_name(shard_path: str) -> tuple[str, str]:
    """(folder, NAME) of `folder/NAME.tfrecord`; paths use `/` locally and on gs:// alike."""
    folder, _, name = shard_path.rpartition("/")
    if name.endswith(_SHARD_SUFFIX):
        name = name[:-len(_SHARD_SUFFIX)]
    return folder, name


def index_path(shard_path: str) -> str:
    """`DIR/index/NAME.ids` for `DIR/records/NAME.tfrecord` (a shard outside a records/ folder: beside it)."""
    folder, name = _base_name(shard_path)
    parent, sep, last = folder.rpartition("/")
    if last != _RECORDS_DIR:
        return legacy_index_path(shard_path)
    return f"{parent}{sep}{INDEX_DIR}/{name}{SUFFIX}"


def legacy_index_path(shard_path: str) -> str:
    """`records/NAME.ids`: where datasets written before index/ existed keep a shard's index."""
    folder, name = _base_name(shard_path)
    return f"{folder}/{name}{SUFFIX}" if folder else name + SUFFIX


def _find_index(shard_path: str) -> str | None:
    """The index file of `shard_path`: index/ first, then an older dataset's records/NAME.ids."""
    for path in dict.fromkeys((index_path(shard_path), legacy_index_path(shard_path))):
        if _exists(path):
            return path
    return None


def entry(clip_id: str, framed: bytes) -> bytes:
    """The index line of one record, from its id and its framed bytes (`tfrecord.frame`)."""
    crc = struct.unpack("<I", framed[-tfrecord.FOOTER_SIZE:])[0]
    return f"{crc:08x} {json.dumps(clip_id, ensure_ascii=True)}\n".encode("ascii")


class Writer:
    """Accumulates index lines into an open binary file; `close` writes the trailer."""

    def __init__(self, handle: BinaryIO):
        self._handle = handle
        self._crc = zlib.crc32(MAGIC)
        self._count = 0
        handle.write(MAGIC)

    def add(self, clip_id: str, framed: bytes) -> None:
        """Writes the entry of the next record: `framed` is its TFRecord framing as in the shard."""
        line = entry(clip_id, framed)
        self._crc = zlib.crc32(line, self._crc)
        self._count += 1
        self._handle.write(line)

    def close(self, shard_bytes: int) -> None:
        """Writes the trailer that makes the index trusted: record count, the shard's size and the checksum."""
        self._handle.write(f"end {self._count} {shard_bytes} {self._crc:08x}\n".encode("ascii"))


def empty_index() -> bytes:
    """The index of an empty shard."""
    return MAGIC + f"end 0 0 {zlib.crc32(MAGIC):08x}\n".encode("ascii")


def _open(path: str) -> BinaryIO:
    from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=import-outside-toplevel
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _exists(path: str) -> bool:
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    return FileSystems.exists(path)


def check(shard_path: str) -> str | None:
    """None when `shard_path`'s index belongs to it (see the module doc), else why it cannot be used."""
    try:
        path = _find_index(shard_path)
        if path is None:
            return "no index"
        with _open(path) as index, _open(shard_path) as shard:
            lines = iter(_lines(index))
            if next(lines, b"") != MAGIC:
                return "not an index"
            crc, count, position = zlib.crc32(MAGIC), 0, 0
            for line in lines:
                if line.startswith(b"end "):
                    parts = line.split()
                    if len(parts) != 4 or not line.endswith(b"\n"):
                        return "damaged trailer"
                    if next(lines, None) is not None:
                        return "lines after the trailer"
                    if parts[3].decode("ascii", "replace") != f"{crc:08x}":
                        return "index checksum does not match"
                    if int(parts[1]) != count or int(parts[2]) != position:
                        return "record count or shard size does not match"
                    if shard.read(1):
                        return "the shard has more records than the index"
                    return None
                crc = zlib.crc32(line, crc)
                header = shard.read(tfrecord.HEADER_SIZE)
                length = tfrecord.read_header(header) if len(header) == tfrecord.HEADER_SIZE else None
                if length is None:
                    return f"the shard has fewer records than the index, or damaged framing at record {count}"
                shard.seek(length, os.SEEK_CUR)
                footer = shard.read(tfrecord.FOOTER_SIZE)
                if len(footer) < tfrecord.FOOTER_SIZE or line[:8] != f"{struct.unpack('<I', footer)[0]:08x}".encode():
                    return f"record {count}'s checksum does not match its index entry"
                position += tfrecord.HEADER_SIZE + length + tfrecord.FOOTER_SIZE
                count += 1
            return "no trailer (truncated index)"
    except Exception as e:  # pylint: disable=broad-except  (unreadable: the records decide)
        return f"unreadable: {type(e).__name__}: {e}"


def read_ids(shard_path: str) -> Iterator[str]:
    """The ids listed in `shard_path`'s index, in record order; call `check` first."""
    path = _find_index(shard_path)
    if path is None:
        return
    with _open(path) as index:
        for line in _lines(index):
            if line == MAGIC:
                continue
            if line.startswith(b"end "):
                return
            yield json.loads(line[9:])


def _lines(handle: BinaryIO) -> Iterator[bytes]:
    """Lines of a binary stream, read in blocks (Beam's remote readers have no line iteration)."""
    pending = b""
    while True:
        block = handle.read(1 << 20)
        if not block:
            break
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield line + b"\n"
    if pending:
        yield pending
