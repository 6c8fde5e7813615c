"""`python -m pipeline.doctor`: checks what a build needs before a long run, one line per item.

Each line is ``OK``, ``WARN`` (a build can start, but something will go worse than it could),
``PROBLEM`` (a build would fail or lose every clip: fix it first) or ``SKIP`` (not checkable
here), followed by the item, what was found and, when not OK, the fix. The exit status is 0
when no line is a PROBLEM, 1 otherwise (2 for bad flags).

The flags are the build's own (``--model_dir``, ``--cookies``, ``--proxy``, ``--output_dir``,
...), so the values of a build command can be pasted. Nothing is downloaded and nothing secret
is printed: cookie values never, proxy credentials as ``***``. TensorFlow is imported (quietly)
only to check official model files, because that check is the build's own resolution code.
See docs/troubleshooting.md for what each line means.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
import subprocess
import sys
from collections.abc import Sequence

from pipeline.cli.checks import (
    OK,
    PROBLEM,
    SKIP,
    WARN,
    Check,
    check_cookies,
    check_gcs,
    check_proxy,
    gcs_reachable,
    split_values,
)
from pipeline.dataset import fileio
from pipeline.decode import probe
from pipeline.fetch import ytdlp
from pipeline.net import netguard

YTDLP_MAX_AGE_DAYS = 90
"""A yt-dlp release older than this gets a warning: YouTube changes its site every few weeks."""

# What the project asks of ffmpeg (pipeline/decode/media.py's decode command, transforms/support/fetch_rows.py's
# re-encode of a whole-file download, the whitelists of pipeline/decode/probe.py and netguard, and the
# yt-dlp merge into mp4). Missing any of these fails clips.
FFMPEG_NEEDS: dict[str, tuple[str, ...]] = {
    "encoders": ("wrapped_avframe", "rawvideo", "pcm_s16le", "libx264", "aac"),
    "decoders": ("h264", "aac"),
    "filters": ("split", "select", "aresample", "scale"),
    "muxers": ("framecrc", "rawvideo", "s16le", "mp4"),
    "demuxers": (*netguard.STRANGER_FORMATS.split(","), "hls"),
    "protocols": (*netguard.NETWORK_PROTOCOLS.split(","), *probe.LOCAL_PROTOCOLS.split(",")),
}
# Codecs YouTube and mirrors also serve; without them such clips fail `decode`, the rest work.
FFMPEG_WANTS: dict[str, tuple[str, ...]] = {
    "decoders": ("vp9", "av1", "vp8", "hevc", "mpeg4", "opus", "vorbis", "mp3"),
}



# --------------------------------------------------------------------------------------------
# ffmpeg


def _ffmpeg_names(ffmpeg: str, kind: str) -> set[str]:
    """Names ffmpeg lists for ``-encoders``, ``-decoders``, ``-filters``, ``-muxers``, ``-demuxers``, ``-protocols``."""
    out = subprocess.run([ffmpeg, "-hide_banner", f"-{kind}"], capture_output=True, text=True, timeout=60,
                         check=False).stdout.splitlines()
    names: set[str] = set()
    if kind == "protocols":  # "Input:" then indented names, then "Output:"
        section = None
        for line in out:
            if line.strip() in ("Input:", "Output:"):
                section = line.strip()
            elif section == "Input:" and line.startswith(" ") and line.strip():
                names.add(line.strip())
        return names
    start = next((i + 1 for i, line in enumerate(out) if line.strip().startswith("---")), len(out))
    for line in out[start:]:
        if kind in ("muxers", "demuxers"):  # " DE  mov,mp4,m4a  QuickTime / MOV": 4 flag columns
            fields = line[4:].split()
            if fields:
                names.update(fields[0].split(","))
        else:  # " V....D libx264  ..." / " TS aap  AA->A ...": flags, then the name
            fields = line.split()
            if len(fields) >= 2:
                names.add(fields[1])
    return names


def check_ffmpeg(ffmpeg: str | None = None) -> Check:
    """The imageio-ffmpeg binary runs and has every encoder, decoder, filter, format and protocol used."""
    fix = "reinstall the pinned imageio-ffmpeg (pip install -r requirements.txt); its binary has all of them"
    try:
        ffmpeg = ffmpeg or probe.ffmpeg_exe()
        version = subprocess.run([ffmpeg, "-hide_banner", "-version"], capture_output=True, text=True, timeout=60,
                                 check=False).stdout.split("\n", 1)[0]
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        return Check(PROBLEM, "ffmpeg", f"cannot run imageio-ffmpeg's ffmpeg: {error}", fix)
    match = re.match(r"ffmpeg version (\S+)", version)
    if not match:
        return Check(PROBLEM, "ffmpeg", f"{ffmpeg} does not say it is ffmpeg ({version[:80]!r})", fix)
    missing, lacking = [], []
    for kind in sorted(set(FFMPEG_NEEDS) | set(FFMPEG_WANTS)):
        have = _ffmpeg_names(ffmpeg, kind)
        missing += [f"{kind[:-1]} {name}" for name in FFMPEG_NEEDS.get(kind, ()) if name not in have]
        lacking += [f"{kind[:-1]} {name}" for name in FFMPEG_WANTS.get(kind, ()) if name not in have]
    where = f"{match.group(1)} at {ffmpeg}"
    if missing:
        return Check(PROBLEM, "ffmpeg", f"{where} lacks {', '.join(missing)}", fix)
    if lacking:
        return Check(WARN, "ffmpeg", f"{where} lacks {', '.join(lacking)} (clips in those codecs fail `decode`)", fix)
    return Check(OK, "ffmpeg", f"{where}, with the encoders, decoders, filters, formats and protocols the build uses")


# --------------------------------------------------------------------------------------------
# yt-dlp, its JavaScript runtime and its plugins


def check_ytdlp_version(today: datetime.date | None = None) -> Check:
    """yt-dlp's version and how old it is (YouTube breaks old releases)."""
    from yt_dlp.version import __version__  # pylint: disable=import-outside-toplevel

    fix = ('pip install -U "yt-dlp[default,deno]" (yt-dlp with the yt-dlp-ejs and deno it names), then pin '
           "the new yt-dlp, yt-dlp-ejs and deno versions in requirements.txt; YouTube changes often and old "
           "releases stop finding formats")
    match = re.match(r"(\d{4})\.(\d{1,2})\.(\d{1,2})", __version__)
    if not match:
        return Check(WARN, "yt-dlp", f"version {__version__} (release date unknown)", fix)
    released = datetime.date(*(int(part) for part in match.groups()))
    age = ((today or datetime.date.today()) - released).days
    text = f"{__version__}, released {released.isoformat()} ({age} days ago)"
    if age > YTDLP_MAX_AGE_DAYS:
        return Check(WARN, "yt-dlp", f"{text}: older than {YTDLP_MAX_AGE_DAYS} days", fix)
    return Check(OK, "yt-dlp", text)


