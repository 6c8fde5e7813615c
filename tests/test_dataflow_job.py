"""Builds the Dataflow job offline (DataflowRunner --dry_run) and checks its graph; nothing is submitted.

The dry run translates the pipeline to the Dataflow job and the runner API proto and stages
the package locally (setup.py sdist into a temporary directory), with no credentials and no
network: --no_auth skips Google auth and --dry_run returns before the job is sent.
"""

from __future__ import annotations

import pathlib

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
from apache_beam.portability.api import beam_runner_api_pb2

from pipeline.build import build_pipeline
from pipeline.options import BuildOptions

REPO = pathlib.Path(__file__).resolve().parent.parent

ARGV = [
    "--runner", "DataflowRunner", "--dry_run=True", "--no_auth",
    "--project", "placeholder-project", "--region", "us-central1",
    "--temp_location", "gs://placeholder-bucket/tmp", "--setup_file", str(REPO / "setup.py"),
    "--input_csv", "gs://placeholder-bucket/in.csv", "--output_dir", "gs://placeholder-bucket/out",
    "--models", "synthetic",
]

EXPECTED_STEPS = (
    "ReadAnnotations",
    "FetchClips",
    "SpreadFetched",
    "DecodeClips",
    "DecodeClips/ParDo(DecodeClips)",
    "RgbFeatures",
    "RgbFeatures/RunInference",
    "RgbFeatures/KeyByClip",
    "AudioFeatures",
    "AudioFeatures/RunInference",
    "AudioFeatures/KeyByClip",
    "AssembleRecords",
    "AllFailures",
    "WriteDataset",
)


@pytest.fixture(scope="module")
def job():
    pipeline_options = PipelineOptions(ARGV)
    # As build.run(): workers get our code from the staged package, not a pickled main session.
    pipeline_options.view_as(SetupOptions).save_main_session = False
    p = beam.Pipeline(options=pipeline_options)
    # build_pipeline directly: build.run() would check that the CSV exists and resolve models first.
    build_pipeline(p, pipeline_options.view_as(BuildOptions), run_info={"synthetic": True})
    result = p.run()
    assert result.state == "DONE"
    return result.job


def _transform_names(job) -> set[str]:
    return {t.unique_name for t in job.proto_pipeline.components.transforms.values()}


def test_job_is_a_batch_job_for_the_project(job):
    assert job.proto.type_.name == "JOB_TYPE_BATCH"
    assert job.google_cloud_options.project == "placeholder-project"
    assert job.google_cloud_options.region == "us-central1"
    assert job.proto.name.startswith("beamapp-")


def test_job_graph_has_the_expected_steps(job):
    names = _transform_names(job)
    missing = [step for step in EXPECTED_STEPS if step not in names]
    assert not missing, f"missing steps {missing}; graph has {sorted(n for n in names if n.count('/') < 2)}"
    assert any(name.startswith("WriteDataset/") for name in names)
    assert any(name.startswith("RgbFeatures/RunInference/") for name in names)


def test_decode_fans_out_to_both_models_and_the_assembly(job):
    transforms = job.proto_pipeline.components.transforms
    by_name = {t.unique_name: t for t in transforms.values()}
    decode_outputs = set(by_name["DecodeClips/ParDo(DecodeClips)"].outputs.values())
    consumers = {t.unique_name for t in transforms.values() if not t.subtransforms
                 and decode_outputs.intersection(t.inputs.values())}
    assert any(name.startswith("RgbFeatures/") for name in consumers), consumers
    assert any(name.startswith("AudioFeatures/") for name in consumers), consumers
    assert any(name.startswith("AssembleRecords/") for name in consumers), consumers


def test_package_is_staged_with_setup_py(job):
    staged = []
    for environment in job.proto_pipeline.components.environments.values():
        for dependency in environment.dependencies:
            if dependency.role_urn == "beam:artifact:role:staging_to:v1":
                staged.append(beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
                    dependency.role_payload).staged_name)
    assert "workflow.tar.gz" in staged, staged  # the sdist of setup.py that workers install
    assert "pickled_main_session" not in staged, staged


def _cli_argv(project: str) -> list[str]:
    argv = list(ARGV)
    argv[argv.index("--project") + 1] = project
    return argv


def test_cli_dry_run_builds_the_job_offline_without_touching_gs(monkeypatch, capsys):
    from apache_beam.io.filesystems import FileSystems

    from pipeline import build

    touched = []
    for name in ("exists", "open", "match", "create", "mkdirs", "delete", "rename"):
        original = getattr(FileSystems, name)

        def spy(*args, _original=original, **kwargs):
            if "gs://placeholder-bucket" in repr(args):
                touched.append(args)
                raise AssertionError(f"a dry run touched {args}")
            return _original(*args, **kwargs)

        monkeypatch.setattr(FileSystems, name, staticmethod(spy))
    assert build.main(_cli_argv("placeholder-project")) == 0
    assert not touched, touched
    assert build.DRY_RUN_NOTE in capsys.readouterr().err


def test_cli_dry_run_reports_the_runners_validation_in_one_line(capsys):
    from pipeline import build

    assert build.main(_cli_argv("p")) == 2
    err = capsys.readouterr().err
    assert "error: Pipeline has validations errors: Invalid Project ID (p)" in err
    assert "Traceback" not in err


def _producer_of(transforms, pcoll_id: str) -> str:
    return next(t.unique_name for t in transforms.values() if not t.subtransforms and pcoll_id in t.outputs.values())


def test_fetch_is_its_own_stage_before_a_fusion_break(job):
    """FetchClips -> Reshuffle (SpreadFetched) -> DecodeClips: decoding may run on another worker than the fetch."""
    transforms = job.proto_pipeline.components.transforms
    by_name = {t.unique_name: t for t in transforms.values()}
    (decode_input,) = by_name["DecodeClips/ParDo(DecodeClips)"].inputs.values()
    assert _producer_of(transforms, decode_input).startswith("SpreadFetched/")
    (spread_input,) = by_name["SpreadFetched"].inputs.values()
    assert _producer_of(transforms, spread_input) == "FetchClips/ParDo(FetchClips)"


def test_fetch_only_job_has_no_decode_and_no_model(capsys):
    from pipeline import build

    argv = _cli_argv("placeholder-project") + ["--features", "none", "--clips_dir", "gs://placeholder-bucket/clips"]
    pipeline_options = PipelineOptions(argv)
    p = beam.Pipeline(options=pipeline_options)
    build_pipeline(p, pipeline_options.view_as(BuildOptions), run_info={})
    result = p.run()
    names = _transform_names(result.job)
    assert "FetchClips" in names and "WriteDataset" in names
    assert not [n for n in names if n.split("/")[0] in ("DecodeClips", "RgbFeatures", "AudioFeatures",
                                                        "AssembleRecords")]
    assert build.main(argv) == 0  # the CLI's dry run of the same job
    assert "SYNTHETIC" not in capsys.readouterr().err  # no model is even described
