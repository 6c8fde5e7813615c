"""Fetching one YouTube row: bounded concurrency per worker, kept clips, metrics (used by FetchClips)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import shutil
import subprocess
import threading
import time
import unicodedata
import uuid
from typing import TYPE_CHECKING

from apache_beam.io.filesystems import FileSystems

from pipeline.dataset import fileio
from pipeline.decode import probe
from pipeline.decode.config import DecodeConfig
from pipeline.decode.probe import ProbeResult
from pipeline.elements import KEPT, ClipRequest, FetchFigures
from pipeline.errors import ClipError
from transforms.support import metrics

if TYPE_CHECKING:
    from pipeline.fetch.config import FetchConfig, FetchResult
    from pipeline.fetch.mirrors import Template

_SEMAPHORES: dict[int, threading.BoundedSemaphore] = {}
_SEMAPHORES_LOCK = threading.Lock()


def _process_semaphore(limit: int) -> threading.BoundedSemaphore:
    """One semaphore per worker process (DoFn instances in threads share it)."""
    with _SEMAPHORES_LOCK:
        if limit not in _SEMAPHORES:
            _SEMAPHORES[limit] = threading.BoundedSemaphore(limit)
        return _SEMAPHORES[limit]


# A kept clip's name: one path component per label and per id, never the same for two different
# ones (two rows sharing a name would share, or overwrite, one clip). A name made only of letters
# and digits (any script), `-_.()'` and inner spaces, in NFC, not starting with `.` or `-` and at
# most _PLAIN_BYTES long is used as it is; any other becomes its readable part (other characters
# as `_`, cut to _READABLE_BYTES) + `~` + 16 hex digits of its SHA-256. Plain names hold no `~`,
# so the two kinds never meet, and the hash tells apart names that read the same.
_PLAIN_PUNCT = frozenset("-_.()' ")
_PLAIN_BYTES = 150
_READABLE_BYTES = 96
HASH_MARK = "~"


def _keeps(ch: str) -> bool:
    if ch.isascii():
        return ch.isalnum() or ch in _PLAIN_PUNCT
    return unicodedata.category(ch)[0] in "LN"  # letters and numbers; no marks, format or control characters


def path_component(text: str) -> str:
    """`text` (a label or clip id) as one file-name component; different texts give different components.

    Unicode letters and digits are kept; a text that cannot be used as it is (separators, dot names,
    `..`, control or format characters, not NFC, leading/trailing spaces, longer than 150 bytes)
    gets a hash suffix, so `a/b` and `a_b` stay apart. At most ~120 bytes: with `.mp4` and a
    temporary suffix it stays under the 255-byte limit of file names.
    """
    plain = (bool(text) and all(_keeps(ch) for ch in text) and not text.startswith((".", "-"))
             and text == text.strip() and unicodedata.is_normalized("NFC", text)
             and len(text.encode("utf-8")) <= _PLAIN_BYTES)
    if plain:
        return text
    readable = "".join(ch if _keeps(ch) and ch != " " else "_" for ch in text).lstrip(".-")
    readable = readable.encode("utf-8")[:_READABLE_BYTES].decode("utf-8", "ignore")
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{readable}{HASH_MARK}{digest}"


def clip_path(clips_dir: str, clip: ClipRequest) -> str:
    """DIR/{label}/{id}.mp4 with both parts made one path component each (`path_component`), inside `clips_dir`.

    Raises ClipError(`unsafe_path`) when a symlink inside a local `clips_dir` leads out of it: a
    kept clip is never read from or written to a place the user did not name.
    """
    folder = path_component(clip.labels[0]) if clip.labels else "test"
    name = path_component(clip.clip_id)
    path = FileSystems.join(clips_dir, folder, f"{name}.mp4")
    if "://" not in clips_dir:
        root = os.path.realpath(clips_dir)
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            raise ClipError("unsafe_path", f"kept-clip path {path} leads out of --clips_dir {clips_dir} "
                            f"(to {real}) through a symlink", stage="fetch")
    return path


def kept_exists(path: str) -> bool:
    """Whether the kept clip `path` is there under exactly this name.

    On a local disk that ignores case or Unicode normalization (macOS, Windows) `Abc.mp4` is
    found as `abc.mp4`: that is another clip's file, a collision (ClipError `name_collision`),
    never a reuse.
    """
    if not FileSystems.exists(path):
        return False
    if "://" in path:
        return True
    if os.path.basename(path) not in os.listdir(os.path.dirname(path)):
        raise ClipError("name_collision", f"kept clip {path} collides with another clip's file there (the disk "
                        "ignores case or Unicode normalization): put --clips_dir on a case-sensitive disk",
                        stage="fetch")
    return True


def lean_header(header: ProbeResult | None) -> ProbeResult | None:
    """A successful probe without ffmpeg's text (only a failed one's message reads it), to travel light."""
    return dataclasses.replace(header, stderr="") if header is not None and header.ok else None


class ClipFetcher:
    """Turns a YouTube ClipRequest into a local media file, its start offset and duration."""

    def __init__(self, *, config: FetchConfig | None, trim_limits: DecodeConfig | None = None):
        if config is None:
            from pipeline.fetch.config import FetchConfig  # pylint: disable=import-outside-toplevel

            config = FetchConfig()
        self._config = config
        self._sources = config.sources
        self._clips_dir = config.clips_dir
        self.trim_limits = trim_limits or DecodeConfig()
        self._concurrency = config.concurrency
        self._semaphore = None
        self._bytes = metrics.counter("fetch_bytes")
        self._fetched = metrics.counter("clips_fetched")
        self._reused = metrics.counter("clips_reused_from_clips_dir")
        self._retried = metrics.counter("fetch_retries")
        self._mirrored = metrics.counter("clips_from_mirrors")

    @property
    def config(self) -> FetchConfig:
        """The fetch stage's config (`pipeline.fetch.config.FetchConfig`): the stage reads its knobs here."""
        return self._config

    def setup(self) -> None:
        """Takes this process's fetch semaphore (at most `concurrency` fetches at once per process)."""
        self._semaphore = _process_semaphore(self._concurrency)

    def fetch(self, clip: ClipRequest, tmp: str) -> FetchResult:
        """Fetches (or finds kept) the row's clip into a local file. Raises ClipError.

        `probe` is the header of the returned file when the fetcher probed that very file, lean
        (`lean_header`); None for a reused kept clip or one re-cut after the probe.

        No metric is touched: Beam metrics only count in the thread running the bundle, so the
        FetchClips stage fetches in its pool and calls `count_figures` itself.
        """
        from pipeline.fetch.clips import fetch_clip  # pylint: disable=import-outside-toplevel
        from pipeline.fetch.config import FetchResult  # pylint: disable=import-outside-toplevel

        kept = clip_path(self._clips_dir, clip) if self._clips_dir else None
        if kept and kept_exists(kept):
            # A kept clip starts at `start`; the clip still ends at `end` (a section can hold a frame past it).
            return FetchResult(_local_copy(kept, tmp), 0.0, clip.section_duration, KEPT)
        mirrored = self._from_mirrors(clip, tmp) if self._sources is not None else None
        if mirrored is not None:
            if kept:
                _store(mirrored.path, kept)
            return mirrored
        with self._semaphore or _process_semaphore(self._concurrency):
            result = fetch_clip(video_id=clip.video, start=clip.start or 0.0, end=clip.end, work_dir=tmp,
                                config=self._config)
        result = dataclasses.replace(result, probe=lean_header(result.probe))
        if not kept:
            return result
        if result.figures.method != "section" or result.start_offset > 0:
            trimmed = os.path.join(tmp, f"trimmed-{uuid.uuid4().hex}.mp4")
            _trim(result.path, trimmed, start=result.start_offset, duration=result.duration, limits=self.trim_limits)
            _store(trimmed, kept)
            # a new file: its header is not the probed one
            return dataclasses.replace(result, path=trimmed, start_offset=0.0, probe=None)
        _store(result.path, kept)
        return dataclasses.replace(result, start_offset=0.0)

    def _from_mirrors(self, clip: ClipRequest, tmp: str) -> FetchResult | None:
        """The row's clip from the first --clip_sources template that has it (cut to [start, end)), or None.

        A template the row's values cannot fill safely, a missing file, an unreadable one or one that is
        not a video falls through to the next template (then YouTube): a mirror only ever adds clips.
        """
        from pipeline.fetch.config import FetchResult  # pylint: disable=import-outside-toplevel

        began = time.monotonic()
        for index, template, location, why in self._sources.candidates(clip):
            if location is None:
                logging.debug("--clip_sources template %d skipped for %s: %s", index + 1, clip.clip_id, why)
                continue
            try:
                local, size = self._mirror_copy(template, location, tmp, index)
                if local is None:
                    continue
                header = probe.read_header(local, input_args=probe.STRANGER_FILE_ARGS, timeout=60.0)
                if not header.ok or not header.has_video:
                    logging.info("--clip_sources: %s is not a video (%s); trying the next source", location,
                                 header.summary())
                    continue
                duration = clip.section_duration
                if not template.trimmed:  # the whole video: cut the row's section out of it
                    trimmed = os.path.join(tmp, f"mirror-cut-{uuid.uuid4().hex}.mp4")
                    _trim(local, trimmed, start=clip.start or 0.0, duration=duration, limits=self.trim_limits)
                    local, header = trimmed, None
            except ClipError as e:
                logging.info("--clip_sources: %s failed (%s: %s); trying the next source", location, e.reason,
                             e.message)
                continue
            figures = FetchFigures("mirror", bytes=size, seconds=time.monotonic() - began, mirror=index)
            return FetchResult(local, 0.0, duration, figures, lean_header(header))
        return None

    def _mirror_copy(self, template: Template, location: str, tmp: str, index: int) -> tuple[str | None, int]:
        """(a local file holding `location`, bytes read), or (None, 0) when the mirror lacks it. Raises ClipError."""
        ext = os.path.splitext(location.split("?", 1)[0])[1][:16] or ".mp4"
        local = os.path.join(tmp, f"mirror-{index}{ext}")
        if template.remote:
            from pipeline.fetch.clips import download_video  # pylint: disable=import-outside-toplevel

            try:
                with self._semaphore or _process_semaphore(self._concurrency):
                    return local, download_video(location, local, config=self._config)
            except ClipError as e:
                if e.reason == "not_found":
                    return None, 0
                raise
        if template.scheme:
            if not FileSystems.exists(location):
                return None, 0
            fileio.copy_to_local(location, local)
            return local, os.path.getsize(local)
        if not os.path.isfile(location):
            return None, 0
        return location, os.path.getsize(location)

    def count_figures(self, figures: FetchFigures) -> None:
        """Counts one clip's fetch figures (from `fetch`) in the run's metrics; call it in the bundle's thread."""
        if figures.method == "kept":
            self._reused.inc()
            return
        if figures.method == "mirror":
            self._mirrored.inc()
            self._bytes.inc(figures.bytes)
            return
        self._fetched.inc()
        self._bytes.inc(figures.bytes)
        self._retried.inc(max(0, figures.attempts - 1))

    def download(self, url: str, dest: str, *, sent: dict | None = None) -> int:
        """Downloads an http(s) video row to `dest` through the guard proxy; returns bytes. Raises ClipError.

        The fetch settings apply: --fetch_max_seconds is the hard deadline, --fetch_timeout the read
        timeout, --proxy the upstream proxy. The caller counts the bytes (`count_bytes`, in the
        bundle's thread).
        """
        from pipeline.fetch.clips import download_video  # pylint: disable=import-outside-toplevel

        with self._semaphore or _process_semaphore(self._concurrency):
            return download_video(url, dest, config=self._config, sent=sent)

    def localize(self, source: str, tmp: str, *, sent: dict | None = None) -> tuple[str, int]:
        """(a local file holding the video row `source`, bytes downloaded for it). Raises ClipError.

        The one place a videos-CSV row's source is fetched: an http(s) URL is downloaded through the
        guard proxy (`download`; `sent` gets what the server said), another Beam file system's path
        (gs://) copied into `tmp` (`missing_file` when it is not there), and a local path is used in
        place, unchecked (the caller's probe names what is wrong with it). The caller counts the bytes.
        """
        if probe.is_remote(source):
            local = os.path.join(tmp, "remote-input" + fileio.extension(source))
            return local, self.download(source, local, sent=sent)
        if "://" in source:
            if not FileSystems.exists(source):
                raise ClipError("missing_file", f"no such file: {source}", stage="fetch")
            local = os.path.join(tmp, "input" + fileio.extension(source))
            fileio.copy_to_local(source, local)
            return local, 0
        return source, 0

    def count_bytes(self, size: int) -> None:
        """Counts downloaded bytes (from `download`) in the run's metrics; call it in the bundle's thread."""
        self._bytes.inc(size)


