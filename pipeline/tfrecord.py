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
