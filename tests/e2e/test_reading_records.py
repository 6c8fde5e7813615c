"""docs/reading-records.md's tf.data snippet, run as written against a dataset the pipeline built;
and reading a dataset back with `inspect` as a shell user does."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys

import pytest

from pipeline.cli import build, inspect

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(REPO, "docs", "reading-records.md")


@pytest.fixture(scope="module")
def built(tmp_path_factory, videos, model_cache):
    """A two-clip dataset built by the pipeline (synthetic models), labels cats and dogs."""
    d = tmp_path_factory.mktemp("built")
    csv_path = d / "in.csv"
    csv_path.write_text(f"video,labels,id\n{videos['v3_30fps']},cats,one\n{videos['v4_5_silent']},cats;dogs,two\n")
    out = d / "out"
    assert build.main(["--input_csv", str(csv_path), "--output_dir", str(out), "--models", "synthetic",
                       "--model_cache", model_cache]) == 0
    return out


def _snippet() -> str:
    (code,) = re.findall(r"```python\n(.*?)```", open(DOC, encoding="utf-8").read(), flags=re.S)
    return code


def test_the_documented_snippet_reads_the_records(built):
    code = _snippet()
    assert 'DATASET = "out"' in code
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        exec(compile(code.replace('DATASET = "out"', f"DATASET = {str(built)!r}"), DOC, "exec"), {})  # noqa: S102
    lines = sorted(stdout.getvalue().splitlines())
    assert len(lines) == 2, lines
    assert lines[0] == "one [0] (3, 1024) (3, 128)"
    assert re.fullmatch(r"two \[0, 1\] \(\d, 1024\) \(\d, 128\)", lines[1]), lines[1]


def test_inspect_into_a_closed_pipe_ends_quietly(built):
    code = ("import os, sys\n"
            "r, w = os.pipe(); os.close(r)  # the reader (`| head`) is gone\n"
            "sys.stdout = os.fdopen(w, 'w')\n"
            f"sys.argv = ['inspect', {str(built)!r}, '--json']\n"
            "from pipeline.cli import inspect\n"
            "sys.exit(inspect.run_cli())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": REPO}, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_inspect_of_a_build_without_records_points_at_the_failure_report(tmp_path, capsys):
    d = tmp_path / "none"
    (d / "records").mkdir(parents=True)
    (d / "records" / "all-00000-of-00001.tfrecord").write_bytes(b"")
    (d / "failures-00000-of-00001.jsonl").write_text("{}\n{}\n")
    (d / "stats.json").write_text(json.dumps({"rows_read": 2, "records_written": 0, "failures": 2,
                                              "failures_by_reason": {"empty_file": 1, "not_video": 1}}))
    assert inspect.main([str(d)]) == 0
    out = capsys.readouterr().out
    assert "no records" in out and f"{d}/failures-*.jsonl" in out and "empty_file: 1" in out
