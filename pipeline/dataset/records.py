"""The YouTube-8M frame-level record (docs/spec.md §1): building, parsing and checking SequenceExamples."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.dataset import example_proto as train

RGB_BYTES = 1024
AUDIO_BYTES = 128
MAX_STEPS = 300


@dataclasses.dataclass
class ClipFeatures:
    """Everything one record holds. rgb/audio are float features after PCA, before quantization."""

    clip_id: str
    labels: Sequence[int]
    rgb: np.ndarray  # [T, 1024] float32
    audio: np.ndarray  # [T, 128] float32
    rgb_quantized: np.ndarray  # [T, 1024] uint8
    audio_quantized: np.ndarray  # [T, 128] uint8
    label_names: Sequence[str] = ()
    source: str = ""
    start_us: int | None = None
    end_us: int | None = None
    duration_us: int | None = None
    video_level: bool = False  # context only (id, labels, mean_rgb, mean_audio): the extractor's
    # --skip_frame_level_features, the YouTube-8M video-level partition's layout
    extra: Mapping[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)
    # --extra_features: name -> (float [T, width], uint8 [T, width]); feature list `name`, context `mean_name`


def build_sequence_example(clip: ClipFeatures) -> bytes:
    """Serializes one clip in the YouTube-8M layout, with mean_rgb/mean_audio and a few extras."""
    steps = clip.rgb_quantized.shape[0]
    if not 1 <= steps <= MAX_STEPS or clip.audio_quantized.shape[0] != steps:
        raise ValueError(f"{clip.clip_id}: rgb has {steps} steps, audio {clip.audio_quantized.shape[0]}; "
                         f"both must be equal and in 1..{MAX_STEPS}")
    if clip.rgb_quantized.shape[1:] != (RGB_BYTES,) or clip.audio_quantized.shape[1:] != (AUDIO_BYTES,):
        raise ValueError(f"{clip.clip_id}: feature sizes {clip.rgb_quantized.shape} / {clip.audio_quantized.shape}")
    for name, (_, quantized) in clip.extra.items():
        if name in ("rgb", "audio") or np.asarray(quantized).shape[0] != steps:
            raise ValueError(f"{clip.clip_id}: extra feature {name!r} has {np.asarray(quantized).shape[0]} steps "
                             f"for {steps}, or takes a layout name")
    feature = train.Feature
    context = {
        "id": feature(bytes_list=train.BytesList(value=[clip.clip_id.encode("utf-8")])),
        "labels": feature(int64_list=train.Int64List(value=sorted(int(i) for i in clip.labels))),
        "mean_rgb": feature(float_list=train.FloatList(value=np.asarray(clip.rgb, np.float32).mean(0).tolist())),
        "mean_audio": feature(float_list=train.FloatList(
            value=np.asarray(clip.audio, np.float32).mean(0).tolist())),
    }
    for name, (values, _) in clip.extra.items():
        context[f"mean_{name}"] = feature(float_list=train.FloatList(
            value=np.asarray(values, np.float32).mean(0).tolist()))
    if clip.label_names:
        context["label_names"] = feature(bytes_list=train.BytesList(
            value=[n.encode("utf-8") for n in clip.label_names]))
    if clip.source:
        context["source"] = feature(bytes_list=train.BytesList(value=[clip.source.encode("utf-8")]))
    for key, value in (("start_us", clip.start_us), ("end_us", clip.end_us), ("duration_us", clip.duration_us)):
        if value is not None:
            context[key] = feature(int64_list=train.Int64List(value=[int(value)]))

    def feature_list(rows: np.ndarray):
        return train.FeatureList(feature=[
            feature(bytes_list=train.BytesList(value=[row.tobytes()])) for row in np.asarray(rows, np.uint8)])

    if clip.video_level:
        # A SequenceExample with only its context serializes to the same bytes as a train.Example
        # with those features (both are field 1), so the video-level readers parse it either way.
        context_only = train.SequenceExample(context=train.Features(feature=context))
        return context_only.SerializeToString(deterministic=True)  # cmp-able across runs
    example = train.SequenceExample(
        context=train.Features(feature=context),
        feature_lists=train.FeatureLists(feature_list={
            "rgb": feature_list(clip.rgb_quantized),
            "audio": feature_list(clip.audio_quantized),
            **{name: feature_list(quantized) for name, (_, quantized) in clip.extra.items()},
        }))
    # deterministic: the context map's order would otherwise vary per process, so reruns and
    # refactors could not be checked byte for byte.
    return example.SerializeToString(deterministic=True)


@dataclasses.dataclass
class ParsedRecord:
    """One record read back (`parse_sequence_example`): id, label indices and the quantized features."""

    clip_id: str
    labels: list[int]
    rgb: np.ndarray  # [T, 1024] uint8
    audio: np.ndarray  # [T, 128] uint8
    context_keys: list[str]
    mean_rgb: np.ndarray | None = None  # float32 [1024] when present
    mean_audio: np.ndarray | None = None  # float32 [128] when present

    @property
    def video_level(self) -> bool:
        """A context-only record (no feature lists), as --skip_frame_level_features writes."""
        return self.rgb.shape[0] == 0 and self.audio.shape[0] == 0 and self.mean_rgb is not None


def parse_sequence_example(data: bytes) -> ParsedRecord:
    """Parses with the protobuf API (no schema), keeping everything needed to check docs/spec.md §1."""
    example = train.SequenceExample.FromString(data)
    ctx = example.context.feature
    clip_id = ctx["id"].bytes_list.value[0].decode("utf-8", "replace") if "id" in ctx and \
        ctx["id"].bytes_list.value else ""
    labels = list(ctx["labels"].int64_list.value) if "labels" in ctx else []

    def rows(name: str, width: int) -> np.ndarray:
        if name not in example.feature_lists.feature_list:
            return np.zeros((0, width), np.uint8)
        values = [f.bytes_list.value[0] if f.bytes_list.value else b""
                  for f in example.feature_lists.feature_list[name].feature]
        if any(len(v) != width for v in values):
            raise RecordError(clip_id, f"a `{name}` step is not {width} bytes")
        return np.frombuffer(b"".join(values), np.uint8).reshape(len(values), width)

    def floats(name: str) -> np.ndarray | None:
        return np.asarray(ctx[name].float_list.value, np.float32) if name in ctx else None

    return ParsedRecord(clip_id=clip_id, labels=labels, rgb=rows("rgb", RGB_BYTES), audio=rows("audio", AUDIO_BYTES),
                        context_keys=sorted(ctx.keys()), mean_rgb=floats("mean_rgb"), mean_audio=floats("mean_audio"))


class RecordError(ValueError):
    """A record that breaks docs/spec.md §1; names the record id."""

    def __init__(self, clip_id: str, problem: str):
        super().__init__(f"record {clip_id!r}: {problem}")
        self.clip_id = clip_id
        self.problem = problem


def check_record(data: bytes) -> ParsedRecord:
    """Parses one serialized record and raises RecordError on any docs/spec.md §1 violation."""
    try:
        rec = parse_sequence_example(data)
    except RecordError:
        raise
    except Exception as e:  # a protobuf decode error: not a SequenceExample at all
        raise RecordError("?", f"not a train.SequenceExample ({e})") from e
    if not rec.clip_id:
        raise RecordError(rec.clip_id, "context `id` is missing or empty")
    if "labels" not in rec.context_keys:
        raise RecordError(rec.clip_id, "context `labels` is missing")
    if any(label < 0 for label in rec.labels):
        raise RecordError(rec.clip_id, "negative label index")
    if list(rec.labels) != sorted(rec.labels):
        raise RecordError(rec.clip_id, "labels are not sorted")
    if rec.video_level:
        if rec.mean_rgb.shape != (RGB_BYTES,) or rec.mean_audio is None or rec.mean_audio.shape != (AUDIO_BYTES,):
            raise RecordError(rec.clip_id, f"video-level record needs mean_rgb ({RGB_BYTES} floats) and mean_audio "
                                           f"({AUDIO_BYTES} floats)")
        return rec
    steps = rec.rgb.shape[0]
    if rec.audio.shape[0] != steps:
        raise RecordError(rec.clip_id, f"rgb has {steps} steps but audio has {rec.audio.shape[0]}")
    if not 1 <= steps <= MAX_STEPS:
        raise RecordError(rec.clip_id, f"{steps} steps; must be 1..{MAX_STEPS}")
    return rec
