"""TensorFlow process settings: nothing at import, once per process, a model process's share of the cores."""

import os
import subprocess
import sys
import textwrap

from pipeline.features import tf_setup

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_threads_are_the_cores_divided_by_the_copies_on_the_machine(monkeypatch):
    for name in (tf_setup.INTRA_OP_THREADS_ENV, tf_setup.INTER_OP_THREADS_ENV, "PIPELINE_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tf_setup, "machine_cores", lambda: 8)
    assert tf_setup.thread_settings() == (8, 8)  # one model process per machine: every core, whatever the runner
    assert tf_setup.thread_settings(processes=3) == (2, 2)
    assert tf_setup.ModelSharing().threads() == (8, 8)
    # Shared copies live in one process (Beam 2.77) and share its pools: still every core for that process.
    assert tf_setup.ModelSharing(copies=2).threads() == (8, 8)
    # No sharing: every SDK process holds a copy (one per core on Dataflow, or as many as the runner runs).
    assert tf_setup.ModelSharing(copies=0).threads() == (1, 1)
    assert tf_setup.ModelSharing(copies=0, processes=2).threads() == (4, 4)
    assert tf_setup.ModelSharing(copies=0, processes=16).threads() == (1, 1)
    # One process on the machine (an in-process local run): it holds its own copy, nothing to share.
    assert not tf_setup.ModelSharing(copies=1, processes=1).shared
    assert tf_setup.ModelSharing(copies=2, processes=1).threads() == (8, 8)
    assert tf_setup.ModelSharing(copies=1, processes=2).shared
    # Flags win over the environment, which wins over the derived value.
    monkeypatch.setenv(tf_setup.INTRA_OP_THREADS_ENV, "3")
    monkeypatch.setenv(tf_setup.INTER_OP_THREADS_ENV, "three")  # not an integer: ignored
    assert tf_setup.ModelSharing(copies=0, processes=2).threads() == (3, 4)
    assert tf_setup.ModelSharing(copies=0, processes=2, intra_op_threads=5, inter_op_threads=1).threads() == (5, 1)


def test_copies_hosted_in_one_process_go_round_the_gpus():
    assert [tf_setup.device_for(k, 2) for k in range(5)] == ["/GPU:0", "/GPU:1", "/GPU:0", "/GPU:1", "/GPU:0"]
    assert tf_setup.device_for(3, 1) == "/GPU:0"
    assert tf_setup.device_for(0, 0) is None  # no GPU: TensorFlow places them (the CPU)


def test_importing_the_models_changes_nothing_and_configure_applies_once():
    code = textwrap.dedent("""
        import tensorflow as tf
        from pipeline.features import inception, registry, synthetic_inception, tf_setup, vggish
        from transforms import decode, inference
        before = tf.config.threading.get_intra_op_parallelism_threads()
        first = tf_setup.configure(tf_setup.ModelSharing(copies=1, inter_op_threads=1))
        after = tf.config.threading.get_intra_op_parallelism_threads()
        again = tf_setup.configure(tf_setup.ModelSharing(copies=1, intra_op_threads=7))
        print(before, first, after, again)
    """)
    env = {**os.environ, "PYTHONPATH": REPO, tf_setup.INTRA_OP_THREADS_ENV: "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop(tf_setup.INTER_OP_THREADS_ENV, None)
    env.pop("PIPELINE_OPTIONS", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300, check=True)
    assert result.stdout.split() == ["0", "(1,", "1)", "1", "(1,", "1)"], result.stdout + result.stderr


def test_decoding_runs_no_tensorflow(videos):
    """Decode workers stay free of TensorFlow: its threads and memory belong to the model's process."""
    code = textwrap.dedent(f"""
        import sys
        from pipeline import elements
        from transforms.decode import DecodeClips
        decode = DecodeClips(base_dir="/")
        decode.setup()
        clip = elements.ClipRequest(clip_id="a", source="file", video={videos["v3_30fps"]!r}, start=None,
                                    end=None, labels=(), split="all", row=1, fields={{}})
        outputs = [o.tag for o in decode.process(clip)]
        print(outputs.count("rgb"), outputs.count("audio"), "tensorflow" in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": REPO}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300, check=True)
    assert result.stdout.split() == ["3", "3", "False"], result.stdout + result.stderr