class _Lines:
    """yt-dlp logger keeping every line (doctor prints only what it picks)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def debug(self, msg: str) -> None:
        self.lines.append(msg)

    info = warning = error = debug

    def find(self, pattern: str) -> str | None:
        """The text after ``pattern`` in the last line that has it."""
        for line in reversed(self.lines):
            match = re.search(pattern + r"\s*(.*)$", line)
            if match:
                return match.group(1).strip()
        return None


@dataclasses.dataclass(frozen=True)
class YtdlpView:
    """What yt-dlp itself reports about its JavaScript runtimes and YouTube providers, with the build's params."""

    runtimes: str | None  # yt-dlp's "JS runtimes:" debug line, e.g. "deno-2.9.8" or "none"
    challenge_providers: dict[str, bool]  # JS challenge solvers: name -> available
    po_token_providers: dict[str, bool]  # PO-token providers (plugins): name -> available
    runtime_path: str | None  # the deno yt-dlp resolved, None when it found none


def ytdlp_view(params: dict | None = None) -> YtdlpView:
    """Asks a real YoutubeDL, built with the JS runtime params the fetcher passes, what it can use.

    Offline: it reads yt-dlp's start-up report and sets up its YouTube challenge and PO-token
    directors, which is what an extraction would do first (nothing is requested).
    """
    # pylint: disable=import-outside-toplevel,protected-access  # yt-dlp's internals: guarded by the caller
    import yt_dlp
    from yt_dlp.extractor.youtube.jsc._director import initialize_jsc_director
    from yt_dlp.extractor.youtube.pot._director import initialize_pot_director
    from yt_dlp.extractor.youtube.pot._provider import BuiltinIEContentProvider

    logger = _Lines()
    options = {"js_runtimes": ytdlp.js_runtimes(), **(params or {}), "verbose": True, "logger": logger,
               "quiet": True, "noprogress": True}
    with yt_dlp.YoutubeDL(options) as ydl:
        runtimes = logger.find(r"JS runtimes:")
        deno = ydl._js_runtimes.get("deno")
        info = deno.info if deno is not None else None
        youtube = ydl.get_info_extractor("Youtube")
        jsc = initialize_jsc_director(youtube)
        pot = initialize_pot_director(youtube)
        challenge = {p.PROVIDER_NAME: bool(p.is_available()) for p in jsc.providers.values()}
        tokens = {p.PROVIDER_NAME: bool(p.is_available()) for p in pot.providers.values()
                  if not isinstance(p, BuiltinIEContentProvider)}
    return YtdlpView(runtimes=runtimes, challenge_providers=challenge, po_token_providers=tokens,
                     runtime_path=info.path if info is not None else None)


