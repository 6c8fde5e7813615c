"""Command-line options of the dataset builder, as a Beam PipelineOptions subclass."""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.features import registry, tf_setup
from pipeline.read import csvsplit

if TYPE_CHECKING:
    from pipeline.decode.config import DecodeConfig
    from pipeline.features import models
    from pipeline.fetch import mirrors
    from pipeline.fetch.config import FetchConfig


# Flag value types: argparse calls them at parse time, so a bad value stops the run there (exit 2,
# one usage line and the error) before any banner or work. Every numeric flag uses one of these:
# `parser.add_argument("--foo", type=positive_int, ...)`.


def _number(text: str, kind: type, *, minimum: float, strict: bool) -> float:

    try:
        value = kind(text)
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from e
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
    if value < minimum or (strict and value == minimum):
        raise argparse.ArgumentTypeError(f"{text!r} must be {'>' if strict else '>='} {minimum:g}")
    return value


def positive_int(text: str) -> int:
    """An integer > 0 (batch sizes, shard sizes, attempts, concurrency)."""
    return _number(text, int, minimum=0, strict=True)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (0 usually meaning "none" or "off")."""
    return _number(text, int, minimum=0, strict=False)


def positive_float(text: str) -> float:
    """A finite number > 0 (timeouts, budgets, rates)."""
    return _number(text, float, minimum=0, strict=True)


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (backoff bases, delays)."""
    return _number(text, float, minimum=0, strict=False)


# The names earlier code used.
_positive_float, _positive_int, _non_negative_int = positive_float, positive_int, non_negative_int


