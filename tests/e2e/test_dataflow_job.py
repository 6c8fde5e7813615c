"""Builds the Dataflow job offline (DataflowRunner --dry_run) and checks its graph; nothing is submitted.

The dry run translates the pipeline to the Dataflow job and the runner API proto and stages
the package locally (setup.py sdist into a temporary directory), with no credentials and no
network: --no_auth skips Google auth and --dry_run returns before the job is sent.
"""

from __future__ import annotations

import pathlib
import re
import shlex

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
from apache_beam.portability.api import beam_runner_api_pb2

from pipeline.cli.build import build_pipeline
from pipeline.cli.options import BuildOptions

REPO = pathlib.Path(__file__).resolve().parents[2]

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


def _dry_run(argv: list[str]):
    """(pipeline, job) of a dry-run Dataflow build of argv."""
    pipeline_options = PipelineOptions(argv)
    # As build.run(): workers get our code from the staged package, not a pickled main session.
    pipeline_options.view_as(SetupOptions).save_main_session = False
    p = beam.Pipeline(options=pipeline_options)
    # build_pipeline directly: build.run() would check that the CSV exists and resolve models first.
    build_pipeline(p, pipeline_options.view_as(BuildOptions), run_info={"synthetic": True})
    result = p.run()
    assert result.state == "DONE"
    return p, result.job


@pytest.fixture(scope="module")
def built():
    return _dry_run(ARGV)


@pytest.fixture(scope="module")
def job(built):
    return built[1]


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

    from pipeline.cli import build

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
    from pipeline.cli import build

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
    from pipeline.cli import build

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


