"""The dataset benchmark's glue: it reads the build's own output lines, and its verdicts follow the targets.

The benchmark (benchmarks/dataset.py) times `python -m pipeline.build` from outside, so it
depends on the wording of two lines the build prints; if either changes, start-up or
wall_seconds would silently go missing from the figures. No timing is measured here.
"""

from __future__ import annotations

import io

import pytest

from benchmarks import dataset
from transforms.support.progress import RunProgress


def test_progress_line_of_the_build_is_recognised_with_its_decoded_count():
    stream = io.StringIO()
    with RunProgress(total=40, stream=stream, live=False, interval=3600) as progress:
        progress.tally.add(True, 10.0)
        progress.tally.add(True, 10.0)
        progress.tally.add(False, 0.0)
        line = progress.line()
    match = dataset._PROGRESS.search(line)  # pylint: disable=protected-access
    assert match, line
    assert int(match.group("decoded")) == 2


def test_wall_seconds_line_of_the_run_summary_is_recognised(capsys):
    from pipeline.cli import build  # pylint: disable=import-outside-toplevel

    class NoMetrics:
        def metrics(self):
            raise RuntimeError("no metrics on this runner")

    build._print_summary(NoMetrics(), 1234.5)  # pylint: disable=protected-access
    lines = capsys.readouterr().err.splitlines()
    values = [float(m.group("s").replace(",", "")) for m in map(dataset._WALL.match, (s.strip() for s in lines)) if m]  # pylint: disable=protected-access
    assert values == [1234.5]


@pytest.mark.parametrize("name, expected, multi", [
    ("zeros_w1", ("zeros", 1), False), ("vggish_w2", ("vggish", 2), True), ("zeros_mp1", ("zeros", 1), True)])
def test_run_names(name, expected, multi):
    assert dataset.parse_run_name(name) == expected
    assert dataset.multi_processing(name) is multi  # _w1 is the in_memory runner; _mp1 one worker process


@pytest.mark.parametrize("name", ["zeros", "vggish_w0", "silence_w1", "zeros_w1x", "zeros_mp0", "zeros_m1"])
def test_bad_run_names_are_refused(name):
    with pytest.raises(ValueError):
        dataset.parse_run_name(name)


def _figures(*, extractor_s, zeros1_s, zeros2_s, bound_s, vggish1_wall):
    ext = {"clips": 40, "frames": 400, "process_s": extractor_s, "decode_s": 1.0, "infer_s": 20.0,
           "pca_quantize_s": 1.0, "model_loaded_s": 3.0, "first_features_s": 4.0, "first_clip_s": 10.0,
           "import_s": 2.0, "process_cpu_s": extractor_s}
    bound = {"gpus": [], "rgb_fps": 5.0, "audio_eps": 40.0, "rgb_load_s": 1.0, "audio_load_s": 1.0,
             "rgb_first_call_s": 1.0, "audio_first_call_s": 1.0, "steps": 400, "rgb_s": bound_s - 10.0,
             "combined_s": bound_s}

    def run(process_s, wall, first):
        return {"process_s": process_s, "wall_seconds": wall, "first_decoded_s": first,
                "outside_pipeline_s": process_s - wall, "cpu_s": 2 * process_s}

    return {"input": "40 clips", "extractor": ext, "model_bound": bound,
            "zeros_w1": run(zeros1_s, zeros1_s - 5, 14.0), "zeros_w2": run(zeros2_s, zeros2_s - 5, 16.0),
            "vggish_w1": run(vggish1_wall + 5, vggish1_wall, 20.0)}


def _verdicts(rows):
    return {figure.strip(): note.split()[2] for figure, _, note in rows if note.startswith((">=", "<="))}


def test_verdicts_follow_the_targets():
    passing = _verdicts(dataset.summarize(_figures(extractor_s=40.0, zeros1_s=34.0, zeros2_s=33.0, bound_s=80.0,
                                                   vggish1_wall=84.0)))
    assert passing == {
        "speed --audio zeros (1 worker) / extractor (process times)": "PASS",  # 40 / 34 = 1.18
        "speed VGGish (1 worker) / combined model bound (wall_seconds)": "PASS",  # 80 / 84 = 0.952
        "speed 2 workers / 1 worker, --audio zeros (process times)": "PASS",
        "start-up zeros_w1: first clip decoded / extractor's first clip": "PASS",  # 14 / 10
        "start-up vggish_w1: first clip decoded / extractor's first clip": "MISS",  # 20 / 10
        "start-up zeros_w2: first clip decoded / extractor's first clip": "MISS",  # 16 / 10
    }
    missing = _verdicts(dataset.summarize(_figures(extractor_s=40.0, zeros1_s=36.0, zeros2_s=37.0, bound_s=80.0,
                                                   vggish1_wall=85.0)))
    assert missing["speed --audio zeros (1 worker) / extractor (process times)"] == "MISS"  # 1.11
    assert missing["speed VGGish (1 worker) / combined model bound (wall_seconds)"] == "MISS"  # 0.941
    assert missing["speed 2 workers / 1 worker, --audio zeros (process times)"] == "MISS"


def test_cpu_only_run_says_the_gpu_figures_were_not_measured():
    rows = dataset.summarize(_figures(extractor_s=40.0, zeros1_s=34.0, zeros2_s=33.0, bound_s=80.0, vggish1_wall=84.0))
    gpu = [row for row in rows if "GPU" in row[0]]
    assert gpu and gpu[0][1] == "none" and "not measured" in gpu[0][2]


def test_the_second_worker_is_also_compared_within_the_multi_process_runner():
    figures = _figures(extractor_s=40.0, zeros1_s=30.0, zeros2_s=36.0, bound_s=80.0, vggish1_wall=84.0)
    figures["zeros_mp1"] = dict(figures["zeros_w2"], process_s=37.0, wall_seconds=33.0)
    rows = {figure.strip(): (value, note) for figure, value, note in dataset.summarize(figures)}
    value, note = rows["speed 2 workers / 1 worker, both multi_processing, --audio zeros (process times)"]
    assert value == "1.03"  # 37 / 36: the second worker is not what costs here
    assert "speed of 1 worker multi_processing / in_memory 0.81" in note  # 30 / 37: the runner is
    assert "pipeline --audio zeros, 1 worker(s), multi_processing: process / wall_seconds (s)" in rows

