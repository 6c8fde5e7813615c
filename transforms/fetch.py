"""FetchClips: the fetch stage, I/O-bound, apart from decoding and inference.

Fetching waits on the network; decoding and the models use the CPU (or GPU). Fused in one
step, every network wait idles the processor. FetchClips runs the fetches of a bundle in its
own thread pool, so `--fetch_concurrency` clips are in flight per worker process whatever
threads the runner gives the step, and hands each clip on as soon as it is fetched. A fusion
break (`Reshuffle`) follows it in `pipeline.build`, so decoding may run on another machine:
what crosses that break must be readable there, never a path in this worker's temp directory.

What a fetched clip becomes (`FetchedClip`):

- without `--clips_dir`: the fetched section's bytes, in the element (a 10-s Kinetics section
  at 360p is a few MB; more than `--fetch_max_bytes` fails `too_large`, stage fetch);
- with `--clips_dir`: the kept clip's path (`DIR/{label}/{id}.mp4`, a shared location such as
  gs:// on Dataflow), which the decoder reads as it reads a gs:// row.

Rows that are not YouTube ids (local files, gs:// paths, http(s) URLs) pass through unchanged
(`FetchedClip` with neither bytes nor path) and the decoder reads them as before: an http(s)
row names a whole video of any length, which has no place in a bounded element.

With `keep_only=True` (`--features none`, the fetch-only build) the stage is the last one:
every row, a videos CSV's local files included, ends as a kept clip in `--clips_dir` (one dict
per clip on the main output, for stats.json) or a failure line.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import tempfile
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.dataset import fileio
from pipeline.decode import probe
from pipeline.elements import KEPT, ClipRequest, Failure, FetchedClip, FetchFigures, KeptClip
from pipeline.errors import ClipError
from pipeline.read.annotations import resolve_video_path
from transforms.support import isolation, metrics
from transforms.support.ahead import in_window
from transforms.support.fetch_rows import ClipFetcher, _store, _trim, clip_path, kept_exists
from transforms.support.progress import PROGRESS

# A kept clip is probed before it counts: a header read of a local file.
_PROBE_TIMEOUT_S = 60.0


class FetchClips(beam.DoFn):
    """ClipRequest -> FetchedClip (main output; KeptClip when `keep_only`) or a Failure (FAILURES), fetching in a
    thread pool.

    Each bundle's YouTube rows are submitted to a pool of `concurrency` threads (and the process-wide
    semaphore of ClipFetcher bounds all instances of one process together); finished ones are emitted
    from later `process` calls, the rest in `finish_bundle`, with their own window and timestamp. At
    most `concurrency` clips of a bundle wait in memory at once. Metrics and the progress line are
    updated in the bundle's thread, once per row: a failure here is the row's only progress record;
    a fetched clip is recorded by the decoder, or here when `keep_only`.
    """

    FAILURES = "failures"

    def __init__(self, *, fetcher: ClipFetcher, base_dir: str = ".", keep_only: bool = False,
                 expected: int | None = None):
        config = fetcher.config  # --clips_dir, --fetch_concurrency, --fetch_max_bytes
        if keep_only and not config.clips_dir:
            raise ValueError("keep_only needs clips_dir")
        self._fetcher = fetcher
        self._clips_dir = config.clips_dir
        self._base_dir = base_dir
        self._concurrency = config.concurrency
        self._max_bytes = config.max_bytes
        self._keep_only = keep_only
        self._expected = expected
        self._pool = None
        self._pending: list = []
        self._kept = metrics.counter("clips_kept")
        self._already_kept = metrics.counter("clips_already_kept")
        self._element_bytes = metrics.distribution("fetched_clip_bytes")

    def setup(self) -> None:
        """Starts the pool of `concurrency` fetch threads."""
        self._fetcher.setup()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="fetch")

    def teardown(self) -> None:
        """Stops the pool; queued fetches are cancelled (teardown ends the DoFn; its bundles are done)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def start_bundle(self) -> None:
        """Every bundle starts with no fetch in flight (finish_bundle drained the last one's)."""
        self._pending = []

    def process(self, clip: ClipRequest, window: BoundedWindow = beam.DoFn.WindowParam,
                timestamp: Timestamp = beam.DoFn.TimestampParam) -> Iterator[WindowedValue | beam.pvalue.TaggedOutput]:
        """Starts the row's fetch in the pool; emits the fetches that have finished (FetchedClip or FAILURES).

        Rows the stage does not fetch (files, gs://, http(s) outside fetch-only builds) pass through
        as a FetchedClip without media. With `concurrency` fetches in flight, waits for one to end.
        """
        if not self._keep_only and clip.source != "youtube":
            yield FetchedClip(clip=clip)  # the decoder reads files, gs:// and http(s) rows as before
            return
        if self._pool is None:  # a runner that skipped setup()
            self.setup()
        self._pending.append((self._pool.submit(self._work, clip), clip, window, timestamp))
        if len(self._pending) >= self._concurrency:
            concurrent.futures.wait([item[0] for item in self._pending],
                                    return_when=concurrent.futures.FIRST_COMPLETED)
        yield from self._emit(wait=False)

    def finish_bundle(self) -> Iterator[WindowedValue | beam.pvalue.TaggedOutput]:
        """Waits for the bundle's fetches still in flight and emits them: no row leaves the bundle unanswered."""
        yield from self._emit(wait=True)

    def _emit(self, *, wait: bool):
        pending, self._pending = self._pending, []
        for item in pending:
            future, clip, window, timestamp = item
            if not (wait or future.done()):
                self._pending.append(item)
                continue
            for output in self._outputs(clip, future.result()):
                yield in_window(output, window, timestamp)

    def _outputs(self, clip: ClipRequest, outcome: tuple):
        """The outputs of one finished fetch, with its metrics and progress (in the bundle's thread)."""
        kind, value = outcome
        if kind == "ok":
            if value.fetch:
                self._fetcher.count_figures(value.fetch)
            if self._keep_only:  # the same two figures as stats.json's clips_kept and clips_already_kept
                (self._already_kept if value.reused else self._kept).inc()
                PROGRESS.record(ok=True, total=self._expected)
            elif value.data is not None:
                self._element_bytes.update(len(value.data))
            yield value
            return
        PROGRESS.record(ok=False, total=self._expected)
        if kind == "clip_error":
            metrics.count_failure(value.reason)
            yield beam.pvalue.TaggedOutput(self.FAILURES, Failure.of(
                clip_id=clip.clip_id, fields=clip.fields, row=clip.row, stage=value.stage or "fetch",
                reason=value.reason, message=value.message))
        else:
            yield beam.pvalue.TaggedOutput(self.FAILURES, isolation.internal_error(
                clip_id=clip.clip_id, fields=clip.fields, row=clip.row, stage="fetch", error=value))

    def _work(self, clip: ClipRequest) -> tuple:
        """Runs in a pool thread; never raises: ("ok", result), ("clip_error", ClipError), ("error", exc)."""
        try:
            with tempfile.TemporaryDirectory(prefix="fetch-") as tmp:
                if self._keep_only:
                    return "ok", self._keep(clip, tmp)
                return "ok", self._fetch(clip, tmp)
        except ClipError as e:
            return "clip_error", e
        except Exception as e:  # pylint: disable=broad-except  (becomes an internal_error line)
            return "error", e

    def _fetch(self, clip: ClipRequest, tmp: str) -> FetchedClip:
        if self._clips_dir:
            kept = clip_path(self._clips_dir, clip)
            if kept_exists(kept):
                return FetchedClip(clip=clip, path=kept, duration=clip.section_duration, fetch=KEPT)
            fetched = self._fetcher.fetch(clip, tmp)
            return FetchedClip(clip=clip, path=kept, duration=fetched.duration, fetch=fetched.figures,
                               header=fetched.probe)
        fetched = self._fetcher.fetch(clip, tmp)
        size = os.path.getsize(fetched.path)
        if size > self._max_bytes:
            raise ClipError("too_large", f"the fetched media is {size:,} bytes, over --fetch_max_bytes "
                            f"{self._max_bytes:,} (a clip travels to the decoder in one element); pass "
                            "--clips_dir to keep clips in a shared location instead, or raise the bound",
                            stage="fetch")
        with open(fetched.path, "rb") as f:
            data = f.read()
        return FetchedClip(clip=clip, data=data, suffix=os.path.splitext(fetched.path)[1] or ".mp4",
                           start=fetched.start_offset, duration=fetched.duration, fetch=fetched.figures,
                           header=fetched.probe)

    def _keep(self, clip: ClipRequest, tmp: str) -> KeptClip:
        """Fetch-only: the row's clip into --clips_dir."""
        kept = clip_path(self._clips_dir, clip)
        figures = KEPT
        if not kept_exists(kept):
            if clip.source == "youtube":
                figures = self._fetcher.fetch(clip, tmp).figures
            else:
                figures = keep_video_row(clip, kept, tmp, base_dir=self._base_dir, fetcher=self._fetcher)
        return KeptClip(clip_id=clip.clip_id, path=kept, fetch=figures)


