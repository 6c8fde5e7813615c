"""TFRecord framing written with public APIs: byte-identical to TensorFlow's writer, checked on read."""

import numpy as np
import pytest
import tensorflow as tf

from pipeline.dataset import outputs, tfrecord
from pipeline.dataset.outputs import OutputError

PAYLOADS = [b"", b"x", bytes(range(256)) * 3, np.random.default_rng(0).bytes(100_003)]


def test_framing_is_what_tensorflows_writer_writes(tmp_path):
    reference = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(reference) as writer:
        for payload in PAYLOADS:
            writer.write(payload)
    ours = str(tmp_path / "ours.tfrecord")
    with open(ours, "wb") as handle:
        for payload in PAYLOADS:
            tfrecord.write_record(handle, payload)
    with open(reference, "rb") as expected, open(ours, "rb") as written:
        assert written.read() == expected.read()
    assert [r.numpy() for r in tf.data.TFRecordDataset(ours)] == PAYLOADS
    assert outputs.check_tfrecord_file(ours) == len(PAYLOADS)


def test_masked_crc32c_of_known_values():
    # TensorFlow's crc32c unit tests: crc32c of 32 zero bytes is 0x8a9136aa; masking rotates and adds.
    crc = 0x8A9136AA
    assert tfrecord.masked_crc32c(bytes(32)) == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert tfrecord.masked_crc32c(b"a") != tfrecord.masked_crc32c(b"b")


def test_damaged_header_and_truncated_record_are_caught(tmp_path):
    framed = tfrecord.frame(b"payload")
    assert tfrecord.read_header(framed[:tfrecord.HEADER_SIZE]) == len(b"payload")
    damaged = bytes([framed[0] ^ 1]) + framed[1:]
    assert tfrecord.read_header(damaged[:tfrecord.HEADER_SIZE]) is None
    for name, data, problem in (("damaged", damaged, "bad length checksum"),
                                ("truncated", framed[:-2], "truncated")):
        path = str(tmp_path / f"{name}.tfrecord")
        with open(path, "wb") as handle:
            handle.write(framed + data)
        with pytest.raises(OutputError, match=problem):
            outputs.check_tfrecord_file(path)


def test_read_records_reads_tensorflows_files_and_refuses_damage(tmp_path):
    import io

    reference = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(reference) as writer:
        for payload in PAYLOADS:
            writer.write(payload)
    with open(reference, "rb") as handle:
        assert list(tfrecord.read_records(handle)) == PAYLOADS
    framed = tfrecord.frame(b"payload")
    flipped = framed[:14] + bytes([framed[14] ^ 1]) + framed[15:]  # one data byte changed
    for data, problem in ((framed[:-2], "truncated"), (flipped, "checksum"), (framed[:5], "header")):
        with pytest.raises(ValueError, match=problem):
            list(tfrecord.read_records(io.BytesIO(framed + data)))
