"""Models per machine: a two-worker local build loads each model once, both in one process, with every core."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

from pipeline.features import tf_setup

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_two_worker_processes_share_one_copy_of_each_model(tmp_path, videos, model_cache):
    from pipeline.features import registry

    registry.ensure_synthetic(registry.ModelConfig(mode="synthetic", model_cache=model_cache))  # as a rerun finds them
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"video,labels\n{videos['v0_5']},a\n{videos['v3_30fps']},b\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_CPP", "VIDEO_FEATURES_", "YT8M_TF")) and k != "PIPELINE_OPTIONS"}
    env["PYTHONPATH"] = REPO
    # The build as `python -m pipeline.build` runs it, then: did the launcher import TensorFlow?
    code = ("import sys; from pipeline.cli import build; rc = build.main(sys.argv[1:]); "
            "print('LAUNCHER_TENSORFLOW', 'tensorflow' in sys.modules); sys.exit(rc)")
    result = subprocess.run(
        [sys.executable, "-c", code, "--input_csv", str(csv_path), "--output_dir", str(tmp_path / "out"),
         "--models", "synthetic", "--model_cache", model_cache, "--direct_running_mode=multi_processing",
         "--direct_num_workers=2", "--default_sdk_harness_log_level=INFO"],  # workers forward their INFO lines
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600, check=False)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    # One line per load, naming every model it loads ("the rgb and audio models"): one entry per model.
    loads = [(name, pid, threads) for names, pid, threads in re.findall(
        r"Loading the ((?:rgb|audio)(?: and (?:rgb|audio))?) models? in process (\d+)(?: on \S+)? "
        r"\(TensorFlow: (\d+) intra-op", text) for name in names.split(" and ")]
    assert sorted(name for name, _, _ in loads) == ["audio", "rgb"], text  # once each, not once per worker
    # Both in ONE process (one tag for both steps): two hosts would each take all the cores' threads.
    assert len({pid for _, pid, _ in loads}) == 1, loads
    # The one copy gets every core (cores // 1), though two worker processes share the machine.
    assert {int(threads) for _, _, threads in loads} == {tf_setup.machine_cores()}, loads
    assert "Wrote 2 records" in text
    # The launcher runs no model, and with the files already checked it never loads TensorFlow:
    # the workers start seconds sooner and the launcher stays hundreds of MiB smaller.
    assert "LAUNCHER_TENSORFLOW False" in result.stdout, text


def test_a_placed_copy_runs_its_models_on_its_device(model_cache):
    """Copy k's model calls run on its device (two logical CPUs stand in for two GPUs)."""
    from pipeline.features import registry

    registry.ensure_synthetic(registry.ModelConfig(mode="synthetic", model_cache=model_cache))
    code = textwrap.dedent(f"""
        import json
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from pipeline.features import registry
        files = registry.resolve(registry.ModelConfig(mode="synthetic", model_cache={model_cache!r}))
        seen = {{}}
        for device in (None, "/CPU:1"):
            models = registry.Featurizers(files, ("rgb", "audio"), device=device)
            for part in (models._loaded["rgb"], models._loaded["audio"]):  # record where each model call runs
                def spy(inputs, real=part.model, name=type(part).__name__):
                    seen.setdefault(str(device), []).append((name, tf.constant(0.0).device[-5:]))
                    return real(inputs)
                part.model = spy
            rgb = models.featurize("rgb", [np.full((36, 64, 3), 9, np.uint8)])
            audio = models.featurize("audio", np.ones((2, 96, 64), np.float32))
            seen.setdefault(str(device), []).append(("shapes", [list(rgb.shape), list(audio.shape)]))
        print("SEEN", json.dumps(seen))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDEO_FEATURES_", "YT8M_TF"))}
    env["PYTHONPATH"] = REPO
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.split("SEEN ", 1)[1])
    assert seen["None"] == [["RgbFeaturizer", "CPU:0"], ["AudioFeaturizer", "CPU:0"], ["shapes", [[1, 1024], [2, 128]]]]
    assert seen["/CPU:1"] == [["RgbFeaturizer", "CPU:1"], ["AudioFeaturizer", "CPU:1"],
                              ["shapes", [[1, 1024], [2, 128]]]]

