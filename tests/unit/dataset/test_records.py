"""The YouTube-8M record layout: building, the starter code's parsing spec, and checks."""

import dataclasses

import numpy as np
import pytest
import references

from pipeline.dataset import records
from pipeline.features import quantization


def make_clip(steps=3, clip_id="clip-1", labels=(5, 2)):
    rng = np.random.default_rng(0)
    rgb = rng.normal(size=(steps, 1024)).astype(np.float32)
    audio = rng.normal(size=(steps, 128)).astype(np.float32)
    return records.ClipFeatures(clip_id=clip_id, labels=labels, rgb=rgb, audio=audio,
                                rgb_quantized=quantization.quantize_rgb(rgb),
                                audio_quantized=quantization.quantize_audio(audio),
                                label_names=("b", "a"), source="x.mp4", start_us=0, end_us=3_000_000)


def test_round_trip_through_the_yt8m_reader_spec():
    clip = make_clip()
    data = records.build_sequence_example(clip)
    ((clip_id, labels, rgb, audio),) = references.yt8m_reader_parse([data])
    assert clip_id == "clip-1" and labels == [2, 5]
    assert rgb.shape == (3, 1024) and audio.shape == (3, 128)
    expected = clip.rgb_quantized.astype(np.float32) * 4 / 255 + 4 / 512 - 2
    np.testing.assert_allclose(rgb, expected, atol=1e-6)
    parsed = records.check_record(data)
    assert {"id", "labels", "mean_rgb", "mean_audio", "start_us", "end_us"} <= set(parsed.context_keys)


def test_mean_features_are_means_before_quantization():
    import tensorflow as tf

    clip = make_clip()
    ex = tf.train.SequenceExample.FromString(records.build_sequence_example(clip))
    mean_rgb = np.array(ex.context.feature["mean_rgb"].float_list.value)
    np.testing.assert_allclose(mean_rgb, clip.rgb.mean(0), rtol=1e-6)
    assert len(ex.context.feature["mean_audio"].float_list.value) == 128


def test_build_refuses_mismatched_steps():
    clip = make_clip()
    clip.audio_quantized = clip.audio_quantized[:2]
    with pytest.raises(ValueError, match="clip-1"):
        records.build_sequence_example(clip)


def _hand_made(rgb_rows, audio_rows, labels=(1,), clip_id=b"bad-1"):
    import tensorflow as tf

    ex = tf.train.SequenceExample()
    ex.context.feature["id"].bytes_list.value.append(clip_id)
    ex.context.feature["labels"].int64_list.value.extend(labels)
    for row in rgb_rows:
        ex.feature_lists.feature_list["rgb"].feature.add().bytes_list.value.append(row)
    for row in audio_rows:
        ex.feature_lists.feature_list["audio"].feature.add().bytes_list.value.append(row)
    return ex.SerializeToString()


@pytest.mark.parametrize("rgb,audio,labels,problem", [
    ([b"\0" * 1024] * 2, [b"\0" * 128], (1,), "steps"),
    ([b"\0" * 1000], [b"\0" * 128], (1,), "1024 bytes"),
    ([], [], (1,), "0 steps"),
    ([b"\0" * 1024] * 301, [b"\0" * 128] * 301, (1,), "301 steps"),
    ([b"\0" * 1024], [b"\0" * 128], (3, 1), "not sorted"),
])
def test_check_record_names_the_violation(rgb, audio, labels, problem):
    with pytest.raises(records.RecordError) as e:
        records.check_record(_hand_made(rgb, audio, labels))
    assert e.value.clip_id == "bad-1" and problem in str(e.value)


def test_the_same_clip_serializes_to_the_same_bytes_in_any_process():
    """Reruns and refactors can be checked with cmp: the context map is written in a fixed order."""
    import subprocess
    import sys

    script = ("import sys, hashlib; sys.path[:0] = ['tests/unit/dataset', 'tests']; "
              "from test_records import make_clip; "
              "from pipeline.dataset import records; "
              "print(hashlib.sha256(records.build_sequence_example(make_clip(steps=2))).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)}).stdout.split()[-1]
               for seed in (1, 2, 3)}
    assert len(digests) == 1, digests


@pytest.mark.parametrize("video_level", [False, True])
def test_records_are_byte_for_byte_tensorflows_messages(video_level):
    """pipeline.dataset.example_proto declares tf.train's messages itself: same bytes both ways."""
    import tensorflow as tf

    from pipeline.dataset import example_proto

    clip = dataclasses.replace(make_clip(steps=3), video_level=video_level)
    ours = records.build_sequence_example(clip)
    theirs = tf.train.SequenceExample.FromString(ours)
    assert theirs.SerializeToString(deterministic=True) == ours
    # the values, not just the bytes (a wrong field number would survive a round trip as unknown fields)
    assert theirs.context.feature["labels"].int64_list.value == [2, 5]
    np.testing.assert_array_equal(np.asarray(theirs.context.feature["mean_rgb"].float_list.value, np.float32),
                                  clip.rgb.mean(0))
    assert theirs.context.feature["id"].bytes_list.value == [b"clip-1"]
    assert example_proto.SequenceExample.FromString(ours).SerializeToString(deterministic=True) == ours
    assert len(theirs.feature_lists.feature_list["rgb"].feature) == (0 if video_level else 3)
    # and a message TensorFlow builds reads back through ours unchanged (packed floats, int64s, the oneof)
    made = tf.train.SequenceExample()
    made.context.feature["f"].float_list.value.extend([0.5, -1.25])
    made.context.feature["i"].int64_list.value.extend([-(2 ** 63), 2 ** 63 - 1])
    made.feature_lists.feature_list["b"].feature.add().bytes_list.value.append(b"\0\xff")
    data = made.SerializeToString(deterministic=True)
    parsed = example_proto.SequenceExample.FromString(data)
    assert parsed.SerializeToString(deterministic=True) == data
    assert list(parsed.context.feature["f"].float_list.value) == [0.5, -1.25]
    assert list(parsed.context.feature["i"].int64_list.value) == [-(2 ** 63), 2 ** 63 - 1]
    assert parsed.context.feature["f"].WhichOneof("kind") == "float_list"
    assert list(parsed.feature_lists.feature_list["b"].feature[0].bytes_list.value) == [b"\0\xff"]
    example = tf.train.Example(features=tf.train.Features(feature={"x": tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[b"y"]))}))
    data = example.SerializeToString()
    assert example_proto.Example.FromString(data).features.feature["x"].bytes_list.value == [b"y"]


def test_building_checking_and_resuming_records_never_imports_tensorflow():
    """Only the process that hosts a model needs TensorFlow; record workers stay lean."""
    import subprocess
    import sys

    script = ("import sys; sys.path[:0] = ['tests/unit/dataset', 'tests']; "
              "from test_records import make_clip; "
              "from pipeline.dataset import records; from transforms import assemble, decode, resume, write; "
              "data = records.build_sequence_example(make_clip(steps=2)); records.check_record(data); "
              "assert resume.record_id(data) == 'clip-1'; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[-2] == "[]", out