def _handlers(p) -> dict[str, object]:
    """label -> the model handler of each ExtractFeatures step in the built pipeline."""
    from transforms.inference import ExtractFeatures

    found = {}

    class Visitor(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            if isinstance(node.transform, ExtractFeatures):
                found[node.full_label] = node.transform.handler

    p.visit(Visitor())
    return found


def test_job_shares_one_model_copy_per_machine_with_derived_threads(built):
    from pipeline.features import tf_setup

    p, job = built
    options = job.options.view_as(BuildOptions)  # what the job sends its workers
    assert (options.model_copies, options.tf_intra_op_threads, options.tf_inter_op_threads) == (1, None, None)
    handlers = _handlers(p)
    assert sorted(handlers) == ["AudioFeatures", "RgbFeatures"]
    for handler in handlers.values():
        # RunInference reads these: one copy per machine, shared across the VM's SDK processes.
        assert handler.share_model_across_processes() and handler.model_copies() == 1
        # Threads are derived on the worker from its own cores (Dataflow: one SDK process per vCPU).
        assert handler.sharing == tf_setup.ModelSharing(copies=1, processes=None)
        # Whichever step loads first loads both models, so one process per VM hosts them together.
        assert handler.loaded_models() == ("rgb", "audio")
    # One model tag for both steps, and RunInference uses it: different tags could put the two
    # models in two processes, each sizing TensorFlow's pools to all the VM's cores.
    assert len({handler.model_tag for handler in handlers.values()}) == 1
    assert _run_inference_tags(p) == {"AudioFeatures": handlers["RgbFeatures"].model_tag,
                                      "RgbFeatures": handlers["RgbFeatures"].model_tag}


def _run_inference_tags(p) -> dict[str, str]:
    """Model step -> the model identifier its RunInference shares the loaded model by."""
    from apache_beam.ml.inference.base import RunInference

    found = {}

    class Visitor(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            if isinstance(node.transform, RunInference):
                found[node.full_label.split("/")[0]] = node.transform.annotations()["model_identifier"]

    p.visit(Visitor())
    return found


def test_with_audio_zeros_the_shared_object_holds_the_rgb_model_alone():
    pipeline_options = PipelineOptions(ARGV + ["--audio", "zeros"])
    p = beam.Pipeline(options=pipeline_options)
    build_pipeline(p, pipeline_options.view_as(BuildOptions), run_info={})
    handlers = _handlers(p)
    assert sorted(handlers) == ["RgbFeatures"]
    assert handlers["RgbFeatures"].loaded_models() == ("rgb",)


def test_flags_reach_the_handlers():
    from pipeline.features import tf_setup

    pipeline_options = PipelineOptions(ARGV + ["--model_copies", "per_process", "--tf_intra_op_threads", "3",
                                               "--experiments=no_use_multiple_sdk_containers"])
    p = beam.Pipeline(options=pipeline_options)  # built, not translated: the handlers are what matters here
    build_pipeline(p, pipeline_options.view_as(BuildOptions), run_info={})
    assert pipeline_options.view_as(BuildOptions).model_copies == 0
    for label, handler in _handlers(p).items():
        assert not handler.share_model_across_processes()
        assert handler.sharing == tf_setup.ModelSharing(copies=0, processes=1, intra_op_threads=3)
        # Not shared: each step's DoFn loads its own object, so each loads just its own model.
        assert handler.loaded_models() == ({"RgbFeatures": "rgb", "AudioFeatures": "audio"}[label],)


def _decoder(p) -> object:
    """The DecodeClips DoFn of a built pipeline."""
    from transforms.decode import DecodeClips

    found = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(getattr(node.transform, "fn", None), DecodeClips):
                found.append(node.transform.fn)

    p.visit(Visitor())
    (decoder,) = found
    return decoder


@pytest.mark.parametrize("flag, expected", [([], 4), (["--decode_ahead", "0"], 0), (["--decode_ahead", "7"], 7)])
def test_decode_ahead_reaches_the_decoder(flag, expected):
    pipeline_options = PipelineOptions(ARGV + flag)
    p = beam.Pipeline(options=pipeline_options)
    build_pipeline(p, pipeline_options.view_as(BuildOptions), run_info={})
    assert _decoder(p).config.decode_ahead == expected


def test_a_negative_decode_ahead_is_refused(capsys):
    with pytest.raises(SystemExit):
        PipelineOptions(ARGV + ["--decode_ahead", "-1"]).view_as(BuildOptions)
    assert "'-1' must be >= 0" in capsys.readouterr().err


def _readme_gpu_command() -> list[str]:
    """The arguments of the README's "GPU workers" command, placeholders made concrete."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### GPU workers", 1)[1]
    command = re.search(r"```bash\n(python -m pipeline\.build.*?)```", section, re.S).group(1)
    argv = shlex.split(command.replace("\\\n", " "))[3:]
    return [arg.replace("BUCKET", "placeholder-bucket").replace("PROJECT", "placeholder-project") for arg in argv]


ACCELERATOR_URN = "beam:resources:accelerator:v1"


def test_readme_gpu_recipe_hints_the_accelerator_on_the_inference_steps_only():
    argv = _readme_gpu_command()
    assert "--inference_accelerator" in argv and "--sdk_container_image" in argv
    p, job = _dry_run(argv + ["--dry_run=True", "--no_auth"])
    hint = argv[argv.index("--inference_accelerator") + 1].encode()
    components = job.proto_pipeline.components
    hinted, plain = set(), set()
    for transform in components.transforms.values():
        if not transform.environment_id:
            continue
        hints = components.environments[transform.environment_id].resource_hints
        (hinted if hints.get(ACCELERATOR_URN) == hint else plain).add(transform.unique_name)
    assert {"RgbFeatures/RunInference/BeamML_RunInference", "AudioFeatures/RunInference/BeamML_RunInference",
            "RgbFeatures/KeyByClip", "AudioFeatures/KeyByClip"} <= hinted
    assert all(name.startswith(("RgbFeatures", "AudioFeatures")) for name in hinted), sorted(hinted)
    assert not [name for name in plain if name.startswith(("RgbFeatures", "AudioFeatures"))]
    assert "DecodeClips/ParDo(DecodeClips)" in plain and any(name.startswith("WriteDataset/") for name in plain)
    assert all(handler.model_copies() == 1 for handler in _handlers(p).values())
    assert job.options.get_all_options()["machine_type"] == "n1-standard-8"