def _checked_text(flag: str, check: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse type that runs `check` on the text at parse time and keeps the text as given.

    The value stays a string (Beam serializes every option to its workers); `check`'s ValueError
    becomes argparse's one-line error, without the flag name it may start with (argparse adds it).
    """

    def parse(text: str) -> str:
        try:
            check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{flag} ")) from e
        return text

    parse.__name__ = flag.lstrip("-")
    return parse


def _parse_rate(text: str) -> object:
    from pipeline.net import pacing  # pylint: disable=import-outside-toplevel  (the launcher stays light)

    return pacing.parse_rate(text)


def _parse_extractor_args(text: str) -> object:
    from pipeline.fetch import ytdlp  # pylint: disable=import-outside-toplevel  (imports yt-dlp)

    return ytdlp.parse_extractor_args(text)


def _parse_clip_sources(text: str) -> object:
    from pipeline.fetch import mirrors  # pylint: disable=import-outside-toplevel

    return mirrors.ClipSources.parse(text)


# --fetch_rate N/PERIOD; --yt_dlp_extractor_args IE_KEY:ARG=VALUE[;...] (never echoed: tokens);
# --clip_sources TEMPLATE[,...].
_fetch_rate = _checked_text("--fetch_rate", _parse_rate)
_extractor_args = _checked_text("--yt_dlp_extractor_args", _parse_extractor_args)
_clip_sources = _checked_text("--clip_sources", _parse_clip_sources)


def _model_copies(text: str) -> int:
    """--model_copies: a positive integer, or per_process (0: no sharing across processes)."""
    if text.strip().lower() in ("per_process", "0"):
        return 0
    return positive_int(text)


# The stages of `--help`, in the order a build runs them; each stage's flags are registered by one
# function below, so flags of different work land in different functions.
STAGES = (
    ("input", "Input and output"),
    ("fetch", "Fetching (YouTube ids, http(s) videos, --clips_dir)"),
    ("decode", "Decoding and frame selection"),
    ("features", "Features and models"),
    ("output", "Records and reports"),
    ("run", "Running"),
)


def add_input_flags(parser: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """The CSV, the dataset directory and what happens to one already there."""
    parser.add_argument("--input_csv", default=None,
                        help="Annotation CSV (local or gs://): headerless video_file,labels; headered "
                             "video,labels[,id,start,end,split]; or a Kinetics CSV.")
    parser.add_argument("--output_dir", default=None, help="Dataset directory (local or gs://).")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace an existing dataset in --output_dir instead of refusing to run.")
    parser.add_argument("--skip_existing", action="store_true",
                        help="Resume: skip clip ids already in --output_dir's records; new records go to new "
                             "shard files that never overwrite earlier ones. Rows whose last failure was "
                             "transient (network, timeout, rate_limited, internal_error) are tried again; rows "
                             "that failed for good keep their failure line (see --retry_permanent).")
    parser.add_argument("--retry_permanent", action="store_true",
                        help="With --skip_existing: also try again the rows whose earlier failure was permanent "
                             "(not_found, unavailable_*, ...), e.g. after adding cookies or a mirror.")
    parser.add_argument("--break_lock", action="store_true",
                        help="Take over --output_dir's build lock (.build.lock) even when its owner cannot be "
                             "checked (another host). Only after making sure no build runs there; a stale lock "
                             "of a dead process on this host is taken over without it.")
    parser.add_argument("--csv_split_rows", type=positive_int, default=csvsplit.DEFAULT_ROWS_PER_SPLIT,
                        help="Rows per split of --input_csv: each split is parsed by its own worker "
                             "(compressed CSVs are read as one split).")


def add_fetch_flags(parser: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """How YouTube rows (and http(s) rows) are fetched, and where clips are kept."""
    parser.add_argument("--clip_sources", type=_clip_sources, default=None,
                        help="Mirrors tried in order before YouTube for Kinetics rows: TEMPLATE[,TEMPLATE...], "
                             "each a local, gs:// or http(s) path with {id}, {youtube_id}, {label}, {split}, "
                             "{start}, {end} ({start:06d} as in CVDF names). A template with {id}, {start} or "
                             "{end} names the trimmed clip (CVDF: DIR/{split}/{youtube_id}_{start:06d}_"
                             "{end:06d}.mp4); one with only {youtube_id} names the whole video, cut to "
                             "[start, end). A missing file falls through to the next template, then YouTube.")
    parser.add_argument("--video_url_template", default="https://www.youtube.com/watch?v={id}",
                        help="URL of a YouTube id, {id} substituted; point it at a mirror or a local server.")
    parser.add_argument("--allow_file_urls", action="store_true",
                        help="Allow file:// URLs from --video_url_template (only http(s) otherwise).")
    parser.add_argument("--fetch_max_height", type=positive_int, default=360,
                        help="Largest video height to fetch (the RGB model sees 299x299: "
                             "more pixels cost bytes, not accuracy).")
    parser.add_argument("--fetch_attempts", type=positive_int, default=5,
                        help="Attempts per clip for transient errors.")
    parser.add_argument("--fetch_max_seconds", type=positive_float, default=300.0,
                        help="Time budget per clip over all fetch attempts; also a hard wall-clock deadline on "
                             "each clip's network traffic (http(s) video rows included).")
    parser.add_argument("--fetch_backoff", type=non_negative_float, default=1.0,
                        help="Base of the exponential backoff (with jitter) between fetch attempts, seconds.")
    parser.add_argument("--fetch_timeout", type=positive_float, default=30.0,
                        help="Socket timeout of a fetch, seconds.")
    parser.add_argument("--fetch_concurrency", type=positive_int, default=4,
                        help="Clips fetched at once per worker process.")
    parser.add_argument("--fetch_max_bytes", type=positive_int, default=64 << 20,
                        help="Largest fetched clip carried from the fetch stage to the decoder in one element "
                             "(without --clips_dir), and largest http(s) video row downloaded; a larger one "
                             "fails `too_large`.")
    parser.add_argument("--rate_limit", default=None, help="Download rate limit per fetch, e.g. 2M (yt-dlp).")
    parser.add_argument("--cookies", default=None,
                        help="Netscape cookies file(s) for yt-dlp (YouTube blocks anonymous bulk fetching "
                             "from cloud addresses): FILE, FILE1,FILE2 or @LIST (one path per line); local or "
                             "gs://, read by the launcher and shipped to the workers. Several: one identity "
                             "each (docs/youtube.md).")
    parser.add_argument("--proxy", default=None,
                        help="http://[user:pass@]host:port proxy for every remote connection, after the "
                             "per-clip guard's address checks (SOCKS is not supported); URL1,URL2 or @LIST "
                             "(one per line, local or gs://) for one identity each. Passwords are never logged.")
    parser.add_argument("--fetch_rate", type=_fetch_rate, default=None,
                        help="N/PERIOD, e.g. 300/h or 4/4s: new videos started per identity and host by each "
                             "worker process, evenly spaced (default: no cap; the pacer still honours "
                             "Retry-After and backs off when the site pushes back).")
    parser.add_argument("--yt_dlp_extractor_args", type=_extractor_args, default=None,
                        help="yt-dlp --extractor-args, e.g. 'youtube:player_client=web;po_token=web.gvs+TOKEN' "
                             "(several separated by spaces); tokens are never logged.")
    parser.add_argument("--clips_dir", default=None,
                        help="Keep trimmed clips as DIR/{label}/{id}.mp4 (test/ when unlabeled); a clip "
                             "already there is used instead of fetched again.")


def add_decode_flags(parser: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """How each clip is decoded: steps per second, bounds, the decode-ahead thread."""
    parser.add_argument("--frames_per_second", type=positive_float, default=1.0,
                        help="RGB steps per second, as the YouTube-8M extractor's flag: a step is the frame "
                             "after the first one 1000/F ms past the previous mark (docs/spec.md §2); audio step k "
                             "starts k/F s after the first frame.")
    parser.add_argument("--decode_timeout", type=positive_float, default=120.0,
                        help="Seconds ffmpeg may stay silent (and network read timeout) before a clip fails.")
    parser.add_argument("--decode_ahead", type=non_negative_int, default=4,
                        help="Clips each worker decodes ahead of the models, on a thread of its own, so that "
                             "decoding overlaps inference (at most 64 MiB of frames wait); 0 decodes in step.")
    parser.add_argument("--max_frame_side", type=positive_int, default=8192,
                        help="Clips with a wider or taller frame fail `too_large` before decoding.")
    parser.add_argument("--max_frame_pixels", type=positive_int, default=40_000_000,
                        help="Clips whose frames have more pixels fail `too_large` before decoding.")


def add_features_flags(parser: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """What is computed: fetch-only or features, which models, where their files are."""
    parser.add_argument("--features", default="all", choices=("all", "none"),
                        help="all: build the feature records (default). none: a fetch-only build, the Kinetics "
                             "crawler's job: fetch and trim every row into --clips_dir label folders (required), "
                             "write the failure report and stats.json, no records; no model is resolved or "
                             "loaded.")
    parser.add_argument("--models", default="yt8m", choices=registry.MODES,
                        help="yt8m: the official Inception-v3/VGGish artifacts (default). synthetic: the same "
                             "architectures with seeded random weights, for offline smoke runs and benchmarks.")
    parser.add_argument("--model_dir", default=None,
                        help="Directory (local or gs://) holding the official model files.")
    parser.add_argument("--model_cache", default=None,
                        help=f"Local directory where downloaded, extracted or generated model files are kept "
                             f"(default {registry.default_model_cache()}).")
    parser.add_argument("--model_base_url", default=None,
                        help="Download the official model files from URL/<file name> (a mirror or local server) "
                             "instead of their official locations.")
    parser.add_argument("--no_download", dest="model_download", action="store_false",
                        help="Never download model files: use --model_dir, the per-file flags or the cache only.")
    parser.add_argument("--model_download_timeout", type=positive_float, default=10.0,
                        help="Socket timeout (seconds) of model downloads, so an offline machine fails fast.")
    parser.add_argument("--rgb_graph", default=None,
                        help="Path of classify_image_graph_def.pb (or of inception-2015-12-05.tgz).")
    parser.add_argument("--rgb_pca_dir", default=None,
                        help="Directory with the YouTube-8M PCA: mean.npy, eigenvecs.npy, eigenvals.npy "
                             "(or the path of yt8m_pca.tgz).")
    parser.add_argument("--audio_checkpoint", default=None,
                        help="Path of vggish_model.ckpt: the released single file (V1) or a V2 prefix.")
    parser.add_argument("--audio_pca", default=None, help="Path of vggish_pca_params.npz.")
    parser.add_argument("--synthetic_seed", type=non_negative_int, default=0, help="Seed of --models synthetic.")
    parser.add_argument("--audio", default="vggish", choices=("vggish", "zeros"),
                        help="vggish: VGGish features (default). zeros: what the extractor's "
                             "--insert_zero_audio_features writes (128 zero bytes per step, mean_audio 0); "
                             "the audio model is never loaded.")
    parser.add_argument("--extra_features", default="",
                        help="Comma list of registered feature models to run beside rgb and audio "
                             "(pipeline/features/models.py); each adds the feature list NAME and the context "
                             "mean_NAME to every record.")
    parser.add_argument("--rgb_batch_size", type=positive_int, default=32, help="Frames per Inception-v3 call.")
    parser.add_argument("--audio_batch_size", type=positive_int, default=64, help="Examples per VGGish call.")


def add_output_flags(parser: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """The records and the failure report."""
    parser.add_argument("--skip_frame_level_features", action="store_true",
                        help="Video-level output, as the extractor's flag: records with context only "
                             "(id, labels, mean_rgb, mean_audio), the YouTube-8M video-level layout.")
    parser.add_argument("--records_per_shard", type=positive_int, default=1000,
                        help="Records per TFRecord shard; the shard count per split follows from it.")
    parser.add_argument("--failures_per_shard", type=positive_int, default=100000,
                        help="Lines per failure-report shard.")


def add_run_flags(parser: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """Where and how the models run (copies, threads, accelerators)."""
    parser.add_argument("--model_copies", type=_model_copies, default=1,
                        help="Copies of each model per worker machine, shared by all its SDK worker processes "
                             "through RunInference (default 1; GPU workers: one per GPU, copy k runs on GPU k). "
                             "per_process: "
                             "every SDK worker process loads its own copy (no sharing).")
    parser.add_argument("--tf_intra_op_threads", type=positive_int, default=None,
                        help="TensorFlow intra-op threads of a process holding models (default: the machine's "
                             "cores, divided by the worker processes with --model_copies per_process; env "
                             "YT8M_TF_INTRA_OP_THREADS).")
    parser.add_argument("--tf_inter_op_threads", type=positive_int, default=None,
                        help="TensorFlow inter-op threads of a process holding models (default: as intra-op; "
                             "env YT8M_TF_INTER_OP_THREADS).")
    parser.add_argument("--inference_accelerator", default=None,
                        help="Beam accelerator resource hint for the RgbFeatures/AudioFeatures steps only, e.g. "
                             "'type:nvidia-tesla-t4;count:1;install-nvidia-driver' (Dataflow GPU workers).")

FLAGS_BY_STAGE = {name: globals()[f"add_{name}_flags"] for name, _ in STAGES}


class BuildOptions(PipelineOptions):
    """Flags of `python -m pipeline.build`; every other flag goes to Beam (--runner, ...)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        for name, title in STAGES:
            FLAGS_BY_STAGE[name](parser.add_argument_group(title))

    # --input_csv/--output_dir are checked in validate_build(), not with required=True: Beam parses
    # every PipelineOptions subclass for any pipeline in the process, tests' TestPipelines too.
    def validate_build(self) -> list[str]:
        """One message per missing required flag (--input_csv, --output_dir) or bad --extra_features; empty
        when the build can start."""
        problems = [f"--{name} is required" for name in ("input_csv", "output_dir") if not getattr(self, name)]
        try:
            self.feature_models()
        except (KeyError, ValueError) as e:
            problems.append(str(e.args[0]) if e.args else str(e))
        return problems

    def feature_models(self) -> tuple[models.FeatureModel, ...]:
        """The registry entries this build runs: rgb, audio (unless --audio zeros), then --extra_features.

        Raises KeyError (an unregistered name) or ValueError, each with a one-line message.
        """
        from pipeline.features import models as feature_models  # pylint: disable=import-outside-toplevel

        extra = [name.strip() for name in (self.extra_features or "").split(",") if name.strip()]
        try:
            return feature_models.for_run(extra, with_audio=self.audio != "zeros")
        except KeyError as e:
            raise KeyError(f"--extra_features: {e.args[0]}") from None

    def fetch_config(self) -> FetchConfig:
        """The --fetch_*, --rate_limit, --cookies, --proxy, --clips_dir, --clip_sources and URL flags as the fetch
        stage's picklable config.

        Reads the --cookies files (and @LIST files) here: call it in the launcher, then
        `identities.scrub_options`. Raises ValueError with a one-line message.
        """
        from pipeline.fetch import identities  # pylint: disable=import-outside-toplevel
        from pipeline.fetch.config import FetchConfig  # pylint: disable=import-outside-toplevel

        return FetchConfig(
            url_template=self.video_url_template, max_height=self.fetch_max_height, max_attempts=self.fetch_attempts,
            max_seconds=self.fetch_max_seconds, backoff_base=self.fetch_backoff, socket_timeout=self.fetch_timeout,
            rate_limit=self.rate_limit, allow_file_urls=self.allow_file_urls, fetch_rate=self.fetch_rate,
            cookie_jars=identities.stage_cookies(self.cookies),
            proxies=tuple(identities.split_values(self.proxy, flag="--proxy")),
            extractor_args=self.yt_dlp_extractor_args, max_bytes=self.fetch_max_bytes, clips_dir=self.clips_dir,
            concurrency=self.fetch_concurrency, sources=self.clip_sources_parsed())

    def clip_sources_parsed(self) -> mirrors.ClipSources | None:
        """--clip_sources as `pipeline.fetch.mirrors.ClipSources`, or None without the flag."""
        from pipeline.fetch import mirrors  # pylint: disable=import-outside-toplevel

        return mirrors.ClipSources.parse(self.clip_sources) if self.clip_sources else None

    def model_sharing(self, processes: int | None = None) -> tf_setup.ModelSharing:
        """Model copies per machine and TensorFlow threads (--model_copies, --tf_*_op_threads).

        Args:
            processes: SDK worker processes per machine (only used with --model_copies per_process);
                None: one per core, as on Dataflow.
        """
        return tf_setup.ModelSharing(copies=self.model_copies, processes=processes,
                                     intra_op_threads=self.tf_intra_op_threads,
                                     inter_op_threads=self.tf_inter_op_threads)

    def decode_config(self) -> DecodeConfig:
        """--frames_per_second, --audio, --decode_timeout, --max_frame_side/pixels and --decode_ahead as one config.

        The decode stage takes it, and the fetch stage's re-encodes take its time and frame-size bounds.
        """
        from pipeline.decode.config import DecodeConfig  # pylint: disable=import-outside-toplevel

        return DecodeConfig(frames_per_second=self.frames_per_second, audio_mode=self.audio,
                            timeout_s=self.decode_timeout, max_frame_side=self.max_frame_side,
                            max_frame_pixels=self.max_frame_pixels, decode_ahead=self.decode_ahead)

    def model_config(self) -> registry.ModelConfig:
        """The --models, --model_* and per-file model flags as the picklable config every worker gets."""
        return registry.ModelConfig(
            mode=self.models, seed=self.synthetic_seed, model_dir=self.model_dir, model_cache=self.model_cache,
            rgb_graph=self.rgb_graph, rgb_pca_dir=self.rgb_pca_dir, audio_checkpoint=self.audio_checkpoint,
            audio_pca=self.audio_pca, model_base_url=self.model_base_url, allow_download=self.model_download,
            download_timeout=self.model_download_timeout, with_audio=self.audio != "zeros")


USAGE = "python -m pipeline.build --input_csv CSV --output_dir DIR [flags]   (--help: the flags)"


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter with each flag's default at the end of its help (where it has one)."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=34, width=110)

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        # `N` / `X` / `VALUE` instead of the flag's name in capitals, which pushed most help to a line of its own.
        if action.type in (positive_int, non_negative_int, int, _model_copies):
            return "N"
        return "X" if action.type in (positive_float, non_negative_float, float) else "VALUE"

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default not in (None, False, argparse.SUPPRESS) and "default" not in text
                and action.nargs != 0):  # a switch's default (off) says nothing
            text += f" (default {action.default})"
        return text