def check_js_runtime() -> list[Check]:
    """deno from its package, yt-dlp-ejs, and whether yt-dlp can solve YouTube's JS challenges with them."""
    fix = "pip install -r requirements.txt (it pins deno and yt-dlp-ejs); see docs/troubleshooting.md"
    checks = []
    deno = ytdlp.deno_exe()
    try:
        import yt_dlp_ejs  # pylint: disable=import-outside-toplevel

        ejs = Check(OK, "yt-dlp-ejs", f"{yt_dlp_ejs.version} (YouTube's challenge solver scripts)")
        wanted = _ejs_version_wanted()
        if wanted and wanted.split(".")[:2] != yt_dlp_ejs.version.split(".")[:2]:
            # yt-dlp skips scripts of another minor version (and fetches from npm only when allowed).
            ejs = Check(PROBLEM, "yt-dlp-ejs", f"{yt_dlp_ejs.version}, but this yt-dlp uses {wanted} scripts only",
                        f"pip install yt-dlp-ejs=={wanted} and pin it in requirements.txt")
    except ImportError:
        ejs = Check(PROBLEM, "yt-dlp-ejs", "not installed: YouTube's challenges cannot be solved, formats go missing",
                    fix)
    try:
        view = ytdlp_view()
    except Exception as error:  # pylint: disable=broad-except  # yt-dlp internals moved: say so, do not crash
        checks.append(Check(WARN, "js runtime", f"deno at {deno}; yt-dlp could not be asked about it "
                            f"({type(error).__name__}: {error})", "upgrade pipeline and yt-dlp together"))
        return [*checks, ejs]
    solvers = sorted(name for name, ok in view.challenge_providers.items() if ok)
    if deno is None:
        found = f"; yt-dlp found {view.runtime_path} on PATH" if view.runtime_path else ""
        checks.append(Check(PROBLEM, "js runtime", f"the deno package is not installed{found}: yt-dlp reports "
                            f"JS runtimes: {view.runtimes}", fix))
    elif view.runtime_path != deno or not solvers:
        checks.append(Check(PROBLEM, "js runtime", f"deno at {deno}, but yt-dlp reports JS runtimes: "
                            f"{view.runtimes}, challenge solvers: {', '.join(solvers) or 'none'}", fix))
    else:
        checks.append(Check(OK, "js runtime", f"yt-dlp reports JS runtimes: {view.runtimes} ({deno}); "
                            f"challenge solvers available: {', '.join(solvers)}"))
    checks.append(ejs)
    if ejs.status == OK and not solvers:
        checks[-1] = dataclasses.replace(ejs, status=WARN, text=ejs.text + ", but no challenge solver can run it",
                                         fix=fix)
    if view.po_token_providers:
        names = ", ".join(f"{name}" + ("" if ok else " (unavailable)")
                          for name, ok in sorted(view.po_token_providers.items()))
        status = OK if any(view.po_token_providers.values()) else WARN
        checks.append(Check(status, "po-token", f"provider plugins: {names}",
                            "start the provider's server or fix its install (see the plugin's own docs)"))
    else:
        checks.append(Check(OK, "po-token", "no PO-token provider plugin (optional: without one YouTube allows "
                            "fewer videos per hour per identity; see docs/troubleshooting.md)"))
    return checks