def check_media(local: str, source: str, sent: dict | None = None) -> None:
    """Raises ClipError (stage fetch) unless `local` is media with a video stream.

    A kept clip must be one: an .mp4 row is copied byte for byte, so an HTML page or an empty
    file named .mp4 would otherwise be counted as kept. For a download the message says which
    server sent what (its content type and size), not that the video is bad.
    """
    try:
        probe.check_local_input(local)
        info = probe.read_header(local, input_args=probe.STRANGER_FILE_ARGS, timeout=_PROBE_TIMEOUT_S)
        probe.check_decodable(info, source)
    except ClipError as e:
        if sent:
            size = os.path.getsize(local) if os.path.exists(local) else 0
            raise ClipError("not_video", f"{sent.get('url', source)} sent {size:,} bytes of Content-Type "
                            f"{sent.get('content_type')!r}, which is not a video ({e.reason}: {e.message})",
                            stage="fetch") from None
        raise ClipError(e.reason, e.message, stage="fetch") from None


def keep_video_row(clip: ClipRequest, kept: str, tmp: str, *, base_dir: str, fetcher: ClipFetcher) -> FetchFigures:
    """A videos-CSV row (local file, gs:// or http(s)) into the kept clip `kept`. Raises ClipError.

    A row with a section ([start, end) given) is cut and re-encoded (libx264, as a whole-file YouTube
    fetch is, so the clip starts at `start` within one frame); a row without one is copied byte for
    byte when it is an .mp4 and re-encoded to one otherwise (kept clips are `{id}.mp4`). Returns the
    fetch figures (`method`: `trim` or `copy`; the bytes are counted by FetchClips).
    """
    source = resolve_video_path(clip.video, base_dir)
    sent: dict = {}
    local, downloaded = fetcher.localize(source, tmp, sent=sent)
    if local == source and not os.path.isfile(local):
        raise ClipError("missing_file", f"no such file: {source}", stage="fetch")
    check_media(local, source, sent)
    method = "trim"
    if clip.start is None and clip.end is None and fileio.extension(source).lower() == ".mp4":
        _store(local, kept)
        method = "copy"
    else:
        trimmed = os.path.join(tmp, "trimmed.mp4")
        _trim(local, trimmed, start=clip.start or 0.0, duration=clip.section_duration, limits=fetcher.trim_limits)
        _store(trimmed, kept)
    logging.debug("kept %s as %s", source, kept)
    return FetchFigures(method, bytes=downloaded, attempts=1)
