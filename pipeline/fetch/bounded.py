"""A function run in a child process with a deadline and a memory bound: for work that cannot be bounded in place.

yt-dlp reads and parses a page in the calling process: a 1 MB gzipped page that inflates to
1.6 GB holds a worker thread for minutes past the clip's deadline (the guard proxy only sees
compressed bytes in time) and its memory for as long. Python cannot interrupt that thread, so
:func:`call` runs the function in a child process instead and, while it waits, kills the
child's whole process group (the ffmpeg it started included) when the deadline passes or the
child's resident memory goes over the bound.

Children come from a ``forkserver`` (never a fork of a threaded worker), which imports
``preload`` once, so an attempt costs a fork, not an interpreter start. The children do not
import the parent's main module (multiprocessing would, in every child: in a Beam worker that
is Beam's whole SDK harness): what they run lives in importable modules. The function and its
arguments must be picklable, and so must what it returns or raises.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing import spawn
from typing import Any

_POLL_S = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_CONTEXT_LOCK = threading.Lock()
_CONTEXT: Any = None


class Exceeded(Exception):
    """The child passed a bound: ``kind`` is ``timeout``, ``memory`` or ``crashed`` (it died without an answer)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def _context(preload: tuple[str, ...]):
    global _CONTEXT  # pylint: disable=global-statement
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(list(preload))
            _CONTEXT = ctx
        return _CONTEXT


_STARTED: set[tuple[str, ...]] = set()


def start(preload: tuple[str, ...] = (), *, timeout: float = 300.0) -> None:
    """Starts the forkserver and waits until it has imported `preload` (once per process), so no call pays for it."""
    with _CONTEXT_LOCK:
        if preload in _STARTED:
            return
    call(_ready, {}, deadline=time.monotonic() + timeout, max_memory=1 << 62, preload=preload)
    with _CONTEXT_LOCK:
        _STARTED.add(preload)


def _ready() -> bool:
    return True


def _child(fn: Callable[..., Any], kwargs: dict, conn: multiprocessing.connection.Connection) -> None:
    os.setpgrp()  # its own process group: the parent kills whatever it starts along with it
    try:
        result = ("ok", fn(**kwargs))
    except BaseException as e:  # pylint: disable=broad-except  (handed to the parent, which decides)
        try:
            result = ("raised", e)
            conn.send(result)
            conn.close()
            return
        except Exception:  # pylint: disable=broad-except  (an exception that does not pickle)
            result = ("failed", f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}")
    conn.send(result)
    conn.close()


_START_LOCK = threading.Lock()


def _without_main(real: Callable[[str], dict]) -> Callable[[str], dict]:
    def prepare(name: str) -> dict:
        data = real(name)
        data.pop("init_main_from_name", None)
        data.pop("init_main_from_path", None)
        return data

    return prepare


def resident_bytes(pid: int) -> int:
    """Resident memory of process `pid` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _kill(proc: multiprocessing.process.BaseProcess) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    proc.join(5)


def call(fn: Callable[..., Any], kwargs: dict, *, deadline: float, max_memory: int,
         preload: tuple[str, ...] = ()) -> Any:
    """``fn(**kwargs)`` in a child process; returns its result or raises what it raised.

    Args:
        fn: A module-level function.
        kwargs: Its arguments (picklable).
        deadline: ``time.monotonic()`` value (the clock is system-wide) at which the child is killed.
        max_memory: Resident bytes of the child at which it is killed.
        preload: Modules the forkserver imports once, before its first child.

    Raises:
        Exceeded: the deadline passed, the memory bound was crossed, or the child died.
        Whatever ``fn`` raised (when it pickles).
    """
    ctx = _context(preload)
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, kwargs, sender), daemon=False)
    with _START_LOCK:
        real = spawn.get_preparation_data
        spawn.get_preparation_data = _without_main(real)
        try:
            proc.start()
        finally:
            spawn.get_preparation_data = real
    sender.close()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Exceeded("timeout", "still running at the clip's deadline")
            if receiver.poll(min(_POLL_S, left)):
                try:
                    kind, value = receiver.recv()
                except EOFError:
                    raise Exceeded("crashed", f"the child died (exit code {proc.exitcode})") from None
                if kind == "ok":
                    return value
                if kind == "raised":
                    raise value
                raise RuntimeError(value)
            if not proc.is_alive() and not receiver.poll():
                raise Exceeded("crashed", f"the child died (exit code {proc.exitcode})")
            used = resident_bytes(proc.pid)
            if used > max_memory:
                raise Exceeded("memory", f"used {used / 2**20:.0f} MiB, over the bound of {max_memory / 2**20:.0f} MiB")
    finally:
        receiver.close()
        if proc.is_alive():
            _kill(proc)
        else:
            proc.join(5)
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # an ffmpeg it left behind