def _ejs_version_wanted() -> str | None:
    """The EJS script version this yt-dlp accepts (its vendored copy's); None if yt-dlp moved it."""
    try:
        from yt_dlp.extractor.youtube.jsc._builtin.vendor import VERSION  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    return str(VERSION)


# --------------------------------------------------------------------------------------------
# Models


def check_models(*, mode: str = "yt8m", model_dir: str | None = None, model_cache: str | None = None,
                 base_url: str | None = None, allow_download: bool = True, with_audio: bool = True,
                 online: bool = True) -> list[Check]:
    """One line per official artifact, found by the build's own resolution code; nothing is downloaded.

    Files from ``--model_dir`` (archives included) are extracted into the cache and checked,
    as the build would at start; an artifact missing from the cache is a warning when the
    build may download it, a problem otherwise.
    """
    # pylint: disable=import-outside-toplevel  # TensorFlow only when checking models
    from pipeline.errors import ModelArtifactError
    from pipeline.features import artifact_store, artifacts, registry

    if mode == "synthetic":
        return [Check(OK, "models", "--models synthetic: seeded random weights, generated at build start "
                      "(features mean nothing)")]
    cache = model_cache or registry.default_model_cache()
    how = "pass --model_dir DIR holding the official files, or --models synthetic for an offline smoke run"
    if not fileio.is_local(cache):
        return [Check(PROBLEM, "models", f"--model_cache {cache} must be a local directory", how)]
    if model_dir and not fileio.is_local(model_dir) and not online:
        return [Check(SKIP, "models", f"--model_dir {model_dir}: not checked, its storage is unreachable from here "
                      f"(offline)", "run doctor where the build runs")]
    if model_dir and fileio.is_local(model_dir) and not os.path.isdir(model_dir):
        return [Check(PROBLEM, "models", f"--model_dir {model_dir} is not a directory", how)]
    keys = [a.key for a in artifact_store.ARTIFACTS if with_audio or a.key in ("rgb_graph", "rgb_pca_dir")]
    checks = []
    fetch_dir = artifact_store.download_dir(cache, base_url)
    for artifact in artifact_store.ARTIFACTS:
        if artifact.key not in keys:
            continue
        item = f"model {artifact.key}"
        if not model_dir and not artifact_store.present(artifact, artifact_store.target(artifact, fetch_dir)):
            url = artifact_store.artifact_url(artifact, base_url)
            if allow_download:
                checks.append(Check(WARN, item, f"not in the cache {fetch_dir}: the build will download {url} "
                                    f"(network needed)", f"{how}; or put it in the cache with a first online run"))
            else:
                checks.append(Check(PROBLEM, item, f"not in the cache {fetch_dir} and --no_download forbids "
                                    f"fetching {url}", f"{how}, or {artifact.flag} PATH"))
            continue
        try:
            found = artifacts.resolve_official(model_dir=model_dir, overrides={}, cache_dir=cache, base_url=base_url,
                                               allow_download=False, keys=(artifact.key,))
        except ModelArtifactError as error:
            checks.append(Check(PROBLEM, item, _artifact_problem(str(error)), f"{how} (docs/troubleshooting.md)"))
            continue
        checks.append(Check(OK, item, f"{found.paths[artifact.key]} (from {found.sources[artifact.key]})"))
    return checks


