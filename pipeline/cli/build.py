"""Builds a YouTube-8M frame-level dataset from an annotation CSV.

Locally (the default: one process, the models run in it; on a small machine the fastest):

  python -m pipeline.build --input_csv videos.csv --output_dir out/ --model_dir ~/yt8m-models

Worker processes (--direct_running_mode=multi_processing --direct_num_workers=N) pay off only with
cores to spare: each process decodes on its own, and N above the machine's cores costs time and memory.

Offline smoke run without the official model files (random weights, loudly marked):

  python -m pipeline.build --input_csv videos.csv --output_dir out/ --models synthetic

On Dataflow (see docs/dataflow.md):

  python -m pipeline.build --input_csv gs://BUCKET/videos.csv --output_dir gs://BUCKET/dataset \
      --model_dir gs://BUCKET/models --runner DataflowRunner --project PROJECT --region REGION \
      --temp_location gs://BUCKET/tmp --setup_file ./setup.py
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from typing import TYPE_CHECKING

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from pipeline.cli import interrupts, logs
from pipeline.cli import options as options_module
from pipeline.cli.options import BuildOptions, UsageError
from pipeline.dataset import fileio, outputs, settings
from pipeline.dataset.lock import BuildLock
from pipeline.errors import storage_failure
from pipeline.features import models, registry
from pipeline.fetch import identities
from pipeline.read import annotations, csvsplit
from transforms.assemble import AssembleRecords
from transforms.decode import DecodeClips
from transforms.fetch import FetchClips
from transforms.inference import ExtractFeatures, FeatureModelHandler
from transforms.read import ReadAnnotations
from transforms.resume import SkipExisting
from transforms.support.fetch_rows import ClipFetcher
from transforms.support.metrics import NAMESPACE
from transforms.support.progress import RunProgress
from transforms.write import WriteDataset

if TYPE_CHECKING:
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
    from apache_beam.runners.runner import PipelineResult

    from pipeline.fetch.config import FetchConfig


def build_pipeline(p: beam.Pipeline, options: BuildOptions, *, run_info: dict | None = None,
                   run_tag: str = "", expected_rows: int | None = None, keep_labels: tuple[str, ...] = (),
                   replaces: tuple[str, ...] = (), csv_splits: list[csvsplit.CsvSplit] | None = None,
                   kept_shards: tuple[dict, ...] = (), fetch_config: FetchConfig | None = None) -> beam.PCollection:
    """Wires the whole dataset build onto `p`. Returns the PCollection holding the stats dict.

    `run_tag` names this run's record shards when earlier records are kept (--skip_existing);
    `keep_labels` are the earlier vocabulary's names (their indices must not change);
    `replaces` are earlier side files (failure shards) removed once this run's are complete;
    `csv_splits` are the launcher's split points of the CSV (None: read it as one split);
    `kept_shards` the figures of the record shards a resume keeps (stats.json's dataset totals);
    `fetch_config` is the launcher's staged one (None: built from `options` here).
    """
    config = options.model_config()
    base_dir = _dirname(options.input_csv)
    read = p | "ReadAnnotations" >> ReadAnnotations(options.input_csv, keep_labels=keep_labels, splits=csv_splits)
    clips, skipped = read["clips"], p | "NothingSkipped" >> beam.Create([0])
    resume_failures = p | "NoResumeFailures" >> beam.Create([])
    skipped_clips = p | "NoSkippedClips" >> beam.Create([])
    if options.skip_existing:
        existing = outputs.existing_records(options.output_dir)
        resumed = clips | "SkipExisting" >> SkipExisting(
            existing, outputs.existing_failure_shards(options.output_dir), retry_permanent=options.retry_permanent)
        clips, skipped, skipped_clips = resumed["todo"], resumed["skipped_count"], resumed["skipped"]
        resume_failures = (resumed["failures"], resumed["carried"]) | "ResumeFailures" >> beam.Flatten()
    dataset_inputs = {"requests": read["clips"], "skipped": skipped_clips}
    decode_config = options.decode_config()
    fetcher = ClipFetcher(config=fetch_config or options.fetch_config(), trim_limits=decode_config)
    fetch_only = options.features == "none"
    fetched = clips | "FetchClips" >> beam.ParDo(FetchClips(
        fetcher=fetcher, base_dir=base_dir, keep_only=fetch_only, expected=expected_rows)).with_outputs(
        FetchClips.FAILURES, main="clips")
    if fetch_only:  # --features none: the kept clips are the output; no decoding, no model
        failures = ((read["failures"], resume_failures, fetched[FetchClips.FAILURES])
                    | "AllFailures" >> beam.Flatten())
        return {"records": p | "NoRecords" >> beam.Create([]), "failures": failures, "vocabulary": read["vocabulary"],
                "rows_read": read["rows_read"], "skipped_existing": skipped, "kept": fetched.clips} | (
            "WriteDataset" >> WriteDataset(
                output_dir=options.output_dir, records_per_shard=options.records_per_shard,
                failures_per_shard=options.failures_per_shard, run_info=run_info or {}, run_tag=run_tag,
                replaces=tuple(replaces), kept_shards=kept_shards))
    # The fusion break: decoding (and the models) may run on other workers than the fetch.
    decoded = fetched.clips | "SpreadFetched" >> beam.Reshuffle() | "DecodeClips" >> beam.ParDo(
        DecodeClips(base_dir=base_dir, config=decode_config, fetcher=fetcher, expected=expected_rows)).with_outputs(
        DecodeClips.RGB, DecodeClips.AUDIO, DecodeClips.META, DecodeClips.FAILURES)
    sharing = options.model_sharing(sdk_processes_per_machine(p.options))
    run_models = options.feature_models()
    streams = {models.FRAMES: decoded[DecodeClips.RGB], models.LOG_MEL: decoded[DecodeClips.AUDIO]}
    batch_sizes = {"rgb": options.rgb_batch_size, "audio": options.audio_batch_size}
    joined = {"meta": decoded[DecodeClips.META]}
    for model in run_models:  # with --audio zeros the audio model is neither built nor loaded
        handler = FeatureModelHandler(model, config, batch_size=batch_sizes.get(model.name, model.batch_size),
                                      sharing=sharing, run_models=run_models)
        joined[model.name] = streams[model.reads] | f"{model.name.capitalize()}Features" >> on_accelerator(
            ExtractFeatures(handler), options.inference_accelerator)
    records, assembly_failures = joined | "AssembleRecords" >> AssembleRecords(
        read["vocabulary"], video_level=options.skip_frame_level_features,
        extra=tuple(m for m in run_models if m.name not in models.LAYOUT))
    failures = ((read["failures"], resume_failures, fetched[FetchClips.FAILURES], decoded[DecodeClips.FAILURES],
                 assembly_failures) | "AllFailures" >> beam.Flatten())
    return {"records": records, "failures": failures, "vocabulary": read["vocabulary"],
            "rows_read": read["rows_read"], "skipped_existing": skipped, **dataset_inputs} | "WriteDataset" >> (
        WriteDataset(output_dir=options.output_dir, records_per_shard=options.records_per_shard,
                     failures_per_shard=options.failures_per_shard, run_info=run_info or {}, run_tag=run_tag,
                     replaces=tuple(replaces), kept_shards=kept_shards))


def sdk_processes_per_machine(pipeline_options: PipelineOptions) -> int | None:
    """SDK worker processes on one worker machine (for --model_copies per_process); None: one per core.

    Local runs: --direct_num_workers with multi_processing, else the launcher's own process.
    Dataflow runs one Python SDK process per vCPU unless told otherwise by an experiment.
    """
    found = pipeline_options.get_all_options()
    if is_local_run(pipeline_options):
        if models_run_here(pipeline_options):
            return 1
        return int(found.get("direct_num_workers") or 0) or None
    return 1 if "no_use_multiple_sdk_containers" in (found.get("experiments") or []) else None


def on_accelerator(transform: beam.PTransform, accelerator: str | None) -> beam.PTransform:
    """``transform`` with Beam's accelerator resource hint (--inference_accelerator), if one is given.

    Only the model steps carry it, so on Dataflow they run on the GPU workers in a stage of
    their own while reading, fetching, decoding and writing stay on CPU.
    """
    return transform.with_resource_hints(accelerator=accelerator) if accelerator else transform


def _dirname(path: str) -> str:
    if "://" in path:
        return path.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(path))


def check_input_csv(path: str, *, rows_per_split: int = csvsplit.DEFAULT_ROWS_PER_SPLIT
                    ) -> tuple[str, int, set[str], list[csvsplit.CsvSplit]]:
    """Fails before any work starts when the CSV is missing, unreadable or of no known format.

    Returns (format, number of data rows, labels of the rows that parse, split points); the count
    feeds the progress line's ETA, the labels the vocabulary check of --skip_existing, the split
    points ReadAnnotations' parallel read (`pipeline.read.csvsplit`: one streaming pass that keeps only
    labels and split points). A bad row is not a problem of the run: it becomes a failure line later.
    """
    try:
        if not FileSystems.exists(path):
            raise UsageError(f"--input_csv {path}: no such file")
        scanned = csvsplit.scan(path, rows_per_split=rows_per_split)
    except annotations.UnknownFormatError as e:
        raise UsageError(f"--input_csv {path}: {e}") from e
    except UsageError:
        raise
    except Exception as e:  # pylint: disable=broad-except  (a directory, no permission, an I/O error)
        raise UsageError(f"--input_csv {path} cannot be read: {type(e).__name__}: {e}") from e
    if not scanned.rows:
        raise UsageError(f"--input_csv {path}: no data rows")
    return scanned.format, scanned.rows, scanned.labels, scanned.splits


def _announce_synthetic() -> None:
    bar = "!" * 78
    print(f"{bar}\n{registry.SYNTHETIC_WARNING}\n{bar}", file=sys.stderr, flush=True)


def is_local_run(pipeline_options: PipelineOptions) -> bool:
    """True when the run stays on this machine: no --runner, or the DirectRunner asked by name."""
    runner = pipeline_options.view_as(StandardOptions).runner
    return runner is None or (isinstance(runner, str) and runner.lower() in ("direct", "directrunner"))


def models_run_here(pipeline_options: PipelineOptions) -> bool:
    """True when the models will run in this very process: a local run that is not multi_processing.

    Otherwise worker processes (or machines) host them, and the launcher never imports
    TensorFlow unless a model file must be checked or written: a multi_processing run starts its
    workers seconds sooner, and the launcher stays hundreds of MiB smaller.
    """
    found = pipeline_options.get_all_options()
    return is_local_run(pipeline_options) and found.get("direct_running_mode") != "multi_processing"


def local_runner(pipeline_options: PipelineOptions) -> FnApiRunner:
    """Beam's FnApiRunner, chosen explicitly for local runs.

    Beam 2.77's DirectRunner first tries the Prism runner, which it downloads from GitHub (a DNS
    failure offline; online a binary fetched and run, with our multi-processing and thread
    settings possibly ignored), and falls back to this runner after it. The provision info
    carries every option to the SDK worker processes (PIPELINE_OPTIONS): direct_num_workers for
    the TensorFlow thread split, the harness log levels.
    """
    # pylint: disable=import-outside-toplevel
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(pipeline_options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def run(argv: list[str] | None = None) -> dict:
    """Parses flags, checks inputs and models, runs the pipeline; returns the stats."""
    argv = list(sys.argv[1:] if argv is None else argv)
    options_module.check_arguments(argv)
    local = is_local_run(PipelineOptions(argv))
    if local:
        argv += logs.harness_log_args(argv)
    pipeline_options = PipelineOptions(argv)
    options = pipeline_options.view_as(BuildOptions)
    # Workers need the main session's imports only through our packages; setup.py ships them.
    pipeline_options.view_as(SetupOptions).save_main_session = False
    problems = options.validate_build()
    if problems:
        raise UsageError("; ".join(problems) + " (see python -m pipeline.build --help)")
    fetch_only = options.features == "none"
    if fetch_only and not options.clips_dir:
        raise UsageError("--features none is a fetch-only build: it keeps every clip in --clips_dir, so pass "
                         "--clips_dir DIR (local, or gs:// on Dataflow)")
    if fetch_only and options.skip_existing:
        raise UsageError("--skip_existing resumes records, which --features none does not write; a fetch-only "
                         "build reuses the clips already in --clips_dir by itself: rerun it with --overwrite")
    if pipeline_options.get_all_options().get("dry_run"):
        return _dry_run(pipeline_options, options)
    if options.overwrite and options.skip_existing:
        raise UsageError("--overwrite and --skip_existing contradict each other; pass one")
    try:  # the output directory's refusals first: before the CSV pass, the banner, the model files
        outputs.check_output_dir(options.output_dir, create=False)
        outputs.refuse_existing_dataset(options.output_dir, overwrite=options.overwrite,
                                        skip_existing=options.skip_existing)
    except outputs.OutputError as e:
        raise UsageError(str(e)) from e
    if fetch_only:
        interrupts.set_resume_hint("rerun the same command to resume: the clips already kept in --clips_dir are "
                                   "reused")
    input_format, input_rows, csv_labels, csv_splits = check_input_csv(options.input_csv,
                                                                      rows_per_split=options.csv_split_rows)
    files = None  # --features none: no model is resolved or loaded, TensorFlow is never imported
    if not fetch_only:
        config = options.model_config()
        if config.synthetic:
            _announce_synthetic()
        if models_run_here(pipeline_options):
            logs.import_tensorflow()  # before the pipeline's threads start printing (its start-up lines held back)
        files = registry.resolve(config)  # fails here, before any work, when files are missing
    fetch_config = _staged_fetch_config(pipeline_options, options)
    try:
        outputs.check_output_dir(options.output_dir)
        lock = BuildLock.acquire(options.output_dir, break_lock=options.break_lock)
    except outputs.OutputError as e:
        raise UsageError(str(e)) from e
    try:
        with interrupts.on_interrupt(lock.release), \
                interrupts.on_interrupt(lambda: outputs.remove_leftovers(options.output_dir)), _private_tempdir():
            return _run_locked(pipeline_options, options, input_format=input_format, input_rows=input_rows,
                               csv_labels=csv_labels, files=files, local=local, csv_splits=csv_splits,
                               fetch_config=fetch_config)
    finally:
        lock.release()


def _staged_fetch_config(pipeline_options: PipelineOptions, options: BuildOptions) -> FetchConfig:
    """The fetch config with the cookie files read here (workers get it pickled), then the options scrubbed.

    From here on the options (which Beam logs under -v, shows in the Dataflow console and gives
    every worker process in its environment) hold no proxy password and no token.
    """
    try:
        fetch_config = options.fetch_config()
    except ValueError as e:
        raise UsageError(str(e)) from e
    identities.scrub_options(pipeline_options)
    return fetch_config


@contextlib.contextmanager
def _runner_validation():
    """The runner's own option checks (e.g. Dataflow's project id) as a one-line usage error."""
    try:
        yield
    except ValueError as e:
        if "validations errors" not in str(e):
            raise
        raise UsageError(" ".join(str(e).split())) from e


DRY_RUN_NOTE = ("dry run: the job was built and translated, not submitted; not checked: --input_csv, "
                "--output_dir and the model files (no cloud listing is made)")


def _dry_run(pipeline_options: PipelineOptions, options: BuildOptions) -> dict:
    """--dry_run=True: builds and translates the job offline, touching no input, output or model file.

    A dry run is how a Dataflow job is checked before it is sent (tests/e2e/test_dataflow_job.py),
    often on a machine without credentials: listing gs:// there would only hang on retries.
    """
    if options.features != "none" and options.model_config().synthetic:
        _announce_synthetic()
    fetch_config = _staged_fetch_config(pipeline_options, options)
    with _private_tempdir():
        with _runner_validation():
            p = beam.Pipeline(options=pipeline_options)
            build_pipeline(p, options, run_info={"dry_run": True}, fetch_config=fetch_config)
            state = p.run().state
    print(DRY_RUN_NOTE, file=sys.stderr, flush=True)
    return {"dry_run": True, "state": str(state)}


@contextlib.contextmanager
def _private_tempdir():
    """Points tempfile (and TMPDIR, for worker processes) at one folder removed when the run ends.

    Beam's job service and stager leave empty folders (`beam-temp*`, `tmp*`,
    `beam-requirements-cache`) in the system temp directory on every run; this way nothing of
    a run stays in /tmp, whatever its outcome.
    """
    path = tempfile.mkdtemp(prefix="video-features-build-")
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = path
    os.environ["TMPDIR"] = path
    try:
        with interrupts.on_interrupt(lambda: shutil.rmtree(path, ignore_errors=True)):
            yield path
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(path, ignore_errors=True)


def _run_locked(pipeline_options: PipelineOptions, options: BuildOptions, *, input_format: str, input_rows: int,
                csv_labels: set[str], files: registry.ModelFiles | None, local: bool,
                csv_splits: list[csvsplit.CsvSplit] | None = None, fetch_config: FetchConfig | None = None) -> dict:
    """The part of `run` that holds the directory's build lock."""
    # The settings that change a record's bytes: recorded before any record, checked by a resume.
    build_settings = settings.build_settings(options, files) if files is not None else None
    try:
        plan = outputs.prepare_output_dir(options.output_dir, overwrite=options.overwrite,
                                          skip_existing=options.skip_existing, csv_labels=csv_labels,
                                          settings=build_settings)
    except outputs.OutputError as e:
        raise UsageError(str(e)) from e
    try:
        if build_settings is not None:
            settings.write(options.output_dir, build_settings)
        outputs.write_vocabulary(options.output_dir, csv_labels, plan.keep_labels)
    except Exception as e:  # pylint: disable=broad-except
        hint = "" if fileio.is_local(options.output_dir) else " (python -m pipeline.doctor checks gs:// access)"
        raise UsageError(f"--output_dir {options.output_dir} cannot be written: {type(e).__name__}: "
                         f"{storage_failure(e) or e}{hint}") from e
    run_info = {
        "input_csv": options.input_csv,
        "input_format": input_format,
        "models": files.describe() if files else None,
        "synthetic": bool(files and files.synthetic),
        "settings": build_settings,
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if options.features == "none":
        run_info.update(features="none", clips_dir=options.clips_dir)
    started = time.monotonic()
    with _runner_validation():
        p = beam.Pipeline(runner=local_runner(pipeline_options) if local else None, options=pipeline_options)
    build_pipeline(p, options, run_info=run_info, run_tag=plan.run_tag, expected_rows=input_rows,
                   keep_labels=plan.keep_labels, replaces=plan.replaces, csv_splits=csv_splits,
                   kept_shards=plan.kept_shards, fetch_config=fetch_config)
    # Local worker processes report to this process's display; on other runners they log.
    done_word = "kept" if options.features == "none" else "decoded"
    with RunProgress(total=input_rows, done_word=done_word) if local else contextlib.nullcontext():
        with _runner_validation():
            result = p.run()
        result.wait_until_finish()
    _print_summary(result, time.monotonic() - started, synthetic=bool(files and files.synthetic))
    stats_path = FileSystems.join(options.output_dir, "stats.json")
    with FileSystems.open(stats_path) as f:
        stats = json.loads(f.read().decode("utf-8"))
    return stats


def _print_summary(result: PipelineResult, wall_seconds: float, *, synthetic: bool = False) -> None:
    """The run's Beam counters as a table (fetched, failed by reason, records, steps, ...)."""
    try:
        counters = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))["counters"]
    except Exception:  # pylint: disable=broad-except
        counters = []  # a runner without metrics support: stats.json still has the figures
    totals: dict[str, int] = {}
    for counter in counters:
        name = counter.key.metric.name
        totals[name] = totals.get(name, 0) + (counter.committed or counter.attempted or 0)
    lines = [f"{name:<34}{value:>12,}" for name, value in sorted(totals.items())]
    lines.append(f"{'wall_seconds':<34}{wall_seconds:>12,.1f}")
    if synthetic:
        lines.append("models: SYNTHETIC (seeded random weights): these features mean nothing")
    print("Run summary (Beam metrics)\n" + "\n".join(lines), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """The CLI: -v/--verbose, then every flag of BuildOptions and Beam. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help_beam" in argv:
        options_module.known_flags_parser().print_help()
        return 0
    if any(arg in ("-h", "--help") for arg in argv):
        options_module.help_parser().print_help()
        return 0
    verbose = any(arg in ("-v", "--verbose") for arg in argv)
    argv = [arg for arg in argv if arg not in ("-v", "--verbose")]
    logs.setup(verbose_flag=verbose)
    try:
        with interrupts.interruptible():
            stats = run(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # argparse's verdict on a flag's value: it printed the usage line and the error
        return e.code if isinstance(e.code, int) else 2
    except Exception as e:  # pylint: disable=broad-except
        from pipeline.errors import ModelArtifactError  # pylint: disable=import-outside-toplevel

        if isinstance(e, ModelArtifactError):
            print(logs.readable_error(f"error: {e}"), file=sys.stderr)
            return 2
        store = storage_failure(e)
        if store is not None:  # gs:// stopped answering mid-run: the client's retries are spent
            print(f"error: the build stopped because the storage service failed ({store}). Nothing was marked "
                  "finished (no stats.json); once it answers again, rerun with --skip_existing to resume",
                  file=sys.stderr)
            return 1
        raise
    if stats.get("dry_run"):
        return 0
    if stats.get("features") == "none":
        kept = stats["clips_kept"]
        print(f"Kept {kept} clip{'' if kept == 1 else 's'} ({stats['clips_already_kept']} more "
              f"{'was' if stats['clips_already_kept'] == 1 else 'were'} already kept) and wrote "
              f"{stats['failures']} failure line{'' if stats['failures'] == 1 else 's'} for {stats['rows_read']} rows "
              "(fetch-only build; all figures: stats.json)")
    else:
        this_run = stats.get("this_run") or stats  # the top level describes the whole dataset
        print(f"Wrote {stats['records_written']} records ({this_run['steps_written']} steps, "
              f"{this_run['seconds_of_video']:.1f} s of video) and {stats['failures']} failure line"
              f"{'' if stats['failures'] == 1 else 's'} for "
              f"{stats['rows_read']} rows (all figures: stats.json)")
    if not stats.get("all_rows_accounted_for", False):
        print("error: rows read != records written + records skipped (existing) + failure lines; some rows are "
              "unaccounted for; see stats.json", file=sys.stderr)
        return 1
    made = (stats.get("clips_kept", 0) + stats.get("clips_already_kept", 0) if stats.get("features") == "none"
            else stats.get("records_written", 0) + stats.get("records_skipped_existing", 0))
    if not made:  # every row failed: a dataset of nothing is not a success (scripts and CI must see it)
        what = "no clip was kept" if stats.get("features") == "none" else "no record was written"
        rows = stats.get("rows_read", 0)
        print(f"error: {what}: {'the 1 row' if rows == 1 else f'all {rows} rows'} failed; the reasons are in "
              f"{FileSystems.join(PipelineOptions(argv).view_as(BuildOptions).output_dir, 'failures-*.jsonl')} "
              "(python -m pipeline.inspect DIR summarizes them)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
