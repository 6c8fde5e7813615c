"""Models per machine: a two-worker local build loads each model once, both in one process, with every core."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from pipeline.models import tf_setup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_worker_processes_share_one_copy_of_each_model(tmp_path, videos, model_cache):
    from pipeline.models import registry

    registry.ensure_synthetic(registry.ModelConfig(mode="synthetic", model_cache=model_cache))  # as a rerun finds them
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"video,labels\n{videos['v0_5']},a\n{videos['v3_30fps']},b\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_CPP", "VIDEO_FEATURES_", "YT8M_TF")) and k != "PIPELINE_OPTIONS"}
    env["PYTHONPATH"] = REPO
    # The build as `python -m pipeline.build` runs it, then: did the launcher import TensorFlow?
    code = ("import sys; from pipeline import build; rc = build.main(sys.argv[1:]); "
            "print('LAUNCHER_TENSORFLOW', 'tensorflow' in sys.modules); sys.exit(rc)")
    result = subprocess.run(
        [sys.executable, "-c", code, "--input_csv", str(csv_path), "--output_dir", str(tmp_path / "out"),
         "--models", "synthetic", "--model_cache", model_cache, "--direct_running_mode=multi_processing",
         "--direct_num_workers=2", "--default_sdk_harness_log_level=INFO"],  # workers forward their INFO lines
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600, check=False)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    loads = re.findall(r"Loading (rgb|audio) model in process (\d+) \(TensorFlow threads: (\d+) intra-op", text)
    assert sorted(name for name, _, _ in loads) == ["audio", "rgb"], text  # once each, not once per worker
    # Both in ONE process (one tag for both steps): two hosts would each take all the cores' threads.
    assert len({pid for _, pid, _ in loads}) == 1, loads
    # The one copy gets every core (cores // 1), though two worker processes share the machine.
    assert {int(threads) for _, _, threads in loads} == {tf_setup.machine_cores()}, loads
    assert "Wrote 2 records" in text
    # The launcher runs no model, and with the files already checked it never loads TensorFlow:
    # the workers start seconds sooner and the launcher stays hundreds of MiB smaller.
    assert "LAUNCHER_TENSORFLOW False" in result.stdout, text
