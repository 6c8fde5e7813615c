"""AssembleRecords: per-step features + clip summary -> one serialized SequenceExample per clip."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam
import numpy as np

from pipeline.dataset import records
from pipeline.dataset.vocabulary import Vocabulary
from pipeline.elements import BuiltRecord, ClipMeta, Failure, clip_source
from pipeline.errors import ClipError
from pipeline.features import models, quantization
from pipeline.net.redact import redact
from transforms.support import isolation, metrics


def _describe_joined(element: tuple[str, Mapping[str, Iterable[Any]]]) -> tuple[str, dict, int | None]:
    clip_id, grouped = element
    metas = list(grouped["meta"])
    clip = metas[0].clip if metas else None
    return (clip_id, clip.fields, clip.row) if clip is not None else (clip_id, {}, None)


class _BuildRecord(beam.DoFn):
    FAILURES = "failures"

    def __init__(self, *, video_level: bool = False, extra: tuple[models.FeatureModel, ...] = ()):
        self._video_level = video_level
        self._extra = tuple(extra)
        self._written = metrics.counter("records_built")
        self._steps = metrics.counter("steps_built")

    @isolation.isolate("features", _describe_joined, element_arg=1)
    def process(self, element: tuple[str, Mapping[str, Iterable[Any]]],
                vocabulary: Vocabulary) -> Iterator[BuiltRecord | beam.pvalue.TaggedOutput]:
        clip_id, grouped = element
        metas = list(grouped["meta"])
        if metas:  # no meta: the clip failed upstream and already has its failure line
            yield from self._build(clip_id, metas[0], grouped, vocabulary)

    def _build(self, clip_id: str, meta: ClipMeta, grouped: Mapping[str, Iterable[Any]],
               vocabulary: Vocabulary) -> Iterator[BuiltRecord | beam.pvalue.TaggedOutput]:
        clip, num_steps = meta.clip, meta.num_steps
        try:
            rgb = self._ordered(grouped["rgb"], num_steps, "rgb")
            if meta.audio == "zeros":  # the extractor's --insert_zero_audio_features: zero bytes, mean 0
                audio = np.zeros((num_steps, records.AUDIO_BYTES), np.float32)
                audio_quantized = np.zeros((num_steps, records.AUDIO_BYTES), np.uint8)
            else:
                audio = self._ordered(grouped["audio"], num_steps, "audio")
                audio_quantized = quantization.quantize_audio(audio)
            extra = {}
            for model in self._extra:
                values = self._ordered(grouped[model.name], num_steps, model.name)
                extra[model.name] = (values, np.asarray(model.quantize(values), np.uint8))
            label_ids = sorted({vocabulary.index(name) for name in clip.labels})
            start = clip.start or 0.0
            serialized = records.build_sequence_example(records.ClipFeatures(
                clip_id=clip_id, labels=label_ids, rgb=rgb, audio=audio,
                rgb_quantized=quantization.quantize_rgb(rgb), audio_quantized=audio_quantized,
                label_names=sorted(set(clip.labels)), source=redact(clip.video), start_us=int(round(start * 1e6)),
                end_us=int(round((start + meta.duration) * 1e6)), duration_us=int(round(meta.duration * 1e6)),
                video_level=self._video_level, extra=extra))
        except (_Incomplete, ClipError) as e:  # ClipError: non-finite features cannot be quantized
            yield beam.pvalue.TaggedOutput(self.FAILURES, Failure.of(
                clip_id=clip_id, fields=clip.fields, row=clip.row, stage="features",
                reason=getattr(e, "reason", "missing_steps"), message=str(e)))
            return
        self._written.inc()
        self._steps.inc(num_steps)
        yield BuiltRecord(split=clip.split, clip_id=clip_id, record=serialized, steps=num_steps,
                          seconds=float(meta.duration), silent_audio=bool(meta.silent_audio),
                          source=clip_source(meta.fetch), label=clip.labels[0] if clip.labels else "",
                          fetch=meta.fetch)

    @staticmethod
    def _ordered(items: Iterable[tuple[int, np.ndarray]], num_steps: int, name: str) -> np.ndarray:
        by_step = {}
        for step, features in items:
            if step < num_steps:
                by_step[step] = features
        if len(by_step) != num_steps:
            missing = sorted(set(range(num_steps)) - set(by_step))
            raise _Incomplete(f"{name} features missing for steps {missing[:10]} of {num_steps}")
        return np.stack([by_step[k] for k in range(num_steps)]).astype(np.float32)


class _Incomplete(Exception):
    pass


class AssembleRecords(beam.PTransform):
    """Joins META, RGB, AUDIO and the `extra` models' features (`--extra_features`) by clip id.

    Returns (records, failures).

    Each record is a `pipeline.elements.BuiltRecord`; each failure a `Failure`.
    """

    def __init__(self, vocabulary: beam.PCollection, *, video_level: bool = False,
                 extra: tuple[models.FeatureModel, ...] = ()):
        super().__init__()
        self._vocabulary = vocabulary
        self._video_level = video_level
        self._extra = tuple(extra)

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> tuple[beam.PCollection, beam.PCollection]:
        """{"meta", "rgb", "audio", extra models' names} keyed by clip id -> (BuiltRecords, Failures)."""
        built = (
            inputs
            | "JoinByClip" >> beam.CoGroupByKey()
            | "BuildRecord" >> beam.ParDo(_BuildRecord(video_level=self._video_level, extra=self._extra),
                                          beam.pvalue.AsSingleton(self._vocabulary)).with_outputs(
                _BuildRecord.FAILURES, main="records"))
        return built.records, built[_BuildRecord.FAILURES]
