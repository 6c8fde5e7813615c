#!/usr/bin/env bash
# The two quickstart commands, and what CI runs:
#   bash tasks.sh sample   # builds and inspects the sample dataset in sample_output/
#   bash tasks.sh test     # runs the test suite
# Both create .venv (Python 3.11+) with the pinned requirements on first use.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

# Every package the two commands need, the report's matplotlib included: a venv missing any of them is
# (re)installed, not half-used.
NEEDED="apache_beam, tensorflow, matplotlib, pytest, pipeline"

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import $NEEDED" 2>/dev/null; then
    echo "tasks.sh: setting up $VENV with the pinned requirements (first use: several minutes, about 2 GB" \
         "of packages; pip's progress follows)" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip || true
    # pip's own lines ("Collecting ...", "Installing collected packages ..."): minutes of work are not silent.
    "$VENV/bin/python" -m pip install --progress-bar off -r requirements.txt -r requirements-report.txt \
      -e ".[test,report]" 2>&1 | grep -E "^(Collecting|Installing|Successfully|ERROR|error)" >&2 || true
    if ! "$VENV/bin/python" -c "import $NEEDED" 2>/dev/null; then
      echo "tasks.sh: $VENV is still missing one of: $NEEDED (see pip's errors above)" >&2
      exit 1
    fi
    echo "tasks.sh: $VENV is ready" >&2
  fi
}

case "${1:-}" in
  sample)
    ensure_venv
    shift
    # Quiet by itself (pipeline/cli/logs.py); -v shows everything, TensorFlow's C++ lines included.
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
