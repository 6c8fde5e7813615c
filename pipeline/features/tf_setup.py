"""TensorFlow process settings: thread pools and GPU memory growth, applied once per process.

TensorFlow fixes its thread pools and claims GPU memory when its context starts (the first op),
so these settings must be applied before that and cannot change afterwards. Nothing here runs on
import: every place that is about to run the first op of a process calls :func:`configure`
(RunInference's model loading in ``transforms/inference.py`` with the run's :class:`ModelSharing`,
the model constructors, the synthetic artifact writers); the first call applies the settings and
later calls return what it asked for. Decoding runs no TensorFlow at all.

How many threads: a process that holds models gets ``cores // P`` intra-op and inter-op
threads, where P is how many processes hold a copy of a model side by side on the machine, on
every runner (nothing here asks which runner it is). By default RunInference keeps ONE copy of
each model per machine, shared by all its SDK worker processes; both model steps share one tag
(``ModelSharing.tag``), so Inception-v3 and VGGish are hosted together by the first process that
needs either, P = 1 and that process gets every core. With ``--model_copies N`` Beam 2.77 hosts
the N shared copies in the one process that loads them first (measured:
``benchmarks/model_copies.py``), where they share one pool of ``cores`` threads, i.e. cores // N
each when all are busy; so P is still 1. Without sharing
(``--model_copies per_process``) every SDK process holds a copy: P is their number.
Flags (``--tf_intra_op_threads``, ``--tf_inter_op_threads``) win over the environment variables
(YT8M_TF_INTRA_OP_THREADS, YT8M_TF_INTER_OP_THREADS), which win over the derived value.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
import uuid

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


def machine_cores() -> int:
    """CPU cores this process may run on (its affinity mask: what a container or taskset allows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class ModelSharing:
    """How many copies of each model a worker machine holds, and their TensorFlow threads (picklable).

    Built by the launcher from the flags and shipped to the workers inside the model handlers,
    so the thread count is derived on the worker, from the worker machine's cores.

    Attributes:
        copies: Copies of each model per machine, shared by all SDK worker processes of the
            machine through RunInference (``share_model_across_processes``, ``model_copies``);
            0: no sharing, every SDK worker process loads its own copy (Beam's default).
        processes: SDK worker processes per machine; None means one per core (Dataflow's
            default for Python). With 1 (an in-process local run) nothing is shared: the
            process loads its own copy, without RunInference's proxy and its files.
        intra_op_threads: --tf_intra_op_threads (None: derived).
        inter_op_threads: --tf_inter_op_threads (None: derived).
        tag: RunInference's model identifier, one per built pipeline: both model steps share
            it, so one process per machine hosts the run's models together (ignored by ==).
        authkey: The key (hex) of the machine's model-sharing connections, random per built
            pipeline (`pipeline.features.shared_access`); never shown (no repr, ignored by ==).
    """

    copies: int = 1
    processes: int | None = None
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    tag: str = dataclasses.field(default_factory=lambda: f"video_features_models_{uuid.uuid4().hex}",
                                 compare=False)
    authkey: str = dataclasses.field(default_factory=lambda: secrets.token_hex(32), compare=False, repr=False)

    @property
    def shared(self) -> bool:
        """Whether RunInference shares the copies across processes (not when a machine runs one process)."""
        return self.copies > 0 and self.processes != 1

    def model_processes(self, cores: int) -> int:
        """Processes of a machine with ``cores`` cores that hold model copies, each with its own thread pools."""
        if self.shared:
            return 1  # every shared copy of both models lives in the process that loaded it first (Beam 2.77)
        return max(1, self.processes or cores)  # one copy in every process

    def threads(self) -> tuple[int, int]:
        """(intra_op, inter_op) threads for a process holding model copies; see :func:`thread_settings`."""
        return thread_settings(processes=self.model_processes(machine_cores()), intra=self.intra_op_threads,
                               inter=self.inter_op_threads)


def thread_settings(*, processes: int = 1, intra: int | None = None, inter: int | None = None) -> tuple[int, int]:
    """(intra_op, inter_op) TensorFlow threads for one of ``processes`` model processes of this machine.

    Each gets ``machine_cores() // processes`` threads (at least 1) in both pools, so together
    they use the cores without oversubscribing them. ``intra``/``inter`` (the flags) win, then
    YT8M_TF_INTRA_OP_THREADS / YT8M_TF_INTER_OP_THREADS; 0 keeps TensorFlow's default.

    Args:
        processes: Processes of this machine that run models side by side, each with its own pools.
        intra: Explicit intra-op threads, or None.
        inter: Explicit inter-op threads, or None.

    Returns:
        The (intra_op, inter_op) thread counts to ask TensorFlow for.
    """
    share = max(1, machine_cores() // max(1, processes))
    env_intra, env_inter = env_int(INTRA_OP_THREADS_ENV), env_int(INTER_OP_THREADS_ENV)
    intra = intra if intra is not None else env_intra if env_intra is not None else share
    inter = inter if inter is not None else env_inter if env_inter is not None else share
    return intra, inter


def device_for(index: int, gpus: int) -> str | None:
    """The device of the ``index``-th model object a process loads: ``/GPU:(index % gpus)``; None without GPUs.

    Beam 2.77 hosts all ``--model_copies N`` copies in the one process that loads them first, so
    without this TensorFlow would run every copy on its first GPU and a worker's other GPUs would
    idle; with N = the GPUs per worker each copy gets a GPU of its own.
    """
    return f"/GPU:{index % gpus}" if gpus > 0 else None


def copy_device(index: int) -> str | None:
    """:func:`device_for` with the GPUs TensorFlow sees in this process (configure it first)."""
    from pipeline.cli import logs  # pylint: disable=import-outside-toplevel

    tf = logs.import_tensorflow()
    return device_for(index, len(tf.config.list_logical_devices("GPU")))


def _apply(intra: int, inter: int) -> None:
    from pipeline.cli import logs  # pylint: disable=import-outside-toplevel

    tf = logs.import_tensorflow()  # without its start-up lines, whichever process gets here first

    try:
        # Several processes may share one GPU: take memory as needed, not all of it up front.
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        if intra > 0 and tf.config.threading.get_intra_op_parallelism_threads() != intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter > 0 and tf.config.threading.get_inter_op_parallelism_threads() != inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except (RuntimeError, ValueError):  # TensorFlow's context is already initialized: keep its settings.
        logging.info("TensorFlow already initialized; thread pools and GPU memory settings left as they are")


def configure(sharing: ModelSharing | None = None) -> tuple[int, int]:
    """Applies the thread settings and GPU memory growth, once per process, before the first op.

    Call it before a process's first TensorFlow op (later calls are free and change nothing).
    If TensorFlow has already started, its settings stay as they are.

    Args:
        sharing: The run's model sharing (RunInference's model loading passes it); None: one
            model copy per machine and the environment variables (the launcher, tools, tests).

    Returns:
        The (intra_op, inter_op) thread counts the first call asked for (0: TensorFlow's default).
    """
    global _applied  # pylint: disable=global-statement
    with _lock:
        if _applied is None:
            settings = (sharing or ModelSharing()).threads()
            _apply(*settings)
            _applied = settings
        return _applied
