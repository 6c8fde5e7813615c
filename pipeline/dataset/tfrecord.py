"""TFRecord framing, written and checked with public APIs only.

A TFRecord file is a sequence of records, each framed as (TensorFlow's documented format,
https://www.tensorflow.org/tutorials/load_data/tfrecord#tfrecords_format_details):

    uint64 length (little-endian)
    uint32 masked_crc32c(length bytes)
    byte   data[length]
    uint32 masked_crc32c(data)

``tf.io.TFRecordWriter`` writes this but only to paths TensorFlow's own filesystems open, and
Beam's ``WriteToTFRecord`` cannot name shards by split and id; the shard writer writes to Beam's
FileSystems, so it frames records itself with the functions here. CRC-32C comes from
``google_crc32c`` (a dependency of apache-beam[gcp], with a C implementation).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c

HEADER_SIZE = 12
"""Bytes before a record's data: the length (8) and its masked CRC (4)."""
FOOTER_SIZE = 4
"""Bytes after a record's data: its masked CRC."""

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """The CRC-32C of ``data``, rotated right by 15 bits plus a constant, as TFRecord stores it.

    Masking keeps a CRC of data that itself holds CRCs from being weak (TensorFlow's
    ``crc32c::Mask``).

    Args:
        data: Bytes to checksum.

    Returns:
        The masked CRC as an unsigned 32-bit integer.
    """
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(payload: bytes) -> bytes:
    """One record in TFRecord framing: length, its masked CRC, the payload, the payload's masked CRC.

    Args:
        payload: The serialized record (e.g. a tf.train.SequenceExample).

    Returns:
        ``len(payload) + 16`` bytes, identical to what ``tf.io.TFRecordWriter`` writes for it.
    """
    length = struct.pack("<Q", len(payload))
    return b"".join((length, struct.pack("<I", masked_crc32c(length)), payload,
                     struct.pack("<I", masked_crc32c(payload))))


def write_record(handle: BinaryIO, payload: bytes) -> None:
    """Appends one framed record to an open binary file (any file object Beam's FileSystems gives).

    Args:
        handle: File opened for writing bytes.
        payload: The serialized record.
    """
    handle.write(frame(payload))


def read_header(header: bytes) -> int | None:
    """The data length a record header announces, or None when its length CRC does not match.

    Args:
        header: The first ``HEADER_SIZE`` bytes of a record.

    Returns:
        The length of the record's data, or None for a damaged header.
    """
    length, length_crc = struct.unpack("<QI", header)
    return length if masked_crc32c(header[:8]) == length_crc else None


def read_records(handle: BinaryIO) -> Iterator[bytes]:
    """Yields the payloads of an open TFRecord file, checking both CRCs of every record.

    Args:
        handle: File opened for reading bytes, uncompressed (any file object Beam's FileSystems gives).

    Yields:
        Each record's data, in file order.

    Raises:
        ValueError: A truncated record or a checksum that does not match.
    """
    index = 0
    while True:
        header = handle.read(HEADER_SIZE)
        if not header:
            return
        length = read_header(header) if len(header) == HEADER_SIZE else None
        if length is None:
            raise ValueError(f"TFRecord record {index}: truncated or damaged header")
        data = handle.read(length)
        footer = handle.read(FOOTER_SIZE)
        if len(data) < length or len(footer) < FOOTER_SIZE:
            raise ValueError(f"TFRecord record {index}: truncated data")
        if struct.unpack("<I", footer)[0] != masked_crc32c(data):
            raise ValueError(f"TFRecord record {index}: data checksum does not match")
        yield data
        index += 1
