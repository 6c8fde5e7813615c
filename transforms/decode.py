"""DecodeClips: ClipRequest -> per-step RGB frames and audio examples, a clip summary, or a failure."""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp

from pipeline.dataset import fileio
from pipeline.decode import media, probe
from pipeline.decode.config import DecodeConfig
from pipeline.decode.probe import ProbeResult, check_decodable
from pipeline.elements import ClipMeta, ClipRequest, Failure, FetchedClip, FetchFigures
from pipeline.errors import ClipError
from pipeline.read.annotations import resolve_video_path
from transforms.support import isolation, metrics
from transforms.support.ahead import Ahead, in_window
from transforms.support.fetch_rows import ClipFetcher
from transforms.support.progress import PROGRESS

# Decoded outputs a worker may hold ahead of its models (--decode_ahead clips, at most this many bytes).
DECODE_AHEAD_BYTES = 64 << 20


def _output_bytes(output: object) -> int:
    value = getattr(output, "value", None)
    array = value[1] if isinstance(value, tuple) and len(value) == 2 else None
    return int(getattr(array, "nbytes", 0))


class DecodeClips(beam.DoFn):
    """Decodes each clip once, streaming its steps so memory holds one frame, not the whole clip.

    `config` (a `pipeline.decode.config.DecodeConfig`) holds the decode flags. With its `decode_ahead`
    N > 0 a background thread decodes up to N clips ahead of the models,
    which run inside this DoFn's `yield` (the stage is fused): ffmpeg and the log-mel work overlap
    inference instead of waiting for it. Outputs keep their order and their element's window; at
    most DECODE_AHEAD_BYTES wait; metrics and progress are counted on the bundle's own thread.

    Outputs (tags are constants below):
      RGB:   ((clip_id, k), uint8 [H, W, 3] frame at the clip's resolution; the RGB model step resizes it)
      AUDIO: ((clip_id, k), float32 [96, 64] log-mel example starting k/F s after the first frame);
             nothing with audio="zeros" (the record gets the extractor's zero audio)
      META:  (clip_id, ClipMeta)
      FAILURES: Failures.
    """

    RGB = "rgb"
    AUDIO = "audio"
    META = "meta"
    FAILURES = "failures"

    def __init__(self, *, base_dir: str, config: DecodeConfig | None = None, fetcher: ClipFetcher | None = None,
                 expected: int | None = None):
        self._base_dir = base_dir
        self._config = config or DecodeConfig()
        self._ahead: Ahead | None = None
        self._expected = expected
        self._fetcher = fetcher if fetcher is not None else ClipFetcher(config=None)  # reads videos-CSV rows
        self._decoded = metrics.counter("clips_decoded")
        self._silent = metrics.counter("clips_without_audio")
        self._seconds = metrics.distribution("clip_seconds")

    @property
    def config(self) -> DecodeConfig:
        """The decode settings this stage runs with."""
        return self._config

    def setup(self) -> None:
        """Readies the fetcher that downloads http(s) rows (no TensorFlow here)."""
        # No TensorFlow here: frames leave as uint8 and are resized in the model's process.
        self._fetcher.setup()

    def start_bundle(self) -> None:
        """Starts the decode-ahead thread (`decode_ahead` > 0); a failed bundle's leftovers are dropped first."""
        if self._config.decode_ahead and (self._ahead is None or self._ahead.unfinished):
            self.teardown()
            self._ahead = Ahead(self._clip_outputs, depth=self._config.decode_ahead, max_bytes=DECODE_AHEAD_BYTES,
                                size=_output_bytes, name="decode-ahead")

    def process(self, element: FetchedClip | ClipRequest, window: BoundedWindow = beam.DoFn.WindowParam,
                timestamp: Timestamp = beam.DoFn.TimestampParam) -> Iterator[beam.pvalue.TaggedOutput]:
        """Decodes one clip into its tagged outputs (RGB, AUDIO, META) or one FAILURES line.

        `element`: a FetchedClip from FetchClips, or a ClipRequest of a file, gs:// or http(s) row.
        Decoding ahead, the outputs that come out of a call may be earlier clips'.
        """
        if self._ahead is None:  # in step with the models (or called directly, outside a bundle)
            for output in self._clip_outputs(element):
                if callable(output):
                    output()
                else:
                    yield output
            return
        self._ahead.submit(element, (window, timestamp))
        yield from self._emit(self._ahead.take())

    def finish_bundle(self) -> Iterator[beam.pvalue.TaggedOutput]:
        """The outputs of the clips still being decoded ahead."""
        if self._ahead is not None:
            yield from self._emit(self._ahead.take(0))

    def teardown(self) -> None:
        """Stops the decode-ahead thread (an ffmpeg it runs is killed)."""
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None

    @staticmethod
    def _emit(taken: Iterator[tuple[tuple[BoundedWindow, Timestamp], object]]) -> Iterator[beam.pvalue.TaggedOutput]:
        """Outputs made ahead, in their own element's window; the metric updates among them are applied here."""
        for (window, timestamp), output in taken:
            if callable(output):
                output()
            else:
                yield in_window(output, window, timestamp)

    def _clip_outputs(self, element: FetchedClip | ClipRequest
                      ) -> Iterator[beam.pvalue.TaggedOutput | functools.partial]:
        """One clip's tagged outputs, with its metric updates as callables (run on the bundle's thread)."""
        clip = element.clip if isinstance(element, FetchedClip) else element
        stage = "decode"
        try:
            with tempfile.TemporaryDirectory(prefix="clip-") as tmp:
                fetch = header = None
                untrusted = True  # a stranger chose these bytes: strict ffmpeg whitelists
                if isinstance(element, FetchedClip) and element.fetched:
                    uri = self._fetched_media(element, tmp)
                    start, duration, fetch, header = element.start, element.duration, element.fetch, element.header
                elif clip.source == "youtube":  # FetchClips fetches every YouTube row before this stage
                    raise ClipError("unsupported_source", "a YouTube row reached the decoder unfetched (FetchClips "
                                    "fetches them)", stage="fetch")
                else:
                    source = resolve_video_path(clip.video, self._base_dir)
                    uri, downloaded = self._fetcher.localize(source, tmp)
                    if probe.is_remote(source):
                        yield functools.partial(self._fetcher.count_bytes, downloaded)
                    untrusted = uri != source
                    start, duration = clip.start or 0.0, clip.section_duration
                yield from self._decode(clip, uri, start=start, duration=duration, fetch=fetch, untrusted=untrusted,
                                        header=header)
        except ClipError as e:
            yield functools.partial(PROGRESS.record, ok=False, total=self._expected)
            yield functools.partial(metrics.count_failure, e.reason)
            yield beam.pvalue.TaggedOutput(self.FAILURES, Failure.of(
                clip_id=clip.clip_id, fields=clip.fields, row=clip.row, stage=e.stage or stage, reason=e.reason,
                message=e.message))
        except Exception as e:  # pylint: disable=broad-except
            # A bug or an unforeseen input must not kill a run of a million clips: report it loudly.
            yield functools.partial(PROGRESS.record, ok=False, total=self._expected)
            yield functools.partial(metrics.count_failure, isolation.failure_reason(e))
            yield beam.pvalue.TaggedOutput(self.FAILURES, isolation.internal_error(
                clip_id=clip.clip_id, fields=clip.fields, row=clip.row, stage=stage, error=e, count=False))

    @staticmethod
    def _fetched_media(element: FetchedClip, tmp: str) -> str:
        """The fetched clip as a local file: its bytes written to `tmp`, or the kept clip (read in place when local)."""
        if element.data is not None:
            local = os.path.join(tmp, "fetched" + element.suffix)
            with open(local, "wb") as f:
                f.write(element.data)
            return local
        if "://" not in element.path:
            return element.path
        local = os.path.join(tmp, "kept.mp4")
        fileio.copy_to_local(element.path, local)
        return local

    def _decode(self, clip: ClipRequest, uri: str, *, start: float, duration: float | None,
                fetch: FetchFigures | None,
                untrusted: bool = False, header: ProbeResult | None = None):
        from pipeline.features import audio  # pylint: disable=import-outside-toplevel

        if header is not None:  # the fetcher probed these very bytes (strict whitelists): check, don't re-run
            info = check_decodable(header, uri, max_frame_side=self._config.max_frame_side,
                                   max_frame_pixels=self._config.max_frame_pixels)
        else:
            info = probe.probe(uri, timeout_s=self._config.timeout_s, max_frame_side=self._config.max_frame_side,
                               max_frame_pixels=self._config.max_frame_pixels, untrusted=untrusted)
        zeros = self._config.audio_mode == "zeros"
        decoder = media.ClipDecoder(uri, start=start, duration=duration, has_audio=info.has_audio and not zeros,
                                    timeout_s=self._config.timeout_s, frames_per_second=self._config.frames_per_second,
                                    declared_duration=info.duration, max_frame_pixels=self._config.max_frame_pixels,
                                    untrusted=untrusted)
        # T is the number of frames docs/spec.md §2 selects, so every step that comes out is part of the record.
        for step in decoder.steps():
            yield beam.pvalue.TaggedOutput(self.RGB, ((clip.clip_id, step.step), step.frame))
        summary = decoder.summary
        silent = not info.has_audio
        if not zeros:
            waveform = np.zeros(0, np.float32) if summary.waveform is None else summary.waveform
            examples = audio.examples_at(waveform, summary.audio_starts())
            for k in range(summary.num_steps):
                yield beam.pvalue.TaggedOutput(self.AUDIO, ((clip.clip_id, k), examples[k]))
        yield self._decoded.inc
        yield functools.partial(PROGRESS.record, ok=True, seconds=summary.duration, total=self._expected)
        yield functools.partial(self._seconds.update, int(summary.duration))
        if silent:
            yield self._silent.inc
        yield beam.pvalue.TaggedOutput(self.META, (clip.clip_id, ClipMeta(
            clip=clip, num_steps=summary.num_steps, duration=summary.duration, silent_audio=silent,
            audio=self._config.audio_mode, fetch=fetch)))
