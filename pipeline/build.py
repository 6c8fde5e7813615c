"""Builds a YouTube-8M frame-level dataset from an annotation CSV.

Locally (DirectRunner, two worker processes):

  python -m pipeline.build --input_csv videos.csv --output_dir out/ \
      --model_dir ~/yt8m-models --direct_running_mode=multi_processing --direct_num_workers=2

Offline smoke run without the official model files (random weights, loudly marked):

  python -m pipeline.build --input_csv videos.csv --output_dir out/ --models synthetic

On Dataflow (see README "Dataflow"):

  python -m pipeline.build --input_csv gs://BUCKET/videos.csv --output_dir gs://BUCKET/dataset \
      --model_dir gs://BUCKET/models --runner DataflowRunner --project PROJECT --region REGION \
      --temp_location gs://BUCKET/tmp --setup_file ./setup.py
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import sys

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from pipeline import annotations
from pipeline.models import registry
from pipeline.options import BuildOptions
from transforms.assemble import AssembleRecords
from transforms.decode import DecodeClips
from transforms.inference import AudioModelHandler, ExtractFeatures, RgbModelHandler
from transforms.read import ReadAnnotations
from transforms.write import WriteDataset


class UsageError(Exception):
    """A problem with the command line or the inputs as a whole; nothing has started."""


def build_pipeline(p: beam.Pipeline, options: BuildOptions, *, run_info: dict | None = None):
    """Wires the whole dataset build onto `p`. Returns the PCollection holding the stats dict."""
    config = options.model_config()
    base_dir = _dirname(options.input_csv)
    read = p | "ReadAnnotations" >> ReadAnnotations(options.input_csv)
    decoded = read["clips"] | "DecodeClips" >> beam.ParDo(
        DecodeClips(base_dir=base_dir, timeout_s=options.decode_timeout)).with_outputs(
        DecodeClips.RGB, DecodeClips.AUDIO, DecodeClips.META, DecodeClips.FAILURES)
    rgb = decoded[DecodeClips.RGB] | "RgbFeatures" >> ExtractFeatures(
        RgbModelHandler(config, batch_size=options.rgb_batch_size))
    audio = decoded[DecodeClips.AUDIO] | "AudioFeatures" >> ExtractFeatures(
        AudioModelHandler(config, batch_size=options.audio_batch_size))
    records, assembly_failures = (
        {"meta": decoded[DecodeClips.META], "rgb": rgb, "audio": audio}
        | "AssembleRecords" >> AssembleRecords(read["vocabulary"]))
    failures = (read["failures"], decoded[DecodeClips.FAILURES], assembly_failures) | "AllFailures" >> beam.Flatten()
    return {"records": records, "failures": failures, "vocabulary": read["vocabulary"],
            "rows_read": read["rows_read"]} | "WriteDataset" >> WriteDataset(
        output_dir=options.output_dir, records_per_shard=options.records_per_shard,
        failures_per_shard=options.failures_per_shard, run_info=run_info or {})


def _dirname(path: str) -> str:
    if "://" in path:
        return path.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(path))


def check_input_csv(path: str) -> str:
    """Fails before any work starts when the CSV is missing or of no known format. Returns the format."""
    if not FileSystems.exists(path):
        raise UsageError(f"--input_csv {path}: no such file")
    with FileSystems.open(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            for fmt, _ in annotations.read_rows(text):
                return fmt
        except annotations.UnknownFormatError as e:
            raise UsageError(f"--input_csv {path}: {e}") from e
        except UnicodeDecodeError as e:
            raise UsageError(f"--input_csv {path}: not UTF-8 text ({e})") from e
    raise UsageError(f"--input_csv {path}: no data rows")


_OUTPUT_PATTERNS = ("records/*", "failures-*", "vocabulary.csv", "stats.json")


def _existing_outputs(output_dir: str) -> list[str]:
    found = []
    for pattern in _OUTPUT_PATTERNS:
        match = FileSystems.match([FileSystems.join(output_dir, pattern)])[0]
        found += [m.path for m in match.metadata_list]
    return found


def prepare_output_dir(output_dir: str, *, overwrite: bool) -> None:
    """Refuses to mix two builds in one directory unless --overwrite, which clears the old one first."""
    existing = _existing_outputs(output_dir)
    if existing and not overwrite:
        raise UsageError(f"--output_dir {output_dir} already holds a dataset ({len(existing)} files, e.g. "
                         f"{existing[0]}); pass --overwrite to replace it or choose another directory")
    if existing:
        # stats.json goes first: from here on the directory no longer looks like a finished build.
        existing.sort(key=lambda path: not path.endswith("stats.json"))
        FileSystems.delete(existing)
    records_dir = FileSystems.join(output_dir, "records")
    if not FileSystems.exists(records_dir):
        FileSystems.mkdirs(records_dir)


def _announce_synthetic() -> None:
    bar = "!" * 78
    print(f"\n{bar}\n{registry.SYNTHETIC_WARNING}\n{bar}\n", file=sys.stderr, flush=True)
    logging.warning(registry.SYNTHETIC_WARNING)


def run(argv: list[str] | None = None) -> dict:
    """Parses flags, checks inputs and models, runs the pipeline; returns the stats."""
    pipeline_options = PipelineOptions(argv)
    options = pipeline_options.view_as(BuildOptions)
    # Workers need the main session's imports only through our packages; setup.py ships them.
    pipeline_options.view_as(SetupOptions).save_main_session = False
    problems = options.validate_build()
    if problems:
        raise UsageError("; ".join(problems) + " (see python -m pipeline.build --help)")
    input_format = check_input_csv(options.input_csv)
    config = options.model_config()
    if config.synthetic:
        _announce_synthetic()
    files = registry.resolve(config)  # fails here, before any work, when files are missing
    prepare_output_dir(options.output_dir, overwrite=options.overwrite)
    run_info = {
        "input_csv": options.input_csv,
        "input_format": input_format,
        "models": files.describe(),
        "synthetic": files.synthetic,
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with beam.Pipeline(options=pipeline_options) as p:
        build_pipeline(p, options, run_info=run_info)
    stats_path = FileSystems.join(options.output_dir, "stats.json")
    with FileSystems.open(stats_path) as f:
        stats = json.loads(f.read().decode("utf-8"))
    if files.synthetic:
        _announce_synthetic()
    return stats


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        stats = run(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # pylint: disable=broad-except
        from pipeline.errors import ModelArtifactError  # pylint: disable=import-outside-toplevel

        if isinstance(e, ModelArtifactError):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise
    print(json.dumps({k: stats[k] for k in ("rows_read", "records_written", "failures", "failures_by_reason",
                                            "steps_written", "seconds_of_video", "synthetic")}, indent=2))
    if not stats.get("all_rows_accounted_for", False):
        print("error: rows read != records written + failure lines; see stats.json", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
