"""TensorFlow process settings: nothing at import, once per process, the worker's share of the cores."""

import json
import os
import subprocess
import sys
import textwrap

from pipeline.models import tf_setup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker_options(mode: str, workers: int) -> str:
    # What Beam hands an SDK worker process as PIPELINE_OPTIONS (URN-keyed, as the runner sends them).
    return json.dumps({"beam:option:direct_running_mode:v1": mode, "beam:option:direct_num_workers:v1": workers})


def test_thread_settings_share_the_cores_between_local_workers(monkeypatch):
    for name in (tf_setup.INTRA_OP_THREADS_ENV, tf_setup.INTER_OP_THREADS_ENV, "PIPELINE_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    assert tf_setup.thread_settings() == (0, 0)  # the launcher, or an in-process run: TensorFlow's default
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv("PIPELINE_OPTIONS", _worker_options("multi_processing", 4))
    assert tf_setup.thread_settings() == (2, 2)
    monkeypatch.setenv("PIPELINE_OPTIONS", _worker_options("in_memory", 4))
    assert tf_setup.thread_settings() == (0, 0)
    monkeypatch.setenv("PIPELINE_OPTIONS", _worker_options("multi_processing", 4))
    monkeypatch.setenv(tf_setup.INTRA_OP_THREADS_ENV, "3")
    monkeypatch.setenv(tf_setup.INTER_OP_THREADS_ENV, "three")  # not an integer: ignored
    assert tf_setup.thread_settings() == (3, 2)


def test_importing_the_models_changes_nothing_and_configure_applies_once():
    code = textwrap.dedent("""
        import tensorflow as tf
        from pipeline.models import inception, registry, synthetic_inception, tf_setup, vggish
        from transforms import decode, inference
        before = tf.config.threading.get_intra_op_parallelism_threads()
        first = tf_setup.configure()
        after = tf.config.threading.get_intra_op_parallelism_threads()
        again = tf_setup.configure()
        print(before, first, after, again)
    """)
    env = {**os.environ, "PYTHONPATH": REPO, tf_setup.INTRA_OP_THREADS_ENV: "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop(tf_setup.INTER_OP_THREADS_ENV, None)
    env.pop("PIPELINE_OPTIONS", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300, check=True)
    assert result.stdout.split() == ["0", "(1,", "0)", "1", "(1,", "0)"], result.stdout + result.stderr
