"""TensorFlow process settings: thread pools and GPU memory growth, applied once per process.

TensorFlow fixes its thread pools and claims GPU memory when its context starts (the first op),
so these settings must be applied before that and cannot change afterwards. Nothing here runs on
import: every place that is about to run the first op of a process calls :func:`configure`
(the decoder's ``setup``, the model constructors, the synthetic artifact writers); the first
call applies the settings and later calls return what it asked for.
"""

from __future__ import annotations

import json
import logging
import os
import threading

INTRA_OP_THREADS_ENV = "YT8M_TF_INTRA_OP_THREADS"
INTER_OP_THREADS_ENV = "YT8M_TF_INTER_OP_THREADS"

_lock = threading.Lock()
_applied: tuple[int, int] | None = None


def env_int(name: str) -> int | None:
    """The integer in environment variable ``name``; None when unset, empty or not an integer (logged).

    Args:
        name: Environment variable to read.

    Returns:
        Its value as an int, or None.
    """
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else None
    except ValueError:
        logging.warning("ignoring %s=%r: not an integer", name, value)
        return None


def _beam_workers_sharing_machine() -> int:
    """Worker processes of a DirectRunner multi_processing run (read from a Beam SDK worker's environment).

    Beam starts each SDK worker with its pipeline options as JSON in PIPELINE_OPTIONS; every
    worker of a local run shares this machine's cores. 1 outside such a worker.
    """
    raw = os.environ.get("PIPELINE_OPTIONS")
    if not raw:
        return 1
    try:
        options = json.loads(raw)
    except ValueError:
        return 1
    options = options.get("options", options) if isinstance(options, dict) else {}
    found = {key.split(":")[-2] if key.startswith("beam:option:") else key: value for key, value in options.items()}
    if found.get("direct_running_mode") != "multi_processing":
        return 1
    try:
        return max(1, int(found.get("direct_num_workers") or 1))
    except (TypeError, ValueError):
        return 1


def thread_settings() -> tuple[int, int]:
    """(intra_op, inter_op) threads for this process; 0 keeps TensorFlow's default (all cores).

    YT8M_TF_INTRA_OP_THREADS / YT8M_TF_INTER_OP_THREADS win. Otherwise, in a worker of a local
    multi-process run of N workers, each worker gets cpu_count // N intra-op threads (so N
    workers do not oversubscribe the cores) and as many inter-op threads.

    Returns:
        The (intra_op, inter_op) thread counts to ask TensorFlow for.
    """
    intra, inter = env_int(INTRA_OP_THREADS_ENV), env_int(INTER_OP_THREADS_ENV)
    workers = _beam_workers_sharing_machine()
    share = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    return (share if intra is None else intra), (share if inter is None else inter)


def _apply(intra: int, inter: int) -> None:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    try:
        # Several worker processes may share one GPU: take memory as needed, not all of it up front.
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        if intra > 0 and tf.config.threading.get_intra_op_parallelism_threads() != intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter > 0 and tf.config.threading.get_inter_op_parallelism_threads() != inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except (RuntimeError, ValueError):  # TensorFlow's context is already initialized: keep its settings.
        logging.info("TensorFlow already initialized; thread pools and GPU memory settings left as they are")


def configure() -> tuple[int, int]:
    """Applies :func:`thread_settings` and GPU memory growth, once per process, before the first op.

    Call it before a process's first TensorFlow op (later calls are free and change nothing).
    If TensorFlow has already started, its settings stay as they are.

    Returns:
        The (intra_op, inter_op) thread counts the first call asked for (0: TensorFlow's default).
    """
    global _applied  # pylint: disable=global-statement
    with _lock:
        if _applied is None:
            settings = thread_settings()
            _apply(*settings)
            _applied = settings
        return _applied