def help_parser() -> argparse.ArgumentParser:
    """The parser `python -m pipeline.build --help` prints: this tool's flags by stage, then where Beam's are."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.build", usage=USAGE, add_help=False, formatter_class=_HelpFormatter,
        description="Builds a YouTube-8M-style frame-level dataset (TFRecords of tf.train.SequenceExample) from "
                    "an annotation CSV.",
        epilog="Every other flag goes to Apache Beam (--runner, --direct_running_mode, --direct_num_workers, "
               "--project, --region, ...): python -m pipeline.build --help_beam lists them.")
    general = parser.add_argument_group("General")
    general.add_argument("-h", "--help", action="store_true", help="Show this help and exit.")
    general.add_argument("--help_beam", action="store_true", help="Show Apache Beam's own flags and exit.")
    general.add_argument("-v", "--verbose", action="store_true",
                         help="Log at DEBUG (the project's lines) and show third-party INFO lines.")
    for name, title in STAGES:
        FLAGS_BY_STAGE[name](parser.add_argument_group(title))
    return parser


class UsageError(Exception):
    """A problem with the command line or the inputs as a whole; nothing has started."""


def known_flags_parser() -> argparse.ArgumentParser:
    """The parser Beam itself builds from every PipelineOptions subclass (BuildOptions included).

    ``PipelineOptions.get_all_options`` builds it and hands it to ``add_extra_args_fn``, the
    public hook it gives runners for extra flags; keeping it from there reuses Beam's own
    parser (its flags, its subclass selection, no abbreviations) without its private class.
    """
    parsers = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
    return parsers[0]


def check_arguments(argv: list[str]) -> None:
    """Raises UsageError naming every argument that neither this tool nor Beam knows.

    Beam's PipelineOptions drops unknown arguments with a log line, so a typo (`--model-dir`,
    `--skip-existing`, a flag that does not exist) would otherwise run a normal build. Hyphenated
    spellings are not accepted as aliases: every flag here, Beam's included, is spelled with
    underscores, and one spelling keeps commands copyable between docs, scripts and Dataflow.
    """
    parser = known_flags_parser()
    # A bad value (`--models synthtic`, `--records_per_shard 0`) exits 2 with one usage line and the
    # error, not Beam's usage of every flag it has (some 160 lines).
    parser.prog, parser.usage = "python -m pipeline.build", USAGE
    known_values, unknown = parser.parse_known_args(argv)
    _check_beam_values(vars(known_values))
    if not unknown:
        return
    # Every flag here, Beam's included, is spelled --<dest>, so the options' names are the known flags.
    known = sorted("--" + name for name in PipelineOptions([]).get_all_options())
    problems = []
    for arg in unknown:
        if not arg.startswith("-"):
            if not problems or problems[-1].startswith("unexpected"):
                problems.append(f"unexpected argument {arg!r}")
            continue  # most likely the value of the unknown flag before it
        name = arg.split("=", 1)[0]
        underscored = "--" + name.lstrip("-").replace("-", "_")
        close = [underscored] if underscored in known else difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        problems.append(f"unknown argument {name}" + (f" (did you mean {close[0]}?)" if close else ""))
    raise UsageError("; ".join(problems))


# Beam's own numeric flags that take any integer but mean nothing (or hang a run) below a minimum.
_BEAM_MINIMUMS = {"direct_num_workers": 0, "num_workers": 1, "max_num_workers": 1,
                  "number_of_worker_harness_threads": 1, "disk_size_gb": 1, "sdk_worker_parallelism": 0,
                  "max_cache_memory_usage_mb": 0}


def _check_beam_values(values: dict) -> None:
    """Beam's numeric flags checked here, at parse time, as ours are by their argparse types."""
    for name, minimum in _BEAM_MINIMUMS.items():
        value = values.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value < minimum:
            raise UsageError(f"--{name} {value}: must be >= {minimum}")