def _artifact_problem(message: str) -> str:
    """The one artifact's problem out of the build's message (which also lists every way to provide files)."""
    from pipeline.features.artifact_store import HOW_TO_PROVIDE  # pylint: disable=import-outside-toplevel

    message = message.replace(HOW_TO_PROVIDE, "").strip()
    _, sep, rest = message.partition("(docs/spec.md §5); ")
    return (rest if sep else message).rstrip(". ")


# --------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.doctor",
        description="Check what a build needs (ffmpeg, yt-dlp and its JS runtime, models, cookies, proxy, gs://) "
                    "and print one line per item: OK, WARN, PROBLEM (with its fix) or SKIP. Takes the build's "
                    "flags. Exit status 0 when a build can start.")
    parser.add_argument("--models", default="yt8m", choices=("yt8m", "synthetic"), help="As the build's --models.")
    parser.add_argument("--model_dir", default=None, help="As the build's --model_dir (local or gs://).")
    parser.add_argument("--model_cache", default=None, help="As the build's --model_cache.")
    parser.add_argument("--model_base_url", default=None, help="As the build's --model_base_url.")
    parser.add_argument("--no_download", dest="model_download", action="store_false",
                        help="As the build's --no_download: a model missing from the cache is a problem.")
    parser.add_argument("--audio", default="vggish", choices=("vggish", "zeros"), help="As the build's --audio.")
    parser.add_argument("--cookies", action="append", default=None,
                        help="Netscape cookies file(s): repeat the flag or separate with commas.")
    parser.add_argument("--proxy", action="append", default=None,
                        help="http://[user:pass@]host:port proxy(ies): repeat the flag or separate with commas.")
    parser.add_argument("--output_dir", default=None, help="As the build's --output_dir (its gs:// access is checked).")
    parser.add_argument("--proxy_timeout", type=float, default=3.0, help="Seconds to wait for a proxy's TCP answer.")
    return parser


def run_checks(args: argparse.Namespace) -> list[Check]:
    """Every check the flags ask for, in the printed order."""
    remote = [("--output_dir", args.output_dir), ("--model_dir", args.model_dir)]
    online = gcs_reachable() if any(path and path.startswith("gs://") for _, path in remote) else True
    checks = [check_ffmpeg(), check_ytdlp_version(), *check_js_runtime()]
    checks += check_models(mode=args.models, model_dir=args.model_dir, model_cache=args.model_cache,
                           base_url=args.model_base_url, allow_download=args.model_download,
                           with_audio=args.audio != "zeros", online=online)
    checks += [check_cookies(path) for path in split_values(args.cookies)]
    checks += [check_proxy(url, timeout=args.proxy_timeout) for url in split_values(args.proxy)]
    checks += check_gcs(remote, online=online)
    return checks


def main(argv: Sequence[str] | None = None) -> int:
    """Prints one line per check and a summary; returns 1 when a PROBLEM blocks a build, else 0."""
    from pipeline.cli import logs  # pylint: disable=import-outside-toplevel

    logs.setup()
    args = _parser().parse_args(argv)
    checks = run_checks(args)
    for check in checks:
        print(check.line(), flush=True)
    problems = sum(c.status == PROBLEM for c in checks)
    warnings = sum(c.status == WARN for c in checks)
    if problems:
        print(f"doctor: {problems} problem(s) to fix before a build ({warnings} warning(s))")
        return 1
    print(f"doctor: a build can start ({warnings} warning(s))")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
