#!/usr/bin/env bash
# The two quickstart commands, and what CI runs:
#   bash tasks.sh sample   # builds and inspects the sample dataset in sample_output/
#   bash tasks.sh test     # runs the test suite
# Both create .venv (Python 3.10+) with the pinned requirements on first use.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import apache_beam, tensorflow, pipeline" 2>/dev/null; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r requirements.txt -r requirements-report.txt -e ".[test,report]"
  fi
}

case "${1:-}" in
  sample)
    ensure_venv
    shift
    # Quiet by itself (pipeline/logs.py); -v shows everything, TensorFlow's C++ lines included.
    exec "$VENV/bin/python" -m pipeline.sample "$@"
    ;;
  test)
    ensure_venv
    shift
    export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
    exec "$VENV/bin/python" -m pytest -q "$@"
    ;;
  *)
    echo "usage: bash tasks.sh sample|test [args...]" >&2
    exit 2
    ;;
esac
