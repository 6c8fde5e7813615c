"""Command-line options of the dataset builder, as a Beam PipelineOptions subclass."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import csvsplit
from pipeline.models import registry, tf_setup

if TYPE_CHECKING:
    import argparse

    from pipeline.fetch import FetchConfig


def _positive_float(text: str) -> float:
    import argparse  # pylint: disable=import-outside-toplevel
    import math  # pylint: disable=import-outside-toplevel

    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from e
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def _int_at_least(text: str, minimum: int) -> int:
    import argparse  # pylint: disable=import-outside-toplevel

    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from e
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} must be " + ("> 0" if minimum == 1 else f">= {minimum}"))
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def _non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _model_copies(text: str) -> int:
    """--model_copies: a positive integer, or per_process (0: no sharing across processes)."""
    if text.strip().lower() in ("per_process", "0"):
        return 0
    return _positive_int(text)


class BuildOptions(PipelineOptions):
    """Flags of `python -m pipeline.build`; every other flag goes to Beam (--runner, ...)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--input_csv", default=None,
                            help="Annotation CSV (local or gs://): headerless video_file,labels; headered "
                                 "video,labels[,id,start,end,split]; or a Kinetics CSV.")
        parser.add_argument("--output_dir", default=None, help="Dataset directory (local or gs://).")
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
        parser.add_argument("--model_download_timeout", type=float, default=10.0,
                            help="Socket timeout (seconds) of model downloads, so an offline machine fails fast.")
        parser.add_argument("--rgb_graph", default=None,
                            help="Path of classify_image_graph_def.pb (or of inception-2015-12-05.tgz).")
        parser.add_argument("--rgb_pca_dir", default=None,
                            help="Directory with the YouTube-8M PCA: mean.npy, eigenvecs.npy, eigenvals.npy "
                                 "(or the path of yt8m_pca.tgz).")
        parser.add_argument("--audio_checkpoint", default=None,
                            help="Path of vggish_model.ckpt: the released single file (V1) or a V2 prefix.")
        parser.add_argument("--audio_pca", default=None, help="Path of vggish_pca_params.npz.")
        parser.add_argument("--synthetic_seed", type=int, default=0, help="Seed of --models synthetic.")
        parser.add_argument("--rgb_batch_size", type=int, default=32, help="Frames per Inception-v3 call.")
        parser.add_argument("--audio_batch_size", type=int, default=64, help="Examples per VGGish call.")
        parser.add_argument("--records_per_shard", type=int, default=1000,
                            help="Records per TFRecord shard; the shard count per split follows from it.")
        parser.add_argument("--failures_per_shard", type=int, default=100000, help="Lines per failure-report shard.")
        parser.add_argument("--decode_timeout", type=float, default=120.0,
                            help="Seconds ffmpeg may stay silent (and network read timeout) before a clip fails.")
        parser.add_argument("--decode_ahead", type=_non_negative_int, default=4,
                            help="Clips each worker decodes ahead of the models, on a thread of its own, so that "
                                 "decoding overlaps inference (at most 64 MiB of frames wait); 0 decodes in step.")
        parser.add_argument("--skip_existing", action="store_true",
                            help="Resume: skip clip ids already in --output_dir's records; new records go to new "
                                 "shard files that never overwrite earlier ones.")
        # Fetching YouTube ids (Kinetics CSVs) with yt-dlp.
        parser.add_argument("--video_url_template", default="https://www.youtube.com/watch?v={id}",
                            help="URL of a YouTube id, {id} substituted; point it at a mirror or a local server.")
        parser.add_argument("--allow_file_urls", action="store_true",
                            help="Allow file:// URLs from --video_url_template (only http(s) otherwise).")
        parser.add_argument("--fetch_max_height", type=int, default=360,
                            help="Largest video height to fetch (the RGB model sees 299x299: "
                                 "more pixels cost bytes, not accuracy).")
        parser.add_argument("--fetch_attempts", type=int, default=5, help="Attempts per clip for transient errors.")
        parser.add_argument("--fetch_max_seconds", type=float, default=300.0,
                            help="Time budget per clip over all fetch attempts; also a hard wall-clock deadline on "
                                 "each clip's network traffic (http(s) video rows included).")
        parser.add_argument("--fetch_backoff", type=float, default=1.0,
                            help="Base of the exponential backoff (with jitter) between fetch attempts, seconds.")
        parser.add_argument("--fetch_timeout", type=float, default=30.0, help="Socket timeout of a fetch, seconds.")
        parser.add_argument("--fetch_concurrency", type=int, default=4,
                            help="Clips fetched at once per worker process.")
        parser.add_argument("--rate_limit", default=None, help="Download rate limit per fetch, e.g. 2M (yt-dlp).")
        parser.add_argument("--cookies", default=None,
                            help="Netscape cookies file for yt-dlp (YouTube blocks anonymous bulk fetching "
                                 "from cloud addresses).")
        parser.add_argument("--proxy", default=None,
                            help="http://[user:pass@]host:port proxy for every remote connection, after the "
                                 "per-clip guard's address checks (SOCKS is not supported).")
        parser.add_argument("--clips_dir", default=None,
                            help="Keep trimmed clips as DIR/{label}/{id}.mp4 (test/ when unlabeled); a clip "
                                 "already there is used instead of fetched again.")
        parser.add_argument("--overwrite", action="store_true",
                            help="Replace an existing dataset in --output_dir instead of refusing to run.")
        # Frame selection and outputs (issue 10), and the frame-size cap (issue 9).
        parser.add_argument("--frames_per_second", type=_positive_float, default=1.0,
                            help="RGB steps per second, as the YouTube-8M extractor's flag: a step is the frame "
                                 "after the first one 1000/F ms past the previous mark (SPEC §2); audio step k "
                                 "starts k/F s after the first frame.")
        parser.add_argument("--audio", default="vggish", choices=("vggish", "zeros"),
                            help="vggish: VGGish features (default). zeros: what the extractor's "
                                 "--insert_zero_audio_features writes (128 zero bytes per step, mean_audio 0); "
                                 "the audio model is never loaded.")
        parser.add_argument("--skip_frame_level_features", action="store_true",
                            help="Video-level output, as the extractor's flag: records with context only "
                                 "(id, labels, mean_rgb, mean_audio), the YouTube-8M video-level layout.")
        parser.add_argument("--max_frame_side", type=_positive_int, default=8192,
                            help="Clips with a wider or taller frame fail `too_large` before decoding.")
        parser.add_argument("--max_frame_pixels", type=_positive_int, default=40_000_000,
                            help="Clips whose frames have more pixels fail `too_large` before decoding.")
        # fetch stage / fetch-only (issue 12)
        parser.add_argument("--features", default="all", choices=("all", "none"),
                            help="all: build the feature records (default). none: a fetch-only build, the Kinetics "
                                 "crawler's job: fetch and trim every row into --clips_dir label folders (required), "
                                 "write the failure report and stats.json, no records; no model is resolved or "
                                 "loaded.")
        parser.add_argument("--fetch_max_bytes", type=_positive_int, default=64 << 20,
                            help="Largest fetched clip carried from the fetch stage to the decoder in one element "
                                 "(without --clips_dir), and largest http(s) video row downloaded; a larger one "
                                 "fails `too_large`.")
        # models per VM (issue 12)
        parser.add_argument("--model_copies", type=_model_copies, default=1,
                            help="Copies of each model per worker machine, shared by all its SDK worker processes "
                                 "through RunInference (default 1; GPU workers: one per GPU, copy k runs on GPU k). "
                                 "per_process: "
                                 "every SDK worker process loads its own copy (no sharing).")
        parser.add_argument("--tf_intra_op_threads", type=_positive_int, default=None,
                            help="TensorFlow intra-op threads of a process holding models (default: the machine's "
                                 "cores, divided by the worker processes with --model_copies per_process; env "
                                 "YT8M_TF_INTRA_OP_THREADS).")
        parser.add_argument("--tf_inter_op_threads", type=_positive_int, default=None,
                            help="TensorFlow inter-op threads of a process holding models (default: as intra-op; "
                                 "env YT8M_TF_INTER_OP_THREADS).")
        parser.add_argument("--inference_accelerator", default=None,
                            help="Beam accelerator resource hint for the RgbFeatures/AudioFeatures steps only, e.g. "
                                 "'type:nvidia-tesla-t4;count:1;install-nvidia-driver' (Dataflow GPU workers).")
        # Output safety (issue 9): the build lock of --output_dir.
        parser.add_argument("--break_lock", action="store_true",
                            help="Take over --output_dir's build lock (.build.lock) even when its owner cannot be "
                                 "checked (another host). Only after making sure no build runs there; a stale lock "
                                 "of a dead process on this host is taken over without it.")
        # input at scale (issue 12): the CSV is read in parallel splits found by the launcher's pass.
        parser.add_argument("--csv_split_rows", type=_positive_int, default=csvsplit.DEFAULT_ROWS_PER_SPLIT,
                            help="Rows per split of --input_csv: each split is parsed by its own worker "
                                 "(compressed CSVs are read as one split).")

    # --input_csv/--output_dir are checked in validate_build(), not with required=True: Beam parses
    # every PipelineOptions subclass for any pipeline in the process, tests' TestPipelines too.
    def validate_build(self) -> list[str]:
        """One message per missing required flag (--input_csv, --output_dir); empty when the build can start."""
        return [f"--{name} is required" for name in ("input_csv", "output_dir") if not getattr(self, name)]

    def fetch_config(self) -> FetchConfig:
        """The --fetch_*, --rate_limit, --cookies, --proxy and URL flags as the fetch stage's picklable config."""
        from pipeline.fetch import FetchConfig  # pylint: disable=import-outside-toplevel

        return FetchConfig(
            url_template=self.video_url_template, max_height=self.fetch_max_height, max_attempts=self.fetch_attempts,
            max_seconds=self.fetch_max_seconds, backoff_base=self.fetch_backoff, socket_timeout=self.fetch_timeout,
            rate_limit=self.rate_limit, cookies_file=self.cookies, proxy=self.proxy,
            allow_file_urls=self.allow_file_urls, max_bytes=self.fetch_max_bytes)

    def model_sharing(self, processes: int | None = None) -> tf_setup.ModelSharing:
        """Model copies per machine and TensorFlow threads (--model_copies, --tf_*_op_threads).

        Args:
            processes: SDK worker processes per machine (only used with --model_copies per_process);
                None: one per core, as on Dataflow.
        """
        return tf_setup.ModelSharing(copies=self.model_copies, processes=processes,
                                     intra_op_threads=self.tf_intra_op_threads,
                                     inter_op_threads=self.tf_inter_op_threads)

    def model_config(self) -> registry.ModelConfig:
        """The --models, --model_* and per-file model flags as the picklable config every worker gets."""
        return registry.ModelConfig(
            mode=self.models, seed=self.synthetic_seed, model_dir=self.model_dir, model_cache=self.model_cache,
            rgb_graph=self.rgb_graph, rgb_pca_dir=self.rgb_pca_dir, audio_checkpoint=self.audio_checkpoint,
            audio_pca=self.audio_pca, model_base_url=self.model_base_url, allow_download=self.model_download,
            download_timeout=self.model_download_timeout, with_audio=self.audio != "zeros")