def _local_copy(path: str, tmp: str) -> str:
    """`path` itself when local, else a copy of it in `tmp`."""
    if "://" not in path:
        return path
    local = os.path.join(tmp, "kept.mp4")
    fileio.copy_to_local(path, local)
    return local


def _store(local: str, dest: str) -> None:
    """Publishes `local` as the kept clip `dest`, complete or not at all, never over another file.

    Locally the copy goes to a temporary sibling that is hard-linked to `dest`, which fails if
    `dest` exists: a writer that finds it there already (another run keeping the same clip id,
    the same name by `path_component`) leaves it and drops its own copy; a file of another
    name there (a case-insensitive disk) is a `name_collision`. On gs:// (no create-if-absent
    through Beam's FileSystems) it is written under a temporary name and renamed; a writer
    racing it writes the same clip id.
    """
    if "://" in dest:
        with open(local, "rb") as src, fileio.atomic_write(dest) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = fileio.temp_name(dest)
    try:
        shutil.copyfile(local, tmp)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            kept_exists(dest)  # the same name: the same clip id, kept by another writer; else a collision
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            # No hard links on this disk: check, then rename (a racing writer keeps the same clip id).
            if kept_exists(dest):
                return
            os.replace(tmp, dest)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _trim(src: str, dst: str, *, start: float, duration: float | None, limits: DecodeConfig | None = None) -> None:
    """Re-encodes [start, start+duration) so the kept clip starts at `start` within one frame.

    Needed when the source could not be fetched as a section (a whole file came back) and for
    videos-CSV rows in a fetch-only build. The bounds are the decoder's: the header is checked
    against the frame-size caps first, ffmpeg refuses larger frames met later (`-max_pixels`),
    and the whole re-encode has the decode timeout (reason `timeout`).
    """
    limits = limits or DecodeConfig()
    header = probe.read_header("file:" + os.path.abspath(src), input_args=probe.STRANGER_FILE_ARGS,
                               timeout=limits.timeout_s)
    try:
        probe.check_decodable(header, src, max_frame_side=limits.max_frame_side,
                              max_frame_pixels=limits.max_frame_pixels)
    except ClipError as e:
        raise ClipError(e.reason, e.message, stage="fetch") from None
    cmd = [probe.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-protocol_whitelist", probe.LOCAL_PROTOCOLS, "-format_whitelist", probe.UNTRUSTED_FORMATS,
           "-max_pixels", str(int(limits.max_frame_pixels)), "-ss", f"{start:.6f}"]
    if duration is not None:
        cmd += ["-t", f"{duration:.6f}"]
    cmd += ["-i", "file:" + os.path.abspath(src), "-map", "0:v:0", "-map", "0:a:0?", "-c:v", "libx264",
            "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart",
            "file:" + os.path.abspath(dst)]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        raise ClipError("timeout", f"re-encoding the clip took longer than {limits.timeout_s:g} s (--decode_timeout)",
                        stage="fetch") from None
    if proc.returncode != 0:
        raise ClipError("trim_failed", f"could not trim the fetched file: "
                        f"{proc.stderr.decode('utf-8', 'replace').strip()[-300:]}", stage="fetch")
